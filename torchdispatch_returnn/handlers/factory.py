"""Factories (arange, zeros, ones, full, empty, *_like, new_*, tensor, as_tensor, from_numpy)
and casts (float, double, int, long, bool, type_as, to(dtype))."""

from __future__ import annotations

import torch

from .._backend import tf_dtype
from ..sizes import DimInt, Lin
from .common import T, lit, range_ref, size_value_ref, sizes_arg
from .registry import handles


def filled(ctx, sizes, value):
    """A tensor of ``sizes`` (dims of DimInt sizes kept) filled with ``value``."""
    dims = ctx.distinct([ctx.new_dim(s, f"{ctx.op_name}_dim{i}") for i, s in enumerate(sizes)])
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
    if isinstance(step, torch.Tensor):
        step = step.item()
    start, end = (ctx.sym_size(v) if isinstance(v, (int, torch.Tensor)) else v for v in (start, end))
    if isinstance(end, DimInt) or isinstance(start, DimInt):
        if step != 1 or isinstance(step, DimInt):
            raise NotImplementedError("arange over a dynamic size with a step other than 1")
        n = end - start  # T + 1 - 1 -> T
        if not isinstance(n, DimInt) or n.dim is None:
            raise NotImplementedError(f"arange of length {getattr(n, 'lin', n)!r}, which is no dynamic dim")
        r = range_ref(ctx, n.dim)
        if isinstance(start, DimInt):  # a start that depends on a size: at the padded size, as torch
            first = size_value_ref(ctx, start.lin)
            return ctx.eval(f"tf.cast(source(0) + source(1), {tf_dtype(ctx.out.dtype)!r})", [r, first], r.dims)
        if start == 0:
            return ctx.cast(r, ctx.out.dtype)
        return ctx.eval(f"tf.cast(source(0), {tf_dtype(ctx.out.dtype)!r}) + {lit(start)}", [r], r.dims)
    n = ctx.out.shape[0]
    dim = ctx.dims.static(n, f"{ctx.op_name}_dim")
    if n <= 64:
        return ctx.const(ctx.out.detach().clone(), [dim])
    k = ctx.layer({"class": "range", "limit": n, "out_spatial_dim": dim, "dtype": "int64"}, [dim],
                  dtype=torch.int64)
    return ctx.eval(f"{lit(start)} + {lit(step)} * tf.cast(source(0), {tf_dtype(ctx.out.dtype)!r})", [k], [dim])


@handles(torch.tensor, torch.as_tensor, torch.asarray, factory=True)
def tensor(ctx, data, *args, **kwargs):
    """``torch.as_tensor(x, dtype=...)`` of a captured tensor (a cast); ``torch.tensor(x.shape)`` and
    other sizes (an int64 tensor of the sizes at the padded lengths, as torch has them); plain data
    (a constant)."""
    if isinstance(data, torch.Tensor) and data.dim() > 0 or ctx.is_captured(data):
        return _cast_keeping_size(ctx, ctx.ref(data))
    items = list(data) if isinstance(data, (list, tuple)) else None
    if items is None or any(isinstance(v, (list, tuple)) for v in items):
        if ctx.out.dim() == 0:
            return _size_vector(ctx, [data], scalar=True)
        if any(isinstance(v, (list, tuple)) and any(isinstance(w, DimInt) for w in v) for v in items or ()):
            raise NotImplementedError("torch.tensor of nested lists holding dynamic sizes")
        return ctx.const(ctx.out.detach().clone(), [ctx.dims.static(s, f"{ctx.op_name}_dim") for s in ctx.out.shape])
    return _size_vector(ctx, items)


def _size_vector(ctx, items, scalar=False):
    """A 1-d (or 0-d) tensor of sizes: each a constant or a size at the padded lengths."""
    sizes = [ctx.sym_size(v) if isinstance(v, (int, torch.Tensor)) and not isinstance(v, bool) else v for v in items]
    if not any(isinstance(s, DimInt) for s in sizes):
        dims = [] if scalar else [ctx.dims.static(len(items), f"{ctx.op_name}_dim")]
        return ctx.const(ctx.out.detach().clone(), dims)
    srcs, parts = [], []
    for s in sizes:
        if isinstance(s, DimInt):
            parts.append(f"tf.cast(source({len(srcs)}, auto_convert=False), {tf_dtype(ctx.out.dtype)!r})")
            srcs.append(size_value_ref(ctx, s.lin))
        else:
            parts.append(f"tf.constant({lit(s)}, {tf_dtype(ctx.out.dtype)!r})")
    if scalar:
        out = ctx.eval(parts[0], srcs, [])
        ctx.dims.mark_size_tensor(out.layer, sizes[0].lin)
        return out
    dim = ctx.dims.static(len(items), f"{ctx.op_name}_dim")
    out = ctx.layer({"class": "eval", "from": srcs, "eval": f"tf.stack([{', '.join(parts)}])",
                     "out_type": {"dim_tags": [dim], "dtype": tf_dtype(ctx.out.dtype)}}, [dim])
    ctx.note("holds sizes at the padded lengths (as torch on a padded batch)")
    ctx.dims.mark_size_vector(out.layer, [s.lin if isinstance(s, DimInt) else Lin((), int(s)) for s in sizes])
    return out


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
    return _cast_keeping_size(ctx, ctx.ref(x))


def _cast_keeping_size(ctx, r):
    """``r`` cast to the result dtype; a 0-d size tensor (``lengths.max().long()``) stays one."""
    out = ctx.cast(r, ctx.out.dtype)
    lin = ctx.dims.size_tensor(r.layer)
    if lin is not None and not ctx.out.dtype.is_floating_point:
        ctx.dims.mark_size_tensor(out.layer, lin)
    return out
