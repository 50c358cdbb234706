"""Order statistics and searching: kthvalue, median, nanmedian, mode, quantile, nanquantile,
searchsorted, bucketize, and unique / unique_consecutive where their size is static.

The statistics move the reduced axis last and order each row stably by (valid non-NaN values
ascending, then NaN, then padding), so along a dynamic axis only each sequence's valid frames
count: the selected position (median, quantile ranks) is computed from each row's count of valid
(non-NaN) frames. The values are gathered from the input at the selected indices (gradients go to
the selected elements, as torch's).

Ties: torch's CPU kthvalue/median/mode pick among equal values by a quickselect or an unstable sort;
here the first of the equal values in the stable order is taken (mode: the last occurrence of the
smallest most frequent value). Values agree always, indices only where the values are distinct.
"""

from __future__ import annotations

import torch

from .._backend import tf_dtype
from ..sizes import DimInt
from .common import T, lit
from .registry import handles

_INTERPOLATIONS = ("linear", "lower", "higher", "midpoint", "nearest")


# -- building blocks (TF code on x: values [rows..., n], v: valid [rows..., n]) ----------------------
def _valid(ctx, r, ax):
    """A float mask (1 valid, 0 padding) over the padded dynamic axes reduced over (``ax`` None: all),
    or None if nothing is padded there (built from the lengths: also for an empty batch)."""
    if not any(d.is_batch_dim() for d in r.dims):
        return None
    dyn = [i for i, d in enumerate(r.dims) if (ax is None or i == ax) and d.is_dynamic() and not d.is_batch_dim()]
    if not dyn:
        return None
    inputs, terms = [r], []
    for i in dyn:
        lens = ctx.size_ref(r.dims[i], r.dims)
        rng = f"tf.reshape(tf.range(tf.shape(x0)[{i}]), {[-1 if j == i else 1 for j in range(r.ndim)]})"
        terms.append(f"({rng} < {_bcast(f'x{len(inputs)}', lens.dims, r.dims)})")
        inputs.append(lens)
    return ctx.tf_op(f"tf.cast({' & '.join(terms)} & tf.ones_like(x0, dtype=tf.bool), tf.float32)", inputs, r.dims,
                     dtype=torch.float32)


def _bcast(code: str, dims, target) -> str:
    """TF code: ``code`` (a tensor of ``dims``, all among ``target``) broadcastable onto ``target``."""
    at = [next(i for i, d in enumerate(target) if d is x or d == x) for x in dims]
    if at != sorted(at):
        code = f"tf.transpose({code}, {sorted(range(len(at)), key=lambda i: at[i])})"
    for i in range(len(target)):
        if i not in at:
            code = f"tf.expand_dims({code}, {i})"
    return code


def _rows_last(r, ax, name: str) -> str:
    """TF code: the input ``name`` with the axis ``ax`` moved last (``ax`` None or a 0-d input: flat)."""
    if ax is None or r.ndim == 0:
        return f"tf.reshape({name}, [-1])"
    perm = [a for a in range(r.ndim) if a != ax] + [ax]
    return f"tf.transpose({name}, {perm})" if perm != list(range(r.ndim)) else name


def _nans(floating: bool) -> str:
    return "tf.math.is_nan(x)" if floating else "tf.zeros_like(x, dtype=tf.bool)"


def _order(floating: bool, rank: int) -> str:
    """TF code: the stable order of each row: valid non-NaN ascending, then valid NaN, then padding."""
    key = "tf.where(tf.math.is_nan(x), tf.constant(float('inf'), x.dtype), x)" if floating else "x"
    cls = f"tf.where(v, tf.cast({_nans(floating)}, tf.int32), 2)"
    return (f"(lambda p: tf.gather(p, tf.argsort(tf.gather({cls}, p, batch_dims={rank}), stable=True), "
            f"batch_dims={rank}))(tf.argsort({key}, stable=True))")


def _counts(floating: bool) -> tuple[str, str]:
    """TF code: per row the count of valid frames, and of valid non-NaN frames."""
    return ("tf.reduce_sum(tf.cast(v, tf.int32), -1)",
            f"tf.reduce_sum(tf.cast(v & ~{_nans(floating)}, tf.int32), -1)")


def _rows_code(ctx, r, ax, body: str, extra=()) -> tuple[str, list]:
    """``body`` (TF code on ``x``, ``v`` and the ``extra`` inputs as ``e0``, ...) applied to ``r`` with
    ``ax`` moved last; and the eval inputs."""
    m = _valid(ctx, r, ax)
    inputs = [r] + ([m] if m is not None else [])
    v = f"{_rows_last(r, ax, 'x1')} > 0.5" if m is not None else "tf.ones_like(x, dtype=tf.bool)"
    code = f"(lambda x: (lambda v: {body})({v}))({_rows_last(r, ax, 'x0')})"
    if extra:
        es = ", ".join(f"e{i}" for i in range(len(extra)))
        code = f"(lambda {es}: {code})({', '.join(f'x{i + len(inputs)}' for i in range(len(extra)))})"
    return code, inputs + list(extra)


def _prepare(ctx, x, dim):
    r = ctx.ref(x)
    ax = None if dim is None else (int(dim) % r.ndim if r.ndim else 0)
    rows = [] if ax is None else [d for i, d in enumerate(r.dims) if i != ax]
    return r, ax, rows


def _per_row(ctx, size, rows):
    """A dynamic size (DimInt) as each sequence's value: its lengths layer and TF code (``e0``) that
    broadcasts it onto the row axes ``rows``."""
    if size.dim is None:
        raise NotImplementedError(f"a size ({size.lin}) that is no dim of the network")
    lens = ctx.size_ref(size.dim, rows)
    return lens, _bcast("e0", lens.dims, rows)


def _select(ctx, x, dim, keepdim, pos: str, k=None):
    """Values and indices (int64) of the element at position ``pos`` (TF code on ``x``, ``v`` (and
    ``k``: the per-row value of the dynamic size ``k``) giving a per-row int32 position) of each row's
    order along ``dim`` (None: over all values, flat index)."""
    r, ax, rows = _prepare(ctx, x, dim)
    fl = r.dtype.is_floating_point
    rank = len(rows) if ax is not None else 0
    idx_code = f"tf.cast(tf.gather({_order(fl, rank)}, tf.expand_dims({pos}, -1), batch_dims={rank})[..., 0], tf.int64)"
    extra = ()
    if k is not None:
        lens, k_code = _per_row(ctx, k, rows)
        extra, idx_code = (lens,), f"(lambda k: {idx_code})(tf.broadcast_to({k_code}, tf.shape(x)[:-1]))"
    code, inputs = _rows_code(ctx, r, ax, idx_code, extra)
    idx = ctx.tf_op(code, inputs, rows, dtype=torch.int64)
    values = ctx.tf_op(f"tf.gather({_rows_last(r, ax, 'x0')}, tf.expand_dims(x1, -1), batch_dims={rank})[..., 0]",
                       [r, idx], rows, dtype=r.dtype)
    if keepdim and ax is not None and r.ndim:
        values, idx = ctx.unsqueeze(values, ax), ctx.unsqueeze(idx, ax)
    return values, idx


# -- handlers ---------------------------------------------------------------------------------------
@handles(torch.kthvalue, T.kthvalue)
def kthvalue(ctx, x, k, dim=-1, keepdim=False, *, out=None):
    """The ``k``-th smallest value along ``dim`` and its index (NaN counts as largest); a ``k`` computed
    from a dynamic size (``x.size(1) // 2``) is each sequence's own."""
    if isinstance(k, DimInt) and (k.dim is None or k.dim.is_dynamic()):
        return _select(ctx, x, dim, keepdim, "tf.cast(k, tf.int32) - 1", k=k)
    return _select(ctx, x, dim, keepdim, f"tf.fill(tf.shape(x)[:-1], {lit(int(k))} - 1)")


@handles(torch.median, T.median)
def median(ctx, x, dim=None, keepdim=False, *, out=None):
    """The lower median (of all values, or values and indices along ``dim``); NaN if a NaN is there."""
    nv, nn = _counts(ctx.ref(x).dtype.is_floating_point)
    res = _select(ctx, x, dim, keepdim, f"tf.where({nn} < {nv}, {nn}, tf.maximum({nv} - 1, 0) // 2)")
    return res[0] if dim is None else res


@handles(torch.nanmedian, T.nanmedian)
def nanmedian(ctx, x, dim=None, keepdim=False, *, out=None):
    """The lower median of the non-NaN values (NaN where all are NaN)."""
    _, nn = _counts(ctx.ref(x).dtype.is_floating_point)
    res = _select(ctx, x, dim, keepdim, f"tf.maximum({nn} - 1, 0) // 2")
    return res[0] if dim is None else res


@handles(torch.mode, T.mode)
def mode(ctx, x, dim=-1, keepdim=False):
    """The most frequent value along ``dim`` (the smallest of equally frequent ones) and the index of
    its last occurrence (pairwise comparison: O(n^2) memory per row). Rows with NaN follow no torch
    rule (torch's own result there depends on its sort)."""
    cnt = ("tf.where(v, tf.reduce_sum(tf.cast(tf.equal(x[..., :, None], x[..., None, :]) & v[..., None, :], "
           "tf.int32), -1), -1)")
    cand = f"(lambda c: tf.equal(c, tf.reduce_max(c, -1, keepdims=True)))({cnt})"
    some = "tf.gather(x, tf.argmax(tf.cast(m, tf.int32), -1, output_type=tf.int32)[..., None], batch_dims=r)"
    best = f"m & tf.equal(x, tf.reduce_min(tf.where(m, x, {some}), -1, keepdims=True))"
    last = "tf.reduce_max(tf.where(b, tf.range(tf.shape(x)[-1]), 0), -1)"  # (0 for a row of NaN)
    r, ax, rows = _prepare(ctx, x, dim)
    pos = f"(lambda m, r: (lambda b: {last})({best}))({cand}, {len(rows)})"
    code, inputs = _rows_code(ctx, r, ax, f"tf.cast({pos}, tf.int64)")
    idx = ctx.tf_op(code, inputs, rows, dtype=torch.int64)
    values = ctx.tf_op(f"tf.gather({_rows_last(r, ax, 'x0')}, tf.expand_dims(x1, -1), batch_dims={len(rows)})[..., 0]",
                       [r, idx], rows, dtype=r.dtype)
    if keepdim and r.ndim:
        values, idx = ctx.unsqueeze(values, ax), ctx.unsqueeze(idx, ax)
    return values, idx


@handles(torch.quantile, T.quantile, torch.nanquantile, T.nanquantile)
def quantile(ctx, x, q, dim=None, keepdim=False, *, interpolation="linear", out=None):
    """Quantiles ``q`` along ``dim`` (None: of all values), as torch: ranks q * (n - 1) into the sorted
    valid values, interpolated; quantile gives NaN for rows with a NaN, nanquantile skips NaNs."""
    if interpolation not in _INTERPOLATIONS:
        raise NotImplementedError(f"quantile interpolation {interpolation!r}")
    r, ax, rows = _prepare(ctx, x, dim)
    rank = len(rows) if ax is not None else 0
    nv, nn = _counts(True)
    nan_q = ctx.func in (torch.nanquantile, T.nanquantile)
    extra, q_dims = [], []
    if isinstance(q, torch.Tensor):
        qr = ctx.ref(q)
        extra, q_dims = [qr], list(qr.dims)
        if qr.ndim > 1:
            raise NotImplementedError("quantile with a q of more than one axis")
        qs = "tf.reshape(tf.cast(e0, x.dtype), [-1])"
    else:
        qs = f"tf.constant([{lit(float(q))}], x.dtype)"
    ranks = f"tf.maximum({qs} * tf.cast({nn if nan_q else nv} - 1, x.dtype)[..., None], 0)"
    if not nan_q:  # a row with a NaN: its last valid position (a NaN)
        ranks = f"tf.where(({nn} < {nv})[..., None], tf.cast({nv} - 1, x.dtype)[..., None], {ranks})"
    ranks = {"lower": f"tf.floor({ranks})", "higher": f"tf.math.ceil({ranks})",
             "nearest": f"tf.round({ranks})"}.get(interpolation, ranks)
    take = f"tf.gather(s, tf.cast({{}}, tf.int32), batch_dims={rank})"
    out = take.format("k")
    if interpolation in ("linear", "midpoint"):
        w = "tf.fill(tf.shape(k), tf.constant(0.5, x.dtype))" if interpolation == "midpoint" else "k - tf.floor(k)"
        out = (f"(lambda a, b, w: tf.where(w < 0.5, a + w * (b - a), b - (b - a) * (1 - w)))"
               f"({take.format('k')}, {take.format('tf.math.ceil(k)')}, {w})")
    body = (f"(lambda s, k: {out})(tf.gather(x, {_order(True, rank)}, batch_dims={rank}), {ranks})")
    body = f"tf.transpose({body}, {[rank] + list(range(rank))})" if q_dims else f"({body})[..., 0]"
    code, inputs = _rows_code(ctx, r, ax, body, extra)
    y = ctx.tf_op(code, inputs, q_dims + rows, dtype=r.dtype)
    if keepdim:
        for i in range(r.ndim) if ax is None else [ax] if r.ndim else []:
            y = ctx.unsqueeze(y, len(q_dims) + i)
    return y


# -- searching ---------------------------------------------------------------------------------------
_FLAT2 = "(lambda t: tf.reshape(t, tf.stack([tf.reduce_prod(tf.shape(t)[:-1]), tf.shape(t)[-1]])))"


def _ref(ctx, t):
    """``ctx.ref``, but an empty plain tensor as a filled layer (an empty constant of several axes would
    be written to the config with the wrong shape)."""
    if isinstance(t, torch.Tensor) and not ctx.is_captured(t) and t.numel() == 0:
        return ctx.fill([ctx.dims.static(n, f"{ctx.op_name}_empty{i}") for i, n in enumerate(t.shape)], 0, t.dtype)
    return ctx.ref(t)


def _search(ctx, seq, values, right: bool, out_int32: bool, sorter=None):
    """Insertion positions of ``values`` into the last axis of ``seq`` (1-D, or with the leading axes
    of ``values``): tf.searchsorted; over a padded dynamic axis the padding is the highest value (+inf)
    and the positions are capped at each sequence's length."""
    s = _ref(ctx, seq)
    dtype = torch.result_type(seq, values)
    scalar = not isinstance(values, torch.Tensor)
    v = None if scalar else _ref(ctx, values)
    out_dims = [] if scalar else list(v.dims)
    d = s.dims[-1] if s.ndim else None
    padded = d is not None and d.is_dynamic() and not d.is_batch_dim() and any(x.is_batch_dim() for x in s.dims)
    if padded and sorter is not None:
        raise NotImplementedError("searchsorted with a sorter over a padded dynamic axis (the padding cannot be "
                                  "kept last)")
    inputs = [s]
    names = {"s": "x0"}
    for key, extra in (("v", v), ("sorter", None if sorter is None else _ref(ctx, sorter)),
                       ("m", _valid(ctx, s, s.ndim - 1) if padded else None)):
        if extra is not None:
            names[key] = f"x{len(inputs)}"
            inputs.append(extra)
    tfd = repr(tf_dtype(dtype))
    sv = f"tf.cast({names['s']}, {tfd})"
    if "m" in names:  # the padding as the highest value: last in each row
        high = "float('inf')" if dtype.is_floating_point else f"tf.as_dtype({tfd}).max"
        sv = f"tf.where({names['m']} > 0.5, {sv}, tf.constant({high}, {tfd}))"
    if "sorter" in names:
        sv = f"tf.gather({sv}, {names['sorter']}, batch_dims={s.ndim - 1})"
    vv = f"tf.cast({names['v']}, {tfd})" if not scalar else f"tf.constant({lit(values)}, {tfd})"
    side = "'right'" if right else "'left'"
    out_t = "tf.int32" if out_int32 else "tf.int64"
    if s.ndim <= 1:
        found = f"tf.searchsorted(tf.reshape({sv}, [1, -1]), tf.reshape(v, [1, -1]), side={side}, out_type={out_t})"
    else:
        found = f"tf.searchsorted({_FLAT2}({sv}), {_FLAT2}(v), side={side}, out_type={out_t})"
    if "m" in names:  # a value as high as the padding (+inf, NaN) would land in it
        found = f"tf.minimum({found}, {_FLAT2}(tf.cast(tf.reduce_sum({names['m']}, -1, keepdims=True), {out_t})))"
    found = f"tf.reshape({found}, tf.shape(v))"
    return ctx.tf_op(f"(lambda v: {found})({vv})", inputs, out_dims, dtype=torch.int32 if out_int32 else torch.int64)


@handles(torch.searchsorted)
def searchsorted(ctx, sorted_sequence, values, *, out_int32=False, right=False, side=None, sorter=None, out=None):
    """Indices where ``values`` would be inserted into ``sorted_sequence`` (``right``/``side``, ``sorter``)."""
    return _search(ctx, sorted_sequence, values, bool(right) or side == "right", out_int32, sorter)


@handles(torch.bucketize)
def bucketize(ctx, input, boundaries, *, out_int32=False, right=False, out=None):
    """The bucket of each value among the 1-D ``boundaries`` (searchsorted of the values)."""
    return _search(ctx, boundaries, input, bool(right), out_int32)


# -- unique -------------------------------------------------------------------------------------------
def _unique_static(ctx, x, return_inverse, return_counts, dim):
    """unique / unique_consecutive where the output size is static: at most one element (``dim``
    None) or one slice along ``dim``, so the result is the input itself."""
    r = ctx.ref(x)
    ax = None if dim is None else int(dim) % max(r.ndim, 1)
    over = list(r.dims) if ax is None else [r.dims[ax]] if r.ndim else []
    if any(d.is_dynamic() for d in over) or (ax is None and x.numel() > 1) or \
            (ax is not None and r.ndim and r.shape[ax] > 1):
        raise NotImplementedError("the number of distinct values depends on the data (an output "
                                  "size that is not static); only inputs of at most one element (or slice) convert")
    if ax is None:
        nd = ctx.new_dim(x.numel())
        values = ctx.tf_op("tf.reshape(x0, [-1])", [r], [nd], dtype=r.dtype)
        inverse = ctx.fill(list(r.dims), 0, torch.int64)
    else:
        nd = r.dims[ax] if r.ndim else ctx.new_dim(1)
        values, inverse = r, ctx.fill([nd], 0, torch.int64)
    out = [values] + ([inverse] if return_inverse else []) + ([ctx.fill([nd], 1, torch.int64)] if return_counts else [])
    return out[0] if len(out) == 1 else tuple(out)


@handles(torch.unique, T.unique)
def unique(ctx, x, sorted=True, return_inverse=False, return_counts=False, dim=None):
    """Distinct values (only where the output size is static, see :func:`_unique_static`)."""
    return _unique_static(ctx, x, return_inverse, return_counts, dim)


@handles(torch.unique_consecutive, T.unique_consecutive)
def unique_consecutive(ctx, x, return_inverse=False, return_counts=False, dim=None):
    """Runs of equal values collapsed (only where the output size is static, see :func:`_unique_static`)."""
    return _unique_static(ctx, x, return_inverse, return_counts, dim)
