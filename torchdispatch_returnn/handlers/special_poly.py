"""Orthogonal polynomials of ``torch.special`` (Chebyshev T/U/V/W and their shifted forms, Hermite H/He,
Laguerre L, Legendre P: torch's own recurrences, closed forms and special cases, in one ``tf.while_loop``
over the largest degree; no gradients, as in torch), the native norm ops with their statistics outputs
(native_layer_norm, native_group_norm, native_batch_norm, _native_batch_norm_legit), F.rms_norm,
F.local_response_norm, renorm, F.bilinear, F.pdist, dist, and small elementwise ops: addcmul,
addcdiv, isclose, isin, frexp, isreal, isposinf/isneginf, positive, resolve_neg.

Reductions over a dynamic axis use only each sequence's valid frames (``reduce_ref``); where
padding would enter a window (local_response_norm over a dynamic channel axis) it is zeroed
first, as torch's own zero padding at the sequence end.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._backend import tf_dtype
from ..tensor import Ref
from .common import SAFE_SQRT, T, apply, lit, mask_padding, reduce_ref
from .norm import _affine
from .registry import handles

S = torch.special

# -- orthogonal polynomials --------------------------------------------------------------------------
# each: (special cases in order [(condition, value)], closed form (condition, value) or None, first term,
# recurrence step).  Names: x, n (int64 degree), m (degree as float), ev (n even), o (ones), y (2x - 1),
# in a step also p, q (the two previous terms) and k (the step number, 1-based, as float).
_ABS1 = "tf.equal(tf.abs(x), 1)"
_PM = "tf.where(ev, {0}, -{0})"
_U_CLOSED = ("tf.where(tf.not_equal(tf.sin(tf.acos({y})), 0), tf.sin((m + 1) * tf.acos({y})) / tf.sin(tf.acos({y})), "
             "(m + 1) * tf.cos((m + 1) * tf.acos({y})) / {y})")
_V_CLOSED = ("tf.where(tf.not_equal(tf.sin(tf.acos({y}) / 2), 1), tf.cos((m + 0.5) * tf.acos({y})) / "
             "tf.cos(tf.acos({y}) / 2), {alt})")
_W_CLOSED = ("tf.where(tf.not_equal(tf.cos(tf.acos({y}) / 2), 1), tf.sin((m + 0.5) * tf.acos({y})) / "
             "tf.sin(tf.acos({y}) / 2), {alt})")
_CHEB = "(x + x) * q - p"
_SCHEB = "(y + y) * q - p"
_W_AT1 = "tf.where(x > 0, m + m + 1, %s)" % _PM.format("o")
_V_AT1 = "tf.where(x > 0, o, %s)" % _PM.format("(m + m + 1)")
_NAN = "tf.fill(tf.shape(x), tf.constant(float('nan'), x.dtype))"

_POLY = {
    S.chebyshev_polynomial_t: ([(_ABS1, "tf.where((x > 0) | ev, o, -o)")],
                               ("(n > 6) & (tf.abs(x) < 1)", "tf.cos(m * tf.acos(x))"), "x", _CHEB),
    S.chebyshev_polynomial_u: ([(_ABS1, "tf.where((x > 0) | ev, m + 1, -(m + 1))")],
                               ("(n > 8) & (tf.abs(x) < 1)", _U_CLOSED.format(y="x")), "x + x", _CHEB),
    S.chebyshev_polynomial_v: ([(_ABS1, _V_AT1)],
                               ("(n > 8) & (tf.abs(x) < 1)", _V_CLOSED.format(y="x", alt=_PM.format("(m + m + 1)"))),
                               "x + x - 1", _CHEB),
    S.chebyshev_polynomial_w: ([(_ABS1, _W_AT1)], ("(n > 8) & (tf.abs(x) < 1)", _W_CLOSED.format(y="x", alt=_W_AT1)),
                               "x + x + 1", _CHEB),
    S.shifted_chebyshev_polynomial_t: ([("tf.equal(x, 1)", "o"), ("tf.equal(x, 0)", _PM.format("o"))],
                                       ("(n > 6) & (tf.abs(y) < 1)", "tf.cos(m * tf.acos(y))"), "y", _SCHEB),
    S.shifted_chebyshev_polynomial_u: ([("tf.equal(x, 1)", "m + 1"), ("tf.equal(x, 0)", _PM.format("(m + 1)"))],
                                       ("(n > 6) & (tf.abs(y) < 1)", _U_CLOSED.format(y="y")), "y + y", _SCHEB),
    S.shifted_chebyshev_polynomial_v: ([("tf.equal(x, 1)", "o"), ("tf.equal(x, 0)", _PM.format("(m + m + 1)"))],
                                       ("(n > 6) & (tf.abs(y) < 1)",
                                        _V_CLOSED.format(y="y", alt=_PM.format("(m + m + 1)"))), "y + y - 1", _SCHEB),
    S.shifted_chebyshev_polynomial_w: ([("tf.equal(x, 1)", "m + m + 1"), ("tf.equal(x, 0)", _PM.format("o"))],
                                       ("(n > 4) & (tf.abs(y) < 1)", _W_CLOSED.format(y="y", alt=_PM.format("o"))),
                                       "y + y + 1", _SCHEB),
    S.hermite_polynomial_h: ([("n > {limit}", _NAN)], None, "x + x", "(x + x) * q - (k + k) * p"),
    S.hermite_polynomial_he: ([("n > {limit}", _NAN)], None, "x", "x * q - k * p"),
    S.laguerre_polynomial_l: ([("tf.equal(x, 0)", "o")], None, "1 - x", "(((k + k) + (1 - x)) * q - k * p) / (k + 1)"),
    S.legendre_polynomial_p: ([(_ABS1, "tf.where((x > 0) | ev, o, -o)")], None, "x",
                              "((k + k + 1) * x * q - k * p) / (k + 1)"),
}


def poly_expr(func, dtype: torch.dtype) -> str:
    """The TF expression of ``func`` in ``x`` and ``n`` (int64), as torch computes it element by element:
    0 for n < 0, the special cases, the closed form, 1 for n = 0, else the recurrence run for n - 1 steps
    (one while_loop for all elements, as long as the largest degree that needs it)."""
    specials, closed, q1, step = _POLY[func]
    limit = 128 if dtype == torch.float32 else 512 if dtype == torch.float64 else 1024
    conds = [c.format(limit=limit) for c, _ in specials] + ([closed[0]] if closed else [])
    vals = [v for _, v in specials] + ([closed[1]] if closed else [])
    loop = ("(lambda a: (lambda s: tf.while_loop(lambda j, p, q: (j < s) & tf.reduce_any(a & (j < n) & "
            "tf.logical_not(tf.math.is_nan(q))), lambda j, p, q: (lambda k, u: (j + 1, tf.where(u, q, p), "
            f"tf.where(u, {step}, q)))(tf.cast(j, x.dtype), a & (j < n)), (tf.constant(1, tf.int64), o, {q1}))[2])"
            "(tf.reduce_max(tf.where(a, n, tf.zeros_like(n)))))"
            f"(tf.logical_not({' | '.join(f'({c})' for c in conds)}) & (n >= 2))")
    body = f"tf.where(tf.equal(n, 0), o, {loop})"
    for c, v in reversed(list(zip(conds, vals))):
        body = f"tf.where({c}, {v}, {body})"
    body = f"tf.where(n < 0, tf.zeros_like(x), {body})"
    return (f"(lambda x, n: (lambda m, ev, o, y: tf.stop_gradient({body}))(tf.cast(n, x.dtype), "
            "tf.equal(tf.math.floormod(n, 2), 0), tf.ones_like(x), x + x - 1))")


def fixed_broadcast(ctx, *xs):
    """Refuse a dynamic axis of size 1 at capture broadcast against a fixed size (torch fails at other lengths)."""
    shapes = [tuple(x.shape) for x in xs if isinstance(x, torch.Tensor)]
    for r in [ctx.ref(x) for x in xs if ctx.is_captured(x)]:
        if any(d.is_dynamic() and r.shape[k] == 1 and max(s[k - r.ndim] for s in shapes if len(s) >= r.ndim - k) != 1
               for k, d in enumerate(r.dims)):
            raise NotImplementedError("a dynamic axis of size 1 broadcast against a fixed size")


def _poly(ctx, input, n, *, out=None):
    fixed_broadcast(ctx, input, n)
    dtype = ctx.out.dtype
    if not dtype.is_floating_point:
        raise NotImplementedError(f"{ctx.op_name} with a result of dtype {dtype}")
    n_dtype = n.dtype if isinstance(n, torch.Tensor) else (torch.int64 if isinstance(n, int) else dtype)
    items, dims = ctx.broadcast(input, n, dtype=[dtype, n_dtype])
    refs, args = [], []
    for it, dt in zip(items, (dtype, n_dtype)):
        if isinstance(it, Ref):
            args.append(f"source({len(refs)})")
            refs.append(it)
        else:
            args.append(f"tf.constant({lit(it)}, {tf_dtype(dt)!r})")
    nn = args[1]
    if n_dtype.is_floating_point:  # torch casts n to int64: NaN, inf and values beyond it give a negative degree
        nn = (f"(lambda v: tf.where(tf.math.is_finite(v) & (tf.abs(v) < 2.0 ** 62), v, -tf.ones_like(v)))"
              f"({nn})")
    shape = f"tf.broadcast_dynamic_shape(tf.shape({args[0]}), tf.shape({args[1]}))"
    expr = (f"{poly_expr(ctx.func, dtype)}(tf.broadcast_to({args[0]}, {shape}), "
            f"tf.broadcast_to(tf.cast({nn}, tf.int64), {shape}))")
    return ctx.eval(expr, refs, dims, dtype=dtype)


for _f in _POLY:
    handles(_f)(_poly)


# -- small elementwise ops ------------------------------------------------------------------------------
@handles(torch.addcmul, T.addcmul, T.addcmul_, torch.addcdiv, T.addcdiv, T.addcdiv_)
def addcmul_addcdiv(ctx, input, tensor1, tensor2, *, value=1, out=None):
    """input + value * tensor1 * tensor2 (addcmul) or input + value * tensor1 / tensor2 (addcdiv)."""
    op = "*" if ctx.func in (torch.addcmul, T.addcmul, T.addcmul_) else "/"
    return apply(ctx, f"{{0}} + {{3}} * ({{1}} {op} {{2}})", input, tensor1, tensor2, value)


@handles(torch.positive, T.positive, torch.resolve_neg, T.resolve_neg)
def identity(ctx, x):
    """The tensor itself (+x; a negative-bit view resolved)."""
    return ctx.ref(x)


@handles(torch.isreal, T.isreal)
def isreal(ctx, x):
    """True where the imaginary part is 0 (everywhere for real tensors)."""
    fmt = "tf.equal(tf.math.imag({0}), 0)" if x.dtype.is_complex else "tf.ones_like({0}, dtype=tf.bool)"
    return apply(ctx, fmt, x, dtype=x.dtype)


@handles(torch.isposinf, T.isposinf, torch.isneginf, T.isneginf)
def isposneginf(ctx, x, *, out=None):
    """x == +inf (isposinf) or x == -inf (isneginf)."""
    if not x.dtype.is_floating_point:
        return apply(ctx, "tf.zeros_like({0}, dtype=tf.bool)", x, dtype=x.dtype)
    sign = "" if ctx.func in (torch.isposinf, T.isposinf) else "-"
    return apply(ctx, f"tf.equal({{0}}, {sign}float('inf'))", x, dtype=x.dtype)


@handles(torch.isclose, T.isclose)
def isclose(ctx, input, other, rtol=1e-05, atol=1e-08, equal_nan=False):
    """|a - b| <= atol + |rtol * b| (finite), or a == b; NaN == NaN with ``equal_nan``."""
    dtype = torch.result_type(input, other)
    fixed_broadcast(ctx, input, other)
    if dtype == torch.bool:
        return apply(ctx, "tf.equal({0}, {1})", input, other, dtype=dtype)
    if not dtype.is_floating_point:
        dtype = torch.float64
    nan = " | (tf.math.is_nan({0}) & tf.math.is_nan({1}))" if equal_nan else ""
    return apply(ctx, f"(lambda d: tf.equal({{0}}, {{1}}){nan} | (tf.math.is_finite(d) & (d <= {lit(atol)} + "
                 f"tf.abs({lit(rtol)} * {{1}}))))(tf.abs({{0}} - {{1}}))", input, other, dtype=dtype)


@handles(torch.isin)
def isin(ctx, elements, test_elements, *, assume_unique=False, invert=False):
    """Whether each element occurs in ``test_elements`` (all of its values), or not with ``invert``."""
    dtype = torch.result_type(elements, test_elements)
    test = ctx.cast(ctx.ref(test_elements), dtype)
    if any(d.is_dynamic() and not d.is_batch_dim() for d in test.dims):
        raise NotImplementedError("isin with test elements along a dynamic axis (the padding would match)")
    el = ctx.cast(ctx.ref(elements), dtype)
    neg = "tf.logical_not" if invert else ""
    return ctx.tf_op(f"{neg}(tf.reduce_any(tf.equal(tf.expand_dims(x0, -1), tf.reshape(x1, [-1])), -1))",
                     [el, test], el.dims, dtype=torch.bool)


#: x * 2 ** -e in float64, in two halves (2 ** -e alone can leave the normal range)
_SCALE = ("(lambda v, h: v * tf.pow(tf.constant(2.0, tf.float64), -h) * tf.pow(tf.constant(2.0, tf.float64), "
          "-({0} - h)))({1}, tf.floor({0} / 2))")
#: (v, off) with x = v * 2 ** off in float64, from the bits: TF flushes subnormal floats to zero in arithmetic,
#: so a subnormal x becomes its integer significand v with off = the exponent of its last bit
_VOFF = ("(lambda b: (lambda m, sub: (tf.where(sub, (lambda v: tf.where(b < 0, -v, v))(tf.cast(m, tf.float64)), "
         "tf.cast(x, tf.float64)), tf.cast(sub, tf.float64) * {off}))(*(lambda m: (m, tf.not_equal(m, 0) & tf.equal("
         "tf.bitwise.bitwise_and(b, tf.constant({em}, b.dtype)), 0)))(tf.bitwise.bitwise_and(b, tf.constant({mm}, "
         "b.dtype)))))(tf.bitcast(x, {it}))")
_BITS = {torch.float32: dict(it="tf.int32", em=0x7F800000, mm=0x7FFFFF, off=-149.0),
         torch.float64: dict(it="tf.int64", em=0x7FF0000000000000, mm=0xFFFFFFFFFFFFF, off=-1074.0)}


@handles(torch.frexp, T.frexp)
def frexp(ctx, input, *, out=None):
    """(mantissa in [0.5, 1) with x's sign, int32 exponent), x = mantissa * 2 ** exponent; 0, inf and NaN
    are their own mantissa with exponent 0; subnormal x from its bits."""
    r = ctx.ref(input)
    if r.dtype not in _BITS:
        raise NotImplementedError(f"frexp of a {r.dtype} tensor")
    voff = _VOFF.format(**_BITS[r.dtype])
    # the exponent from log2 in float64, corrected by one step
    m0 = _SCALE.format("e0", "v")
    e = ctx.eval("(lambda x: (lambda v, off: (lambda ok: (lambda e0: tf.where(ok, tf.where(tf.abs(%s) >= 1, "
                 "e0 + 1, tf.where(tf.abs(%s) < 0.5, e0 - 1, e0)) + off, tf.zeros_like(v)))(tf.floor(tf.math.log("
                 "tf.abs(tf.where(ok, v, tf.ones_like(v)))) / 0.6931471805599453) + 1))(tf.math.is_finite(v) & "
                 "tf.not_equal(v, 0)))(*%s))(tf.stop_gradient(source(0)))" % (m0, m0, voff), [r], r.dims,
                 dtype=torch.float64)
    m = ctx.eval("(lambda x, e: (lambda v, off: tf.where(tf.math.is_finite(v) & tf.not_equal(v, 0), tf.cast(%s, "
                 "x.dtype), x))(*%s))(source(0), source(1))" % (_SCALE.format("(e - off)", "v"), voff),
                 [r, e], r.dims, dtype=r.dtype)
    return m, ctx.cast(e, torch.int32)


# -- distances and bilinear forms ----------------------------------------------------------------------
def _pnorm(ctx, d, p, axes, keepdim=False):
    """The p-norm of ``d`` over the torch ``axes`` (0: count of non-zeros, +-inf: max/min of |d|)."""
    p = float(p)
    if p == float("inf") or p == float("-inf"):
        a = ctx.eval("tf.abs(source(0))", [d], d.dims)
        return reduce_ref(ctx, a, "max" if p > 0 else "min", axes, keepdim)
    if p == 0:
        return reduce_ref(ctx, ctx.eval("tf.cast(tf.not_equal(source(0), 0), source(0).dtype)", [d], d.dims), "sum",
                          axes, keepdim)
    if p == 2:
        s = reduce_ref(ctx, ctx.eval("tf.square(source(0))", [d], d.dims), "sum", axes, keepdim)
        return ctx.eval(f"{SAFE_SQRT}(source(0))", [s], s.dims)
    if p == 1:
        return reduce_ref(ctx, ctx.eval("tf.abs(source(0))", [d], d.dims), "sum", axes, keepdim)
    s = reduce_ref(ctx, ctx.eval(f"tf.pow(tf.abs(source(0)), {lit(p)})", [d], d.dims), "sum", axes, keepdim)
    return ctx.eval(f"(lambda s: tf.where(s > 0, tf.pow(tf.where(s > 0, s, tf.ones_like(s)), {lit(1 / p)}), "
                    "tf.zeros_like(s)))(source(0))", [s], s.dims)


@handles(torch.dist, T.dist)
def dist(ctx, input, other, p=2):
    """The p-norm of input - other (broadcast) over all elements (valid frames of a dynamic axis only)."""
    d = apply(ctx, "{0} - {1}", input, other)
    return _pnorm(ctx, d, p, list(range(d.ndim)))


@handles(torch.renorm, T.renorm, T.renorm_)
def renorm(ctx, input, p, dim, maxnorm):
    """Each slice along ``dim`` whose p-norm (over the other axes) exceeds maxnorm scaled to maxnorm."""
    r = ctx.ref(input)
    ax = dim % r.ndim
    norm = _pnorm(ctx, r, p, [k for k in range(r.ndim) if k != ax])
    return ctx.eval(f"source(0) * tf.where(source(1) > {lit(maxnorm)}, {lit(maxnorm)} / (source(1) + 1e-7), "
                    "tf.ones_like(source(1)))", [r, norm], r.dims)


@handles(F.bilinear, torch.bilinear)
def bilinear(ctx, input1, input2, weight, bias=None):
    """y[..., o] = x1[..., i] W[o, i, j] x2[..., j] (+ bias[o])."""
    a, b, w = ctx.ref(input1), ctx.ref(input2), ctx.ref(weight)
    if a.ndim != b.ndim:
        raise NotImplementedError("bilinear of inputs with different numbers of axes")
    b = ctx.rename(b, {b.dims[k]: a.dims[k] for k in range(a.ndim - 1)})
    dims = list(a.dims[:-1]) + [w.dims[0]]
    y = ctx.tf_op("tf.einsum('...i,oij,...j->...o', x0, x1, x2)", [a, w, b], dims)
    if bias is None:
        return y
    br = ctx.ref(bias, prefer=[w.dims[0]])
    br = ctx.rename(br, {br.dims[0]: w.dims[0]})
    return ctx.eval("source(0) + source(1)", [y, br], dims)


@handles(F.pdist, torch.pdist)
def pdist(ctx, input, p=2):
    """The p-norm distances of all row pairs i < j of an (N, M) tensor with a static N, in torch's order."""
    r = ctx.ref(input)
    if r.dims[0].is_dynamic():
        raise NotImplementedError("pdist over a dynamic (or batch) row axis: the number of pairs would change")
    n = r.shape[0]
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    out = ctx.dims.static(len(pairs), f"{ctx.op_name}_pairs")
    ia = ctx.const(torch.tensor([i for i, _ in pairs], dtype=torch.int64), [out])
    ib = ctx.const(torch.tensor([j for _, j in pairs], dtype=torch.int64), [out])
    d = ctx.tf_op("tf.gather(x0, x1) - tf.gather(x0, x2)", [r, ia, ib], [out, r.dims[1]])
    return _pnorm(ctx, d, p, [1])


# -- native norm ops (with their statistics) ----------------------------------------------------------
def _stats(ctx, r, axes, eps):
    """(x - mean, mean, 1 / sqrt(biased var + eps)) over the torch ``axes`` (mean and rstd without them)."""
    mean = reduce_ref(ctx, r, "mean", axes, False)
    cen = ctx.eval("source(0) - source(1)", [r, mean], r.dims)
    var = reduce_ref(ctx, ctx.eval("tf.square(source(0))", [cen], r.dims), "mean", axes, False)
    return cen, mean, ctx.eval(f"tf.math.rsqrt(source(0) + {lit(eps)})", [var], var.dims)


def _normed(ctx, cen, rstd):
    return ctx.eval("source(0) * source(1)", [cen, rstd], cen.dims)


def _saved(ctx, *refs):
    """Statistics outputs that torch does not differentiate (layer and batch norm)."""
    return tuple(ctx.eval("tf.stop_gradient(source(0))", [r], r.dims, dtype=r.dtype) for r in refs)


@handles(torch.native_layer_norm)
def native_layer_norm(ctx, input, normalized_shape, weight, bias, eps):
    """(layer norm over the last axes, mean, rstd), the statistics with those axes kept as size 1."""
    r = ctx.cast(ctx.ref(input), ctx.out[0].dtype)
    axes = list(range(r.ndim - len(normalized_shape), r.ndim))
    cen, mean, rstd = _stats(ctx, r, axes, eps)
    y = _affine(ctx, _normed(ctx, cen, rstd), weight, bias, axes)
    for ax in axes:
        mean, rstd = ctx.unsqueeze(mean, ax), ctx.unsqueeze(rstd, ax)
    return (y, *_saved(ctx, mean, rstd))


@handles(torch.native_group_norm)
def native_group_norm(ctx, input, weight, bias, N, C, HxW, group, eps):
    """(group norm, mean, rstd), the statistics of shape (N, group)."""
    r = ctx.ref(input)
    if r.dims[1].is_dynamic():
        raise NotImplementedError("native_group_norm with a dynamic channel axis")
    g = ctx.dims.static(group, f"{ctx.op_name}_groups")
    cg = ctx.dims.static(r.shape[1] // group, f"{ctx.op_name}_per_group")
    dims = [r.dims[0], g, cg] + list(r.dims[2:])
    split = ctx.layer({"class": "split_dims", "from": r, "axis": r.dims[1], "dims": [g, cg]}, dims, dtype=r.dtype)
    cen, mean, rstd = _stats(ctx, split, list(range(2, len(dims))), eps)
    y = ctx.layer({"class": "merge_dims", "from": _normed(ctx, cen, rstd), "axes": [g, cg], "out_dim": r.dims[1]},
                  r.dims, dtype=r.dtype)
    return _affine(ctx, y, weight, bias, [1]), mean, rstd  # (torch differentiates these statistics)


@handles(torch.native_batch_norm)
def native_batch_norm(ctx, input, weight, bias, running_mean, running_var, training, momentum, eps):
    """(batch norm, save_mean, save_invstd): batch statistics when training (capture with train=True
    where running statistics are given; their update stays in torch), else the running ones and empty
    statistics."""
    r = ctx.ref(input)
    if r.ndim < 2 or r.dims[1].is_dynamic():
        raise NotImplementedError(f"{ctx.op_name} needs a static channel axis 1")
    if training:
        if running_mean is not None and not ctx.train:
            raise NotImplementedError(f"{ctx.op_name} in training mode in a capture with train=False: call "
                                      "model.eval() or capture with train=True")
        cen, mean, rstd = _stats(ctx, r, [0] + list(range(2, r.ndim)), eps)
        return (_affine(ctx, _normed(ctx, cen, rstd), weight, bias, [1]), *_saved(ctx, mean, rstd))
    if running_mean is None:
        raise NotImplementedError(f"{ctx.op_name} in eval mode without running statistics")
    c, srcs = r.dims[1], [r]
    for t in (running_mean, running_var):
        p = ctx.ref(t, prefer=[c])
        srcs.append(ctx.rename(p, {p.dims[0]: c}))
    y = ctx.eval(f"(source(0) - source(1)) * tf.math.rsqrt(source(2) + {lit(eps)})", srcs, r.dims)
    empty = ctx.const(torch.zeros(0, dtype=r.dtype), [ctx.dims.static(0, f"{ctx.op_name}_empty")])
    return _affine(ctx, y, weight, bias, [1]), empty, empty


@handles(torch._native_batch_norm_legit)
def native_batch_norm_legit(ctx, input, weight, bias, *args):
    """As native_batch_norm; the overload without running statistics (``training, momentum, eps``) too."""
    if len(args) == 3:
        return native_batch_norm(ctx, input, weight, bias, None, None, *args)
    return native_batch_norm(ctx, input, weight, bias, *args)


@handles(F.rms_norm, torch.rms_norm)
def rms_norm(ctx, input, normalized_shape, weight=None, eps=None):
    """x / sqrt(mean(x^2 over the last axes) + eps) * weight (eps: the dtype's machine epsilon by default)."""
    r = ctx.cast(ctx.ref(input), ctx.out.dtype)
    axes = list(range(r.ndim - len(normalized_shape), r.ndim))
    eps = torch.finfo(r.dtype).eps if eps is None else eps
    ms = reduce_ref(ctx, ctx.eval("tf.square(source(0))", [r], r.dims), "mean", axes, False)
    y = ctx.eval(f"source(0) * tf.math.rsqrt(source(1) + {lit(eps)})", [r, ms], r.dims)
    return _affine(ctx, y, weight, None, axes)


@handles(F.local_response_norm)
def local_response_norm(ctx, input, size, alpha=1e-4, beta=0.75, k=1.0):
    """x / (k + alpha * mean of x^2 over a window of ``size`` channels, zero-padded) ** beta."""
    r = ctx.ref(input)
    if r.ndim < 3:
        raise NotImplementedError("local_response_norm of a tensor with fewer than 3 axes")
    sq = ctx.eval("tf.square(source(0))", [r], r.dims)
    if r.dims[1].is_dynamic() and not r.dims[1].is_batch_dim():  # the sequence ends in zeros, as torch pads
        sq = mask_padding(ctx, sq, r.dims[1])
    pad = [[0, 0], [size // 2, (size - 1) // 2]] + [[0, 0]] * (r.ndim - 2)
    window = " + ".join(f"s[:, {i}:{i} + c]" for i in range(size))
    total = ctx.tf_op(f"(lambda s, c: {window})(tf.pad(x0, {pad}), tf.shape(x0)[1])", [sq], r.dims)
    return ctx.eval(f"source(0) / tf.pow(source(1) / {lit(float(size))} * {lit(alpha)} + {lit(k)}, {lit(beta)})",
                    [r, total], r.dims)
