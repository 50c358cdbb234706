"""Elementwise math and special functions beyond the basic set of ``elementwise``: inverse and
hyperbolic trigonometry, atan2, hypot, logaddexp(2), xlogy/xlog1py, copysign, frac, signbit, sgn,
nan_to_num, lerp, float_power, exp2, ldexp, fmax/fmin, heaviside, nextafter, the gamma family
(lgamma, digamma, polygamma, mvlgamma, igamma/igammac, zeta), error functions (erfc, erfinv, erfcx,
ndtr, ndtri, log_ndtr), Bessel functions, sinc, logit, entr; the in-place forms of the basic unary
functions; and the activations softmin, selu, celu, threshold, soft/hard/tanh-shrink
(rrelu is in ``random``).

All are elementwise (TF's own kernels, ``tf.math`` / ``tf.math.special``): padding frames stay
padding frames, except softmin, which masks the padding of a dynamic axis as softmax does.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .common import T, apply, lit, range_ref, softmax_ref
from .registry import handles

S = torch.special

#: erfcx in float64 (no overflow of exp(x^2) up to x = 25; the asymptotic series beyond): the
#: scaled complementary error function exp(x^2) * erfc(x), as torch computes it for any x
ERFCX = ("(lambda x0, d: tf.cast((lambda x: (lambda s, l: tf.where(x < 25.0, tf.exp(s * s) * tf.math.erfc(s), "
         "(1.0 - 0.5 / l ** 2 + 0.75 / l ** 4 - 1.875 / l ** 6) / (l * %r)))(tf.where(x < 25.0, x, tf.zeros_like(x)), "
         "tf.where(x < 25.0, 25.0 * tf.ones_like(x), x)))(tf.cast(x0, tf.float64)), d))" % math.sqrt(math.pi))
#: log(ndtr(x)) without underflow for very negative x (through erfcx there)
LOG_NDTR = ("(lambda x: tf.where(x < 0.0, tf.math.log(%s(-tf.minimum(x, 0.0) * %r, x.dtype) / 2.0) - "
            "tf.square(tf.minimum(x, 0.0)) / 2.0, tf.math.log1p(-tf.math.erfc(tf.maximum(x, 0.0) * %r) / 2.0)))"
            % (ERFCX, 1 / math.sqrt(2.0), 1 / math.sqrt(2.0)))
#: x == 0 replaced by 1 (for where-guarded divisions whose gradient must stay finite)
_NZ = "tf.where(tf.equal({0}, 0), tf.ones_like({0}), {0})"
# Bessel functions defined for x > 0: NaN for x < 0 and +-inf at 0, as torch (TF gives +-inf or NaN there)
_DOMAIN_POS = ("(lambda x: tf.where(x < 0, tf.fill(tf.shape(x), tf.constant(float('nan'), x.dtype)), tf.where("
               "tf.equal(x, 0), tf.fill(tf.shape(x), tf.constant(float('%s'), x.dtype)), "
               "tf.math.special.%s(tf.where(x > 0, x, tf.ones_like(x))))))({0})")
#: sin(pi x) / (pi x), 1 at 0; the gradient in torch's own form (which cancels otherwise near 0)
SINC = ("(lambda x, s: tf.stop_gradient(tf.where(tf.equal(x, 0), tf.ones_like(x), tf.sin(s) / s)) + "
        "(x - tf.stop_gradient(x)) * tf.stop_gradient(tf.where(tf.equal(x, 0), tf.zeros_like(x), "
        "(s * tf.cos(s) - tf.sin(s)) / (s * tf.where(tf.equal(x, 0), tf.ones_like(x), x)))))({0}, %r * %s)"
        % (math.pi, _NZ))
#: the sign bit of a float (an eval format: braces doubled)
SIGNBIT = ("tf.bitcast({0}, {{tf.float64: tf.int64, tf.float16: tf.int16, tf.bfloat16: tf.int16}}.get({0}.dtype, "
           "tf.int32)) < 0")

_UNARY = {
    "tf.asin({0})": [torch.asin, torch.arcsin, T.asin, T.arcsin, T.asin_, T.arcsin_, torch.asin_, torch.arcsin_],
    "tf.acos({0})": [torch.acos, torch.arccos, T.acos, T.arccos, T.acos_, T.arccos_, torch.acos_, torch.arccos_],
    "tf.atan({0})": [torch.atan, torch.arctan, T.atan, T.arctan, T.atan_, T.arctan_, torch.atan_, torch.arctan_],
    "tf.sinh({0})": [torch.sinh, T.sinh, T.sinh_, torch.sinh_],
    "tf.cosh({0})": [torch.cosh, T.cosh, T.cosh_, torch.cosh_],
    "tf.asinh({0})": [torch.asinh, torch.arcsinh, T.asinh, T.arcsinh, T.asinh_, T.arcsinh_, torch.asinh_,
                      torch.arcsinh_],
    "tf.acosh({0})": [torch.acosh, torch.arccosh, T.acosh, T.arccosh, T.acosh_, T.arccosh_, torch.acosh_,
                      torch.arccosh_],
    "tf.atanh({0})": [torch.atanh, torch.arctanh, T.atanh, T.arctanh, T.atanh_, T.arctanh_, torch.atanh_,
                      torch.arctanh_],
    # in-place and torch.special forms of the basic unary functions (the others are in ``elementwise``)
    "tf.tan({0})": [T.tan_, torch.tan_],
    "tf.exp({0})": [torch.exp_],
    "tf.sigmoid({0})": [torch.sigmoid_],
    "tf.math.expm1({0})": [T.expm1_, torch.expm1_, S.expm1],
    "tf.math.log1p({0})": [T.log1p_, torch.log1p_, S.log1p],
    "tf.math.log({0}) / %r" % math.log(2.0): [T.log2_, torch.log2_],
    "tf.math.log({0}) / %r" % math.log(10.0): [T.log10_, torch.log10_],
    "(lambda x: tf.sign(x) * tf.floor(tf.abs(x)))({0})": [T.trunc_, torch.trunc_, T.fix_, torch.fix_],
    "tf.math.erf({0})": [T.erf_, torch.erf_],
    "tf.sign({0})": [torch.sgn, T.sgn, T.sgn_, T.sign_],
    "{0} - tf.sign({0}) * tf.floor(tf.abs({0}))": [torch.frac, T.frac, torch.frac_, T.frac_],
    "tf.pow(tf.cast(2, {0}.dtype), {0})": [torch.exp2, T.exp2, torch.exp2_, T.exp2_, S.exp2],
    "{0} * %r" % (math.pi / 180): [torch.deg2rad, T.deg2rad, torch.deg2rad_, T.deg2rad_],
    "{0} * %r" % (180 / math.pi): [torch.rad2deg, T.rad2deg, torch.rad2deg_, T.rad2deg_],
    # special functions
    "tf.math.erfc({0})": [torch.erfc, T.erfc, torch.erfc_, T.erfc_, S.erfc],
    "tf.math.erfinv({0})": [torch.erfinv, T.erfinv, T.erfinv_, S.erfinv],
    "tf.math.lgamma({0})": [torch.lgamma, T.lgamma, T.lgamma_, S.gammaln],
    "tf.math.digamma({0})": [torch.digamma, T.digamma, T.digamma_, S.digamma, S.psi],
    "tf.math.bessel_i0({0})": [torch.i0, T.i0, torch.i0_, T.i0_, S.i0, S.modified_bessel_i0],
    "tf.math.special.bessel_i0e({0})": [S.i0e],
    "tf.math.special.bessel_i1({0})": [S.i1, S.modified_bessel_i1],
    "tf.math.special.bessel_i1e({0})": [S.i1e],
    _DOMAIN_POS % ("inf", "bessel_k0"): [S.modified_bessel_k0],
    _DOMAIN_POS % ("inf", "bessel_k1"): [S.modified_bessel_k1],
    _DOMAIN_POS % ("inf", "bessel_k0e"): [S.scaled_modified_bessel_k0],
    _DOMAIN_POS % ("inf", "bessel_k1e"): [S.scaled_modified_bessel_k1],
    "tf.math.special.bessel_j0({0})": [S.bessel_j0],
    "tf.math.special.bessel_j1({0})": [S.bessel_j1],
    _DOMAIN_POS % ("-inf", "bessel_y0"): [S.bessel_y0],
    _DOMAIN_POS % ("-inf", "bessel_y1"): [S.bessel_y1],
    SINC: [torch.sinc, T.sinc, torch.sinc_, T.sinc_, S.sinc],
    "(lambda x, s: tf.where(tf.equal(x, 0), tf.ones_like(x), tf.sin(s) / s))({0}, %s)" % _NZ:
        [S.spherical_bessel_j0],
    "0.5 * tf.math.erfc({0} * %r)" % (-1 / math.sqrt(2.0)): [S.ndtr],
    "tf.math.ndtri({0})": [S.ndtri],
    LOG_NDTR + "({0})": [S.log_ndtr],
    ERFCX + "({0}, {0}.dtype)": [S.erfcx],
    "tf.where({0} > 0, -{0} * tf.math.log(tf.where({0} > 0, {0}, tf.ones_like({0}))), "
    "tf.where(tf.equal({0}, 0), tf.zeros_like({0}), tf.fill(tf.shape({0}), tf.constant(float('-inf'), {0}.dtype))))":
        [S.entr],
    "{0} - tf.tanh({0})": [F.tanhshrink],
}


def _unary(fmt: str):
    def h(ctx, x, *, out=None):
        return apply(ctx, fmt, x)
    return h


for _fmt, _fns in _UNARY.items():
    handles(*dict.fromkeys(_fns))(_unary(_fmt))


_BINARY = {
    "tf.math.atan2({0}, {1})": [torch.atan2, torch.arctan2, T.atan2, T.arctan2, T.atan2_, T.arctan2_],
    "tf.sqrt({0} * {0} + {1} * {1})": [torch.hypot, T.hypot, T.hypot_],
    "(lambda a, b, t: tf.where(t, a, tf.maximum(a, b) + tf.math.log1p(tf.exp(-tf.abs(tf.where(t, tf.zeros_like(a), "
    "a - b))))))({0}, {1}, tf.math.is_inf({0}) & tf.equal({0}, {1}))": [torch.logaddexp, T.logaddexp],
    "(lambda a, b, t: tf.where(t, a, tf.maximum(a, b) + tf.math.log1p(tf.pow(tf.cast(2, a.dtype), -tf.abs("
    "tf.where(t, tf.zeros_like(a), a - b)))) / %r))({0}, {1}, tf.math.is_inf({0}) & tf.equal({0}, {1}))"
    % math.log(2.0): [torch.logaddexp2, T.logaddexp2],
    "tf.where(tf.math.is_nan({1}), {1}, tf.math.xlogy({0}, {1}))": [torch.xlogy, T.xlogy, torch.xlogy_, T.xlogy_,
                                                                    S.xlogy],
    "tf.where(tf.math.is_nan({1}), {1}, tf.math.xlog1py({0}, {1}))": [S.xlog1py],
    "tf.where(%s, -tf.abs({0}), tf.abs({0}))" % SIGNBIT.replace("{0}", "{1}"): [torch.copysign, T.copysign,
                                                                               T.copysign_],
    "tf.pow({0}, {1})": [torch.float_power, T.float_power, T.float_power_],
    "{0} * tf.pow(tf.cast(2, {0}.dtype), {1})": [torch.ldexp, T.ldexp, torch.ldexp_, T.ldexp_],
    "tf.where(tf.equal({0}, 0), {1}, tf.cast({0} > 0, {0}.dtype))": [torch.heaviside, T.heaviside, T.heaviside_],
    "tf.math.nextafter({0}, {1})": [torch.nextafter, T.nextafter, T.nextafter_],
    "tf.math.igamma({0}, {1})": [torch.igamma, T.igamma, T.igamma_, S.gammainc],
    "tf.math.igammac({0}, {1})": [torch.igammac, T.igammac, T.igammac_, S.gammaincc],
    "tf.math.zeta({0}, {1})": [S.zeta],
}


def _binary(fmt: str):
    def h(ctx, a, b, *, out=None):
        return apply(ctx, fmt, a, b)
    return h


for _fmt, _fns in _BINARY.items():
    handles(*dict.fromkeys(_fns))(_binary(_fmt))


@handles(torch.fmax, T.fmax)
def fmax(ctx, a, b, *, out=None):
    """max(a, b), ignoring a NaN on one side."""
    if not ctx.out.dtype.is_floating_point:
        return apply(ctx, "tf.maximum({0}, {1})", a, b)
    return apply(ctx, "tf.where(tf.math.is_nan({1}), {0}, tf.where(tf.math.is_nan({0}), {1}, "
                 "tf.maximum({0}, {1})))", a, b)


@handles(torch.fmin, T.fmin)
def fmin(ctx, a, b, *, out=None):
    """min(a, b), ignoring a NaN on one side."""
    if not ctx.out.dtype.is_floating_point:
        return apply(ctx, "tf.minimum({0}, {1})", a, b)
    return apply(ctx, "tf.where(tf.math.is_nan({1}), {0}, tf.where(tf.math.is_nan({0}), {1}, "
                 "tf.minimum({0}, {1})))", a, b)


@handles(torch.signbit, T.signbit)
def signbit(ctx, x, *, out=None):
    """The sign bit (True for -0.0 and negative NaN too)."""
    r = ctx.ref(x)
    if not r.dtype.is_floating_point:
        return apply(ctx, "{0} < 0", x, dtype=r.dtype)
    return apply(ctx, SIGNBIT, x, dtype=r.dtype)


@handles(T.true_divide_, T.divide_)
def div_(ctx, a, b, *, rounding_mode=None):
    """In-place a / b (true, floor or trunc division)."""
    if rounding_mode is None:
        return apply(ctx, "{0} / {1}", a, b)
    if rounding_mode == "floor":
        return apply(ctx, "tf.math.floordiv({0}, {1})", a, b)
    if ctx.out.dtype.is_floating_point:
        return apply(ctx, "(lambda q: tf.sign(q) * tf.floor(tf.abs(q)))({0} / {1})", a, b)
    return apply(ctx, "tf.truncatediv({0}, {1})", a, b)


@handles(S.round)
def special_round(ctx, x, *, decimals=0, out=None):
    """Round half to even, optionally to ``decimals`` places."""
    if decimals == 0:
        return apply(ctx, "tf.round({0})", x)
    s = lit(10.0 ** decimals)
    return apply(ctx, f"tf.round({{0}} * {s}) / {s}", x)


@handles(torch.lerp, T.lerp, T.lerp_)
def lerp(ctx, x, end, weight, *, out=None):
    """x + weight * (end - x), in torch's two-sided form (exact at weight 0 and 1)."""
    return apply(ctx, "tf.where(tf.abs({2}) < 0.5, {0} + {2} * ({1} - {0}), {1} - ({1} - {0}) * (1 - {2}))",
                 x, end, weight)


@handles(torch.nan_to_num, T.nan_to_num, torch.nan_to_num_, T.nan_to_num_)
def nan_to_num(ctx, x, nan=0.0, posinf=None, neginf=None, *, out=None):
    """NaN, +inf and -inf replaced (by default 0 and the largest/smallest finite value)."""
    if not ctx.out.dtype.is_floating_point:
        return ctx.ref(x)
    fi = torch.finfo(ctx.out.dtype)
    pos, neg = fi.max if posinf is None else posinf, fi.min if neginf is None else neginf

    def c(v):
        return f"tf.constant({lit(v)}, {{0}}.dtype)"
    return apply(ctx, f"tf.where(tf.math.is_nan({{0}}), {c(nan)}, tf.where(tf.equal({{0}}, float('inf')), {c(pos)}, "
                 f"tf.where(tf.equal({{0}}, float('-inf')), {c(neg)}, {{0}})))", x)


@handles(torch.logit, T.logit, torch.logit_, T.logit_, S.logit)
def logit(ctx, x, eps=None, *, out=None):
    """log(x / (1 - x)), x clamped to [eps, 1 - eps] first if ``eps`` is given."""
    if eps is None:
        return apply(ctx, "(lambda x: tf.math.log(x / (1 - x)))({0})", x)
    return apply(ctx, f"(lambda x: tf.math.log(x / (1 - x)))(tf.clip_by_value({{0}}, {lit(eps)}, "
                 f"{lit(1.0 - eps)}))", x)


#: how far polygamma shifts a negative argument up by its recurrence (TF's kernel is wrong below about -7)
POLYGAMMA_SHIFT = 64


def _polygamma(ctx, n, x):
    n = int(n)
    if n == 0:
        return apply(ctx, "tf.math.digamma({0})", x)
    # psi_n(x) = psi_n(x + m) - (-1)^n n! sum_{k<m} (x + k)^-(n+1), with m = ceil(-x) for negative x
    big, c = POLYGAMMA_SHIFT, (-1) ** n * math.factorial(n)
    return apply(ctx, (
        "(lambda x, k: (lambda m, km: tf.where(x < %r, tf.fill(tf.shape(x), tf.constant(float('nan'), x.dtype)), "
        "tf.math.polygamma(tf.fill(tf.shape(x), tf.constant(%r, x.dtype)), x + m) - %r * tf.reduce_sum(tf.where(km, "
        "tf.pow(tf.where(km, x[..., None] + k, tf.ones_like(km, x.dtype)), %r), tf.zeros_like(km, x.dtype)), -1)))"
        "(*(lambda m: (m, k < m[..., None]))(tf.stop_gradient(tf.minimum(tf.math.ceil(tf.maximum(-x, 0.0)), %r)))))"
        "({0}, tf.range(%d, dtype={0}.dtype))") % (-big - 6.0, float(n), float(c), float(-n - 1), float(big), big), x)


@handles(torch.polygamma, S.polygamma)
def polygamma(ctx, n, input, *, out=None):
    """The n-th derivative of digamma (NaN below -70: TF's kernel is wrong for negative arguments, which
    the recurrence shifts up by at most 64)."""
    return _polygamma(ctx, n, input)


@handles(T.polygamma, T.polygamma_)
def polygamma_method(ctx, x, n):
    """``x.polygamma(n)``."""
    return _polygamma(ctx, n, x)


@handles(torch.mvlgamma, T.mvlgamma, T.mvlgamma_, S.multigammaln)
def mvlgamma(ctx, x, p, *, out=None):
    """The multivariate log-gamma function of dimension ``p``."""
    terms = " + ".join(f"tf.math.lgamma({{0}} - {i / 2!r})" for i in range(int(p)))
    return apply(ctx, f"{terms} + {p * (p - 1) / 4 * math.log(math.pi)!r}", x)


# -- activations ------------------------------------------------------------------------------------
@handles(F.softmin)
def softmin(ctx, x, dim=None, _stacklevel=3, dtype=None):
    """softmax(-x) over ``dim`` (masked over a dynamic axis)."""
    r = ctx.ref(x)
    r = ctx.cast(r, dtype if dtype is not None else ctx.out.dtype)
    if dim is None:
        dim = 0 if r.ndim in (0, 1, 3) else 1  # torch's legacy implicit dim
    if r.ndim == 0:
        return ctx.eval("tf.ones_like(source(0))", [r], r.dims)
    neg = ctx.eval("-source(0)", [r], r.dims)
    d = r.dims[dim % r.ndim]
    if d.is_dynamic() and not d.is_batch_dim() and r.dtype != torch.float32:
        # RETURNN's softmax_over_spatial and seq_len_mask are float32-only: mask by position < length
        pos, lens = range_ref(ctx, d), ctx.size_ref(d, r.dims)
        return ctx.eval("tf.nn.softmax(tf.where(source(1) < tf.cast(source(2), tf.int64), source(0), "
                        "tf.constant(float('-inf'), source(0).dtype)), axis={axis})", [neg, pos, lens], r.dims, axis=d)
    return softmax_ref(ctx, neg, dim % r.ndim)


@handles(*dict.fromkeys([F.selu, torch.selu, torch.selu_]))
def selu(ctx, x, inplace=False):
    """scale * (x if x > 0 else alpha * (exp(x) - 1)), torch's constants (as TF's)."""
    return apply(ctx, "tf.nn.selu({0})", x)


@handles(*dict.fromkeys([F.celu, torch.celu, torch.celu_]))
def celu(ctx, x, alpha=1.0, inplace=False):
    """x if x > 0 else alpha * (exp(x / alpha) - 1)."""
    a = lit(alpha)
    return apply(ctx, f"tf.where({{0}} > 0, {{0}}, {a} * tf.math.expm1({{0}} / {a}))", x)


@handles(*dict.fromkeys([F.threshold, F.threshold_, torch.threshold, torch.threshold_]))
def threshold(ctx, x, threshold, value, inplace=False):
    """x if x > threshold else value."""
    return apply(ctx, f"tf.where({{0}} > {lit(threshold)}, {{0}}, tf.cast({lit(value)}, {{0}}.dtype) + "
                 "tf.zeros_like({0}))", x)


@handles(F.softshrink)
def softshrink(ctx, x, lambd=0.5):
    """x - lambd above lambd, x + lambd below -lambd, else 0."""
    v = lit(lambd)
    return apply(ctx, f"tf.where({{0}} > {v}, {{0}} - {v}, tf.where({{0}} < -{v}, {{0}} + {v}, "
                 "tf.zeros_like({0})))", x)


@handles(*dict.fromkeys([F.hardshrink, torch.hardshrink, T.hardshrink]))
def hardshrink(ctx, x, lambd=0.5):
    """x where |x| > lambd, else 0."""
    return apply(ctx, f"tf.where(tf.abs({{0}}) > {lit(lambd)}, {{0}}, tf.zeros_like({{0}}))", x)
