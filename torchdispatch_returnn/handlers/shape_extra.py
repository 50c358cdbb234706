"""Shape extras: fliplr/flipud, ravel, the H/mH getters, hsplit/vsplit/dsplit/tensor_split/unsafe_split/
unsafe_chunk, select and aten slice, select/slice/diagonal_scatter, meshgrid, broadcast_tensors,
sum_to_size, constant_pad_nd, pixel_shuffle/pixel_unshuffle/channel_shuffle; in ``shape_extra_make``:
diagflat, combinations, linspace/logspace, torch.fill/torch.zero_, the complex casts, new_empty_strided
and as_strided.

Most are built from the builders of the shape, reshape, subscript, pad and factory families. Along a
dynamic axis, ``select`` takes each sequence's own frame (an index from the end counts from each
sequence's end), fliplr/flipud flip each sequence within its length and a split at a list of indices
slices as ``x[:, a:b]``; splits into sections, scatters into slices or diagonals and the ops whose
result size follows an input size refuse a dynamic (or batch) axis.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..sizes import Lin
from . import shape_extra_make  # noqa: F401  (its handlers: diagflat, linspace, as_strided, ...)
from .common import T, gather_ref, lin_ref, range_ref, reduce_ref, sizes_arg, slice_ref
from .meta import sym_shape
from .pad import pad as pad_handler
from .registry import handles
from .reshape import flatten, reshape_ref
from .shape import _split_refs, flip, t
from .subscript import _index_int


def _fixed(d) -> bool:
    """A static axis (neither dynamic nor the batch axis)."""
    return not d.is_dynamic() and not d.is_batch_dim()


# -- flips, ravel, conjugate transposes ----------------------------------------------------------------
@handles(torch.fliplr, T.fliplr)
def fliplr(ctx, x):
    """Reverse axis 1 (per sequence along a dynamic axis, as ``flip``)."""
    return flip(ctx, x, dims=[1])


@handles(torch.flipud, T.flipud)
def flipud(ctx, x):
    """Reverse axis 0 (per sequence along a dynamic axis, as ``flip``)."""
    return flip(ctx, x, dims=[0])


@handles(torch.ravel, T.ravel)
def ravel(ctx, x):
    """All axes merged into one (``flatten``; with a leading batch axis, the others are merged first)."""
    r = ctx.ref(x)
    if r.ndim > 2 and r.dims[0].is_batch_dim() and not any(d.is_batch_dim() for d in r.dims[1:]):
        shape = list(sym_shape(ctx.dims, r))
        rest = 1
        for v in shape[1:]:
            rest = rest * v
        r = reshape_ref(ctx, r, [shape[0], rest], (r.shape[0], int(rest)))
        return reshape_ref(ctx, r, [int(ctx.out.shape[0])], tuple(ctx.out.shape))
    return flatten(ctx, x)


@handles(T.H.__get__, T.mH.__get__)
def conj_transpose(ctx, x):
    """``x.H`` (a matrix) / ``x.mH`` (the last two axes): transposed (meta only), conjugated if complex."""
    r = t(ctx, x)
    if x.is_complex():
        r = ctx.tf_op("tf.math.conj(x0)", [r], r.dims, dtype=r.dtype)
    return r


# -- splits ----------------------------------------------------------------------------------------------
def _split_by_out(ctx, x, dim):
    """``x`` split along ``dim`` into torch's pieces (static axes only)."""
    ax = dim % x.dim()
    if ctx.ref(x).dims[ax].is_batch_dim():
        raise NotImplementedError("split along the batch axis (each piece would be a batch of its own size)")
    return _split_refs(ctx, x, [int(o.shape[ax]) for o in ctx.out], ax)


def _split_at(ctx, x, indices_or_sections, dim):
    """tensor_split: at a list of indices along a dynamic axis, slices as ``x[:, a:b]`` (each sequence's own
    frames; the last piece to each sequence's end); otherwise torch's pieces along a static axis."""
    if ctx.is_captured(indices_or_sections):
        raise NotImplementedError("tensor_split at indices computed in the network (data-dependent sizes)")
    ind = indices_or_sections
    if isinstance(ind, torch.Tensor):
        ind = ind.tolist()
    r = ctx.ref(x)
    ax = dim % r.ndim
    d = r.dims[ax]
    if isinstance(ind, int) or not d.is_dynamic() or d.is_batch_dim():
        return _split_by_out(ctx, x, ax)
    idx = [int(i) for i in ind]
    if any(i < 0 for i in idx) or idx != sorted(idx):
        raise NotImplementedError("tensor_split of a dynamic axis at negative or decreasing indices")
    bounds = [0] + idx + [None]
    return tuple(slice_ref(ctx, r, ax, lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:]))


@handles(torch.tensor_split, T.tensor_split)
def tensor_split(ctx, x, indices_or_sections, dim=0):
    """Pieces at the given indices, or ``sections`` pieces of nearly equal size."""
    return _split_at(ctx, x, indices_or_sections, dim)


@handles(torch.hsplit, T.hsplit)
def hsplit(ctx, x, indices_or_sections):
    """tensor_split along axis 1 (axis 0 of a 1-D tensor)."""
    return _split_at(ctx, x, indices_or_sections, 1 if x.dim() > 1 else 0)


@handles(torch.vsplit, T.vsplit)
def vsplit(ctx, x, indices_or_sections):
    """tensor_split along axis 0."""
    return _split_at(ctx, x, indices_or_sections, 0)


@handles(torch.dsplit, T.dsplit)
def dsplit(ctx, x, indices_or_sections):
    """tensor_split along axis 2."""
    return _split_at(ctx, x, indices_or_sections, 2)


@handles(torch.unsafe_split, T.unsafe_split, torch.unsafe_chunk, T.unsafe_chunk)
def unsafe_split(ctx, x, split_size_or_chunks, dim=0):
    """split / chunk (torch's pieces)."""
    return _split_by_out(ctx, x, dim)


# -- select / slice and their scatters -------------------------------------------------------------------
@handles(torch.select, T.select)
def select(ctx, x, dim, index):
    """``x[..., index, ...]`` along ``dim`` (as the subscript: along a dynamic axis an index from the end or
    from a size counts per sequence)."""
    r = ctx.ref(x)
    return _index_int(ctx, r, dim % r.ndim, index)


@handles(torch.ops.aten.slice.Tensor)
def aten_slice(ctx, x, dim=0, start=None, end=None, step=1):
    """``x[..., start:end:step, ...]`` along ``dim`` (the whole batch axis only)."""
    r = ctx.ref(x)
    ax = dim % r.ndim
    if r.dims[ax].is_batch_dim():
        if slice(start, end, step).indices(r.shape[ax]) != (0, r.shape[ax], 1):
            raise NotImplementedError("a slice of the batch axis")
        return r
    return slice_ref(ctx, r, ax, start, end, step)


@handles(torch.select_scatter, T.select_scatter)
def select_scatter(ctx, x, src, dim, index):
    """``x`` with the entry ``index`` of axis ``dim`` replaced by ``src`` (per sequence along a dynamic axis)."""
    r = ctx.ref(x)
    ax = dim % r.ndim
    d = r.dims[ax]
    if d.is_batch_dim():
        raise NotImplementedError("select_scatter into one entry of the batch axis")
    s = ctx.align(ctx.cast(ctx.ref(src), r.dtype), [e for i, e in enumerate(r.dims) if i != ax])
    pos = range_ref(ctx, d)
    idx = int(index)
    if d.is_dynamic() and idx < 0:
        batch = [b for b in r.dims if b.is_batch_dim()]
        if not batch:
            raise NotImplementedError("select_scatter from the end of a dynamic axis, on a tensor without batch axis")
        at = lin_ref(ctx, ctx.dims.lin_of(d) + Lin.of(index), batch)
        return ctx.eval("tf.where(tf.equal(source(2), source(3)), source(1), source(0))", [r, s, pos, at], r.dims,
                        dtype=r.dtype)
    if not d.is_dynamic():
        idx %= r.shape[ax]
    return ctx.eval(f"tf.where(tf.equal(source(2), {idx}), source(1), source(0))", [r, s, pos], r.dims, dtype=r.dtype)


@handles(torch.slice_scatter, T.slice_scatter)
def slice_scatter(ctx, x, src, dim=0, start=None, end=None, step=1):
    """``x`` with ``x[..., start:end:step, ...]`` replaced by ``src`` (a static axis)."""
    r = ctx.ref(x)
    ax = dim % r.ndim
    d = r.dims[ax]
    if not _fixed(d):
        raise NotImplementedError("slice_scatter along a dynamic or batch axis")
    lo, hi, st = slice(start, end, step).indices(r.shape[ax])
    k = len(range(lo, hi, st))
    if k == 0:
        return r
    s = ctx.cast(ctx.ref(src), r.dtype)
    s = ctx.rename(s, {e: r.dims[i] for i, e in enumerate(s.dims) if i != ax})
    pos = range_ref(ctx, d)
    at = ctx.eval(f"tf.clip_by_value((source(0) - {lo}) // {st}, 0, {k - 1})", [pos], [d], dtype=torch.int64)
    taken = gather_ref(ctx, s, ax, at, [d])
    keep = f"(source(2) >= {lo}) & (source(2) < {hi}) & tf.equal(tf.math.floormod(source(2) - {lo}, {st}), 0)"
    return ctx.eval(f"tf.where({keep}, source(1), source(0))", [r, taken, pos], r.dims, dtype=r.dtype)


@handles(torch.diagonal_scatter, T.diagonal_scatter)
def diagonal_scatter(ctx, x, src, offset=0, dim1=0, dim2=1):
    """``x`` with its diagonal ``offset`` of the axes dim1, dim2 replaced by ``src`` (static axes)."""
    r = ctx.ref(x)
    a1, a2 = dim1 % r.ndim, dim2 % r.ndim
    d1, d2 = r.dims[a1], r.dims[a2]
    if not (_fixed(d1) and _fixed(d2)):
        raise NotImplementedError("diagonal_scatter over a dynamic or batch axis")
    n = int(src.shape[-1])
    if n == 0:
        return r
    s = ctx.cast(ctx.ref(src), r.dtype)
    rest = [e for i, e in enumerate(r.dims) if i not in (a1, a2)]
    s = ctx.rename(s, dict(zip(s.dims[:-1], rest)))
    p1, p2 = range_ref(ctx, d1), range_ref(ctx, d2)
    k, kd = (p1, d1) if offset >= 0 else (p2, d2)
    at = ctx.eval(f"tf.minimum(source(0), {n - 1})", [k], [kd], dtype=torch.int64)
    taken = gather_ref(ctx, s, s.ndim - 1, at, [kd])
    return ctx.eval(f"tf.where(tf.equal(source(3) - source(2), {int(offset)}), source(1), source(0))",
                    [r, taken, p1, p2], r.dims, dtype=r.dtype)


# -- grids and broadcasting ------------------------------------------------------------------------------
@handles(torch.functional.meshgrid, torch._C._VariableFunctionsClass.meshgrid)
def meshgrid(ctx, *tensors, indexing=None):
    """One tensor per input, each input's axis spread over the grid of all (``xy``: first two swapped)."""
    ts = list(tensors[0]) if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)) else list(tensors)
    refs = [ctx.ref(x) for x in ts]
    refs = [ctx.unsqueeze(r, 0) if r.ndim == 0 else r for r in refs]
    dims = ctx.distinct([r.dims[0] for r in refs])
    refs = [ctx.rename(r, {r.dims[0]: d}) for r, d in zip(refs, dims)]
    order = list(dims)
    if indexing == "xy" and len(order) > 1:
        order[0], order[1] = order[1], order[0]
    return tuple(ctx.expand(r, order) for r in refs)


@handles(torch.functional.broadcast_tensors)
def broadcast_tensors(ctx, *tensors):
    """Every input broadcast to the common shape."""
    _, dims = ctx.broadcast(*tensors)
    return tuple(ctx.align(ctx.ref(x), dims, expand=True) for x in tensors)


@handles(T.sum_to_size)
def sum_to_size(ctx, x, *size):
    """Sum over the leading axes and the axes ``size`` has 1 for (padding frames count 0)."""
    r = ctx.ref(x)
    size = sizes_arg(size)
    lead = r.ndim - len(size)
    ones = [i for i in range(lead, r.ndim) if int(size[i - lead]) == 1 and (r.shape[i] != 1 or not _fixed(r.dims[i]))]
    r = reduce_ref(ctx, r, "sum", ones, True)
    return reduce_ref(ctx, r, "sum", list(range(lead)), False)


@handles(torch.constant_pad_nd)
def constant_pad_nd(ctx, x, pad, value=0):
    """F.pad, constant mode."""
    return pad_handler(ctx, x, list(pad), "constant", value)


# -- pixel and channel shuffles --------------------------------------------------------------------------
def _shuffle(ctx, x, split, perm, merged):
    """Reshape the last three axes to ``split``, permute those by ``perm``, then reshape them to
    ``merged``; sizes may be DimInt (dynamic axes stay dynamic)."""
    r = ctx.ref(x)
    lead = list(sym_shape(ctx.dims, r))[:-3]
    n = len(lead)
    a = reshape_ref(ctx, r, lead + split, tuple(int(s) for s in lead + split))
    a = ctx.transpose_to(a, list(a.dims[:n]) + [a.dims[n + p] for p in perm])
    return reshape_ref(ctx, a, lead + merged, tuple(ctx.out.shape))


@handles(F.pixel_shuffle)
def pixel_shuffle(ctx, x, upscale_factor):
    """(*, C r^2, H, W) -> (*, C, H r, W r)."""
    f = int(upscale_factor)
    if f == 1:
        return ctx.ref(x)
    c, h, w = list(sym_shape(ctx.dims, ctx.ref(x)))[-3:]
    return _shuffle(ctx, x, [c // (f * f), f, f, h, w], [0, 3, 1, 4, 2], [c // (f * f), h * f, w * f])


@handles(F.pixel_unshuffle)
def pixel_unshuffle(ctx, x, downscale_factor):
    """(*, C, H r, W r) -> (*, C r^2, H, W)."""
    f = int(downscale_factor)
    if f == 1:
        return ctx.ref(x)
    c, h, w = list(sym_shape(ctx.dims, ctx.ref(x)))[-3:]
    return _shuffle(ctx, x, [c, h // f, f, w // f, f], [0, 2, 4, 1, 3], [c * f * f, h // f, w // f])


@handles(F.channel_shuffle, torch.native_channel_shuffle)
def channel_shuffle(ctx, x, groups):
    """(N, C, *) -> channels regrouped: view (N, g, C/g, *), swap g and C/g, view back."""
    r = ctx.ref(x)
    shape = list(sym_shape(ctx.dims, r))
    g, c, rest = int(groups), shape[1], shape[2:]
    if not _fixed(r.dims[1]):
        raise NotImplementedError("channel_shuffle of a dynamic or batch channel axis")
    a = reshape_ref(ctx, r, shape[:1] + [g, c // g] + rest, tuple(int(s) for s in shape[:1] + [g, c // g] + rest))
    a = ctx.transpose_to(a, [a.dims[0], a.dims[2], a.dims[1]] + list(a.dims[3:]))
    return reshape_ref(ctx, a, shape, tuple(ctx.out.shape))

