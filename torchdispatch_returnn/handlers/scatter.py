"""Index writes/reads (scatter_reduce, index_add/copy/fill/reduce/put, masked_scatter, put, take, take_along_dim),
``*_copy`` views and in-place aliases (by the handler of the op they copy), stacking (h/v/d/column_stack,
atleast_nd, block_diag, cartesian_prod, rot90, tril/triu_indices), cumprod, cummax/cummin, logcumsumexp, nansum,
nanmean, count_nonzero, var_mean, std_mean, aminmax. Writes flatten the target; updates out of range or in the
padding of a padded index tensor go to a spare slot that is dropped. Flat-order ops (take, put, masked_scatter,
x[mask] = v) refuse a dynamic axis next to the batch. Cumulative ops along a dynamic axis are per sequence (the
padding follows each sequence and is set to a neutral value first, so it cannot reach gradients either)."""

from __future__ import annotations

import torch

from .common import T, cat_refs, lit, mask_padding, range_ref, reduce_ref, slice_ref
from .registry import handles, lookup

_LIN = ("(lambda c, s, ok: (lambda c: (tf.reduce_sum(c * tf.math.cumprod(s, exclusive=True, reverse=True), -1), "
        "tf.logical_and(ok, tf.reduce_all((c >= 0) & (c < s), -1))))(tf.where(c < 0, c + s, c)))")
_GRID = ("(lambda s: tf.unstack(tf.stack(tf.meshgrid(*[tf.range(k) for k in tf.unstack(s)], indexing='ij'), -1), "
         "axis=-1))")
_SEG = {"sum": "sum", "add": "sum", "prod": "prod", "multiply": "prod", "amax": "max", "amin": "min", "mean": "sum"}
_TRUE = "tf.constant(True)"
#: fn(mask, rows): per mask entry, the row of its rank among the True ones (``rows`` ends with a spare row)
_ORDERED = ("(lambda m, f: tf.gather(f, tf.minimum(tf.maximum(tf.cumsum(tf.cast(m, tf.int64)) - 1, 0), "
            "tf.shape(f, out_type=tf.int64)[0] - 1)))")


def _flat(mode: str, include_self: bool, integer: bool) -> str:
    """TF source of fn(x, u, lin, ok): ``x`` with the updates ``u`` written (mode "update") or reduced
    in at the flat positions ``lin`` where ``ok`` (elsewhere: to an extra slot that is dropped)."""
    if mode == "update":
        body = "tf.tensor_scatter_nd_update(tf.concat([xf, tf.zeros([1], x.dtype)], 0), ids[:, None], uf)[:-1]"
    else:
        data, ids = ("tf.concat([xf, uf], 0)", "tf.concat([tf.range(n), ids], 0)") if include_self else ("uf", "ids")
        seg = f"tf.math.unsorted_segment_{_SEG[mode]}({data}, {ids}, n + 1)[:-1]"
        cnt = f"tf.math.unsorted_segment_sum(tf.ones_like({data}), {ids}, n + 1)[:-1]"
        val = f"{'tf.math.floordiv' if integer else 'tf.math.divide'}(v, tf.maximum(c, 1))" if mode == "mean" else "v"
        body = f"(lambda v, c: tf.where(c > 0, {val}, xf))({seg}, {cnt})"
    return ("(lambda x, u, lin, ok: (lambda xf, n: (lambda ids, uf: tf.reshape(" + body + ", tf.shape(x)))("
            "tf.reshape(tf.where(ok, lin, n), [-1]), tf.reshape(tf.broadcast_to(tf.cast(u, x.dtype), tf.shape(lin)), "
            "[-1])))(tf.reshape(x, [-1]), tf.size(x, out_type=tf.int64)))")


def _static(expr: str, dims) -> str:
    """TF source: ``expr`` with the static sizes of ``dims`` set (RETURNN checks them)."""
    return f"tf.ensure_shape({expr}, {[None if d.is_dynamic() else d.dimension for d in dims]})"


def _valid(ctx, r):
    """A bool Ref over ``r``'s dims: inside each sequence's length (None without padding)."""
    dyn = [d for d in r.dims if d.is_dynamic() and not d.is_batch_dim()]
    if not dyn or not any(d.is_batch_dim() for d in r.dims):
        return None
    srcs, conds = [r], []
    for d in dyn:
        conds.append(f"(tf.cast(source({len(srcs)}), tf.int64) < tf.cast(source({len(srcs) + 1}), tf.int64))")
        srcs += [range_ref(ctx, d), ctx.size_ref(d, r.dims)]
    return ctx.eval(f"tf.logical_and(tf.ones_like(source(0), dtype=tf.bool), {' & '.join(conds)})", srcs, r.dims,
                    dtype=torch.bool)


def _no_padding(r, what: str):
    if any(d.is_batch_dim() for d in r.dims) and any(d.is_dynamic() and not d.is_batch_dim() for d in r.dims):
        raise NotImplementedError(f"{what} of a tensor with a dynamic axis (its flat order would count the padding)")


@handles(torch.scatter_reduce, T.scatter_reduce, T.scatter_reduce_, torch.index_add, T.index_add, T.index_add_,
         torch.index_copy, T.index_copy, T.index_copy_, torch.index_fill, T.index_fill, T.index_fill_,
         torch.index_reduce, T.index_reduce, T.index_reduce_)
def scatter_reduce(ctx, x, dim, index, source, reduce=None, *, alpha=1, include_self=True, out=None):
    """``source`` written or reduced (sum, prod, mean, amax, amin) into ``x`` along ``dim``: at ``index`` of x's
    rank (scatter_reduce; elsewhere at the index's own position), or its slices at the 1-D ``index``
    (index_add of ``alpha * source``, index_copy, index_fill with the value ``source``, index_reduce)."""
    name = ctx.func.__name__.rstrip("_")
    mode = {"index_add": "sum", "scatter_add": "sum", "index_copy": "update", "index_fill": "update"}.get(name, reduce)
    r, idx = ctx.ref(x), ctx.ref(index)
    ax, zd, full, mode = dim % max(r.ndim, 1), r.ndim == 0, name.startswith("scatter"), mode or "update"
    srcs, ok = [r, idx], _TRUE
    shape = "tf.shape(i)" if full else f"tf.concat([tf.shape(x)[:{ax}], tf.shape(i), tf.shape(x)[{ax + 1}:]], 0)"
    if isinstance(source, torch.Tensor) and (ctx.is_captured(source) or source.dim() > 0):
        srcs.append(ctx.cast(ctx.ref(source), r.dtype))
        u = ("tf.reshape(x2, [1])" if zd else "x2") if zd or source.dim() > 0 else f"tf.fill({shape}, x2)"
        u = f"{u}[tuple(slice(0, k) for k in tf.unstack(tf.shape(i)))]" if full else u
    else:
        u = f"tf.fill({shape}, tf.cast({lit(float(source) if r.dtype.is_floating_point else int(source))}, x.dtype))"
    if alpha != 1:
        u = f"({u} * tf.cast({lit(alpha)}, x.dtype))"
    valid = _valid(ctx, idx) if full else None
    if valid is not None:
        ok = f"x{len(srcs)}"
        srcs.append(valid)
    coords = (f"(lambda g: tf.stack([{'i' if full else 'tf.gather(i, g[a])'} if a == {ax} else g[a] "
              "for a in range(len(g))], -1))")
    core = _flat(mode, include_self, not r.dtype.is_floating_point)
    ishape = "[1]" if zd else "tf.shape(x1)" if full else "[-1]"
    expr = (f"(lambda x, i: (lambda u: {core}(x, u, *{_LIN}({coords}({_GRID}(tf.shape({'i' if full else 'u'}, "
            f"out_type=tf.int64))), tf.shape(x, out_type=tf.int64), {ok})))({u}))("
            f"{'tf.reshape(x0, [1])' if zd else 'x0'}, tf.reshape(tf.cast(x1, tf.int64), {ishape}))")
    return ctx.tf_op(f"tf.reshape({expr}, tf.shape(x0))", srcs, r.dims, dtype=r.dtype)


@handles(torch.index_put, T.index_put, torch.index_put_, T.index_put_)
def index_put(ctx, x, indices, values, accumulate=False):
    """``x[indices] = values`` (or ``+=`` with ``accumulate``) for integer index tensors on leading axes, or one
    boolean mask there (its True entries take the rows of ``values`` in order)."""
    r = ctx.ref(x)
    if len(indices) == 1 and indices[0] is not None and indices[0].dtype == torch.bool:
        m, k = ctx.ref(indices[0]), indices[0].dim()
        _no_padding(r, "x[mask] = values")
        vals = (f"tf.concat([tf.reshape(tf.broadcast_to(tf.cast(x2, x.dtype), tf.concat([[tf.reduce_sum(tf.cast(mf, "
                f"tf.int32))], tf.shape(x)[{k}:]], 0)), [-1, m]), tf.zeros([1, m], x.dtype)], 0)")
        expr = (f"(lambda x, mf, m: (lambda xr: tf.reshape(tf.where(mf[:, None], {'xr + ' if accumulate else ''}"
                f"{_ORDERED}(mf, {vals}), xr), tf.shape(x)))(tf.reshape(x, [-1, m])))(x0, tf.reshape(x1, [-1]), "
                f"tf.reduce_prod(tf.shape(x0)[{k}:]))")
        return ctx.tf_op(expr, [r, m, ctx.ref(values)], r.dims, dtype=r.dtype)
    if r.ndim == 0 or any(i is None or i.dtype == torch.bool for i in indices):
        raise NotImplementedError("index_put with None or several boolean indices, or into a 0-d tensor")
    return _index_put(ctx, r, indices, values, accumulate)


def _index_put(ctx, r, indices, values, accumulate, flat=False):
    """index_put into ``r`` (or into the flattened ``r``, with the flattened indices and values)."""
    srcs = [r, ctx.cast(ctx.ref(values), r.dtype)] + [ctx.ref(i) for i in indices]
    valid = [v for v in (_valid(ctx, s) for s in srcs[2:]) if v is not None]
    f = (lambda e: f"tf.reshape({e}, [-1])") if flat else (lambda e: e)
    ok = " & ".join(f(f"x{len(srcs) + j}") for j in range(len(valid))) or _TRUE
    srcs += valid
    k = len(indices)
    idx = [f(f"tf.cast(x{2 + j}, tf.int64)") for j in range(k)]
    zero = "(" + " + ".join(f"{i} * 0" for i in idx) + ")"
    shp = "tf.shape(b, out_type=tf.int64)"
    u = (f"tf.reshape(tf.broadcast_to(tf.cast({f('x1')}, x.dtype), tf.concat([{shp}, s[{k}:]], 0)), "
         f"tf.concat([{shp}, [-1]], 0))")
    lin = f"{_LIN}(tf.stack([{', '.join(i + ' + b' for i in idx)}], -1), s[:{k}], {ok})"
    core = _flat("sum" if accumulate else "update", True, not r.dtype.is_floating_point)
    expr = (f"(lambda x: (lambda s, b: (lambda lo, m: {core}(x, {u}, lo[0][..., None] * m + tf.range(m), "
            f"lo[1][..., None]))({lin}, tf.reduce_prod(s[{k}:])))(tf.shape(x, out_type=tf.int64), {zero}))({f('x0')})")
    return ctx.tf_op(f"tf.reshape({expr}, tf.shape(x0))", srcs, r.dims, dtype=r.dtype)


@handles(torch.put, T.put, T.put_)
def put(ctx, x, index, source, accumulate=False):
    """``source`` written (or added) at the flat positions ``index`` of ``x``."""
    r = ctx.ref(x)
    _no_padding(r, "put")
    return _index_put(ctx, r, [index], source, accumulate, flat=True)


@handles(torch.take, T.take)
def take(ctx, x, index, flat_dims=None):
    """The entries of the flattened ``x`` at ``index`` (negative from the end; flattened to ``flat_dims``)."""
    r, idx = ctx.ref(x), ctx.ref(index)
    _no_padding(r, "take")
    expr = ("(lambda f, i, n: tf.gather(f, tf.clip_by_value(tf.where(i < 0, i + n, i), 0, n - 1)))("
            f"tf.reshape(x0, [-1]), tf.cast({'tf.reshape(x1, [-1])' if flat_dims else 'x1'}, tf.int64), "
            "tf.size(x0, out_type=tf.int64))")
    return ctx.tf_op(expr, [r, idx], flat_dims or idx.dims, dtype=r.dtype)


@handles(torch.masked_scatter, T.masked_scatter, T.masked_scatter_)
def masked_scatter(ctx, x, mask, source):
    """``x`` where ``mask`` is False, else ``source``'s elements in order."""
    r, m, s = ctx.ref(x), ctx.ref(mask), ctx.ref(source)
    for t in (r, m, s):
        _no_padding(t, "masked_scatter")
    n = len(ctx.out.shape)
    dims = [r.dims[k - n + r.ndim] if k - n + r.ndim >= 0 and r.shape[k - n + r.ndim] == ctx.out.shape[k] else
            m.dims[k - n + m.ndim] for k in range(n)]
    expr = (f"(lambda x, m, f: tf.reshape(tf.where(m, {_ORDERED}(m, f), tf.reshape(x, [-1])), tf.shape(x)))(*("
            "lambda s: (tf.broadcast_to(x0, s), tf.reshape(tf.broadcast_to(tf.cast(x1, tf.bool), s), [-1])))("
            "tf.broadcast_dynamic_shape(tf.shape(x0), tf.shape(x1))), tf.concat([tf.reshape(tf.cast(x2, x0.dtype), "
            "[-1]), tf.zeros([1], x0.dtype)], 0))")
    return ctx.tf_op(_static(expr, dims), [r, m, s], ctx.distinct(dims), dtype=r.dtype)


def _along(ax: int, x: str, i: str) -> str:
    """TF source: ``x`` gathered along axis ``ax`` at ``i`` (clipped into range; other axes broadcast)."""
    return (f"(lambda x, i: tf.experimental.numpy.take_along_axis(x, tf.clip_by_value(i, 0, tf.cast(tf.shape(x)[{ax}], "
            f"i.dtype) - 1), axis={ax}))({x}, {i})")


@handles(torch.take_along_dim, T.take_along_dim)
def take_along_dim(ctx, x, indices, dim=None, *, out=None):
    """Entries along ``dim`` at ``indices`` (broadcast with ``x`` on the other axes); of the flattened
    tensor without ``dim``."""
    r, idx = ctx.ref(x), ctx.ref(indices)
    if dim is None:
        _no_padding(idx, "take_along_dim without dim")
        return take(ctx, x, indices, [ctx.dims.static(int(ctx.out.shape[0]), f"{ctx.op_name}_dim")])
    ax = dim % r.ndim
    dims = [idx.dims[k] if k == ax or r.shape[k] != ctx.out.shape[k] else r.dims[k] for k in range(r.ndim)]
    dims = ctx.distinct(dims)
    return ctx.tf_op(_static(_along(ax, "x0", "tf.cast(x1, tf.int64)"), dims), [r, idx], dims, dtype=r.dtype)


# -- delegated: *_copy variants and in-place aliases ------------------------------------------------
_DELEGATE = {torch.view_copy: T.view, torch.permute_copy: torch.permute, torch.transpose_copy: torch.transpose,
             torch.t_copy: torch.t, torch.unsqueeze_copy: torch.unsqueeze, torch.squeeze_copy: torch.squeeze,
             torch.expand_copy: T.expand, torch.diagonal_copy: torch.diagonal, torch.unfold_copy: T.unfold,
             torch.select_copy: torch.select, torch.detach_copy: torch.detach, torch.alias_copy: torch.detach,
             torch.unbind_copy: torch.unbind, torch.split_copy: torch.split,
             torch.split_with_sizes_copy: torch.split_with_sizes, torch.narrow_copy: torch.narrow,
             T.narrow_copy: torch.narrow, T.tril_: torch.tril, T.triu_: torch.triu, T.swapaxes_: torch.swapaxes,
             T.swapdims_: torch.swapdims, T.cumsum_: torch.cumsum}


def _delegate(ctx, *args, implicit=False, **kwargs):
    """The handler of the op this one copies (or does in place), at call time, seeing that op as ``ctx.func``."""
    target = ctx.func = _DELEGATE[ctx.func]
    h = lookup(target) or (lookup(getattr(T, target.__name__, None)) if hasattr(T, target.__name__) else None)
    if h is None:
        raise NotImplementedError(f"{target.__name__} (which this op copies) has no handler")
    return h.fn(ctx, *args, **kwargs)


handles(*_DELEGATE)(_delegate)


@handles(torch.slice_copy)
def slice_copy(ctx, x, dim=0, start=None, end=None, step=1):
    """``x[..., start:end:step]`` along ``dim``."""
    return slice_ref(ctx, ctx.ref(x), dim % x.dim(), start, end, step)


# -- stacking ---------------------------------------------------------------------------------------
_ATLEAST = {torch.atleast_1d: 1, torch.atleast_2d: 2, torch.atleast_3d: 3}
_STACKS = {torch.hstack: 1, torch.vstack: 2, torch.row_stack: 2, torch.dstack: 3, torch.column_stack: 0}


def _atleast(ctx, r, n: int):
    """numpy's atleast_nd (n = 0: column_stack's column from a 0-d or 1-D tensor)."""
    if n == 0:
        return ctx.unsqueeze(_atleast(ctx, r, 1), 1) if r.ndim < 2 else r
    while r.ndim < min(n, 1 if r.ndim == 0 else 2):
        r = ctx.unsqueeze(r, 0)
    while r.ndim < n:
        r = ctx.unsqueeze(r, r.ndim if r.ndim == 2 else 0)
    return r


@handles(*_ATLEAST)
def atleast_nd(ctx, *tensors):
    """The tensor(s) with size-1 axes added up to 1, 2 or 3 axes."""
    ts = tensors[0] if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)) else tensors
    out = [_atleast(ctx, ctx.ref(t), _ATLEAST[ctx.func]) for t in ts]
    return out[0] if len(tensors) == 1 and isinstance(tensors[0], torch.Tensor) else tuple(out)


@handles(*_STACKS)
def hstack(ctx, tensors, *, out=None):
    """cat after atleast_nd: along axis 1 (hstack: axis 0 of 1-D tensors; column_stack), 0 (vstack), 2 (dstack)."""
    n = _STACKS[ctx.func]
    ax = {0: 1, 1: 0 if all(t.dim() <= 1 for t in tensors) else 1, 2: 0, 3: 2}[n]
    if all(t.dim() >= (n or 2) for t in tensors):
        return lookup(torch.cat).fn(ctx, tensors, ax)
    refs = [ctx.cast(_atleast(ctx, ctx.ref(t), n), ctx.out.dtype) for t in tensors]
    if any(r.dims[ax].is_batch_dim() for r in refs):
        raise NotImplementedError("stacking along the batch axis with tensors of fewer axes")
    return cat_refs(ctx, refs, ax) if len(refs) > 1 else refs[0]


def _static_out(ctx, tensors, what: str):
    refs = [ctx.cast(ctx.ref(t), ctx.out.dtype) for t in tensors]
    if any(d.is_dynamic() and not d.is_batch_dim() for r in refs for d in r.dims):
        raise NotImplementedError(f"{what} of a tensor with a dynamic axis")
    return refs, [ctx.dims.static(int(s), f"{ctx.op_name}_dim{i}") for i, s in enumerate(ctx.out.shape)]


@handles(torch.block_diag)
def block_diag(ctx, *tensors):
    """The tensors (as 2-D blocks) on the diagonal of a zero matrix (static sizes)."""
    refs, dims = _static_out(ctx, tensors, "block_diag")
    shapes = [tuple(t.shape) if t.dim() == 2 else (1, t.numel()) for t in tensors]
    total, left, parts = sum(c for _, c in shapes), 0, []
    for k, (rows, cols) in enumerate(shapes):
        parts.append(f"tf.pad(tf.reshape(x{k}, [{rows}, {cols}]), [[0, 0], [{left}, {total - left - cols}]])")
        left += cols
    return ctx.tf_op(f"tf.concat([{', '.join(parts)}], 0)", refs, dims)


@handles(torch.cartesian_prod)
def cartesian_prod(ctx, *tensors):
    """All combinations of the 1-D tensors' elements, one per row (static sizes)."""
    refs, dims = _static_out(ctx, tensors, "cartesian_prod")
    xs = ", ".join(f"x{k}" for k in range(len(refs)))
    return refs[0] if len(refs) == 1 else ctx.tf_op(
        _static(f"tf.stack([tf.reshape(g, [-1]) for g in tf.meshgrid({xs}, indexing='ij')], -1)", dims), refs, dims)


@handles(torch.rot90, T.rot90)
def rot90(ctx, x, k=1, dims=(0, 1)):
    """Rotate ``k`` times by 90 degrees in the plane ``dims``: the flip handler, then the two axes swapped."""
    a, b = (d % x.dim() for d in dims)
    k %= 4
    if k == 0:
        return ctx.ref(x)
    r = lookup(torch.flip).fn(ctx, x, [a, b] if k == 2 else [b] if k == 1 else [a])
    order = list(r.dims)
    order[a], order[b] = (order[a], order[b]) if k == 2 else (order[b], order[a])
    return ctx.transpose_to(r, order)


# -- cumulative -------------------------------------------------------------------------------------
def _cum_input(ctx, x, dim, neutral: float):
    r = ctx.cast(ctx.ref(x), (ctx.out[0] if isinstance(ctx.out, tuple) else ctx.out).dtype)
    ax = dim % max(r.ndim, 1)
    if r.ndim and r.dims[ax].is_dynamic() and not r.dims[ax].is_batch_dim():  # neutral padding: no NaN leaks back
        r = mask_padding(ctx, r, r.dims[ax], neutral)
    return r, ax


_CUM = {torch.cumprod: ("cumprod", 1.0), T.cumprod: ("cumprod", 1.0), T.cumprod_: ("cumprod", 1.0),
        torch.logcumsumexp: ("cumulative_logsumexp", float("-inf")),
        T.logcumsumexp: ("cumulative_logsumexp", float("-inf"))}


@handles(*_CUM)
def cumulative(ctx, x, dim, *, dtype=None, out=None):
    """Running product (cumprod) or log-sum-exp (logcumsumexp) along ``dim``."""
    fn, neutral = _CUM[ctx.func]
    r, ax = _cum_input(ctx, x, dim, neutral)
    return r if r.ndim == 0 else ctx.tf_op(f"tf.math.{fn}(x0, axis={ax})", [r], r.dims)


@handles(torch.cummax, T.cummax, torch.cummin, T.cummin)
def cummax(ctx, x, dim, *, out=None):
    """Running max (cummax) or min (cummin) along ``dim`` and the index where it was last reached (a NaN
    stays); the values are read at the indices, so the gradient goes there, as in torch."""
    largest = ctx.func.__name__ == "cummax"
    r, ax = _cum_input(ctx, x, dim, float("-inf") if largest else float("inf"))
    if r.ndim == 0:
        return r, ctx.eval("tf.zeros_like(source(0), dtype=tf.int64)", [r], r.dims, dtype=torch.int64)
    perm = [ax] + [a for a in range(r.ndim) if a != ax]
    nan = " | tf.math.is_nan(e[0])" if r.dtype.is_floating_point else ""
    start = f"float('{'-' if largest else ''}inf')" if r.dtype.is_floating_point else \
        f"xt.dtype.{'min' if largest else 'max'}"
    step = (f"lambda a, e: (lambda c: (tf.where(c, e[0], a[0]), tf.where(c, e[1], a[1])))("
            f"(e[0] {'>=' if largest else '<='} a[0]){nan})")
    idx = ctx.tf_op(f"(lambda xt: tf.transpose(tf.scan({step}, (xt, tf.range(tf.shape(xt, out_type=tf.int64)[0])), "
                    f"(tf.fill(tf.shape(xt)[1:], tf.cast({start}, xt.dtype)), tf.zeros(tf.shape(xt)[1:], tf.int64))"
                    f")[1], {[perm.index(a) for a in range(r.ndim)]}))(tf.stop_gradient(tf.transpose(x0, {perm})))",
                    [r], r.dims, dtype=torch.int64)
    return ctx.tf_op(_along(ax, "x0", "x1"), [r, idx], r.dims, dtype=r.dtype), idx


# -- reductions -------------------------------------------------------------------------------------
def _axes(r, dim) -> list[int]:
    if dim is None or (isinstance(dim, (list, tuple)) and len(dim) == 0) or r.ndim == 0:
        return list(range(r.ndim))
    return sorted({int(d) % r.ndim for d in ([dim] if isinstance(dim, int) else dim)})


@handles(torch.nansum, T.nansum, torch.nanmean, T.nanmean)
def nansum(ctx, x, dim=None, keepdim=False, *, dtype=None, out=None):
    """Sum (nansum) or mean (nanmean) of the non-NaN elements (masked over a dynamic axis)."""
    r = ctx.cast(ctx.ref(x), ctx.out.dtype)
    axes = _axes(r, dim)
    if not r.dtype.is_floating_point:
        return ctx.cast(reduce_ref(ctx, r, "sum", axes, keepdim), ctx.out.dtype)
    z = ctx.eval("tf.where(tf.math.is_nan(source(0)), tf.zeros_like(source(0)), source(0))", [r], r.dims)
    s = reduce_ref(ctx, z, "sum", axes, keepdim)
    if ctx.func in (torch.nansum, T.nansum):
        return s
    n = ctx.eval("tf.cast(tf.logical_not(tf.math.is_nan(source(0))), source(0).dtype)", [r], r.dims)
    return ctx.eval("source(0) / source(1)", [s, reduce_ref(ctx, n, "sum", axes, keepdim)], s.dims)


@handles(torch.count_nonzero, T.count_nonzero)
def count_nonzero(ctx, x, dim=None):
    """The number of non-zero elements (over ``dim``)."""
    r = ctx.ref(x)
    nz = ctx.eval("tf.cast(tf.not_equal(source(0), tf.zeros_like(source(0))), tf.int64)", [r], r.dims,
                  dtype=torch.int64)
    return reduce_ref(ctx, nz, "sum", _axes(r, dim), False, dtype=torch.int64)


@handles(torch.var_mean, torch.std_mean)
def var_mean(ctx, x, dim=None, unbiased=None, keepdim=False, *, correction=None, out=None):
    """(var or std, mean) over ``dim``: the var/std handler and a mean."""
    dim, unbiased = (None, dim) if isinstance(dim, bool) else (dim, unbiased)
    stat = lookup(torch.var if ctx.func is torch.var_mean else torch.std).fn(ctx, x, dim, unbiased, keepdim,
                                                                              correction=correction)
    r = ctx.ref(x)
    return stat, reduce_ref(ctx, r, "mean", _axes(r, dim), keepdim)


@handles(torch.aminmax, T.aminmax)
def aminmax(ctx, x, *, dim=None, keepdim=False, out=None):
    """(min, max) over ``dim`` (all axes without it)."""
    r = ctx.ref(x)
    axes = _axes(r, dim)
    return reduce_ref(ctx, r, "min", axes, keepdim, dtype=r.dtype), reduce_ref(ctx, r, "max", axes, keepdim,
                                                                                dtype=r.dtype)
