"""Shape extras, part two (imported by ``shape_extra``): diagflat, combinations, linspace/logspace
(bounds may be 0-d tensors of the network), torch.fill/torch.zero_, the complex casts, new_empty_strided
and as_strided/as_strided_copy/as_strided_scatter (static sizes, as a gather/scatter by flat position
within the tensor's own contiguous values). Results whose size would follow a dynamic or batch axis
are refused.
"""

from __future__ import annotations

import itertools

import torch

from ..sizes import DimInt
from .common import T, gather_ref, range_ref, size_value_ref
from .factory import fill_, filled
from .registry import handles
from .reshape import reshape_ref


def _fixed(d) -> bool:
    """A static axis (neither dynamic nor the batch axis)."""
    return not d.is_dynamic() and not d.is_batch_dim()


# -- small constructions -----------------------------------------------------------------------------------
def _static_flat(ctx, x, what):
    """``x`` flattened to one static axis (refused with a dynamic or batch axis: the result's size would follow it)."""
    r = ctx.ref(x)
    if not all(_fixed(d) for d in r.dims):
        raise NotImplementedError(f"{what} of a tensor with a dynamic or batch axis (the result size would follow it)")
    n = x.numel()
    return reshape_ref(ctx, r, [n], (n,))


@handles(torch.diagflat, T.diagflat)
def diagflat(ctx, x, offset=0):
    """A square matrix with the flattened ``x`` on its diagonal ``offset``."""
    flat = _static_flat(ctx, x, "diagflat")
    n = int(ctx.out.shape[0])
    rows, cols = ctx.dims.static(n, f"{ctx.op_name}_row"), ctx.dims.static(n, f"{ctx.op_name}_col")
    return ctx.tf_op(f"tf.linalg.diag(x0, k={int(offset)}, num_rows={n}, num_cols={n})", [flat], [rows, cols],
                     dtype=flat.dtype)


@handles(torch.combinations)
def combinations(ctx, x, r=2, with_replacement=False):
    """The length-``r`` combinations of a 1-D tensor's entries (a gather at constant positions)."""
    flat = _static_flat(ctx, x, "combinations")
    make = itertools.combinations_with_replacement if with_replacement else itertools.combinations
    idx = torch.tensor(list(make(range(x.numel()), r)), dtype=torch.int64).reshape(ctx.out.shape)
    dims = [ctx.dims.static(s, f"{ctx.op_name}_dim{i}") for i, s in enumerate(ctx.out.shape)]
    return gather_ref(ctx, flat, 0, ctx.const(idx, dims), dims)


@handles(torch.linspace, factory=True)
def linspace(ctx, start, end, steps, *, out=None, dtype=None, layout=None, device=None, requires_grad=False):
    """``steps`` evenly spaced values from ``start`` to ``end`` (which may be 0-d tensors of the network)."""
    return _space(ctx, start, end, steps, None)


@handles(torch.logspace, factory=True)
def logspace(ctx, start, end, steps, base=10.0, *, out=None, dtype=None, layout=None, device=None,
             requires_grad=False):
    """``base`` to the power of ``linspace(start, end, steps)``."""
    return _space(ctx, start, end, steps, base)


def _space(ctx, start, end, steps, base):
    """The values of linspace (``base`` None) or logspace; ``steps`` may be a dynamic size (its padded
    size is the count the values are spaced by, as torch on the padded batch)."""
    steps = ctx.sym_size(steps)
    dim = ctx.new_dim(steps, f"{ctx.op_name}_dim")
    dynamic = isinstance(steps, DimInt)
    if not (dynamic or ctx.is_captured(start) or ctx.is_captured(end)):
        return ctx.const(ctx.out.detach().clone(), [dim])
    if not ctx.out.dtype.is_floating_point:
        raise NotImplementedError("linspace/logspace of an integer dtype from bounds or steps computed in the network")
    bounds = [ctx.cast(ctx.ref(v), torch.float64) if ctx.is_captured(v) else
              ctx.const(torch.tensor(float(v), dtype=torch.float64), []) for v in (start, end)]
    if any(b.ndim for b in bounds):
        raise NotImplementedError("linspace/logspace bounds that are not 0-d")
    n = size_value_ref(ctx, steps.lin) if dynamic else ctx.const(torch.tensor(int(steps), dtype=torch.int64), [])
    # torch's own formula: from start for the first half, from end for the second (steps=1: start)
    val = ("(lambda s, e, k, n: tf.where((k < tf.floor(n / 2)) | tf.equal(n, 1), s + (e - s) / tf.maximum(n - 1, 1) "
           "* k, e - (e - s) / tf.maximum(n - 1, 1) * (n - 1 - k)))(tf.stop_gradient(source(0)), "
           "tf.stop_gradient(source(1)), tf.cast(source(2), tf.float64), tf.cast(source(3), tf.float64))")
    if base is not None:
        val = f"tf.pow(tf.constant({float(base)!r}, tf.float64), {val})"
    return ctx.cast(ctx.eval(val, [*bounds, range_ref(ctx, dim), n], [dim], dtype=torch.float64), ctx.out.dtype)


@handles(torch.fill)
def fill(ctx, x, value):
    """A tensor like ``x`` filled with ``value`` (a number or a 0-d tensor)."""
    if ctx.is_captured(value):
        r, v = ctx.ref(x), ctx.cast(ctx.ref(value), ctx.out.dtype)
        return ctx.eval("tf.zeros_like(source(0)) + source(1)" if r.dtype != torch.bool else
                        "tf.logical_or(tf.zeros_like(source(0)), source(1))", [ctx.cast(r, ctx.out.dtype), v], r.dims)
    return fill_(ctx, x, value.item() if isinstance(value, torch.Tensor) else value)


@handles(torch.zero_)
def zero_(ctx, x):
    """All zeros, in place."""
    return fill_(ctx, x, 0)


@handles(T.cfloat, T.cdouble, T.bfloat16, T.chalf)
def dtype_cast(ctx, x, memory_format=torch.preserve_format):
    """Cast to complex64/complex128 (complex32 has no TF dtype; bfloat16 values cannot be compared with torch's in
    the parity check, which reads them through numpy: both refused)."""
    if ctx.out.dtype == torch.complex32:
        raise NotImplementedError("complex32 (Tensor.chalf): TF and RETURNN have no such dtype")
    if ctx.out.dtype == torch.bfloat16:
        raise NotImplementedError("bfloat16 (Tensor.bfloat16): the parity check cannot read bfloat16 values (numpy "
                                  "has no bfloat16)")
    return ctx.cast(ctx.ref(x), ctx.out.dtype)


@handles(T.new_empty_strided)
def new_empty_strided(ctx, x, size, stride, *, dtype=None, layout=None, device=None, requires_grad=False,
                      pin_memory=False):
    """An uninitialized tensor of ``size``: zeros in the network; torch's unspecified values are fed in the
    parity run (not compared), as for random values."""
    ref = filled(ctx, list(size), 0)
    ctx.feed(ref, ctx.out)
    ctx.note("new_empty_strided: values unspecified (torch's fed, not compared)")
    return ref


def _strided_positions(x, size, stride, storage_offset):
    """Flat positions (within ``x``'s own contiguous values) that as_strided reads."""
    if not x.is_contiguous():
        raise NotImplementedError("as_strided of a non-contiguous tensor (its storage order is not its axis order)")
    off = (x.storage_offset() if storage_offset is None else int(storage_offset)) - x.storage_offset()
    idx = torch.full(tuple(size), off, dtype=torch.int64)
    for k, (n, st) in enumerate(zip(size, stride)):
        idx = idx + (torch.arange(int(n)) * int(st)).reshape([-1 if i == k else 1 for i in range(len(size))])
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= x.numel()):
        raise NotImplementedError("as_strided reading outside the tensor's own values")
    return idx


def _strided_input(ctx, x):
    r = ctx.ref(x)
    if any(d.is_dynamic() and not d.is_batch_dim() for d in r.dims):
        raise NotImplementedError("as_strided of a tensor with a dynamic axis (static sizes only)")
    return r


@handles(torch.as_strided, T.as_strided, torch.as_strided_copy)
def as_strided(ctx, x, size, stride, storage_offset=None):
    """A strided view of a contiguous tensor: a gather of its flat values at constant positions."""
    r = _strided_input(ctx, x)
    idx = _strided_positions(x, size, stride, storage_offset)
    dims = [ctx.dims.static(int(s), f"{ctx.op_name}_dim{i}") for i, s in enumerate(size)]
    return ctx.tf_op("tf.gather(tf.reshape(x0, [-1]), x1)", [r, ctx.const(idx, dims)], dims, dtype=r.dtype)


@handles(torch.as_strided_scatter, T.as_strided_scatter)
def as_strided_scatter(ctx, x, src, size, stride, storage_offset=None):
    """``x`` with the strided view's entries replaced by ``src`` (positions must not overlap)."""
    r = _strided_input(ctx, x)
    idx = _strided_positions(x, size, stride, storage_offset)
    if idx.unique().numel() != idx.numel():
        raise NotImplementedError("as_strided_scatter into overlapping positions")
    s = ctx.cast(ctx.ref(src), r.dtype)
    dims = list(s.dims)
    expr = "tf.reshape(tf.tensor_scatter_nd_update(tf.reshape(x0, [-1]), tf.reshape(x2, [-1, 1]), " \
           "tf.reshape(x1, [-1])), tf.shape(x0))"
    return ctx.tf_op(expr, [r, s, ctx.const(idx, dims)], r.dims, dtype=r.dtype)
