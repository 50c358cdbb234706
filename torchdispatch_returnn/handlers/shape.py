"""Shape ops: transpose/permute/movedim/t (meta only), unsqueeze/squeeze, expand, contiguous,
chunk/split/unbind, cat/stack, flip, cumsum, triu/tril, repeat/tile (reshapes: reshape.py)."""

from __future__ import annotations

import torch

from ..sizes import DimInt
from ..tensor import MergedDim
from .common import T, cat_refs, range_ref, reverse_sequences, sizes_arg, slice_ref, stack_refs
from .registry import handles


def _meta_perm(ctx, x, perm):
    r = ctx.ref(x)
    return ctx.transpose_to(r, [r.dims[p % r.ndim] for p in perm])


@handles(torch.transpose, torch.swapaxes, torch.swapdims, T.transpose, T.swapaxes, T.swapdims)
def transpose(ctx, x, dim0, dim1):
    """Swap two axes (meta only)."""
    perm = list(range(x.dim()))
    perm[dim0], perm[dim1] = perm[dim1], perm[dim0]
    return _meta_perm(ctx, x, perm)


@handles(torch.permute, T.permute)
def permute(ctx, x, *dims):
    """Reorder axes (meta only)."""
    return _meta_perm(ctx, x, sizes_arg(dims))


@handles(torch.t, T.t, T.T.__get__, T.mT.__get__, torch.adjoint, T.adjoint)
def t(ctx, x):
    """Transpose of a matrix / reverse axes / swap last two (meta only)."""
    n = x.dim()
    if ctx.func is T.T.__get__:
        return _meta_perm(ctx, x, list(reversed(range(n))))
    if n < 2:
        return ctx.ref(x)
    perm = list(range(n))
    perm[-1], perm[-2] = perm[-2], perm[-1]
    return _meta_perm(ctx, x, perm)


@handles(torch.movedim, torch.moveaxis, T.movedim, T.moveaxis)
def movedim(ctx, x, source, destination):
    """Move axes (meta only)."""
    n = x.dim()
    src = [source] if isinstance(source, int) else list(source)
    dst = [destination] if isinstance(destination, int) else list(destination)
    src, dst = [s % n for s in src], [d % n for d in dst]
    rest = [i for i in range(n) if i not in src]
    perm = [None] * n
    for s, d in zip(src, dst):
        perm[d] = s
    it = iter(rest)
    perm = [p if p is not None else next(it) for p in perm]
    return _meta_perm(ctx, x, perm)


@handles(T.contiguous, T.clone, torch.clone, T.detach, torch.detach, T.requires_grad_, T.cpu, T.data.__get__,
         T.detach_)
def identity(ctx, x, *args, **kwargs):
    """No-op for the network (same layer)."""
    return ctx.ref(x)


@handles(torch.unsqueeze, T.unsqueeze, T.unsqueeze_)
def unsqueeze(ctx, x, dim):
    """New size-1 axis."""
    r = ctx.ref(x)
    return ctx.unsqueeze(r, dim % (r.ndim + 1))


@handles(torch.squeeze, T.squeeze, T.squeeze_)
def squeeze(ctx, x, dim=None):
    """Remove size-1 axes (all, one or a tuple)."""
    r = ctx.ref(x)
    if dim is None:
        axes = [i for i, s in enumerate(r.shape) if s == 1]
    else:
        axes = [d % max(r.ndim, 1) for d in ([dim] if isinstance(dim, int) else dim)]
        axes = [a for a in axes if r.shape[a] == 1]
    for a in sorted(axes, reverse=True):
        if r.dims[a].is_dynamic() or r.dims[a].is_batch_dim():
            raise NotImplementedError("squeeze of a dynamic axis that happens to have size 1")
        r = ctx.squeeze(r, a)
    return r


@handles(T.expand, T.broadcast_to, torch.broadcast_to)
def expand(ctx, x, *sizes):
    """Broadcast to ``sizes`` (-1 keeps an axis); sizes that carry dims stay dynamic."""
    r = ctx.ref(x)
    sizes = sizes_arg(sizes)
    n_new = len(sizes) - r.ndim
    target = []
    for k, s in enumerate(sizes):
        if k >= n_new and (s == -1 or int(s) == r.shape[k - n_new]):
            target.append(r.dims[k - n_new])
        else:
            target.append(ctx.new_dim(s, f"{ctx.op_name}_dim"))
    return ctx.align(r, ctx.distinct(target), expand=True)


@handles(T.expand_as)
def expand_as(ctx, x, other):
    """Broadcast to ``other``'s shape and dims."""
    return ctx.align(ctx.ref(x), ctx.ref(other).dims, expand=True)


def _split_sizes(total, split_size_or_sections):
    if isinstance(split_size_or_sections, int):
        n = split_size_or_sections
        return [min(n, total - i) for i in range(0, total, n)]
    return [int(s) for s in split_size_or_sections]


def _split_refs(ctx, x, sizes, dim):
    """The pieces along ``dim``; pieces of one size share one dim (q, k and v chunked from one projection
    line up, as torch lines them up, with no renames), the same each time the axis is cut so."""
    r = ctx.ref(x)
    ax = dim % r.ndim
    if r.dims[ax].is_dynamic():
        raise NotImplementedError("split/chunk along a dynamic axis")
    others = [d for i, d in enumerate(r.dims) if i != ax]
    piece_dims = ctx.dims.shared.pieces(r.dims[ax], ("split", *sizes), sizes,
                                        lambda n: ctx.dims.static(n, f"{ctx.op_name}_dim"), avoid=others)
    outs, pos = [], 0
    for s, d in zip(sizes, piece_dims):
        outs.append(slice_ref(ctx, r, ax, pos, pos + s, out_dim=d))
        pos += s
    return tuple(outs)


@handles(torch.split, T.split, torch.split_with_sizes, T.split_with_sizes)
def split(ctx, x, split_size_or_sections, dim=0):
    """Split into pieces of the given size(s)."""
    return _split_refs(ctx, x, _split_sizes(x.shape[dim], split_size_or_sections), dim)


@handles(torch.chunk, T.chunk)
def chunk(ctx, x, chunks, dim=0):
    """Split into ``chunks`` pieces (torch's sizes)."""
    return _split_refs(ctx, x, [int(o.shape[dim]) for o in ctx.out], dim)


@handles(torch.unbind, T.unbind)
def unbind(ctx, x, dim=0):
    """Remove an axis, one tensor per index."""
    r = ctx.ref(x)
    ax = dim % r.ndim
    return tuple(ctx.layer({"class": "gather", "from": r, "axis": r.dims[ax], "position": k},
                           [d for i, d in enumerate(r.dims) if i != ax], dtype=r.dtype)
                 for k in range(r.shape[ax]))


@handles(torch.cat, torch.concat, torch.concatenate)
def cat(ctx, tensors, dim=0, *, out=None):
    """Concatenate along ``dim``."""
    tensors = [t for t in tensors if not (t.dim() == 1 and t.shape[0] == 0)]
    refs = [ctx.cast(ctx.ref(t), ctx.out.dtype) for t in tensors]
    if len(refs) == 1:
        return refs[0]
    ax = dim % refs[0].ndim
    if any(r.dims[ax].is_batch_dim() for r in refs):  # (n, B) stacked, viewed as one axis of n * B
        if not all(r.dims[ax].is_batch_dim() for r in refs):
            raise NotImplementedError("cat along the batch axis with a tensor that has no batch axis there")
        st = stack_refs(ctx, refs, ax)
        return ctx.transpose_to(st, list(st.dims[:ax]) + [MergedDim(st.dims[ax:ax + 2])] + list(st.dims[ax + 2:]))
    return cat_refs(ctx, refs, ax)


@handles(torch.stack)
def stack(ctx, tensors, dim=0, *, out=None):
    """Stack along a new axis ``dim``."""
    refs = [ctx.cast(ctx.ref(t), ctx.out.dtype) for t in tensors]
    return stack_refs(ctx, refs, dim % (refs[0].ndim + 1))


@handles(torch.flip, T.flip)
def flip(ctx, input, *args, dims=None):
    """Reverse the order along ``dims`` (each sequence within its own length along a dynamic axis;
    the padded axis where the tensor has no batch axis, as torch; a 0-d tensor is kept)."""
    r = ctx.ref(input)
    axes = sorted({d % max(r.ndim, 1) for d in sizes_arg(args if dims is None else [dims])} if r.ndim else set())
    for ax in axes:
        d = r.dims[ax]
        batch = next((b for b in r.dims if b.is_batch_dim()), None)
        if d.is_dynamic() and not d.is_batch_dim() and batch is not None:
            r = reverse_sequences(ctx, r, d, batch)
        else:
            r = ctx.eval("tf.reverse(source(0), axis=[{axis}])", [r], r.dims, axis=d, dtype=r.dtype)
    return r


@handles(torch.cumsum, T.cumsum)
def cumsum(ctx, x, dim, *, dtype=None, out=None):
    """Running sum along ``dim`` (per sequence along a dynamic axis; a 0-d tensor is its own sum)."""
    r = ctx.cast(ctx.ref(x), ctx.out.dtype)
    if r.ndim == 0:
        return r
    return ctx.layer({"class": "cumsum", "from": r, "axis": r.dims[dim % r.ndim]}, r.dims)


def _tri(upper: bool):
    def h(ctx, x, diagonal=0, *, out=None):
        """Keep the upper (triu) or lower (tril) triangle of the last two axes, zeros elsewhere."""
        r = ctx.ref(x)
        pr, pc = range_ref(ctx, r.dims[-2]), range_ref(ctx, r.dims[-1])
        cond = f"source(2) - source(1) {'>=' if upper else '<='} {int(diagonal)}"
        return ctx.eval(f"tf.where({cond}, source(0), tf.zeros_like(source(0)))", [r, pr, pc], r.dims, dtype=r.dtype)
    return h


handles(torch.triu, T.triu)(_tri(True))
handles(torch.tril, T.tril)(_tri(False))


@handles(T.repeat, torch.tile, T.tile)
def repeat(ctx, x, *sizes):
    """Tile: each axis repeated as a whole ``sizes[i]`` times (static axes; new leading axes too); a
    size-1 axis repeated a dynamic number of times (``x.unsqueeze(2).repeat(1, 1, T)``) is broadcast."""
    r = ctx.ref(x)
    reps = [ctx.sym_size(s) for s in sizes_arg(sizes)]
    if ctx.func in (torch.tile, T.tile) and len(reps) < r.ndim:
        reps = [1] * (r.ndim - len(reps)) + reps
    n_new = len(reps) - r.ndim
    for _ in range(n_new):
        r = ctx.unsqueeze(r, 0)
    if any(isinstance(k, DimInt) for k in reps):
        if any(isinstance(k, DimInt) and r.shape[i] != 1 for i, k in enumerate(reps)):
            raise NotImplementedError("repeat of an axis longer than 1 a dynamic number of times")
        target = ctx.distinct([ctx.new_dim(k) if isinstance(k, DimInt) else d for d, k in zip(r.dims, reps)])
        r = ctx.align(r, target, expand=True)
        reps = [1 if isinstance(k, DimInt) else k for k in reps]
    dims = list(r.dims)
    for i, k in enumerate(reps):
        if k != 1:
            if dims[i].is_dynamic() or dims[i].is_batch_dim():
                raise NotImplementedError("repeat/tile along a dynamic or batch axis")
            dims[i] = ctx.dims.static(r.shape[i] * k, f"{ctx.op_name}_dim{i}")
    if dims == list(r.dims):
        return r
    if 0 in reps:  # torch gives an empty tensor
        return ctx.fill(dims, 0, r.dtype)
    for i, k in enumerate(reps):  # tile = cat of copies along each repeated axis
        if k != 1:
            r = cat_refs(ctx, [r] * k, i)
    return r


@handles(torch.roll, T.roll)
def roll(ctx, x, shifts, dims=None):
    """Circular shift along static axes (a cat of two slices per axis)."""
    r = ctx.ref(x)
    if dims is None:
        raise NotImplementedError("torch.roll over the flattened tensor (no dims)")
    shifts = [shifts] if isinstance(shifts, int) else list(shifts)
    dims = [dims] if isinstance(dims, int) else list(dims)
    for s, d in zip(shifts, dims):
        ax = d % r.ndim
        if r.dims[ax].is_dynamic() or r.dims[ax].is_batch_dim():
            raise NotImplementedError("torch.roll along a dynamic or batch axis")
        n = r.shape[ax]
        if n == 0 or s % n == 0:  # (an empty axis: nothing to roll)
            continue
        s %= n
        tail = slice_ref(ctx, r, ax, n - s, n)
        head = slice_ref(ctx, r, ax, 0, n - s)
        r = cat_refs(ctx, [tail, head], ax)
    return r


@handles(torch.diff, T.diff)
def diff(ctx, x, n=1, dim=-1, prepend=None, append=None):
    """x[1:] - x[:-1] along ``dim`` (``n`` times), after ``prepend``/``append`` (per sequence along a
    dynamic axis)."""
    r = ctx.ref(x)
    ax = dim % r.ndim
    parts = [ctx.cast(ctx.ref(t), r.dtype) for t in (prepend, x, append) if t is not None]
    r = cat_refs(ctx, parts, ax) if len(parts) > 1 else r
    for _ in range(n):
        hi, lo = slice_ref(ctx, r, ax, 1, None), slice_ref(ctx, r, ax, 0, -1)
        lo = ctx.rename(lo, {lo.dims[ax]: hi.dims[ax]})
        op = "tf.not_equal" if r.dtype == torch.bool else "tf.subtract"
        r = ctx.eval(f"{op}(source(0), source(1))", [hi, lo], hi.dims, dtype=r.dtype)
    return r
