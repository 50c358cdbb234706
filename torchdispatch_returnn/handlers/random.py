"""Random ops: the network samples its own values, in TF, at every run (``torch.randn``/``rand``/
``randint``/``normal``/``bernoulli``/``poisson``/``multinomial``, the ``*_like`` forms, the
in-place ``uniform_``/``normal_``/``bernoulli_``/``exponential_``/``random_``/``cauchy_``/
``log_normal_``/``geometric_``), and the ops with random noise in training mode: the dropout family
(a RETURNN ``dropout`` layer draws the mask) and ``rrelu``.

Sizes may hold dims of the capture (``torch.randn(x.shape)``); padding frames hold random values too.
Torch's own values differ, so each op tells the capture (``ctx.feed``) which layer holds its random
values: the parity run feeds torch's values there and compares every op after it exactly (dropout
and rrelu: the mask or slopes are fed, the op's result is compared). Samplers stop the gradient, as
torch's (zero) gradients do. ``generator=`` arguments are ignored (the network has its own state).

Training mode: dropout and rrelu follow RETURNN's train flag when the capture has ``train=True``;
an explicit ``training=True`` in an eval capture samples always (``dropout_on_forward``); the
model's dropout in an eval capture stays as a RETURNN ``dropout`` layer, off at inference.
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F

from .._backend import tf_dtype
from ..sizes import DimInt
from ..tensor import MergedDim
from .common import T, lit, size_value_ref, sizes_arg
from .registry import handles

logger = logging.getLogger(__name__)
_S = "__shape__"  # stands for the result's shape in the sampling expressions
_ALPHA = 1.7580993408473766  # SELU's alpha (torch's alpha dropout)


def _check_dims(dims) -> None:
    if any(isinstance(d, MergedDim) for d in dims):
        raise NotImplementedError("random values on an axis that merges the batch with another axis")


def draw(ctx, expr: str, dims, inputs=(), like=None, dtype=None):
    """A layer of random values with ``dims`` (torch order) drawn by the TF code ``expr``: ``__shape__``
    is the result's shape, ``source(1)``, ... the ``inputs`` (broadcast onto ``dims``); ``like``: a
    layer with ``dims`` to take the shape from. The parity run feeds torch's values (``ctx.out``)."""
    dtype = dtype or ctx.out.dtype
    if dtype.is_complex:
        raise NotImplementedError("complex random values")
    _check_dims(dims)
    shape = like if like is not None else ctx.fill(dims, 0, torch.float32)
    code = expr.replace(_S, "tf.shape(source(0))")
    ref = ctx.eval(f"tf.stop_gradient(tf.cast({code}, {tf_dtype(dtype)!r}))", [shape, *inputs], dims, dtype=dtype)
    ctx.feed(ref, ctx.out)
    return ref


def _uniform(dtype, kind: str = "uniform") -> str:
    """U[0, 1) (or N(0, 1): ``kind="normal"``) drawn in float64 for a float64 result, else in float32."""
    return f"tf.random.{kind}({_S}, dtype={'tf.float64' if dtype == torch.float64 else 'tf.float32'})"


def _normal(dtype) -> str:
    return _uniform(dtype, "normal")


def _dims_of(ctx, size):
    sizes = sizes_arg(size)
    return ctx.distinct([ctx.new_dim(s, f"{ctx.op_name}_dim{i}") for i, s in enumerate(sizes)])


def _size(size, kwargs):
    return size if size else (kwargs.get("size"),)


def _like_dims(ctx, x):
    r = ctx.ref(x)
    _check_dims(r.dims)
    return r


# -- factories ---------------------------------------------------------------------------------------
@handles(torch.randn, factory=True)
def randn(ctx, *size, generator=None, **kwargs):
    """Standard normal values of ``size``."""
    return draw(ctx, _normal(ctx.out.dtype), _dims_of(ctx, _size(size, kwargs)))


@handles(torch.rand, factory=True)
def rand(ctx, *size, generator=None, **kwargs):
    """Uniform values in [0, 1) of ``size``."""
    return draw(ctx, _uniform(ctx.out.dtype), _dims_of(ctx, _size(size, kwargs)))


def _ints(ctx, low, high, dims, like=None, dtype=None):
    """Integers uniform in [low, high); a bound may be a dynamic size (``x.shape[1]``: the padded size)."""
    srcs, bounds = [], []
    for v in (low, high):
        if isinstance(v, DimInt) and v.lin.terms:
            bounds.append(f"source({len(srcs) + 1}, auto_convert=False)")
            srcs.append(size_value_ref(ctx, v.lin))
        else:
            bounds.append(lit(int(v)))
    expr = f"tf.random.uniform({_S}, minval={bounds[0]}, maxval={bounds[1]}, dtype=tf.int64)"
    return draw(ctx, expr, dims, srcs, like=like, dtype=dtype)


def _low_high_size(args, low, high, size):
    args = list(args)
    size = args.pop() if size is None else size
    high = args.pop() if high is None else high
    low = (args.pop() if args else 0) if low is None else low
    return low, high, size


@handles(torch.randint, factory=True)
def randint(ctx, *args, low=None, high=None, size=None, generator=None, **kwargs):
    """Integers uniform in [low, high) of ``size``."""
    low, high, size = _low_high_size(args, low, high, size)
    return _ints(ctx, low, high, _dims_of(ctx, size))


@handles(torch.randn_like)
def randn_like(ctx, x, **kwargs):
    """Standard normal values with ``x``'s dims."""
    r = _like_dims(ctx, x)
    return draw(ctx, _normal(ctx.out.dtype), r.dims, like=r)


@handles(torch.rand_like)
def rand_like(ctx, x, **kwargs):
    """Uniform values in [0, 1) with ``x``'s dims."""
    r = _like_dims(ctx, x)
    return draw(ctx, _uniform(ctx.out.dtype), r.dims, like=r)


@handles(torch.randint_like)
def randint_like(ctx, x, *args, low=None, high=None, **kwargs):
    """Integers uniform in [low, high) with ``x``'s dims."""
    r = _like_dims(ctx, x)
    low, high, _ = _low_high_size([*args, None], low, high, None)
    return _ints(ctx, low, high, r.dims, like=r)


@handles(torch.normal)
def normal(ctx, mean=0.0, std=1.0, size=None, *, generator=None, **kwargs):
    """``mean + std * N(0, 1)``: tensor or number ``mean``/``std`` (broadcast), or numbers with ``size``."""
    if size is not None:
        expr = f"{lit(float(mean))} + {lit(float(std))} * {_normal(ctx.out.dtype)}"
        return draw(ctx, expr, _dims_of(ctx, size))
    xs, dims = ctx.broadcast(mean, std, dtype=ctx.out.dtype)
    refs = [x for x in xs if not isinstance(x, (int, float))]
    terms, k = [], 1
    for x in xs:
        terms.append(lit(float(x)) if isinstance(x, (int, float)) else f"source({k})")
        k += not isinstance(x, (int, float))
    return draw(ctx, f"{terms[0]} + {terms[1]} * tf.cast({_normal(ctx.out.dtype)}, source(1).dtype)"
                if refs else f"{terms[0]} + {terms[1]} * {_normal(ctx.out.dtype)}", dims, refs)


@handles(torch.bernoulli, T.bernoulli)
def bernoulli(ctx, x, p=None, *, generator=None, out=None):
    """1 with probability ``x`` (or the number ``p``), else 0; ``x``'s dims and dtype."""
    r = _like_dims(ctx, x)
    prob = "tf.cast(source(0), tf.float64)" if p is None else lit(float(p))
    return draw(ctx, f"tf.random.uniform({_S}, dtype=tf.float64) < {prob}", r.dims, like=r)


@handles(torch.poisson)
def poisson(ctx, x, generator=None):
    """Poisson counts with the rates ``x`` (non-finite or negative rates: 0 in the network)."""
    r = _like_dims(ctx, x)
    lam = "tf.cast(source(0), tf.float64)"
    rates = f"tf.where(tf.math.is_finite({lam}) & ({lam} >= 0), {lam}, tf.zeros_like({lam}))"
    return draw(ctx, f"tf.random.poisson([], {rates}, dtype=tf.float64)", r.dims, like=r)


@handles(torch.multinomial, T.multinomial)
def multinomial(ctx, x, num_samples, replacement=False, *, generator=None, out=None):
    """``num_samples`` category indices per row of the (unnormalised) probabilities ``x`` (last axis, static):
    categorical draws, or Gumbel top-k without replacement."""
    r = _like_dims(ctx, x)
    if r.ndim not in (1, 2) or r.dims[-1].is_dynamic():
        raise NotImplementedError("multinomial needs 1-d or 2-d probabilities with a static category axis")
    k = int(num_samples)
    logits = "tf.math.log(tf.reshape(tf.cast(x0, tf.float64), [-1, tf.shape(x0)[-1]]))"
    if replacement:
        pick = f"tf.random.categorical(lg, {k}, dtype=tf.int64)"
    else:
        pick = f"tf.cast(tf.math.top_k(lg - tf.math.log(-tf.math.log(tf.random.uniform(tf.shape(lg), " \
               f"dtype=tf.float64))), {k}).indices, tf.int64)"
    dims = [*r.dims[:-1], ctx.dims.static(k, f"{ctx.op_name}_samples")]
    code = f"(lambda lg: tf.stop_gradient(tf.reshape({pick}, tf.concat([tf.shape(x0)[:-1], [{k}]], 0))))({logits})"
    ref = ctx.tf_op(code, [r], dims, dtype=torch.int64)
    ctx.feed(ref, ctx.out)
    return ref


# -- in place -----------------------------------------------------------------------------------------
def _inplace(ctx, x, expr):
    r = _like_dims(ctx, x)
    return draw(ctx, expr, r.dims, like=r, dtype=r.dtype)


@handles(T.uniform_)
def uniform_(ctx, x, a=0.0, b=1.0, *, generator=None, **kwargs):
    """Uniform values in [a, b) (``from``/``to``)."""
    a, b = kwargs.get("from", a), kwargs.get("to", b)
    return _inplace(ctx, x, f"{lit(float(a))} + {lit(float(b) - float(a))} * {_uniform(x.dtype)}")


@handles(T.normal_)
def normal_(ctx, x, mean=0.0, std=1.0, *, generator=None):
    """``mean + std * N(0, 1)``."""
    return _inplace(ctx, x, f"{lit(float(mean))} + {lit(float(std))} * {_normal(x.dtype)}")


@handles(T.bernoulli_)
def bernoulli_(ctx, x, p=0.5, *, generator=None):
    """1 with probability ``p`` (a number, or a tensor broadcast onto ``x``), else 0."""
    r = _like_dims(ctx, x)
    if isinstance(p, torch.Tensor):
        pr = ctx.align(ctx.cast(ctx.ref(p), torch.float64), r.dims)
        return draw(ctx, f"tf.random.uniform({_S}, dtype=tf.float64) < source(1)", r.dims, [pr], like=r,
                    dtype=r.dtype)
    return draw(ctx, f"tf.random.uniform({_S}, dtype=tf.float64) < {lit(float(p))}", r.dims, like=r, dtype=r.dtype)


@handles(T.exponential_)
def exponential_(ctx, x, lambd=1.0, *, generator=None):
    """Exponential values with rate ``lambd``: -log(1 - U) / lambd."""
    return _inplace(ctx, x, f"-tf.math.log1p(-{_uniform(x.dtype)}) / {lit(float(lambd))}")


@handles(T.cauchy_)
def cauchy_(ctx, x, median=0.0, sigma=1.0, *, generator=None):
    """Cauchy values: median + sigma * tan(pi (U - 1/2))."""
    return _inplace(ctx, x, f"{lit(float(median))} + {lit(float(sigma))} * tf.tan({math.pi!r} * "
                            f"({_uniform(x.dtype)} - 0.5))")


@handles(T.log_normal_)
def log_normal_(ctx, x, mean=1.0, std=2.0, *, generator=None):
    """exp(mean + std * N(0, 1))."""
    return _inplace(ctx, x, f"tf.exp({lit(float(mean))} + {lit(float(std))} * {_normal(x.dtype)})")


@handles(T.geometric_)
def geometric_(ctx, x, p, *, generator=None):
    """Trials up to the first success (1, 2, ...) with success probability ``p``."""
    if not 0 < p <= 1:
        raise NotImplementedError(f"geometric_ with p={p} outside (0, 1]")
    u = f"(1.0 - tf.random.uniform({_S}, dtype=tf.float64))"
    trials = f"tf.math.ceil(tf.math.log({u}) / {lit(math.log1p(-p))})" if p < 1 else f"tf.zeros({_S}, tf.float64)"
    return _inplace(ctx, x, f"tf.maximum({trials}, 1.0)")


def _random_bound(dtype) -> int:
    """One above the largest value of ``x.random_()``: 2**mantissa for floats, the type's max for ints."""
    if dtype == torch.bool:
        return 2
    if dtype.is_floating_point:
        return 2 ** (torch.finfo(dtype).nmant + 1) + 1
    return min(torch.iinfo(dtype).max + 1, 2 ** 63 - 1)


@handles(T.random_)
def random_(ctx, x, *args, generator=None, **kwargs):
    """Integers uniform in [from, to) (``random_(to)``: [0, to); ``random_()``: [0, largest exact value])."""
    args = list(args) + [kwargs[k] for k in ("from", "to") if k in kwargs]
    low, high = (0, None) if not args else (0, args[0]) if len(args) == 1 else args[:2]
    high = _random_bound(x.dtype) if high is None else high
    r = _like_dims(ctx, x)
    return _ints(ctx, low, high, r.dims, like=r, dtype=r.dtype)


# -- noise in training mode ---------------------------------------------------------------------------
def _noise_axes(func, ndim: int) -> tuple | None:
    """The axes the mask of a dropout variant varies along (None: every element)."""
    if func in (F.dropout1d, F.dropout3d):
        batched = ndim == (3 if func is F.dropout1d else 5)
        return (0, 1) if batched else (0,)
    if func in (F.dropout2d, F.feature_alpha_dropout, torch.feature_dropout, torch.feature_dropout_,
                torch.feature_alpha_dropout, torch.feature_alpha_dropout_):
        if ndim < 2:
            raise NotImplementedError("feature dropout of a tensor with fewer than 2 axes")
        return (0, 1)
    return None


def _always(ctx) -> None:
    """``training=True`` in an eval capture: the layer samples always, as torch does here; said loudly, as
    it is often a module left in training mode."""
    why = (f"{ctx.op_name}: training=True in a capture with train=False: the network samples this noise always, "
           "also in RETURNN's inference (call model.eval() if that is not meant, or capture with train=True)")
    logger.warning(why)
    ctx.note(why)


def _alpha_constants(p: float) -> tuple[float, float]:
    """torch's alpha dropout: ``x * (a m) + alpha a (m - 1 + p)`` for the mask m; returns (a, alpha a)."""
    a = 1.0 / math.sqrt((_ALPHA * _ALPHA * p + 1) * (1 - p))
    return a, _ALPHA * a


def _keep(out: torch.Tensor, p: float, axes: tuple | None, alpha: bool) -> torch.Tensor:
    """torch's mask, scaled as a RETURNN dropout layer's (0 or 1 / (1 - p)), from its result."""
    if alpha:  # a dropped element is exactly the constant torch adds
        a, aa = _alpha_constants(p)
        dropped = (torch.zeros((), dtype=out.dtype) - 1).mul(aa).add(aa * p)
        keep = out != dropped
    else:
        keep = out != 0
    if axes is not None and keep.dim() > len(axes):
        keep = keep.flatten(len(axes)).any(-1)
    return keep.to(out.dtype) / (1 - p)


def _dropout(ctx, x, p: float, training: bool, alpha: bool):
    r, axes = ctx.ref(x), _noise_axes(ctx.func, x.dim()) if training or x.dim() >= 2 else None
    if not training and not ctx.train and not alpha and 0 < p < 1:  # the model's dropout, kept for training
        varying = [d for a, d in enumerate(r.dims) if axes is None or a in axes]  # (no dict of dims: see rename)
        return ctx.layer({"class": "dropout", "from": r, "dropout": p, "dropout_axis": varying}, r.dims)
    if not training or p == 0:
        return r
    if not 0 <= p <= 1:
        raise NotImplementedError(f"dropout probability {p} outside [0, 1]")
    cond = "self.network.cond_on_train(lambda: {}, lambda: source(0))" if ctx.train else "{}"
    if p == 1:  # torch: x * 0
        return ctx.eval(cond.format("source(0) * 0"), [r], r.dims)
    dims = list(r.dims) if axes is None else [r.dims[a] for a in axes]
    _check_dims(dims)
    d = {"class": "dropout", "from": ctx.fill(dims, 1, r.dtype), "dropout": p, "dropout_noise_shape": {"*": None}}
    if not ctx.train:  # training=True in an eval capture: sample always
        d["dropout_on_forward"] = True
        _always(ctx)
    noise = ctx.layer(d, dims, dtype=r.dtype)
    ctx.feed(noise, _keep(ctx.out, p, axes, alpha), lambda args, kwargs, out: _keep(out, p, axes, alpha))
    ctx.note("the dropout mask is fed from torch")
    if not alpha:  # (RETURNN's train flag: the mask is 1 when not training)
        return ctx.eval("source(0) * source(1)", [r, noise], r.dims)
    a, aa = _alpha_constants(p)
    m = "tf.minimum(source(1), 1.0)"  # the mask: 0 or 1
    return ctx.eval(cond.format(f"source(0) * ({m} * {lit(a)}) + (({m} - 1.0) * {lit(aa)} + {lit(aa * p)})"),
                    [r, noise], r.dims)


@handles(F.dropout, F.dropout1d, F.dropout2d, F.dropout3d)
def dropout(ctx, x, p=0.5, training=True, inplace=False):
    """When not training, a RETURNN dropout layer with torch's ``p`` (off at inference; kept for training the
    converted network); when training, x times a mask drawn by a RETURNN dropout layer (per element, or per
    channel: dropout1d/2d/3d), fed from torch at the parity check."""
    return _dropout(ctx, x, p, training, alpha=False)


@handles(F.alpha_dropout, F.feature_alpha_dropout)
def alpha_dropout(ctx, x, p=0.5, training=False, inplace=False):
    """SELU-preserving dropout (per element, or per channel) when training; else identity."""
    return _dropout(ctx, x, p, training, alpha=True)


@handles(torch.dropout, torch.dropout_, torch.feature_dropout, torch.feature_dropout_)
def torch_dropout(ctx, x, p, train):
    """``torch.dropout(x, p, train)`` (per element) and ``torch.feature_dropout`` (per channel)."""
    return _dropout(ctx, x, p, train, alpha=False)


@handles(torch.alpha_dropout, torch.alpha_dropout_, torch.feature_alpha_dropout, torch.feature_alpha_dropout_)
def torch_alpha_dropout(ctx, x, p, train):
    """``torch.alpha_dropout(x, p, train)`` and its per-channel form."""
    return _dropout(ctx, x, p, train, alpha=True)


def _slopes(x: torch.Tensor, out: torch.Tensor, mean: float) -> torch.Tensor:
    """torch's random slopes of rrelu, from its input and result (the mean slope where x >= 0)."""
    neg = x < 0
    return torch.where(neg, out / torch.where(neg, x, torch.ones_like(x)), torch.full_like(x, mean))


@handles(*dict.fromkeys([F.rrelu, F.rrelu_, torch.rrelu, torch.rrelu_]))
def rrelu(ctx, x, lower=1.0 / 8, upper=1.0 / 3, training=False, inplace=False, generator=None):
    """Randomized leaky ReLU: x if x >= 0 else slope * x, the slope uniform in [lower, upper) per element
    when training (its own layer, fed from torch), else (lower + upper) / 2."""
    r = ctx.ref(x)
    mean = (lower + upper) / 2
    if not training:
        return ctx.eval(f"tf.where(source(0) >= 0, source(0), source(0) * {lit(mean)})", [r], r.dims)
    if inplace or ctx.func is torch.rrelu_:
        raise NotImplementedError("in-place rrelu in training mode: torch's random slopes are lost with its input")
    _check_dims(r.dims)
    if not ctx.train:
        _always(ctx)
    draw_ = f"{lit(float(lower))} + {lit(float(upper - lower))} * tf.random.uniform(tf.shape(source(0)), " \
            f"dtype=source(0).dtype)"
    expr = f"self.network.cond_on_train(lambda: {draw_}, lambda: tf.fill(tf.shape(source(0)), " \
           f"tf.cast({lit(mean)}, source(0).dtype)))" if ctx.train else draw_
    slopes = ctx.eval(f"tf.stop_gradient({expr})", [ctx.fill(r.dims, 0, r.dtype)], r.dims, dtype=r.dtype)
    ctx.feed(slopes, _slopes(x, ctx.out, mean), lambda args, kwargs, out: _slopes(args[0], out, mean))
    ctx.note("the random slopes are fed from torch")
    return ctx.eval("tf.where(source(0) >= 0, source(0), source(0) * source(1))", [r, slopes], r.dims)
