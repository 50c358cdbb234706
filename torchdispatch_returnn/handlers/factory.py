"""Factories (arange, zeros, ones, full, empty, *_like, new_*, tensor, as_tensor, from_numpy)
and casts (float, double, int, long, bool, type_as, to(dtype))."""

from __future__ import annotations

import torch

from .._backend import tf_dtype
from ..tensor import DimInt, ReturnnTensor
from .common import T, lit, range_ref, sizes_arg
from .registry import handles


def filled(ctx, sizes, value):
    """A tensor of ``sizes`` (dims of DimInt sizes kept) filled with ``value``."""
    dims = [ctx.new_dim(s, f"{ctx.op_name}_dim{i}") for i, s in enumerate(sizes)]
    for k, d in enumerate(dims):  # torch.ones(T, T): a twin dim for the second axis
        if any(e is d for e in dims[:k]):
            dims[k] = ctx.dims.same_length_as(d, f"{d.description}_{ctx.op_name}")
            if dims[k].is_dynamic():  # give the twin its lengths: a renamed range over the original
                ctx.rename(range_ref(ctx, d), {d: dims[k]})
    return ctx.fill(dims, value, ctx.out.dtype)


@handles(torch.zeros, torch.empty, factory=True)
def zeros(ctx, *size, out=None, dtype=None, layout=None, device=None, requires_grad=False, pin_memory=False,
          memory_format=None, names=None):
    """All zeros (``empty`` too: its values are unspecified)."""
    return filled(ctx, sizes_arg(size), 0)


@handles(torch.ones, factory=True)
def ones(ctx, *size, out=None, dtype=None, layout=None, device=None, requires_grad=False, names=None):
    """All ones."""
    return filled(ctx, sizes_arg(size), 1)


@handles(torch.full, factory=True)
def full(ctx, size, fill_value, *, out=None, dtype=None, layout=None, device=None, requires_grad=False,
         names=None):
    """All ``fill_value``."""
    return filled(ctx, list(size), fill_value)


@handles(torch.zeros_like, torch.empty_like)
def zeros_like(ctx, x, *, dtype=None, layout=None, device=None, requires_grad=False, memory_format=None):
    """Zeros with ``x``'s dims."""
    return filled(ctx, _dimsizes_arg(ctx, x), 0)


@handles(torch.ones_like)
def ones_like(ctx, x, *, dtype=None, layout=None, device=None, requires_grad=False, memory_format=None):
    """Ones with ``x``'s dims."""
    return filled(ctx, _dimsizes_arg(ctx, x), 1)


@handles(torch.full_like)
def full_like(ctx, x, fill_value, *, dtype=None, layout=None, device=None, requires_grad=False,
              memory_format=None):
    """``fill_value`` with ``x``'s dims."""
    return filled(ctx, _dimsizes_arg(ctx, x), fill_value)


def _dimsizes_arg(ctx, x):
    r = ctx.ref(x)
    return [DimInt(s, d, ctx.dims) if d.dimension is None else d for d, s in zip(r.dims, r.shape)]


@handles(T.new_zeros, T.new_empty)
def new_zeros(ctx, x, *size, dtype=None, layout=None, device=None, requires_grad=False, pin_memory=False):
    """Zeros of ``size``, ``x``'s dtype."""
    return filled(ctx, sizes_arg(size), 0)


@handles(T.new_ones)
def new_ones(ctx, x, *size, dtype=None, layout=None, device=None, requires_grad=False, pin_memory=False):
    """Ones of ``size``."""
    return filled(ctx, sizes_arg(size), 1)


@handles(T.new_full)
def new_full(ctx, x, size, fill_value, *, dtype=None, layout=None, device=None, requires_grad=False,
             pin_memory=False):
    """``fill_value`` of ``size``."""
    return filled(ctx, list(size), fill_value)


@handles(torch.arange, factory=True)
def arange(ctx, *args, out=None, dtype=None, layout=None, device=None, requires_grad=False):
    """start, start+step, ... below end; a dynamic ``end`` (``x.shape[1]``) gives a dynamic range."""
    start, end, step = (0, args[0], 1) if len(args) == 1 else (args[0], args[1], args[2] if len(args) > 2 else 1)
    if isinstance(end, ReturnnTensor):  # torch.arange(lengths.max())
        dim = ctx.dims.max_length_dim(ctx.ref(end).layer)
        if dim is None:
            raise NotImplementedError("arange up to a computed tensor value (data-dependent length)")
        end = DimInt(ctx.dims.size(dim), dim, ctx.dims)
    if isinstance(end, DimInt) and not isinstance(start, DimInt) and step == 1:
        n = end - start  # a DimInt whose dim is end's dim shifted (T+1 - 1 -> T)
        if not isinstance(n, DimInt):
            raise NotImplementedError("arange whose length is not a dynamic dim")
        r = range_ref(ctx, n.dim)
        if start == 0:
            return ctx.cast(r, ctx.out.dtype)
        return ctx.eval(f"tf.cast(source(0), {tf_dtype(ctx.out.dtype)!r}) + {lit(start)}", [r], r.dims)
    if any(isinstance(a, DimInt) for a in (start, end, step)):
        raise NotImplementedError("arange with a dynamic start or step")
    n = ctx.out.shape[0]
    dim = ctx.dims.static(n, f"{ctx.op_name}_dim")
    if n <= 64:
        return ctx.const(ctx.out.detach().clone(), [dim])
    k = ctx.layer({"class": "range", "limit": n, "out_spatial_dim": dim, "dtype": "int64"}, [dim],
                  dtype=torch.int64)
    return ctx.eval(f"{lit(start)} + {lit(step)} * tf.cast(source(0), {tf_dtype(ctx.out.dtype)!r})", [k], [dim])


@handles(torch.tensor, torch.as_tensor, torch.asarray, factory=True)
def tensor(ctx, data, *args, **kwargs):
    """Refused when the data holds a dynamic size (``torch.tensor([x.shape[1]])``): the value would
    freeze the traced length. (Static data stays plain torch and becomes a constant where used.)"""
    raise NotImplementedError("torch.tensor/as_tensor of a dynamic size would freeze the traced length; use the "
                              "size directly in tensor ops (e.g. x.new_full(..., x.shape[1]) or arithmetic)")


@handles(T.fill_, T.zero_)
def fill_(ctx, x, value=0):
    """Overwrite every element with ``value`` (same dims)."""
    r = ctx.ref(x)
    v = lit(bool(value) if r.dtype == torch.bool else value)
    return ctx.eval(f"tf.fill(tf.shape(source(0)), tf.cast({v}, source(0).dtype))", [r], r.dims, dtype=r.dtype)


@handles(T.float, T.double, T.int, T.long, T.bool, T.half, T.short, T.char, T.byte, T.to, T.type_as, T.type)
def cast(ctx, x, *args, **kwargs):
    """Change the dtype (``to(device)`` and same-dtype casts build nothing)."""
    if not isinstance(ctx.out, torch.Tensor):
        return None
    return ctx.cast(ctx.ref(x), ctx.out.dtype)
