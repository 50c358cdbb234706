"""Per-model parity tests for users: ``assert_converts`` runs everything the project checks of a
conversion in one call.

1. capture with the per-op parity check;
2. the network rebuilt from the written config + checkpoint, and the live one, against torch on
   the example inputs and at other lengths along every dynamic axis;
3. a padded batch with NaN (or the largest id) in the padding, run through both networks with
   the sequence lengths, against torch on each sequence alone;
4. gradient parity (``grads=True``): the gradients of the network built from the written config
   w.r.t. every parameter and float input, against torch autograd.

Failures raise ``AssertionError`` naming what differs (a ``ParityError`` with the op table from
step 1).
"""

from __future__ import annotations

import inspect
import math
import os
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .capture import Capture, returnn_capture
from .numeric import to_numpy
from .runtime import ConfigNetwork

__all__ = ["assert_converts"]


def assert_converts(model: torch.nn.Module, *inputs: torch.Tensor, dynamic_shapes: Any = None,
                    lengths: dict | None = None, other_lengths: Any = None, padded: bool = True, grads: bool = False,
                    rtol: float = 1e-5, atol: float = 1e-5, seq_lens: Sequence[int] | None = None, train: bool = False,
                    seed: int = 0, nested: bool = False) -> Capture:
    """Capture ``model(*inputs)`` and check the conversion at other lengths and on a padded batch.

    ``dynamic_shapes`` and ``lengths`` are those of :func:`returnn_capture`. ``other_lengths``:
    sizes to try along the dynamic axes (a list applied to every dynamic dim, or {dim name: list});
    default: about 2/3 and 3/2 of the example length. ``padded``: also check a padded batch with NaN
    in the padding (for models whose valid outputs do not depend on the padding); ``seq_lens``: its
    lengths, as fractions of the example size (floats) or as sizes (ints); default: full, 3/4, 1/2, ...
    ``grads``: gradient parity of the network built from the written config against torch autograd.
    ``rtol``/``atol``: per element, ``|got - torch| <= atol * max(1, max|torch|) + rtol * |torch|``.
    ``nested``: capture with ``nested=True`` (the written config and checkpoint checked are the nested ones).
    Files are written to a temporary directory that is removed. Returns the capture.

    Raises ``AssertionError``: a :class:`ParityError` from the capture (the op table, the first bad
    op named), or a message saying which run differs, followed by the capture's op table."""
    if isinstance(model, torch.nn.Module):
        model.eval()
    spec = _Spec(model, inputs, dynamic_shapes, lengths)
    with torch.no_grad():
        expected = _outputs(model(*_clone(inputs)))
        with returnn_capture(dynamic_shapes=dynamic_shapes, lengths=lengths, atol=atol, rtol=rtol, train=train,
                             check_grads=grads and not train, self_check=spec.self_check(other_lengths),
                             nested=nested) as net:
            got = model(*_clone(inputs))
    for g, e in zip(_outputs(got), expected):
        # the user gets torch's values (float rounding aside: on captured tensors torch skips fused fast
        # paths such as nn.MultiheadAttention's native kernel in eval mode)
        torch.testing.assert_close(g.as_subclass(torch.Tensor), e, equal_nan=True)
    with tempfile.TemporaryDirectory(prefix="tdr_test_") as tmp:
        fresh = ConfigNetwork(net.save_config(os.path.join(tmp, "returnn.config")),
                              net.save_checkpoint(os.path.join(tmp, "model")))
    try:
        _later_checks(model, inputs, net, fresh, spec, other_lengths, padded, seq_lens, rtol, atol, seed)
    except AssertionError as e:
        raise AssertionError(f"{e}\n\nThe per-op parity check at capture passed (checked ops: {len(net.parity)}); "
                             f"ops by module path and the RETURNN layer each became:\n{net.parity.format(full=True)}"
                             ) from None
    finally:
        fresh.close()
    return net


def _later_checks(model, inputs, net: Capture, fresh: ConfigNetwork, spec: _Spec, other_lengths, padded: bool,
                  seq_lens, rtol: float, atol: float, seed: int) -> None:
    """The live and the rebuilt network at the example and other sizes, then on a padded batch."""
    batch_axes = [_batch_axis(ref) for _, ref in net._outputs]
    for sizes in [None] + spec.other_sizes(other_lengths):
        # (lengths arguments: full lengths here; shorter sequences are the padded check's)
        xs = (spec.resized(spec.sizes, seed) if spec.lengths else inputs) if sizes is None else \
            spec.resized(sizes, seed)
        with torch.no_grad():
            want = _outputs(model(*_clone(xs)))
        for what, got in (("net.run", net.run(*xs)), ("fresh network from the written config", fresh.run(*xs))):
            _compare(_as_list(got), want, rtol, atol, f"{what} at sizes {sizes or spec.sizes}",
                     shapes_only=bool(net.parity.feeds))  # random ops: the networks sample their own values
    # (a padded batch of sequences that torch runs alone: not with random ops, nor with a network fixed to the
    # capture's batch size by plain tensors along the batch axis; the capture's report says so)
    if padded and spec.dyn_names and not net.parity.feeds and not net.dims.batch_fixed:
        _check_padded(model, net, fresh, spec, seq_lens, batch_axes, rtol, atol, seed)


class _Spec:
    """Which axes of which inputs are dynamic (by dim name) and which arguments are lengths."""

    def __init__(self, model, inputs, dynamic_shapes, lengths):
        self.inputs = list(inputs)
        try:
            names = [p.name for p in inspect.signature(model.forward).parameters.values()]
        except (TypeError, ValueError):
            names = []
        per_input: list[dict] = [{} for _ in inputs]
        if isinstance(dynamic_shapes, dict):
            for k, v in dynamic_shapes.items():
                if k in names and names.index(k) < len(inputs):
                    per_input[names.index(k)] = dict(v or {})
        elif dynamic_shapes is not None:
            for i, v in enumerate(dynamic_shapes):
                per_input[i] = dict(v or {})
        self.axes = [{(a % max(t.dim(), 1)): str(getattr(n, "__name__", n)) for a, n in d.items()}
                     for t, d in zip(inputs, per_input)]
        self.lengths = {}
        for k, dim in (lengths or {}).items():
            i = k if isinstance(k, int) else names.index(k)
            self.lengths[i] = dim
        self.sizes = {}
        for t, axes in zip(inputs, self.axes):
            for a, n in axes.items():
                if n != "batch":
                    self.sizes.setdefault(n, t.shape[a])
        self.dyn_names = sorted(self.sizes)
        self.batch = next((t.shape[self.batch_axis(i)] for i, t in enumerate(inputs)
                           if t.dim() and i not in self.lengths), 1)

    def batch_axis(self, i: int) -> int:
        return next((a for a, n in self.axes[i].items() if n == "batch"), 0)

    def other_sizes(self, other: Any) -> list[dict]:
        if not self.dyn_names:
            return []
        if other is None:
            return [{n: max(1, (2 * s) // 3) for n, s in self.sizes.items()},
                    {n: (3 * s + 1) // 2 for n, s in self.sizes.items()}]
        if isinstance(other, dict):
            count = max(len(v) for v in other.values())
            return [{n: list(other.get(n, [self.sizes[n]]))[min(k, len(other.get(n, [0])) - 1)]
                     for n in self.dyn_names} for k in range(count)]
        return [{n: s for n in self.dyn_names} for s in other]

    def self_check(self, other: Any) -> Any:
        """The capture's own self-check at the shorter of ``other`` (default: its own choice)."""
        if other is None or not self.dyn_names:
            return True
        shorter = {n: [d[n] for d in self.other_sizes(other) if d[n] < self.sizes[n]] for n in self.dyn_names}
        return {n: v for n, v in shorter.items() if v} or False

    def resized(self, sizes: dict, seed: int, lens: dict | None = None) -> list:
        """The inputs with each dynamic axis at ``sizes[name]`` (new random values beyond the example,
        of the example's kind); lengths arguments become ``lens[name]`` or the full size."""
        g = torch.Generator().manual_seed(seed + 1)
        out = []
        for i, t in enumerate(self.inputs):
            if i in self.lengths:
                name = self.lengths[i]
                n = torch.as_tensor((lens or {}).get(name, [sizes[name]] * len(t)), dtype=torch.float64)
                if t.dtype.is_floating_point:  # relative lengths (fractions of the padded size)
                    n = n / sizes[name]
                out.append(n.to(t.dtype))
                continue
            for a, name in self.axes[i].items():
                if name in sizes:
                    t = _resize(t, a, sizes[name], g)
            out.append(t)
        return out


def _resize(t: torch.Tensor, axis: int, n: int, g: torch.Generator) -> torch.Tensor:
    """``t`` cut or extended to ``n`` along ``axis``. New entries stay in the example's range (so a
    domain such as x > 0 or |x| < 1 holds): floats are random mixes of two example values, other
    dtypes example values."""
    if n <= t.shape[axis]:
        return t.narrow(axis, 0, n).clone()
    shape = list(t.shape)
    shape[axis] = n - t.shape[axis]
    flat = t.detach().reshape(-1)
    if flat.numel() == 0:
        return torch.cat([t, torch.zeros(shape, dtype=t.dtype)], axis)
    pick = lambda: flat[torch.randint(0, flat.numel(), shape, generator=g)]
    if t.dtype.is_floating_point:
        a = torch.rand(shape, generator=g, dtype=t.dtype)
        extra = a * pick() + (1 - a) * pick()
    else:
        extra = pick()
    return torch.cat([t, extra], axis)


def _check_padded(model, net, fresh, spec: _Spec, seq_lens, batch_axes, rtol, atol, seed) -> None:
    fracs = list(seq_lens) if seq_lens is not None else [1.0, 0.75, 0.5, 0.6, 0.9, 0.4][:spec.batch]
    fracs = (fracs * spec.batch)[:spec.batch]
    lens = {n: [max(1, min(s, int(math.ceil(s * f)) if isinstance(f, float) else int(f))) for f in fracs]
            for n, s in spec.sizes.items()}
    xs = spec.resized(spec.sizes, seed, lens={n: v for n, v in lens.items()})
    padded = []
    for i, t in enumerate(xs):  # garbage in the padding: NaN (floats) or the largest value
        if i not in spec.lengths:
            t = t.clone()
            for a, name in spec.axes[i].items():
                if name in lens:
                    for b, n in enumerate(lens[name]):
                        idx = [slice(None)] * t.dim()
                        idx[spec.batch_axis(i)], idx[a] = b, slice(n, None)
                        t[tuple(idx)] = float("nan") if t.dtype.is_floating_point else t.max()
        padded.append(t)
    run_lens = {n: np.asarray(v) for n, v in lens.items()}
    given = {spec.lengths[i] for i in spec.lengths}
    seq = {n: v for n, v in run_lens.items() if n not in given}
    outs = {"net.run": _as_list(net.run(*padded, seq_lens=seq or None)),
            "fresh network": _as_list(fresh.run(*padded, seq_lens=seq or None))}
    for b in range(spec.batch):
        single = []
        for i, t in enumerate(padded):
            if i in spec.lengths:
                single.append(t[b:b + 1])
                continue
            idx = [slice(None)] * t.dim()
            idx[spec.batch_axis(i)] = slice(b, b + 1)
            for a, name in spec.axes[i].items():
                if name in lens:
                    idx[a] = slice(0, lens[name][b])
            single.append(t[tuple(idx)])
        with torch.no_grad():
            want = _outputs(model(*single))
        for what, got in outs.items():
            for j, (g, w) in enumerate(zip(got, want)):
                ax = batch_axes[j] if j < len(batch_axes) else None
                if ax is None:
                    continue  # an output without a batch axis has nothing per sequence
                sl = [slice(0, s) for s in w.shape]
                sl[ax] = slice(b, b + 1)
                _compare([np.asarray(g)[tuple(sl)]], [w], rtol, atol,
                         f"{what}, padded batch, sequence {b} (lengths {[v[b] for v in lens.values()]}), output {j}")


def _compare(got: list, want: list, rtol: float, atol: float, what: str, shapes_only: bool = False) -> None:
    assert len(got) == len(want), f"{what}: {len(got)} outputs, torch has {len(want)}"
    for j, (g, w) in enumerate(zip(got, want)):
        g, w = np.asarray(g), to_numpy(w)
        assert g.shape == w.shape, f"{what}, output {j}: shape {g.shape}, torch {w.shape}"
        if shapes_only:
            continue
        if w.dtype == np.bool_ or np.issubdtype(w.dtype, np.integer):
            np.testing.assert_array_equal(g, w, err_msg=f"{what}, output {j}")
        else:
            fin = np.abs(w[np.isfinite(w)])  # (the scale of the finite values; inf must match exactly)
            scale = float(fin.max(initial=0.0))
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol * max(1.0, scale), equal_nan=True,
                                       err_msg=f"{what}, output {j}")


def _batch_axis(ref) -> int | None:
    return next((i for i, d in enumerate(ref.dims) if d.is_batch_dim()), None)


def _outputs(y: Any) -> list:
    if isinstance(y, torch.Tensor):
        return [y]
    if isinstance(y, dict):
        return [v for v in y.values() if isinstance(v, torch.Tensor)]
    return [v for v in y if isinstance(v, torch.Tensor)]


def _as_list(v: Any) -> list:
    return list(v) if isinstance(v, tuple) else [v]


def _clone(xs) -> list:
    return [x.clone() if isinstance(x, torch.Tensor) else x for x in xs]
