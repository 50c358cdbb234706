"""Shape ops: view/reshape/flatten/unflatten, transpose/permute/movedim/t (meta only),
unsqueeze/squeeze, expand, contiguous, chunk/split, cat/stack, flip."""

from __future__ import annotations

import torch

from ..tensor import DimInt
from .registry import handles

T = torch.Tensor


def _sizes(args) -> list:
    if len(args) == 1 and isinstance(args[0], (list, tuple, torch.Size)):
        return list(args[0])
    return list(args)


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
        if any(d.is_batch_dim() for d in in_dims):
            r, produced = _batch_reshape(ctx, r, in_dims, gj, out_shape, hints)
            new_dims.update(produced)
            continue
        if len(in_dims) > 1:
            merged = hints[gj[0]] if len(gj) == 1 and hints[gj[0]] is not None else _product_dim(ctx, in_dims)
            axes_pos = [_pos(r.dims, d) for d in in_dims]
            dims = [d for k, d in enumerate(r.dims) if k not in axes_pos]
            dims.insert(min(axes_pos), merged)
            r = ctx.layer({"class": "merge_dims", "from": r, "axes": in_dims, "out_dim": merged}, dims,
                          dtype=r.dtype, helper="merge")
            src = merged
        else:
            src = in_dims[0]
        if len(gj) == 1:
            new_dims[gj[0]] = src
            continue
        parts = _split_dims(ctx, src, [out_shape[k] for k in gj], [hints[k] for k in gj])
        pos = _pos(r.dims, src)
        dims = list(r.dims[:pos]) + parts + list(r.dims[pos + 1:])
        r = ctx.layer({"class": "split_dims", "from": r, "axis": src, "dims": parts}, dims, dtype=r.dtype,
                      helper="split")
        for k, d in zip(gj, parts):
            new_dims[k] = d
    # 4. new size-1 axes
    order = []
    for j, s in enumerate(out_shape):
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
    from ..capture import NEW_BATCH

    flat = ctx.capture.__dict__.setdefault("_flat_batches", {})
    if len(in_dims) == 2 and len(gj) == 1:
        other = in_dims[1] if in_dims[0].is_batch_dim() else in_dims[0]
        pos = [_pos(r.dims, d) for d in in_dims]
        dims = [d for k, d in enumerate(r.dims) if k not in pos]
        dims.insert(min(pos), NEW_BATCH)
        shape = [s for k, s in enumerate(r.shape) if k not in pos]
        shape.insert(min(pos), r.shape[pos[0]] * r.shape[pos[1]])
        out = ctx.layer({"class": "flatten_batch", "from": r, "axis": other,
                         "batch_major": in_dims[0].is_batch_dim()}, dims, dtype=r.dtype, helper="flatten_batch",
                        shape=tuple(shape))
        new_b = out.dims[min(pos)]
        flat[id(new_b)] = (in_dims, None)
        return out, {gj[0]: new_b}
    if len(in_dims) == 1 and len(gj) == 2 and id(in_dims[0]) in flat:
        orig, _ = flat[id(in_dims[0])]
        if not orig[0].is_batch_dim():
            raise NotImplementedError("splitting a time-major merged batch axis")
        pos = _pos(r.dims, in_dims[0])
        dims = list(r.dims[:pos]) + [NEW_BATCH, orig[1]] + list(r.dims[pos + 1:])
        shape = list(r.shape[:pos]) + [out_shape[gj[0]], out_shape[gj[1]]] + list(r.shape[pos + 1:])
        out = ctx.layer({"class": "unflatten_batch", "from": r}, dims, dtype=r.dtype, helper="unflatten_batch",
                        shape=tuple(shape))
        return out, {gj[0]: out.dims[pos], gj[1]: orig[1]}
    raise NotImplementedError("reshape that merges the batch axis with more than one axis, or splits it")


def _product_dim(ctx, dims):
    out = dims[0]
    for d in dims[1:]:
        out = ctx.dims.derive("mul", out, d)
    return out if not isinstance(out, int) else ctx.dims.static(out, f"merged")


def _split_dims(ctx, src, sizes, hints):
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
    return reshape_ref(ctx, r, _sizes(shape), tuple(ctx.out.shape))


@handles(T.view_as, T.reshape_as)
def view_as(ctx, x, other):
    """view/reshape to ``other``'s shape and dims."""
    o = ctx.ref(other)
    from .meta import sym_shape

    return reshape_ref(ctx, ctx.ref(x), list(sym_shape(ctx.capture, other)), tuple(o.shape))


@handles(torch.flatten, T.flatten)
def flatten(ctx, x, start_dim=0, end_dim=-1):
    """Merge axes start_dim..end_dim."""
    r = ctx.ref(x)
    if r.ndim == 0:
        return reshape_ref(ctx, r, [1], (1,))
    return reshape_ref(ctx, r, [None] * len(ctx.out.shape), tuple(ctx.out.shape))


@handles(torch.unflatten, T.unflatten)
def unflatten(ctx, x, dim, sizes):
    """Split axis ``dim`` into ``sizes``."""
    r = ctx.ref(x)
    dim %= r.ndim
    from .meta import sym_shape

    shape = sym_shape(ctx.capture, x)
    hints = list(shape[:dim]) + list(sizes) + list(shape[dim + 1:])
    return reshape_ref(ctx, r, hints, tuple(ctx.out.shape))


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
    zeros = ctx.capture.zeros_ref(missing, r.dtype)
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
            length = ctx.size_ref(d, r.dims)
            r = ctx.eval("tf.reverse_sequence(source(0), tf.cast(source(1, auto_convert=False), tf.int64), "
                         "seq_axis={axis}, batch_axis={batch})", [r, length], r.dims, dtype=r.dtype, helper=helper,
                         dims_locals={"axis": d, "batch": batch})
        else:
            r = ctx.eval("tf.reverse(source(0), axis=[{axis}])", [r], r.dims, axis=d, dtype=r.dtype, helper=helper)
    return r


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
