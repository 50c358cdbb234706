"""Reshapes: view/reshape/view_as/flatten/unflatten.

Input and output axes are grouped by equal size products; each group is kept, merged
(``merge_dims``), split (``split_dims``) or both. Sizes passed as ``DimInt`` keep their dims, so a
dynamic axis stays dynamic; a dynamic axis may be split into one dynamic and static parts (frame
stacking), and the batch axis may be merged with one other axis and split back (``flatten_batch``).
"""

from __future__ import annotations

import torch

from ..sizes import DimInt
from ..tensor import NEW_BATCH, MergedDim
from .common import T, clip_positions, gather_ref, range_ref, size_value_ref, sizes_arg
from .meta import sym_shape
from .registry import handles


def reshape_ref(ctx, r, sizes: list, out_shape: tuple):
    """Reshape ``r`` to ``out_shape``; ``sizes`` (the user's arguments) may carry dims (DimInt)."""
    hints = [s.dim if isinstance(s, DimInt) else None for s in sizes] if len(sizes) == len(out_shape) else \
        [None] * len(out_shape)
    # 1. drop static size-1 input axes
    for ax in reversed(range(r.ndim)):
        if r.shape[ax] == 1 and not r.dims[ax].is_dynamic() and not r.dims[ax].is_batch_dim():
            r = ctx.squeeze(r, ax)
    out_idx = [j for j, s in enumerate(out_shape) if s != 1 or (hints[j] is not None and hints[j].is_dynamic())]
    # 2. group input and output axes by equal products
    groups, i, j = [], 0, 0
    while i < r.ndim or j < len(out_idx):
        gi, gj = [i], [j]
        if i >= r.ndim or j >= len(out_idx):
            raise NotImplementedError(f"reshape {r.shape} -> {out_shape}")
        pi, pj = r.shape[i], out_shape[out_idx[j]]
        while pi != pj:
            if pi < pj:
                i += 1
                gi.append(i)
                pi *= r.shape[i]
            else:
                j += 1
                gj.append(j)
                pj *= out_shape[out_idx[j]]
        groups.append(([r.dims[k] for k in gi], [out_idx[k] for k in gj]))
        i, j = i + 1, j + 1
    # 3. merge/split each group
    new_dims = {}
    for in_dims, gj in groups:
        if len(in_dims) == 1 and len(gj) == 1:
            new_dims[gj[0]] = in_dims[0]
            continue
        if len(in_dims) == 1 and isinstance(in_dims[0], MergedDim):  # B * K back to (B, K)
            parts = in_dims[0].parts
            if [out_shape[k] for k in gj] != [ctx.dims.size(p) for p in parts]:
                raise NotImplementedError("a reshape of an axis that merges the batch with another axis, other than "
                                          "back into its parts")
            new_dims.update(zip(gj, parts))
            continue
        if any(d.is_batch_dim() for d in in_dims):
            r, produced = _batch_reshape(ctx, r, in_dims, gj, out_shape, hints)
            new_dims.update(produced)
            continue
        if len(gj) > 1 and (sum(d.is_dynamic() for d in in_dims) > 1 or
                            sum(h is not None and h.is_dynamic() for h in (hints[k] for k in gj)) > 1):
            r, produced = _flat_reshape(ctx, r, in_dims, gj, out_shape, hints)
            new_dims.update(produced)
            continue
        if len(in_dims) > 1:
            axes_pos = [_pos(r.dims, d) for d in in_dims]
            others = [d for k, d in enumerate(r.dims) if k not in axes_pos]
            merged = hints[gj[0]] if len(gj) == 1 and hints[gj[0]] is not None else \
                ctx.dims.shared.merge(list(in_dims), lambda: _product_dim(ctx, in_dims), avoid=others)
            dims = [d for k, d in enumerate(r.dims) if k not in axes_pos]
            dims.insert(min(axes_pos), merged)
            r = ctx.layer({"class": "merge_dims", "from": r, "axes": in_dims, "out_dim": merged}, dims,
                          dtype=r.dtype)
            src = merged
        else:
            src = in_dims[0]
        if len(gj) == 1:
            new_dims[gj[0]] = src
            continue
        parts = _split_dims(ctx, src, [out_shape[k] for k in gj], [hints[k] for k in gj], r.dims)
        pos = _pos(r.dims, src)
        dims = list(r.dims[:pos]) + parts + list(r.dims[pos + 1:])
        r = ctx.layer({"class": "split_dims", "from": r, "axis": src, "dims": parts}, dims, dtype=r.dtype)
        for k, d in zip(gj, parts):
            new_dims[k] = d
    # 4. new size-1 axes
    order = []
    for j in range(len(out_shape)):
        if j not in new_dims:
            d = ctx.dims.static(1, f"{ctx.op_name}_one")
            r = ctx.unsqueeze(r, r.ndim, d)
            new_dims[j] = d
        order.append(new_dims[j])
    return ctx.transpose_to(r, order)


def _pos(dims, dim) -> int:
    """Index of ``dim`` in ``dims`` by identity (RETURNN's == treats all batch dims as equal)."""
    for i, d in enumerate(dims):
        if d is dim:
            return i
    raise ValueError(f"{dim} not in {dims}")


def _batch_reshape(ctx, r, in_dims, gj, out_shape, hints):
    """Merge the batch axis with one other axis (``flatten_batch``: packed sequences, batch-major)
    or split such a merged axis back (``unflatten_batch``)."""
    if len(in_dims) == 2 and len(gj) == 1:
        other = in_dims[1] if in_dims[0].is_batch_dim() else in_dims[0]
        if not other.is_dynamic():  # B * K: one torch axis over both dims (the layer keeps them apart)
            return r, {gj[0]: MergedDim(tuple(in_dims))}
        pos = [_pos(r.dims, d) for d in in_dims]
        dims = [d for k, d in enumerate(r.dims) if k not in pos]
        dims.insert(min(pos), NEW_BATCH)
        shape = [s for k, s in enumerate(r.shape) if k not in pos]
        shape.insert(min(pos), r.shape[pos[0]] * r.shape[pos[1]])
        out = ctx.layer({"class": "flatten_batch", "from": r, "axis": other,
                         "batch_major": in_dims[0].is_batch_dim()}, dims, dtype=r.dtype, shape=tuple(shape))
        new_b = out.dims[min(pos)]
        ctx.dims.mark_flat_batch(new_b, in_dims)
        return out, {gj[0]: new_b}
    orig = ctx.dims.flat_batch_parts(in_dims[0]) if len(in_dims) == 1 and len(gj) == 2 else None
    if orig is not None:
        if not orig[0].is_batch_dim():
            raise NotImplementedError("splitting a time-major merged batch axis")
        pos = _pos(r.dims, in_dims[0])
        dims = list(r.dims[:pos]) + [orig[0], orig[1]] + list(r.dims[pos + 1:])  # the batch dim it was merged from
        out = ctx.layer({"class": "unflatten_batch", "from": r}, dims, dtype=r.dtype)
        return out, {gj[0]: orig[0], gj[1]: orig[1]}
    raise NotImplementedError("reshape that merges the batch axis with more than one axis, or splits it")


def _flat_reshape(ctx, r, in_dims, gj, out_shape, hints):
    """A reshape among several dynamic axes (the pad-and-view relative shift of Transformer-XL): torch's
    row-major reshape of the padded tensor, as a gather by flat position from the merged input axes."""
    out = [hints[k] for k in gj]
    rest = list(in_dims)
    for h in out:  # the dims left over for the one output size without a dim (-1)
        if h is not None:
            match = next((i for i, d in enumerate(rest) if d is h or ctx.dims.lin_of(d) == ctx.dims.lin_of(h)), None)
            if match is not None:
                rest.pop(match)
    for k, h in enumerate(out):
        if h is None:
            dyn = [d for d in rest if d.is_dynamic()]
            if len(dyn) > 1 or (dyn and int(ctx.dims.size(dyn[0])) != out_shape[gj[k]]):
                raise NotImplementedError("a reshape among dynamic axes with an output size that is no dim")
            out[k] = dyn[0] if dyn else ctx.dims.static(out_shape[gj[k]], f"{ctx.op_name}_split")
    out = ctx.distinct(out)
    merged = _product_dim(ctx, in_dims)
    axes_pos = [_pos(r.dims, d) for d in in_dims]
    dims = [d for k, d in enumerate(r.dims) if k not in axes_pos]
    at = min(axes_pos)
    dims.insert(at, merged)
    flat = ctx.layer({"class": "merge_dims", "from": r, "axes": in_dims, "out_dim": merged}, dims, dtype=r.dtype)
    srcs, terms = [], []
    for k, d in enumerate(out):
        srcs.append(range_ref(ctx, d))
        term = f"source({len(srcs) - 1})"
        for later in out[k + 1:]:
            srcs.append(size_value_ref(ctx, ctx.dims.lin_of(later)) if later.is_dynamic() else
                        ctx.const(torch.tensor(later.dimension, dtype=torch.int64), []))
            term += f" * source({len(srcs) - 1})"
        terms.append(term)
    pos = ctx.eval(" + ".join(terms), srcs, out, dtype=torch.int64)
    pos = clip_positions(ctx, pos, flat, at)
    return gather_ref(ctx, flat, at, pos, out), dict(zip(gj, out))


def _product_dim(ctx, dims):
    out = dims[0]
    for d in dims[1:]:
        out = ctx.dims.derive("mul", out, d)
    return out if not isinstance(out, int) else ctx.dims.static(out, "merged")


def _split_dims(ctx, src, sizes, hints, others=()):
    if not src.is_dynamic() and all(h is None for h in hints):  # split as before: the same parts (heads of q, k, v)
        return ctx.dims.shared.split(src, sizes, f"{ctx.op_name}_split", avoid=others)
    if not src.is_dynamic():
        return [h if h is not None else ctx.dims.static(s, f"{ctx.op_name}_split") for h, s in zip(hints, sizes)]
    # a dynamic axis split into parts: all but one part must be static (e.g. frame stacking T -> T//k, k)
    dyn = [k for k, h in enumerate(hints) if h is not None and h.is_dynamic()]
    if len(dyn) > 1:
        raise NotImplementedError("reshape that splits a dynamic axis into several dynamic axes")
    static_prod = 1
    for k, s in enumerate(sizes):
        if k not in dyn and not (hints[k] is None and not dyn and k == _guess_dynamic(sizes, hints)):
            static_prod *= int(s)
    if not dyn:
        k = _guess_dynamic(sizes, hints)
        hints = list(hints)
        hints[k] = ctx.dims.derive("floordiv", src, static_prod)
        dyn = [k]
    return [h if (h is not None and (k in dyn or not h.is_dynamic())) else ctx.dims.static(s, f"{ctx.op_name}_split")
            for k, (h, s) in enumerate(zip(hints, sizes))]


def _guess_dynamic(sizes, hints) -> int:
    """Which part of a split dynamic axis is the dynamic one: the first without a static hint."""
    for k, h in enumerate(hints):
        if h is None:
            return k
    return 0


@handles(T.view, T.reshape, torch.reshape)
def view(ctx, x, *shape):
    """view/reshape, keeping dynamic dims (DimInt sizes) dynamic."""
    r = ctx.ref(x)
    if len(shape) == 1 and isinstance(shape[0], torch.dtype):
        raise NotImplementedError("view(dtype)")
    return reshape_ref(ctx, r, sizes_arg(shape), tuple(ctx.out.shape))


@handles(T.view_as, T.reshape_as)
def view_as(ctx, x, other):
    """view/reshape to ``other``'s shape and dims."""
    o = ctx.ref(other)
    return reshape_ref(ctx, ctx.ref(x), list(sym_shape(ctx.dims, o)), tuple(o.shape))


@handles(torch.flatten, T.flatten)
def flatten(ctx, x, start_dim=0, end_dim=-1):
    """Merge axes start_dim..end_dim."""
    r = ctx.ref(x)
    if r.ndim == 0:
        return reshape_ref(ctx, r, [1], (1,))
    s, e = start_dim % r.ndim, end_dim % r.ndim
    sizes = list(sym_shape(ctx.dims, r))
    merged = 1
    for v in sizes[s:e + 1]:
        merged = merged * v  # a DimInt product where a dynamic axis takes part
    if any(d.is_batch_dim() for d in r.dims[s:e + 1]):
        merged = int(ctx.out.shape[s])  # merging the batch axis: flatten_batch makes the dim
    return reshape_ref(ctx, r, sizes[:s] + [merged] + sizes[e + 1:], tuple(ctx.out.shape))


@handles(torch.unflatten, T.unflatten)
def unflatten(ctx, x, dim, sizes):
    """Split axis ``dim`` into ``sizes``."""
    r = ctx.ref(x)
    dim %= r.ndim
    shape = sym_shape(ctx.dims, r)
    hints = list(shape[:dim]) + list(sizes) + list(shape[dim + 1:])
    return reshape_ref(ctx, r, hints, tuple(ctx.out.shape))
