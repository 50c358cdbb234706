"""Sorting and top-k: sort, argsort, msort, topk (TF's own sort kernels, in torch's axis order).

Along a dynamic axis the padding is set to +inf (or -inf) first, so it never wins and each
sequence's valid frames come first, in order.
"""

from __future__ import annotations

import torch

from .common import T, mask_padding
from .registry import handles


def _prepared(ctx, x, ax: int, largest_first: bool):
    r = ctx.ref(x)
    d = r.dims[ax]
    if d.is_dynamic() and not d.is_batch_dim() and r.dtype.is_floating_point:
        r = mask_padding(ctx, r, d, float("-inf") if largest_first else float("inf"))
    return r


def _direction(descending: bool) -> str:
    return "'DESCENDING'" if descending else "'ASCENDING'"


@handles(torch.sort, T.sort)
def sort(ctx, x, dim=-1, descending=False, stable=False, *, out=None):
    """Values and indices sorted along ``dim`` (ties keep their order)."""
    if isinstance(dim, bool):  # sort(x, descending) in the positional form of old torch code
        dim, descending = -1, dim
    ax = dim % max(x.dim(), 1)
    r = _prepared(ctx, x, ax, descending)
    if r.ndim == 0:
        return r, ctx.const(torch.tensor(0), [])
    values = ctx.tf_op(f"tf.sort(x0, axis={ax}, direction={_direction(descending)})", [r], r.dims, dtype=r.dtype)
    indices = ctx.tf_op(f"tf.cast(tf.argsort(x0, axis={ax}, direction={_direction(descending)}, stable=True), "
                        "tf.int64)", [r], r.dims, dtype=torch.int64)
    return values, indices


@handles(torch.argsort, T.argsort)
def argsort(ctx, x, dim=-1, descending=False, stable=False):
    """Indices that sort along ``dim``."""
    return sort(ctx, x, dim, descending)[1]


@handles(torch.msort, T.msort)
def msort(ctx, x, *, out=None):
    """Sorted along the first axis."""
    return sort(ctx, x, 0)[0]


@handles(torch.topk, T.topk)
def topk(ctx, x, k, dim=-1, largest=True, sorted=True, *, out=None):
    """The ``k`` largest (or smallest) values along ``dim`` and their indices, largest first."""
    ax = dim % max(x.dim(), 1)
    r = _prepared(ctx, x, ax, largest)
    k = int(k)
    kd = ctx.dims.static(k, f"{ctx.op_name}_k")
    dims = list(r.dims)
    dims[ax] = kd
    perm = [a for a in range(r.ndim) if a != ax] + [ax]
    back = [perm.index(a) for a in range(r.ndim)]
    sign = "" if largest else "-"
    top = f"tf.math.top_k(tf.transpose({sign}x0, {perm}), {k})"
    values = ctx.tf_op(f"{sign}tf.transpose({top}.values, {back})", [r], dims, dtype=r.dtype)
    indices = ctx.tf_op(f"tf.cast(tf.transpose({top}.indices, {back}), tf.int64)", [r], dims, dtype=torch.int64)
    return values, indices
