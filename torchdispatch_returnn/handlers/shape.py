"""Shape ops: transpose/permute/movedim/t (meta only), unsqueeze/squeeze, expand, contiguous,
chunk/split/unbind, cat/stack, flip, cumsum, triu/tril, repeat/tile (reshapes: reshape.py)."""

from __future__ import annotations

import torch

from .registry import handles

T = torch.Tensor


def _sizes(args) -> list:
    """Sizes given as varargs or as one sequence (``view(2, 3)`` / ``view((2, 3))``)."""
    if len(args) == 1 and isinstance(args[0], (list, tuple, torch.Size)):
        return list(args[0])
    return list(args)


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
    return _meta_perm(ctx, x, _sizes(dims))


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


def expand_ref(ctx, r, target_dims):
    """Broadcast ``r`` (same ndim as target after unsqueezing) to ``target_dims``."""
    n_new = len(target_dims) - r.ndim
    missing = []
    keep = {}
    for k in range(r.ndim):
        tgt = target_dims[n_new + k]
        if r.shape[k] == 1 and ctx.capture.dims.size(tgt) != 1:
            missing.append(tgt)
        else:
            keep[r.dims[k]] = tgt
    # squeeze the size-1 axes that get expanded, rename the kept ones
    for k in reversed(range(r.ndim)):
        tgt = target_dims[n_new + k]
        if r.shape[k] == 1 and ctx.capture.dims.size(tgt) != 1:
            r = ctx.squeeze(r, k)
    r = ctx.rename(r, {d: t for d, t in keep.items() if d is not t})
    missing = list(target_dims[:n_new]) + missing
    if not missing:
        return ctx.transpose_to(r, target_dims)
    zeros = ctx.fill(missing, 0, r.dtype, helper="zeros")
    op = "tf.logical_or" if r.dtype == torch.bool else "tf.add"
    out = ctx.eval(f"{op}(source(0), source(1))", [r, zeros], target_dims, dtype=r.dtype)
    return out


@handles(T.expand)
def expand(ctx, x, *sizes):
    """Broadcast to ``sizes`` (-1 keeps an axis); sizes that carry dims stay dynamic."""
    r = ctx.ref(x)
    sizes = _sizes(sizes)
    n_new = len(sizes) - r.ndim
    target = []
    for k, s in enumerate(sizes):
        if k >= n_new and (s == -1 or int(s) == r.shape[k - n_new]):
            target.append(r.dims[k - n_new])
        else:
            target.append(ctx.new_dim(s, f"{ctx.op_name}_dim"))
    return expand_ref(ctx, r, target)


@handles(T.expand_as)
def expand_as(ctx, x, other):
    """Broadcast to ``other``'s shape and dims."""
    return expand_ref(ctx, ctx.ref(x), ctx.ref(other).dims)


def slice_ref(ctx, r, ax, start, end, step=1, helper=None):
    """Static-bounds slice of axis ``ax`` (dims derived for dynamic axes)."""
    d = r.dims[ax]
    size = r.shape[ax]
    s, e, st = slice(start, end, step).indices(size)
    n = len(range(s, e, st))
    if s == 0 and e == size and st == 1:
        return r
    if not d.is_dynamic():
        out_dim = ctx.dims.static(n, f"{ctx.op_name}_dim")
        start, end = s, (e if e < size or st != 1 else None)
    else:
        if step != 1 and not (isinstance(end, int) or end is None):
            raise NotImplementedError("strided slice of a dynamic axis with a dynamic end")
        out_dim = _dyn_slice_dim(ctx, d, start, end, step)
    dims = list(r.dims)
    dims[ax] = out_dim
    opts = {"class": "slice", "from": r, "axis": d, "slice_start": start if start else None, "slice_end": end,
            "out_dim": out_dim}
    if step != 1:
        opts["slice_step"] = step
    return ctx.layer(opts, dims, dtype=r.dtype, helper=helper)


def _dyn_slice_dim(ctx, d, start, end, step):
    reg = ctx.dims
    start = start or 0
    if start < 0 or (end is not None and end >= 0):
        raise NotImplementedError("slice of a dynamic axis with a negative start or a non-negative end "
                                  "(the result would not follow the sequence length)")
    out = d
    if end is not None and end < 0:
        out = reg.derive("sub", out, -end)
    if start:
        out = reg.derive("sub_left", out, start)
    if step != 1:
        out = reg.derive("ceildiv", out, step)
    return out


def _split_sizes(total, split_size_or_sections):
    if isinstance(split_size_or_sections, int):
        n = split_size_or_sections
        return [min(n, total - i) for i in range(0, total, n)]
    return [int(s) for s in split_size_or_sections]


def _split_refs(ctx, x, sizes, dim):
    r = ctx.ref(x)
    ax = dim % r.ndim
    if r.dims[ax].is_dynamic():
        raise NotImplementedError("split/chunk along a dynamic axis")
    outs, pos = [], 0
    for k, s in enumerate(sizes):
        outs.append(slice_ref(ctx, r, ax, pos, pos + s, helper=str(k)))
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
                           [d for i, d in enumerate(r.dims) if i != ax], dtype=r.dtype, helper=str(k))
                 for k in range(r.shape[ax]))


def cat_refs(ctx, refs, ax, helper=None):
    first = refs[0]
    refs = [first] + [ctx.rename(r, {d: t for i, (d, t) in enumerate(zip(r.dims, first.dims)) if i != ax})
                      for r in refs[1:]]
    out_dim = refs[0].dims[ax]
    for r in refs[1:]:
        out_dim = ctx.dims.derive("add", out_dim, r.dims[ax])
    if isinstance(out_dim, int):
        out_dim = ctx.dims.static(out_dim, f"{ctx.op_name}_dim")
    elif any(r.dims[ax].is_dynamic() for r in refs[:-1]):
        return _ragged_cat(ctx, refs, ax)
    dims = list(first.dims)
    dims[ax] = out_dim
    return ctx.layer({"class": "concat", "from": [(r, r.dims[ax]) for r in refs], "out_dim": out_dim}, dims,
                     dtype=first.dtype, helper=helper)


def stack_refs(ctx, refs, ax, helper=None):
    """Stack refs along a new axis ``ax``."""
    if len(refs) == 1:
        return ctx.unsqueeze(refs[0], ax)
    return cat_refs(ctx, [ctx.unsqueeze(r, ax) for r in refs], ax, helper=helper)


def _ragged_cat(ctx, refs, ax, helper=None):
    """cat along a dynamic axis, per sequence: [a(len_a), b(len_b)] with no padding in between.
    A plain concat leaves a's padding in the middle; a per-sequence gather closes the gap."""
    a, b = refs[0], refs[1]
    rest = refs[2:]
    da, db = a.dims[ax], b.dims[ax]
    tt = ctx.dims.derive("add", da, db)
    dims = list(a.dims)
    dims[ax] = tt
    naive = ctx.layer({"class": "concat", "from": [(a, da), (b, db)], "out_dim": tt}, dims, dtype=a.dtype,
                      helper="naive")
    from .index import range_ref

    pos = range_ref(ctx, tt, helper="pos")
    la, lb = ctx.size_ref(da, dims), ctx.size_ref(db, dims)
    batch = [d for d in dims if d.is_batch_dim()]
    ma = ctx.layer({"class": "reduce", "from": la, "mode": "max", "axes": batch}, [], dtype=torch.int32,
                   helper="max_len")
    idx_dims = list(la.dims) + [tt]
    idx = ctx.eval("(lambda t, l1, m1, l2: tf.where(t < l1, t, tf.where(t < l1 + l2, t - l1 + m1, 0)))("
                   "tf.cast(source(0), tf.int64), tf.cast(source(1), tf.int64), tf.cast(source(2), tf.int64), "
                   "tf.cast(source(3), tf.int64))", [pos, la, ma, lb], idx_dims, dtype=torch.int64, helper="idx")
    out = ctx.layer({"class": "gather", "from": naive, "axis": tt, "position": idx}, dims, dtype=a.dtype,
                    helper=None if not rest else "pair")
    return _ragged_cat(ctx, [out] + list(rest), ax) if rest else out


@handles(torch.cat, torch.concat, torch.concatenate)
def cat(ctx, tensors, dim=0, *, out=None):
    """Concatenate along ``dim``."""
    tensors = [t for t in tensors if not (t.dim() == 1 and t.shape[0] == 0)]
    refs = [ctx.cast(ctx.ref(t), ctx.out.dtype) for t in tensors]
    if len(refs) == 1:
        return refs[0]
    return cat_refs(ctx, refs, dim % refs[0].ndim)


@handles(torch.stack)
def stack(ctx, tensors, dim=0, *, out=None):
    """Stack along a new axis ``dim``."""
    refs = [ctx.cast(ctx.ref(t), ctx.out.dtype) for t in tensors]
    return stack_refs(ctx, refs, dim % (refs[0].ndim + 1))


@handles(torch.flip, T.flip)
def flip(ctx, x, *dims):
    """Reverse the order along ``dims``."""
    r = ctx.ref(x)
    axes = sorted({d % r.ndim for d in _sizes(dims)})
    for k, ax in enumerate(axes):
        helper = None if k == len(axes) - 1 else f"flip{k}"
        d = r.dims[ax]
        if d.is_dynamic():  # reverse each sequence within its own length
            batch = next((b for b in r.dims if b.is_batch_dim()), None)
            if batch is None:
                raise NotImplementedError("flip along a dynamic axis of a tensor without batch axis")
            r = reverse_sequences(ctx, r, d, batch, helper)
        else:
            r = ctx.eval("tf.reverse(source(0), axis=[{axis}])", [r], r.dims, axis=d, dtype=r.dtype, helper=helper)
    return r


def reverse_sequences(ctx, r, t_dim, b_dim, helper=None):
    """Each sequence of ``r`` reversed along ``t_dim`` within its own length (padding stays at the end)."""
    length = ctx.size_ref(t_dim, [b_dim])
    return ctx.eval("tf.reverse_sequence(source(0), tf.cast(source(1, auto_convert=False), tf.int64), "
                    "seq_axis={axis}, batch_axis={batch})", [r, length], r.dims, dtype=r.dtype, helper=helper,
                    dims_locals={"axis": t_dim, "batch": b_dim})


@handles(torch.cumsum, T.cumsum)
def cumsum(ctx, x, dim, *, dtype=None, out=None):
    """Running sum along ``dim`` (per sequence along a dynamic axis)."""
    r = ctx.cast(ctx.ref(x), ctx.out.dtype)
    return ctx.layer({"class": "cumsum", "from": r, "axis": r.dims[dim % r.ndim]}, r.dims)


def _tri(upper: bool):
    def h(ctx, x, diagonal=0, *, out=None):
        """Keep the upper (triu) or lower (tril) triangle of the last two axes, zeros elsewhere."""
        from .index import range_ref

        r = ctx.ref(x)
        rows, cols = r.dims[-2], r.dims[-1]
        pr, pc = range_ref(ctx, rows, helper="rows"), range_ref(ctx, cols, helper="cols")
        cond = f"source(2) - source(1) {'>=' if upper else '<='} {int(diagonal)}"
        return ctx.eval(f"tf.where({cond}, source(0), tf.zeros_like(source(0)))", [r, pr, pc], r.dims, dtype=r.dtype)
    return h


handles(torch.triu, T.triu)(_tri(True))
handles(torch.tril, T.tril)(_tri(False))


@handles(T.repeat, torch.tile, T.tile)
def repeat(ctx, x, *sizes):
    """Tile: each axis repeated as a whole ``sizes[i]`` times (static axes; new leading axes too)."""
    r = ctx.ref(x)
    reps = [int(s) for s in _sizes(sizes)]
    if ctx.func in (torch.tile, T.tile) and len(reps) < r.ndim:
        reps = [1] * (r.ndim - len(reps)) + reps
    n_new = len(reps) - r.ndim
    for _ in range(n_new):
        r = ctx.unsqueeze(r, 0)
    dims = list(r.dims)
    for i, k in enumerate(reps):
        if k != 1:
            if dims[i].is_dynamic() or dims[i].is_batch_dim():
                raise NotImplementedError("repeat/tile along a dynamic or batch axis")
            dims[i] = ctx.dims.static(r.shape[i] * k, f"{ctx.op_name}_dim{i}")
    if dims == list(r.dims):
        return r
    for i, k in enumerate(reps):  # tile = cat of copies along each repeated axis
        if k == 1:
            continue
        last = all(kk == 1 for kk in reps[i + 1:])
        parts = [r] * k
        r = cat_refs(ctx, parts, i, helper=None if last else f"tile{i}")
    return r


@handles(torch.roll, T.roll)
def roll(ctx, x, shifts, dims=None):
    """Circular shift along static axes (a cat of two slices per axis)."""
    r = ctx.ref(x)
    if dims is None:
        raise NotImplementedError("torch.roll over the flattened tensor (no dims)")
    shifts = [shifts] if isinstance(shifts, int) else list(shifts)
    dims = [dims] if isinstance(dims, int) else list(dims)
    for k, (s, d) in enumerate(zip(shifts, dims)):
        ax = d % r.ndim
        if r.dims[ax].is_dynamic() or r.dims[ax].is_batch_dim():
            raise NotImplementedError("torch.roll along a dynamic or batch axis")
        n = r.shape[ax]
        s %= n
        if s == 0:
            continue
        tail = slice_ref(ctx, r, ax, n - s, n, helper=f"tail{k}")
        head = slice_ref(ctx, r, ax, 0, n - s, helper=f"head{k}")
        r = cat_refs(ctx, [tail, head], ax, helper=None if k == len(dims) - 1 else f"roll{k}")
    return r
