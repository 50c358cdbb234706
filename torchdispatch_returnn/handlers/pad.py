"""Padding: F.pad (constant, reflect, replicate, circular) and the ConstantPad/ReflectionPad/
ReplicationPad/CircularPad modules (which call F.pad). Padding a dynamic axis derives its dim
(T + l + r); on a padded batch every sequence is padded at its own end, as torch pads it alone."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..sizes import DimInt, Lin
from .common import clip_positions, gather_ref, lin_ref, range_ref, size_value_ref
from .registry import handles

_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "replication", "circular": None}

#: source position of output position ``s`` (relative to the first input entry) in a sequence of
#: length ``L``, for the modes that repeat entries (torch's definitions; reflect needs pads < L)
_INDEX = {
    "reflect": "tf.where(tf.abs({s}) >= {L}, 2 * ({L} - 1) - tf.abs({s}), tf.abs({s}))",
    "replicate": "tf.clip_by_value({s}, 0, {L} - 1)",
    "circular": "tf.math.floormod({s}, {L})",
}


@handles(F.pad)
def pad(ctx, input, pad, mode="constant", value=None):
    """Pad the last len(pad)//2 axes (pairs from the last axis backwards)."""
    if mode not in _MODES:
        raise NotImplementedError(f"F.pad mode {mode!r}")
    r = ctx.ref(input)
    amounts = [p if isinstance(p, DimInt) else int(p) for p in pad]  # (no recovery by value: amounts are no sizes)
    fill = float(value or 0.0) if r.dtype.is_floating_point else int(value or 0)
    padded = [r.ndim - 1 - i for i in range(len(amounts) // 2) if amounts[2 * i] or amounts[2 * i + 1]]
    if any(r.dims[ax].is_batch_dim() for ax in padded):
        raise NotImplementedError("F.pad of the batch axis (the network's batch size is that of its inputs)")
    if mode != "constant" and 0 in r.shape:
        raise NotImplementedError(f"F.pad mode {mode!r} of an empty tensor")
    by_index = mode != "constant" and (mode == "circular" or any(
        r.dims[r.ndim - 1 - i].is_dynamic() for i in range(len(amounts) // 2) if amounts[2 * i] or amounts[2 * i + 1]))
    if by_index or any(isinstance(a, DimInt) or a < 0 for a in amounts):  # sizes from shapes, or cropping
        if mode != "constant" and any(isinstance(a, DimInt) or a < 0 for a in amounts):
            raise NotImplementedError(f"F.pad mode {mode!r} with amounts from sizes or negative amounts")
        for i in range(len(amounts) // 2):
            if amounts[2 * i] or amounts[2 * i + 1]:
                r = _pad_by_gather(ctx, r, r.ndim - 1 - i, amounts[2 * i], amounts[2 * i + 1], fill, mode)
        return r
    pairs = [(int(amounts[2 * i]), int(amounts[2 * i + 1])) for i in range(len(amounts) // 2)]
    axes, paddings, out_dims = [], [], []
    dims = list(r.dims)
    for i, (left, right) in enumerate(pairs):
        ax = r.ndim - 1 - i
        if left == 0 and right == 0:
            continue
        d = r.dims[ax]
        if d.is_dynamic():
            nd = ctx.dims.derive("add", ctx.dims.derive("add", left, d), right) if left else \
                ctx.dims.derive("add", d, right)
        else:
            nd = ctx.dims.static(r.shape[ax] + left + right, f"{ctx.op_name}_dim")
        axes.append(d)
        paddings.append((left, right))
        out_dims.append(nd)
        dims[ax] = nd
    if not axes:
        return r
    opts = {"class": "pad", "from": r, "axes": axes, "padding": paddings, "out_dims": out_dims,
            "mode": _MODES[mode]}
    fix = [(d, nd, lr) for d, nd, lr in zip(axes, out_dims, paddings) if d.is_dynamic() and lr[1]]
    if any(d.is_dynamic() for d in axes):
        # RETURNN's own per-sequence right padding needs the RF backend's range_over_dim, which the
        # net-dict backend lacks; we pad after the longest sequence, then (constant mode) move the
        # right padding of each shorter sequence to its own end below
        opts["handle_dynamic_dims"] = False
    if mode == "constant":
        opts["value"] = fill
    if not fix:
        return ctx.layer(opts, dims)
    y = ctx.layer(opts, dims)
    for d, nd, (left, _) in fix:
        pos = range_ref(ctx, nd)
        length = ctx.size_ref(d, dims)
        y = ctx.eval(f"tf.where((tf.cast(source(1), tf.int64) >= {left}) & (tf.cast(source(1), tf.int64) < "
                     f"tf.cast(source(2), tf.int64) + {left}), source(0), tf.cast({fill!r}, source(0).dtype))",
                     [y, pos, length], dims, dtype=r.dtype)
    return y


def _pad_by_gather(ctx, r, ax, left, right, fill, mode="constant"):
    """Padding (or cropping, for negative amounts) of axis ``ax`` by amounts that may be sizes:
    out[j] = x[j - left] where that is inside x (each sequence's own length on a dynamic axis), else
    ``fill`` (constant mode) or the entry the mode repeats (:data:`_INDEX`). The result length is a
    dim (``T + left + right``)."""
    d = r.dims[ax]
    length = ctx.dims.lin_of(d) if d.is_dynamic() else Lin((), r.shape[ax])
    n = length + Lin.of(left) + Lin.of(right)
    out_dim = ctx.dims.static(n.const, f"{ctx.op_name}_dim") if n.is_const else ctx.dims.dim_of(n)
    if out_dim is None:
        raise NotImplementedError(f"padding to a length of {n!r}, which is no dim")
    pos = range_ref(ctx, out_dim)
    batch = [x for x in r.dims if x.is_batch_dim()]
    if d.is_dynamic() and batch:  # per sequence: the right padding after each sequence's own end
        first, size = lin_ref(ctx, Lin.of(left), batch), ctx.cast(ctx.size_ref(d, batch), torch.int64)
    else:
        first, size = size_value_ref(ctx, Lin.of(left)), size_value_ref(ctx, length)
    src = ctx.eval("source(0) - source(1)", [pos, first], list(first.dims) + [out_dim], dtype=torch.int64)
    if mode != "constant":
        dims = list(dict.fromkeys(list(size.dims) + list(src.dims)))
        src = ctx.eval(_INDEX[mode].format(s="source(0)", L="tf.cast(source(1), tf.int64)"), [src, size], dims,
                       dtype=torch.int64)
        return gather_ref(ctx, r, ax, clip_positions(ctx, src, r, ax), [out_dim])
    keep = ctx.eval("(source(0) >= 0) & (source(0) < source(1))", [src, size],
                    list(dict.fromkeys(list(size.dims) + list(src.dims))), dtype=torch.bool)
    taken = gather_ref(ctx, r, ax, clip_positions(ctx, src, r, ax), [out_dim])
    return ctx.eval(f"tf.where(source(1), source(0), tf.cast({fill!r}, source(0).dtype))", [taken, keep], taken.dims,
                    dtype=r.dtype)
