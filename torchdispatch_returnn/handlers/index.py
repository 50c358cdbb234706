"""Gathers by index tensors: embedding, index_select, torch.gather, one_hot, narrow (``x[idx]`` is in
``subscript.py``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._backend import tf_dtype
from .common import (
    T,
    batch_permutation,
    gather_ref,
    slice_ref,
)
from .registry import handles
from .scatter import scatter_reduce


@handles(F.embedding)
def embedding(ctx, input, weight, padding_idx=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False,
              sparse=False):
    """Rows of ``weight`` at the integer positions ``input``; the ``padding_idx`` row gets no gradient."""
    if max_norm is not None:
        raise NotImplementedError("embedding with max_norm (modifies the weight)")
    if scale_grad_by_freq:
        raise NotImplementedError("embedding with scale_grad_by_freq (a gradient scaled by batch counts)")
    w = ctx.ref(weight)
    if padding_idx is not None:
        row = padding_idx % weight.shape[0]
        w = ctx.tf_op(f"tf.where(tf.equal(tf.range(tf.shape(x0)[0]), {row})[:, None], tf.stop_gradient(x0), x0)",
                      [w], w.dims, dtype=w.dtype)
    pos = ctx.ref(input)
    return gather_ref(ctx, w, 0, pos, pos.dims)


@handles(torch.index_select, T.index_select)
def index_select(ctx, x, dim, index):
    """Entries at ``index`` (1-D) along ``dim`` (of a 0-d tensor: the value itself, index 0)."""
    r = ctx.ref(x)
    if r.ndim == 0:
        return r
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
        new = ctx.twin(new)
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


@handles(torch.scatter, T.scatter, T.scatter_)
def scatter(ctx, x, dim, index, src=None, *, value=None, reduce=None, out=None):
    """Write ``src`` (or ``value``) at ``index`` along ``dim`` (``reduce`` "add"/"multiply" into x): the
    scatter_reduce machinery, which drops the updates of padding frames of the index."""
    modes = {None: None, "add": "sum", "multiply": "prod"}
    if reduce not in modes:
        raise NotImplementedError(f"scatter with reduce={reduce!r}")
    return scatter_reduce(ctx, x, dim, index, src if src is not None else value, modes[reduce])


@handles(torch.scatter_add, T.scatter_add, T.scatter_add_)
def scatter_add(ctx, x, dim, index, src):
    """Add ``src`` at ``index`` along ``dim`` (repeated indices add up)."""
    return scatter_reduce(ctx, x, dim, index, src)
