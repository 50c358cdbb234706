"""``assert_parity``: the one checker behind every handler's case table.

A case is captured through the public API (``returnn_capture``, parity check on), then the
written config and checkpoint are built into a fresh TFNetwork and compared with torch at the
captured size and at other sizes along the dynamic axes (``net.run`` too).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from torchdispatch_returnn import returnn_capture
from torchdispatch_returnn.export import ConfigNetwork


@dataclasses.dataclass
class Case:
    """A module (factory) and its input shapes; ``dyn``: dynamic_shapes per input."""

    name: str
    module: Callable[[], torch.nn.Module]
    shapes: list  # input shapes
    dyn: tuple | None = None
    dtypes: list | None = None  # per input: torch.float32 (default) or an int dtype with "high"
    other_sizes: tuple = (7, 13)  # sizes tried along every dynamic axis after the capture
    high: int = 10  # for integer inputs
    atol: float = 1e-5
    positive: bool = False
    seq_lens: tuple = (9, 4, 6)  # lengths of the padded-batch check (assert_padded)
    grads: bool = True  # gradient parity of the written config (check_grads)

    def __str__(self):
        return self.name


def make_inputs(case: Case, sizes: dict | None = None, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for i, shape in enumerate(case.shapes):
        shape = list(shape)
        for ax, name in ((case.dyn or ())[i] if case.dyn and i < len(case.dyn) and case.dyn[i] else {}).items():
            if sizes and name in sizes:
                shape[ax] = sizes[name]
        dtype = (case.dtypes or [None] * len(case.shapes))[i] or torch.float32
        if dtype.is_floating_point:
            t = torch.randn(*shape, generator=g, dtype=dtype)
            if case.positive:
                t = t.abs() + 0.1
        elif dtype == torch.bool:
            t = torch.rand(*shape, generator=g) > 0.5
        else:
            t = torch.randint(0, case.high, shape, generator=g, dtype=dtype)
        out.append(t)
    return out


def _close(got, expected, atol, what):
    got = np.asarray(got)
    expected = expected.detach().numpy()
    assert got.shape == expected.shape, f"{what}: shape {got.shape} != torch {expected.shape}"
    if expected.dtype == np.bool_ or np.issubdtype(expected.dtype, np.integer):
        np.testing.assert_array_equal(got, expected, err_msg=what)
    else:
        scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=atol * scale, err_msg=what)


def _outputs(y) -> list[torch.Tensor]:
    if isinstance(y, torch.Tensor):
        return [y]
    if isinstance(y, dict):
        return [v for v in y.values() if isinstance(v, torch.Tensor)]
    return [v for v in y if isinstance(v, torch.Tensor)]


def assert_parity(case: Case) -> Any:
    """Capture ``case`` (per-op parity, self-check, gradient parity), export, rebuild fresh, compare
    at other lengths."""
    torch.manual_seed(0)
    model = case.module()
    if isinstance(model, torch.nn.Module):
        model.eval()
    xs = make_inputs(case)
    with torch.no_grad():
        expected = _outputs(model(*[x.clone() for x in xs]))
        with returnn_capture(dynamic_shapes=case.dyn, atol=case.atol, check_grads=case.grads) as net:
            y = model(*[x.clone() for x in xs])
    assert net.parity.ok, str(net.parity)
    assert len(net.parity) > 0
    COVERED.update(net.ops_seen)
    if any(g.ok for g in net.parity.grads):
        GRAD_COVERED.update(net.ops_seen)
    for got, exp in zip(_outputs(y), expected):
        torch.testing.assert_close(got.as_subclass(torch.Tensor), exp)  # the user gets torch's own values
    with tempfile.TemporaryDirectory(prefix="tdr_") as tmp:
        fresh = ConfigNetwork(net.save_config(os.path.join(tmp, "net.config")),
                              net.save_checkpoint(os.path.join(tmp, "model")))
    try:
        dyn_names = sorted({n for spec in (case.dyn or ()) if spec for n in spec.values() if n != "batch"})
        size_sets = [None] + ([dict.fromkeys(dyn_names, s) for s in case.other_sizes] if dyn_names else [])
        for k, sizes in enumerate(size_sets):
            xs_k = xs if sizes is None else make_inputs(case, sizes, seed=k + 1)
            with torch.no_grad():
                exp_k = _outputs(model(*[x.clone() for x in xs_k]))
            got_fresh = fresh.run(*xs_k)
            got_live = net.run(*xs_k)
            got_fresh = [got_fresh] if len(exp_k) == 1 else list(got_fresh)
            got_live = [got_live] if len(exp_k) == 1 else list(got_live)
            for j, e in enumerate(exp_k):
                _close(got_fresh[j], e, case.atol, f"{case.name}: fresh config+checkpoint, sizes {sizes}, output {j}")
                _close(got_live[j], e, case.atol, f"{case.name}: net.run, sizes {sizes}, output {j}")
    finally:
        fresh.close()
    return net


class Fn(torch.nn.Module):
    """Wraps a function of tensors as a module (so its arguments become the network inputs)."""

    def __init__(self, fn, *params, **buffers):
        super().__init__()
        self.fn = fn
        for i, p in enumerate(params):
            setattr(self, f"p{i}", torch.nn.Parameter(p))
        for k, b in buffers.items():
            self.register_buffer(k, b)

    def forward(self, *xs):
        return self.fn(self, *xs)


#: torch callables dispatched to handlers in parity cases of this test session (coverage meta-test)
COVERED: set = set()
#: ... of cases whose gradients were checked (not skipped)
GRAD_COVERED: set = set()


def GARBAGE(shape, g):
    """NaN in the padding: any leak of padding into valid frames shows (even through * 0)."""
    return torch.full(shape, float("nan"))


def _batch_axis(spec) -> int:
    return next((ax for ax, name in (spec or {}).items() if name == "batch"), 0)


def garbage_batch(case: Case, lens: list[int], seed: int = 0) -> list[torch.Tensor]:
    """Inputs for a padded batch: each sequence i is valid up to lens[i] along every dynamic axis
    named "time"; the padding holds garbage (NaN for floats, the largest id for ints), not zeros."""
    tmax = max(lens)
    xs = make_inputs(case, {"time": tmax}, seed=seed)
    g = torch.Generator().manual_seed(seed + 100)
    for i, x in enumerate(xs):
        spec = (case.dyn or ())[i] if case.dyn and i < len(case.dyn) else None
        for ax, name in (spec or {}).items():
            if name != "time":
                continue
            for b, n in enumerate(lens):
                idx = [slice(None)] * x.dim()
                idx[_batch_axis(spec)], idx[ax] = b, slice(n, None)
                if x.dtype.is_floating_point:
                    x[tuple(idx)] = GARBAGE(x[tuple(idx)].shape, g)
                else:
                    x[tuple(idx)] = case.high - 1
    return xs


def _single(case: Case, xs, b: int, n: int) -> list[torch.Tensor]:
    out = []
    for i, x in enumerate(xs):
        spec = (case.dyn or ())[i] if case.dyn and i < len(case.dyn) else None
        idx = [slice(None)] * x.dim()
        idx[_batch_axis(spec)] = slice(b, b + 1)
        for ax, name in (spec or {}).items():
            if name == "time":
                idx[ax] = slice(0, n)
        out.append(x[tuple(idx)].clone())
    return out


def assert_padded(case: Case, lens=None) -> Any:
    """Capture ``case``, then feed a padded batch (garbage in the padding) with sequence lengths to
    the live and the rebuilt network: every sequence's valid output frames must equal torch run on
    that sequence alone."""
    lens = list(lens or case.seq_lens)
    net = assert_parity(case)
    model = case.module()
    torch.manual_seed(0)
    model = case.module()
    if isinstance(model, torch.nn.Module):
        model.eval()
    with tempfile.TemporaryDirectory(prefix="tdr_pad_") as tmp:
        fresh = ConfigNetwork(net.save_config(os.path.join(tmp, "net.config")),
                              net.save_checkpoint(os.path.join(tmp, "m")))
    try:
        xs = garbage_batch(case, lens)
        got_live = net.run(*xs, seq_lens={"time": lens})
        got_fresh = fresh.run(*xs, seq_lens={"time": lens})
        for b, n in enumerate(lens):
            with torch.no_grad():
                want = _outputs(model(*_single(case, xs, b, n)))
            lives = [got_live] if len(want) == 1 else list(got_live)
            freshs = [got_fresh] if len(want) == 1 else list(got_fresh)
            for j, w in enumerate(want):
                for what, got in (("net.run", lives[j]), ("fresh config", freshs[j])):
                    sl = (slice(b, b + 1),) + tuple(slice(0, s) for s in w.shape[1:])
                    _close(np.asarray(got)[sl], w, case.atol, f"{case.name}: {what}, sequence {b} (length {n}), "
                                                             f"output {j}")
    finally:
        fresh.close()
    return net
