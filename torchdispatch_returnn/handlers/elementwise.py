"""Elementwise math: arithmetic operators, comparisons, unary functions, where/masked_fill/clamp."""

from __future__ import annotations

import math

import torch

from ..sizes import DimInt, Lin
from .common import T, apply, lit
from .registry import handles


def _size_lin(ctx, x):
    """A size operand as a linear expression: DimInt, int, or a 0-d tensor holding a size."""
    if isinstance(x, DimInt):
        return x.lin
    if isinstance(x, int) and not isinstance(x, bool):
        return Lin((), x)
    if isinstance(x, torch.Tensor) and x.dim() == 0 and ctx.is_captured(x):
        return ctx.dims.size_tensor(ctx.ref(x).layer)
    return None


def _size_result(ctx, kind, a, b, ref):
    """Arithmetic on size tensors (``lengths.max() + 1``) gives a size tensor too."""
    if kind is None or ctx.out.dim() != 0 or ctx.out.dtype.is_floating_point or ctx.out.dtype == torch.bool:
        return ref
    la, lb = _size_lin(ctx, a), _size_lin(ctx, b)
    if la is None or lb is None or la.is_const and lb.is_const:
        return ref
    if kind == "mul":
        lin = la.scale(lb.const) if lb.is_const else lb.scale(la.const) if la.is_const else None
    else:
        lin = la + lb if kind == "add" else la - lb
    if lin is not None:
        ctx.dims.mark_size_tensor(ref.layer, lin)
    return ref


def _binary(fmt: str, kind=None):
    def h(ctx, a, b, *, alpha=1, out=None):
        if alpha != 1:
            return apply(ctx, fmt.replace("{1}", "({1} * %s)" % lit(alpha)), a, b)
        return _size_result(ctx, kind, a, b, apply(ctx, fmt, a, b))
    return h


def _rbinary(fmt: str, kind=None):
    def h(ctx, a, b):
        return _size_result(ctx, kind, b, a, apply(ctx, fmt, b, a))
    return h


# (torch dispatches scalar + tensor, scalar * tensor, & and | as the forward ops: no __radd__ etc.)
for _fmt, _fwd, _rev in [
    ("{0} + {1}", [torch.add, T.add, T.__add__, T.add_, T.__iadd__], []),
    ("{0} - {1}", [torch.sub, torch.subtract, T.sub, T.subtract, T.__sub__, T.sub_, T.__isub__],
     [T.__rsub__, torch.rsub]),
    ("{0} * {1}", [torch.mul, torch.multiply, T.mul, T.multiply, T.__mul__, T.mul_, T.__imul__], []),
    ("tf.pow({0}, {1})", [torch.pow, T.pow, T.__pow__, T.pow_, T.__ipow__], [T.__rpow__]),
    ("tf.math.floormod({0}, {1})", [torch.remainder, T.remainder, T.__mod__, T.remainder_, T.__imod__], [T.__rmod__]),
    ("tf.maximum({0}, {1})", [torch.maximum, T.maximum], []),
    ("tf.minimum({0}, {1})", [torch.minimum, T.minimum], []),
    ("tf.logical_and({0}, {1})", [torch.logical_and, T.logical_and, T.__and__, T.bitwise_and, torch.bitwise_and], []),
    ("tf.logical_or({0}, {1})", [torch.logical_or, T.logical_or, T.__or__, T.bitwise_or, torch.bitwise_or], []),
    ("tf.math.logical_xor({0}, {1})", [torch.logical_xor, T.logical_xor, T.__xor__], []),
]:
    _fwd = list(dict.fromkeys(_fwd))
    if torch.rsub in _rev:
        _rev.remove(torch.rsub)
        handles(torch.rsub)(_rbinary(_fmt, "sub"))
    _kind = {"{0} + {1}": "add", "{0} - {1}": "sub", "{0} * {1}": "mul"}.get(_fmt)
    handles(*_fwd)(_binary(_fmt, _kind))
    if _rev:
        handles(*_rev)(_rbinary(_fmt, _kind))


def _div_fmt(ctx, rounding_mode):
    if rounding_mode is None:
        return "{0} / {1}"
    if rounding_mode == "floor":
        return "tf.math.floordiv({0}, {1})"
    if ctx.out.dtype.is_floating_point:
        return "(lambda q: tf.sign(q) * tf.floor(tf.abs(q)))({0} / {1})"
    return "tf.truncatediv({0}, {1})"


@handles(torch.div, torch.divide, torch.true_divide, T.div, T.divide, T.true_divide, T.__truediv__, T.div_,
         T.__itruediv__)
def div(ctx, a, b, *, rounding_mode=None, out=None):
    """a / b (true, floor or trunc division)."""
    return apply(ctx, _div_fmt(ctx, rounding_mode), a, b)


@handles(T.__rtruediv__)
def rdiv(ctx, a, b):
    """b / a."""
    return apply(ctx, "{0} / {1}", b, a)


@handles(torch.floor_divide, T.floor_divide, T.__floordiv__, T.__ifloordiv__)
def floordiv(ctx, a, b):
    """a // b (torch rounds toward -inf)."""
    return apply(ctx, "tf.math.floordiv({0}, {1})", a, b)


@handles(torch.fmod, T.fmod, T.fmod_)
def fmod(ctx, a, b, *, out=None):
    """C's fmod (the remainder of the division rounded toward zero). TF's ``TruncateMod`` has no
    gradient: torch's (1 for ``a``, ``-trunc(a / b)`` for ``b``) is added in the graph."""
    if not ctx.out.dtype.is_floating_point:
        return apply(ctx, "tf.truncatemod({0}, {1})", a, b)
    return apply(ctx, "(lambda a, b: tf.stop_gradient(tf.truncatemod(a, b)) + (a - tf.stop_gradient(a)) - "
                 "(b - tf.stop_gradient(b)) * tf.stop_gradient(tf.sign(a / b) * tf.floor(tf.abs(a / b))))"
                 "({0}, {1})", a, b)


@handles(T.__rfloordiv__)
def rfloordiv(ctx, a, b):
    """b // a."""
    return apply(ctx, "tf.math.floordiv({0}, {1})", b, a)


def _compare(fmt: str):
    def h(ctx, a, b, *, out=None):
        return apply(ctx, fmt, a, b, dtype=torch.result_type(a, b))
    return h


for _fmt, _fns in [
    ("tf.equal({0}, {1})", [torch.eq, T.eq, T.__eq__]),
    ("tf.not_equal({0}, {1})", [torch.ne, torch.not_equal, T.ne, T.not_equal, T.__ne__]),
    ("tf.less({0}, {1})", [torch.lt, torch.less, T.lt, T.less, T.__lt__]),
    ("tf.less_equal({0}, {1})", [torch.le, torch.less_equal, T.le, T.less_equal, T.__le__]),
    ("tf.greater({0}, {1})", [torch.gt, torch.greater, T.gt, T.greater, T.__gt__]),
    ("tf.greater_equal({0}, {1})", [torch.ge, torch.greater_equal, T.ge, T.greater_equal, T.__ge__]),
]:
    handles(*_fns)(_compare(_fmt))


_UNARY = {
    "-{0}": [torch.neg, torch.negative, T.neg, T.negative, T.__neg__, T.neg_],
    "tf.abs({0})": [torch.abs, torch.absolute, T.abs, T.absolute, T.__abs__, T.abs_],
    "tf.math.reciprocal({0})": [torch.reciprocal, T.reciprocal, T.reciprocal_],
    "tf.exp({0})": [torch.exp, T.exp, T.exp_],
    "tf.math.expm1({0})": [torch.expm1, T.expm1],
    "tf.math.log({0})": [torch.log, T.log, T.log_],
    "tf.math.log1p({0})": [torch.log1p, T.log1p],
    "tf.math.log({0}) / %r" % math.log(2.0): [torch.log2, T.log2],
    "tf.math.log({0}) / %r" % math.log(10.0): [torch.log10, T.log10],
    "tf.sqrt({0})": [torch.sqrt, T.sqrt, T.sqrt_],
    "tf.math.rsqrt({0})": [torch.rsqrt, T.rsqrt],
    "tf.square({0})": [torch.square, T.square],
    "tf.sin({0})": [torch.sin, T.sin],
    "tf.cos({0})": [torch.cos, T.cos],
    "tf.tan({0})": [torch.tan, T.tan],
    "tf.tanh({0})": [torch.tanh, T.tanh, T.tanh_, torch.nn.functional.tanh],
    "tf.sigmoid({0})": [torch.sigmoid, T.sigmoid, T.sigmoid_, torch.nn.functional.sigmoid, torch.special.expit],
    "tf.math.erf({0})": [torch.erf, T.erf, torch.special.erf],
    "tf.floor({0})": [torch.floor, T.floor, T.floor_],
    "tf.math.ceil({0})": [torch.ceil, T.ceil, T.ceil_],
    "tf.sign({0})": [torch.sign, T.sign],
    "tf.math.logical_not({0})": [torch.logical_not, T.logical_not, T.__invert__, torch.bitwise_not, T.bitwise_not],
    "(lambda x: tf.sign(x) * tf.floor(tf.abs(x)))({0})": [torch.trunc, T.trunc, torch.fix, T.fix],
    "tf.math.is_nan({0})": [torch.isnan, T.isnan],
    "tf.math.is_inf({0})": [torch.isinf, T.isinf],
    "tf.math.is_finite({0})": [torch.isfinite, T.isfinite],
}


def _unary(fmt: str):
    def h(ctx, x, *, out=None):
        dtype = x.dtype if fmt.startswith("tf.math.is_") else None
        return apply(ctx, fmt, x, dtype=dtype)
    return h


for _fmt, _fns in _UNARY.items():
    handles(*dict.fromkeys(_fns))(_unary(_fmt))


@handles(torch.round, T.round, T.round_)
def round_(ctx, x, *, decimals=0, out=None):
    """Round half to even (as torch), optionally to ``decimals`` places."""
    if decimals == 0:
        return apply(ctx, "tf.round({0})", x)
    s = lit(10.0 ** decimals)
    return apply(ctx, f"tf.round({{0}} * {s}) / {s}", x)


@handles(torch.where, T.where)
def where(ctx, condition, input=None, other=None, *, out=None):
    """``torch.where(cond, a, b)``."""
    if input is None or other is None:
        raise NotImplementedError("torch.where(cond) with one argument (nonzero) has a data-dependent shape")
    return apply(ctx, "tf.where({0}, {1}, {2})", condition, input, other, conditions=(0,))


@handles(torch.masked_fill, T.masked_fill, T.masked_fill_)
def masked_fill(ctx, x, mask, value):
    """``x.masked_fill(mask, value)``."""
    return apply(ctx, "tf.where({1}, {2}, {0})", x, mask, value, conditions=(1,))


@handles(torch.clamp, torch.clip, T.clamp, T.clip, T.clamp_, T.clip_)
def clamp(ctx, x, min=None, max=None, *, out=None):
    """Clamp to [min, max] (either may be None, a number or a tensor)."""
    args, fmt = [x], "{0}"
    if min is not None:
        args.append(min)
        fmt = f"tf.maximum({fmt}, {{{len(args) - 1}}})"
    if max is not None:
        args.append(max)
        fmt = f"tf.minimum({fmt}, {{{len(args) - 1}}})"
    return apply(ctx, fmt, *args)


@handles(torch.clamp_min, T.clamp_min)
def clamp_min(ctx, x, min):
    """``x.clamp(min=min)``."""
    return apply(ctx, "tf.maximum({0}, {1})", x, min)


@handles(torch.clamp_max, T.clamp_max)
def clamp_max(ctx, x, max):
    """``x.clamp(max=max)``."""
    return apply(ctx, "tf.minimum({0}, {1})", x, max)
