"""Padding: F.pad (constant, reflect, replicate) and the ConstantPad/ReflectionPad/ReplicationPad
modules (which call F.pad). Padding a dynamic axis derives its dim (T + l + r)."""

from __future__ import annotations

import torch.nn.functional as F

from .common import range_ref
from .registry import handles

_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "replication"}


@handles(F.pad)
def pad(ctx, input, pad, mode="constant", value=None):
    """Pad the last len(pad)//2 axes (pairs from the last axis backwards)."""
    if mode not in _MODES:
        raise NotImplementedError(f"F.pad mode {mode!r}")
    r = ctx.ref(input)
    pairs = [(int(pad[2 * i]), int(pad[2 * i + 1])) for i in range(len(pad) // 2)]
    axes, paddings, out_dims = [], [], []
    dims = list(r.dims)
    for i, (left, right) in enumerate(pairs):
        ax = r.ndim - 1 - i
        if left == 0 and right == 0:
            continue
        if left < 0 or right < 0:
            raise NotImplementedError("negative padding (cropping)")
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
    fill = float(value or 0.0) if r.dtype.is_floating_point else int(value or 0)
    if mode == "constant":
        opts["value"] = fill
    if not fix or mode != "constant":
        if fix:
            ctx.note(f"{mode} right padding of a dynamic axis follows the longest sequence: not exact "
                             "for shorter sequences of a padded batch")
        return ctx.layer(opts, dims)
    y = ctx.layer(opts, dims)
    for d, nd, (left, _) in fix:
        pos = range_ref(ctx, nd)
        length = ctx.size_ref(d, dims)
        y = ctx.eval(f"tf.where((tf.cast(source(1), tf.int64) >= {left}) & (tf.cast(source(1), tf.int64) < "
                     f"tf.cast(source(2), tf.int64) + {left}), source(0), tf.cast({fill!r}, source(0).dtype))",
                     [y, pos, length], dims, dtype=r.dtype)
    return y
