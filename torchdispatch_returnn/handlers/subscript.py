"""``x[idx]`` and ``x[idx] = value``: ints, slices (steps, negative or size bounds), None, ``...``,
integer index tensors (advanced indexing, broadcast together), boolean masks (writes only).

Advanced indexing maps to RETURNN ``gather`` layers, one per indexed axis: the index tensors share
their (broadcast) dims, and RETURNN batches a gather over dims the data already has, so
``x[b_idx, t_idx]`` is two gathers. An index that is just the positions along the axis it indexes
(``x[torch.arange(B), lengths - 1]``) keeps that axis. Writes become ``where(region, value, x)``.
"""

from __future__ import annotations

import torch

from .._backend import batch_dim
from ..sizes import DimInt, Lin
from .common import (
    T,
    batch_permutation,
    bound_lin,
    clip_positions,
    dyn_slice,
    gather_ref,
    lin_ref,
    lit,
    range_ref,
    size_value_ref,
    slice_ref,
)
from .registry import handles


def _items(r, idx) -> list:
    """The index as a list with ``...`` expanded and lists made tensors."""
    items = list(idx) if isinstance(idx, tuple) else [idx]
    items = [torch.tensor(it) if isinstance(it, list) else it for it in items]
    if sum(1 for it in items if it is Ellipsis) > 1:
        raise IndexError("an index can only have a single ellipsis")
    consumed = sum(0 if it is None or it is Ellipsis else it.dim() if _is_mask(it) else 1 for it in items)
    if any(it is Ellipsis for it in items):
        k = next(i for i, it in enumerate(items) if it is Ellipsis)
        return items[:k] + [slice(None)] * (r.ndim - consumed) + items[k + 1:]
    return items + [slice(None)] * (r.ndim - consumed)


def _is_mask(it) -> bool:
    return isinstance(it, torch.Tensor) and it.dtype in (torch.bool, torch.uint8)


def _index_int(ctx, r, ax, i):
    d = r.dims[ax]
    i = ctx.sym_size(i)
    if isinstance(i, DimInt) or (i < 0 and d.is_dynamic()):  # per sequence (x[:, -1]: each one's last frame)
        length = ctx.dims.lin_of(d) if d.is_dynamic() else Lin((), r.shape[ax])
        pos_lin = bound_lin(i, length)
        batch = [x for x in r.dims if x.is_batch_dim()]
        if any(x is not batch_dim and x.is_dynamic() for x, _ in pos_lin.terms) and not batch:
            raise NotImplementedError("an index counted from the end of a dynamic axis, on a tensor without batch axis")
        pos = lin_ref(ctx, pos_lin, batch) if d.is_dynamic() else size_value_ref(ctx, pos_lin)
        return gather_ref(ctx, r, ax, clip_positions(ctx, pos, r, ax) if d.is_dynamic() else pos, [])
    return gather_ref(ctx, r, ax, i % r.shape[ax], [])


def _index_slice(ctx, r, ax, s: slice):
    step = s.step or 1
    if not isinstance(step, int) or step < 1:
        raise ValueError("slice step must be a positive int")
    start = None if s.start is None else ctx.sym_size(s.start)
    stop = None if s.stop is None else ctx.sym_size(s.stop)
    if not isinstance(start, DimInt) and not isinstance(stop, DimInt) and not r.dims[ax].is_dynamic():
        return slice_ref(ctx, r, ax, start, stop, step)
    return dyn_slice(ctx, r, ax, start, stop, step)


def _is_positions_of(ctx, t: torch.Tensor, ref, dim) -> bool:
    """The index tensor ``t`` (its Ref ``ref``) holds the positions along ``dim``, which it has itself
    (``torch.arange(B)[:, None]`` indexing the batch axis): indexing with it keeps the axis."""
    for a, d in enumerate(ref.dims):
        if d is dim:
            shape = [1] * t.dim()
            shape[a] = t.shape[a]
            return bool(torch.equal(t, torch.arange(t.shape[a]).view(shape).expand_as(t).to(t.dtype)))
    return False


@handles(T.__getitem__)
def getitem(ctx, x, idx):
    """``x[idx]``: ints, slices, None, ``...`` and integer index tensors (several broadcast together)."""
    r = ctx.ref(x)
    vec = ctx.dims.size_vector(r.layer)
    if vec is not None and isinstance(idx, int) and not isinstance(idx, (bool, DimInt)):
        out = _index_int(ctx, r, 0, idx)  # torch.tensor(x.shape)[1]: a size again
        ctx.dims.mark_size_tensor(out.layer, vec[idx])
        return out
    items = _items(r, idx)
    if any(_is_mask(it) for it in items):
        raise NotImplementedError("reading x[mask] with a boolean mask (the result's size depends on the values); "
                                  "use torch.where(mask, x, 0) or masked_fill instead")
    tensors = [it for it in items if isinstance(it, torch.Tensor)]
    if len(tensors) == 1 and len([it for it in items if it != slice(None)]) == 1:
        ax = next(i for i, it in enumerate(items) if isinstance(it, torch.Tensor))
        perm = batch_permutation(ctx, x, ax, tensors[0])  # the length sort of pack_padded_sequence
        if perm is not None:
            return perm
    adv, ax = [], 0  # (current axis dim, index tensor) of the advanced axes
    first_adv, gap = None, False
    for it in items:
        if it is None:
            r = ctx.unsqueeze(r, ax)
            ax += 1
        elif isinstance(it, bool):
            raise NotImplementedError("indexing with a Python bool")
        elif isinstance(it, int):
            r = _index_int(ctx, r, ax, it)
        elif isinstance(it, slice):
            r = _index_slice(ctx, r, ax, it)
            ax += 1
        elif isinstance(it, torch.Tensor):
            if first_adv is None:
                first_adv = ax
            elif adv and ax != first_adv + len(adv):
                gap = True
            adv.append((r.dims[ax], it))
            ax += 1
        else:
            raise NotImplementedError(f"index of type {type(it).__name__}")
    if not adv:
        return r
    return _advanced(ctx, r, adv, first_adv, gap)


def _advanced(ctx, r, adv, first_adv, gap):
    """Gather along each advanced axis with the broadcast index tensors; torch puts their dims at the
    first advanced axis (or in front, if the advanced axes are not next to each other)."""
    idx_refs, s_dims = ctx.broadcast(*[t for _, t in adv], dtype=torch.int64)
    kept = [d for d in r.dims]
    for (dim, t), pos in zip(adv, idx_refs):
        ax = next(i for i, d in enumerate(r.dims) if d is dim)
        if _is_positions_of(ctx, t, ctx.ref(t) if ctx.is_captured(t) else pos, dim) and any(d is dim for d in s_dims):
            continue  # x[arange(B), ...]: the axis stays, shared with the index dims
        if any(v < 0 for v in t.reshape(-1).tolist()):
            size = size_value_ref(ctx, ctx.dims.lin_of(dim)) if dim.is_dynamic() else ctx.const(
                torch.tensor(r.shape[ax], dtype=torch.int64), [])
            pos = ctx.eval("tf.where(source(0) < 0, source(0) + source(1), source(0))", [pos, size], pos.dims,
                           dtype=torch.int64)
        if dim.is_dynamic():
            pos = clip_positions(ctx, pos, r, ax)
        r = gather_ref(ctx, r, ax, pos, [d for d in pos.dims if not any(d is e for e in r.dims)])
    for d in s_dims:  # index dims no gather brought in (size-1 axes, or only on kept axes' indices)
        if not any(d is e for e in r.dims):
            r = ctx.unsqueeze(r, r.ndim, d) if ctx.dims.size(d) == 1 and not d.is_dynamic() else \
                ctx.align(r, list(r.dims) + [d], expand=True)
    base = [d for d in kept if not any(d is a for a, _ in adv)]
    at = 0 if gap else sum(1 for d in kept[:first_adv] if not any(d is a for a, _ in adv))
    order = base[:at] + list(s_dims) + base[at:]
    return ctx.transpose_to(r, order)


@handles(T.__setitem__)
def setitem(ctx, x, idx, value):
    """``x[idx] = value``: where(in the region, value, x) for ints, slices (steps, size bounds),
    ``...``, a boolean mask, and index tensors; ``value`` a number or a tensor broadcast to the region."""
    r = ctx.ref(x)
    items = _items(r, idx)
    if any(it is None for it in items):
        raise NotImplementedError("x[idx] = value with None in the index")
    conds, srcs, region = [], [r], []  # region: (axis dim, region dim or None for an int, start, step)
    ax = 0
    tensors = []
    for it in items:
        d = r.dims[ax] if ax < r.ndim else None
        if isinstance(it, slice) and it == slice(None):
            region.append((d, d, 0, 1))
            ax += 1
            continue
        if _is_mask(it):
            m = ctx.ref(it) if ctx.is_captured(it) else ctx.const(it.to(torch.bool), r.dims[ax:ax + it.dim()])
            m = ctx.align(ctx.cast(m, torch.bool), list(r.dims[ax:ax + it.dim()]))
            srcs.append(m)
            conds.append(f"source({len(srcs) - 1})")
            region.append(("mask", r.dims[ax:ax + it.dim()], 0, 1))
            ax += it.dim()
            continue
        if isinstance(it, torch.Tensor):
            tensors.append((ax, it))
            region.append((d, None, 0, 1))
            ax += 1
            continue
        pos = range_ref(ctx, d)
        srcs.append(pos)
        p = f"source({len(srcs) - 1})"
        if isinstance(it, int):
            i = ctx.sym_size(it)
            if isinstance(i, DimInt) or i < 0:
                lin = bound_lin(i, ctx.dims.lin_of(d) if d.is_dynamic() else Lin((), r.shape[ax]))
                srcs.append(lin_ref(ctx, lin, [b for b in r.dims if b.is_batch_dim()]) if d.is_dynamic()
                            else size_value_ref(ctx, lin))
                conds.append(f"tf.equal({p}, tf.cast(source({len(srcs) - 1}), {p}.dtype))")
            else:
                conds.append(f"tf.equal({p}, {i})")
            region.append((d, None, 0, 1))
        else:
            conds.append(_slice_cond(ctx, it, d, r.shape[ax], p, srcs, r))
            start = 0 if it.start is None or d.is_dynamic() else slice(it.start, None).indices(r.shape[ax])[0]
            region.append((d, "slice", start, it.step or 1))
        ax += 1
    if tensors:
        _index_tensor_conds(ctx, r, tensors, conds, srcs)
    vsrc = _value(ctx, r, value, region, srcs)
    cond = " & ".join(f"({c})" for c in conds) if conds else "True"
    return ctx.eval(f"tf.where({cond}, {vsrc}, source(0))", srcs, r.dims, dtype=r.dtype)


def _slice_cond(ctx, it: slice, d, size: int, p: str, srcs: list, r) -> str:
    step = it.step or 1
    if not d.is_dynamic() and not isinstance(it.start, DimInt) and not isinstance(it.stop, DimInt):
        start, stop, step = slice(it.start, it.stop, step).indices(size)
        c = f"({p} >= {start}) & ({p} < {stop})"
    else:  # bounds per sequence
        length = ctx.dims.lin_of(d) if d.is_dynamic() else Lin((), size)
        batch = [b for b in r.dims if b.is_batch_dim()]
        parts = []
        for b, op in ((it.start, ">="), (it.stop, "<")):
            if b is None:
                continue
            lin = bound_lin(ctx.sym_size(b), length)
            srcs.append(lin_ref(ctx, lin, batch) if d.is_dynamic() and batch else size_value_ref(ctx, lin))
            parts.append(f"({p} {op} tf.cast(source({len(srcs) - 1}), {p}.dtype))")
        c = " & ".join(parts) or "True"
        start = 0 if it.start is None else it.start
        if step != 1 and (isinstance(start, DimInt) or start < 0):
            raise NotImplementedError("x[a:b:step] = value with a step and a start from the end or a size")
    if step != 1:
        c += f" & tf.equal(tf.math.floormod({p} - {start}, {step}), 0)"
    return c


def _index_tensor_conds(ctx, r, tensors, conds, srcs) -> None:
    """The region of ``x[idx_0, idx_1, ...] = v``: positions equal to some broadcast index tuple
    (an index that holds the positions of its own axis keeps that axis aligned)."""
    refs, s_dims = ctx.broadcast(*[t for _, t in tensors], dtype=torch.int64)
    parts, shared = [], []
    for (ax, t), pos in zip(tensors, refs):
        d = r.dims[ax]
        if _is_positions_of(ctx, t, ctx.ref(t) if ctx.is_captured(t) else pos, d):
            shared.append(d)
            continue
        p = range_ref(ctx, d)
        srcs.extend([p, pos])
        parts.append(f"tf.equal(source({len(srcs) - 2}), source({len(srcs) - 1}))")
    if not parts:
        return
    other = [d for d in s_dims if not any(d is e for e in r.dims)]
    if not other:
        conds.append(" & ".join(parts))
        return
    hit = ctx.eval(" & ".join(f"({c})" for c in parts), srcs[-2 * len(parts):],
                   list(dict.fromkeys(list(r.dims) + list(s_dims))), dtype=torch.bool)
    anyhit = ctx.layer({"class": "reduce", "from": ctx.cast(hit, torch.int32), "mode": "max", "axes": other},
                       [d for d in hit.dims if not any(d is o for o in other)], dtype=torch.int32)
    del srcs[-2 * len(parts):]
    srcs.append(anyhit)
    conds.append(f"source({len(srcs) - 1}) > 0")


def _value(ctx, r, value, region, srcs) -> str:
    """The source text of the written value, placed on ``x``'s positions."""
    if not isinstance(value, torch.Tensor) or value.numel() == 1 and not ctx.is_captured(value):
        v = value.item() if isinstance(value, torch.Tensor) else value
        return f"tf.cast({lit(bool(v) if r.dtype == torch.bool else v)}, source(0).dtype)"
    v = ctx.cast(ctx.ref(value), r.dtype)
    target = []  # the dims of x[idx] in torch order, on x's own dims where the region is an axis
    for d, kind, _, _ in region:
        if d == "mask":
            target.append(ctx.dims.static(1, f"{ctx.op_name}_selected"))  # values broadcast over the selection
        elif kind is not None:
            target.append(d)
    n_new = len(target) - v.ndim
    if n_new < 0:
        raise NotImplementedError("x[idx] = value with more value axes than the region")
    sliced = {id(d): (start, step) for d, kind, start, step in region if kind == "slice"}
    for k, vd in enumerate(list(v.dims)):
        tgt = target[n_new + k]
        if ctx.broadcasts(vd, v.shape[k], tgt) or id(tgt) not in sliced:
            continue
        start, step = sliced[id(tgt)]  # value frame (j - start) // step lands on x's frame j
        pos = ctx.eval(f"tf.clip_by_value((source(0) - {start}) // {step}, 0, {v.shape[k] - 1})",
                       [range_ref(ctx, tgt)], [tgt], dtype=torch.int64)
        v = gather_ref(ctx, v, k, pos, [tgt])
    v = ctx.align(v, target)
    srcs.append(v)
    return f"source({len(srcs) - 1})"
