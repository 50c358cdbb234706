"""``assert_parity``/``assert_padded``: every handler's case table, checked with the public
``torchdispatch_returnn.testing.assert_converts`` (users test their models exactly as we test ours).

A case is a module factory and input shapes; ``assert_converts`` captures it (per-op parity, the
self-checks, gradient parity), rebuilds the written config + checkpoint, and compares both networks
with torch at other sizes along the dynamic axes (and on a padded batch with NaN in the padding).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch

from torchdispatch_returnn.testing import assert_converts


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


def _convert(case: Case, padded: bool, lens=None) -> Any:
    torch.manual_seed(0)
    model = case.module()
    dyn_names = {n for spec in (case.dyn or ()) if spec for n in spec.values() if n != "batch"}
    net = assert_converts(model, *make_inputs(case), dynamic_shapes=case.dyn,
                          other_lengths=list(case.other_sizes) if dyn_names else None, padded=padded,
                          seq_lens=list(lens or case.seq_lens), grads=case.grads, atol=case.atol)
    assert len(net.parity) > 0
    COVERED.update(net.ops_seen)
    if any(g.ok for g in net.parity.grads):
        GRAD_COVERED.update(net.ops_seen)
    return net


def assert_parity(case: Case) -> Any:
    """``case`` through ``assert_converts`` (without the padded batch)."""
    return _convert(case, padded=False)


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


def assert_padded(case: Case, lens=None) -> Any:
    """``case`` through ``assert_converts`` with the padded batch: sequences of ``lens`` (default
    ``case.seq_lens``, cut to the example size), NaN or the largest id in the padding; every
    sequence's valid output frames must equal torch run on that sequence alone."""
    return _convert(case, padded=True, lens=lens)
