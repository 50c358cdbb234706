"""Indexing: ``__getitem__`` (ints, slices with steps and negative bounds, None, ..., index
tensors), embedding, index_select."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._backend import batch_dim, tf_dtype
from ..sizes import DimInt, Lin
from ..tensor import ReturnnTensor
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


def _consumes(item) -> int:
    if item is None or item is Ellipsis:
        return 0
    if isinstance(item, torch.Tensor) and item.dtype == torch.bool:
        return item.dim()
    return 1


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


@handles(T.__getitem__)
def getitem(ctx, x, idx):
    """``x[idx]`` for ints, slices, None, Ellipsis and one integer index tensor."""
    r = ctx.ref(x)
    items = list(idx) if isinstance(idx, tuple) else [idx]
    if sum(1 for it in items if it is Ellipsis) > 1:
        raise IndexError("an index can only have a single ellipsis")
    if Ellipsis in [it if it is Ellipsis else None for it in items]:
        k = next(i for i, it in enumerate(items) if it is Ellipsis)
        n = r.ndim - sum(_consumes(it) for it in items)
        items = items[:k] + [slice(None)] * n + items[k + 1:]
    tensors = [it for it in items if isinstance(it, torch.Tensor) or isinstance(it, (list,))]
    if len(tensors) > 1:
        raise NotImplementedError("indexing with more than one index tensor")
    ax = 0
    for it in items:
        if it is None:
            r = ctx.unsqueeze(r, ax)
            ax += 1
        elif isinstance(it, bool):
            raise NotImplementedError("indexing with a Python bool")
        elif isinstance(it, int):
            vec = ctx.dims.size_vector(r.layer) if len(items) == 1 and r.ndim == 1 else None
            r = _index_int(ctx, r, ax, it)
            if vec is not None and not isinstance(it, DimInt):  # torch.tensor(x.shape)[1]: a size again
                ctx.dims.mark_size_tensor(r.layer, vec[it])
        elif isinstance(it, slice):
            r = _index_slice(ctx, r, ax, it)
            ax += 1
        elif isinstance(it, (torch.Tensor, list)):
            t = it if isinstance(it, torch.Tensor) else torch.tensor(it)
            if t.dtype == torch.bool:
                raise NotImplementedError("boolean mask indexing (data-dependent shape)")
            perm = batch_permutation(ctx, x, ax, t) if len(items) == 1 else None
            if perm is not None:
                r = perm
                ax += 1
                continue
            pos = ctx.ref(t)
            if any(pd in r.dims for pd in pos.dims):
                raise NotImplementedError("index tensor sharing an axis with the indexed tensor")
            r = gather_ref(ctx, r, ax, pos, pos.dims)
            ax += pos.ndim
        else:
            raise NotImplementedError(f"index of type {type(it).__name__}")
    return r


@handles(F.embedding)
def embedding(ctx, input, weight, padding_idx=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False,
              sparse=False):
    """Rows of ``weight`` at the integer positions ``input``."""
    if max_norm is not None:
        raise NotImplementedError("embedding with max_norm (modifies the weight)")
    w = ctx.ref(weight)
    pos = ctx.ref(input)
    return gather_ref(ctx, w, 0, pos, pos.dims)


@handles(torch.index_select, T.index_select)
def index_select(ctx, x, dim, index):
    """Entries at ``index`` (1-D) along ``dim``."""
    r = ctx.ref(x)
    ax = dim % r.ndim
    perm = batch_permutation(ctx, x, ax, index)
    if perm is not None:
        return perm
    pos = ctx.ref(index)
    return gather_ref(ctx, r, ax, pos, pos.dims)


@handles(torch.gather, T.gather)
def gather(ctx, x, dim, index, *, sparse_grad=False, out=None):
    """out[..., j, ...] = x[..., index[..., j, ...], ...] along ``dim`` (index has x's other axes)."""
    r, idx = ctx.ref(x), ctx.ref(index)
    ax = dim % r.ndim
    if idx.ndim != r.ndim:
        raise NotImplementedError("torch.gather with an index of another rank")
    for k in range(r.ndim):
        if k != ax and idx.shape[k] != r.shape[k]:
            raise NotImplementedError("torch.gather with an index smaller than the input along other axes")
    new = idx.dims[ax]
    if any(new is d for d in r.dims):
        new = ctx.dims.same_length_as(new, f"{new.description}_{ctx.op_name}")
    idx = ctx.rename(idx, {d: (r.dims[k] if k != ax else new) for k, d in enumerate(idx.dims)})
    dims = list(r.dims)
    dims[ax] = new
    # clip: index values in the padding of a padded batch may be garbage (TF's gather would fail on them)
    idx = ctx.cast(idx, torch.int32)  # RETURNN's clipping works on int32 positions
    return ctx.layer({"class": "gather", "from": r, "axis": r.dims[ax], "position": idx, "clip_to_valid": True},
                     dims, dtype=r.dtype)


@handles(F.one_hot)
def one_hot(ctx, x, num_classes=-1):
    """One-hot int64 vectors along a new last axis."""
    r = ctx.ref(x)
    n = int(ctx.out.shape[-1])
    cls = ctx.dims.static(n, f"{ctx.op_name}_classes")
    dims = list(r.dims) + [cls]
    expr = (f"(lambda d: tf.one_hot(d.copy_transpose([d.get_axis_from_description(a) for a in order]).placeholder, "
            f"{n}, dtype=tf.int64))(source(0, as_data=True, auto_convert=False))")
    return ctx.layer({"class": "eval", "from": [r], "eval": expr, "eval_locals": {"order": list(r.dims)},
                      "out_type": {"dim_tags": dims, "dtype": tf_dtype(torch.int64)}}, dims, dtype=torch.int64)


@handles(torch.narrow, T.narrow)
def narrow(ctx, x, dim, start, length):
    """x along ``dim`` from ``start``, ``length`` elements (static bounds)."""
    r = ctx.ref(x)
    ax = dim % r.ndim
    return slice_ref(ctx, r, ax, int(start), int(start) + int(length))


@handles(T.__setitem__)
def setitem(ctx, x, idx, value):
    """``x[idx] = number`` for ints, slices (with steps) and ``...``: where(in the region, value, x)."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or isinstance(value, ReturnnTensor):
            raise NotImplementedError("x[idx] = tensor (only x[idx] = number is supported)")
        value = value.item()
    r = ctx.ref(x)
    items = list(idx) if isinstance(idx, tuple) else [idx]
    if any(it is None or isinstance(it, (torch.Tensor, list, bool)) for it in items):
        raise NotImplementedError("x[idx] = value with None, bool or tensor indices")
    if Ellipsis in [it if it is Ellipsis else None for it in items]:
        k = next(i for i, it in enumerate(items) if it is Ellipsis)
        items = items[:k] + [slice(None)] * (r.ndim - len(items) + 1) + items[k + 1:]
    conds, srcs = [], [r]
    for ax, it in enumerate(items):
        if isinstance(it, slice) and it == slice(None):
            continue
        if r.dims[ax].is_dynamic() and not (isinstance(it, slice) and (it.stop is None or it.stop >= 0)
                                            and (it.start or 0) >= 0) and not (isinstance(it, int) and it >= 0):
            raise NotImplementedError("x[idx] = value with negative bounds on a dynamic axis")
        pos = range_ref(ctx, r.dims[ax])
        srcs.append(pos)
        p = f"source({len(srcs) - 1})"
        if isinstance(it, int):
            conds.append(f"tf.equal({p}, {it % r.shape[ax] if not r.dims[ax].is_dynamic() else it})")
            continue
        start, stop, step = it.start or 0, it.stop, it.step or 1
        if not r.dims[ax].is_dynamic():
            start, stop, step = slice(it.start, it.stop, it.step).indices(r.shape[ax])
        c = f"({p} >= {start})"
        if stop is not None:
            c += f" & ({p} < {stop})"
        if step != 1:
            c += f" & tf.equal(tf.math.floormod({p} - {start}, {step}), 0)"
        conds.append(c)
    cond = " & ".join(conds) if conds else "True"
    v = lit(bool(value) if r.dtype == torch.bool else value)
    return ctx.eval(f"tf.where({cond}, tf.cast({v}, source(0).dtype), source(0))", srcs, r.dims, dtype=r.dtype)
