"""Activations, softmax/log_softmax over any axis, GLU (the dropout family is in ``random``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .common import T, apply, lit, reduce_ref, slice_ref, softmax_ref
from .registry import handles


@handles(torch.relu, F.relu, T.relu, T.relu_, torch.relu_, F.relu_)
def relu(ctx, x, inplace=False):
    """max(x, 0)."""
    return apply(ctx, "tf.nn.relu({0})", x)


@handles(F.relu6)
def relu6(ctx, x, inplace=False):
    """min(max(x, 0), 6)."""
    return apply(ctx, "tf.nn.relu6({0})", x)


@handles(F.gelu)
def gelu(ctx, x, approximate="none"):
    """GELU, exact (erf) or tanh approximation."""
    return apply(ctx, f"tf.nn.gelu({{0}}, approximate={approximate == 'tanh'})", x)


@handles(F.leaky_relu, F.leaky_relu_)
def leaky_relu(ctx, x, negative_slope=0.01, inplace=False):
    """x if x >= 0 else slope * x."""
    return apply(ctx, f"tf.where({{0}} >= 0, {{0}}, {{0}} * {lit(negative_slope)})", x)


@handles(F.elu, F.elu_)
def elu(ctx, x, alpha=1.0, inplace=False):
    """x if x > 0 else alpha * (exp(x) - 1)."""
    return apply(ctx, f"tf.where({{0}} > 0, {{0}}, {lit(alpha)} * tf.math.expm1({{0}}))", x)


@handles(F.silu)
def silu(ctx, x, inplace=False):
    """x * sigmoid(x)."""
    return apply(ctx, "tf.nn.silu({0})", x)


@handles(F.mish)
def mish(ctx, x, inplace=False):
    """x * tanh(softplus(x))."""
    return apply(ctx, "{0} * tf.tanh(tf.nn.softplus({0}))", x)


@handles(F.softplus)
def softplus(ctx, x, beta=1.0, threshold=20.0):
    """log(1 + exp(beta x)) / beta, linear above ``threshold``."""
    b = lit(beta)
    return apply(ctx, f"tf.where({{0}} * {b} > {lit(threshold)}, {{0}}, tf.nn.softplus({{0}} * {b}) / {b})", x)


@handles(F.hardtanh, F.hardtanh_)
def hardtanh(ctx, x, min_val=-1.0, max_val=1.0, inplace=False):
    """clip(x, min_val, max_val)."""
    return apply(ctx, f"tf.clip_by_value({{0}}, {lit(min_val)}, {lit(max_val)})", x)


@handles(F.hardsigmoid)
def hardsigmoid(ctx, x, inplace=False):
    """relu6(x + 3) / 6."""
    return apply(ctx, "tf.nn.relu6({0} + 3.0) / 6.0", x)


@handles(F.hardswish)
def hardswish(ctx, x, inplace=False):
    """x * relu6(x + 3) / 6."""
    return apply(ctx, "{0} * tf.nn.relu6({0} + 3.0) / 6.0", x)


@handles(F.logsigmoid)
def logsigmoid(ctx, x):
    """log(sigmoid(x))."""
    return apply(ctx, "tf.math.log_sigmoid({0})", x)


@handles(F.softsign)
def softsign(ctx, x):
    """x / (1 + |x|)."""
    return apply(ctx, "tf.nn.softsign({0})", x)


@handles(F.glu)
def glu(ctx, x, dim=-1):
    """First half * sigmoid(second half) along ``dim`` (RETURNN's ``gating`` layer where ``dim`` is the only
    static axis, RETURNN's feature axis)."""
    r = ctx.ref(x)
    ax = dim % r.ndim
    half = r.shape[ax] // 2
    if not r.dims[ax].is_dynamic():  # one layer: TF splits the axis (the half takes the model's dim of that size)
        out = ctx.dims.shared.feature(half, f"{ctx.op_name}_half", avoid=[d for i, d in enumerate(r.dims) if i != ax])
        dims = [out if i == ax else d for i, d in enumerate(r.dims)]
        if all(d.is_batch_dim() or d.is_dynamic() for i, d in enumerate(r.dims) if i != ax):
            # the only static axis, RETURNN's feature axis: its ``gating`` layer
            return ctx.layer({"class": "gating", "from": r, "activation": "identity", "out_dim": out}, dims)
        return ctx.tf_op(f"(lambda a, b: a * tf.sigmoid(b))(*tf.split(x0, 2, axis={ax}))", [r], dims, dtype=r.dtype)
    a = slice_ref(ctx, r, ax, 0, half)
    b = slice_ref(ctx, r, ax, half, 2 * half)
    b = ctx.rename(b, {b.dims[ax]: a.dims[ax]})
    return ctx.eval("source(0) * tf.sigmoid(source(1))", [a, b], a.dims)


def _softmax(ctx, x, dim, dtype, log: bool):
    r = ctx.ref(x)
    if dtype is not None:
        r = ctx.cast(r, dtype)
    elif r.dtype != ctx.out.dtype:
        r = ctx.cast(r, ctx.out.dtype)
    if dim is None:
        dim = 0 if r.ndim in (0, 1, 3) else 1  # torch's legacy implicit dim
    axis = r.dims[dim % r.ndim]
    if not log:  # masked over a dynamic axis: padding frames get 0
        return softmax_ref(ctx, r, dim % r.ndim)
    if axis.is_dynamic():  # x - logsumexp over the valid frames
        lse = reduce_ref(ctx, r, "logsumexp", [dim % r.ndim], False)
        return ctx.eval("source(0) - source(1)", [r, lse], r.dims)
    return ctx.eval("tf.nn.log_softmax(source(0), axis={axis})", [r], r.dims, axis=axis)


@handles(F.softmax, torch.softmax, T.softmax, torch.special.softmax)
def softmax(ctx, x, dim=None, _stacklevel=3, dtype=None):
    """Softmax over ``dim`` (masked over a dynamic axis)."""
    return _softmax(ctx, x, dim, dtype, log=False)


@handles(F.log_softmax, torch.log_softmax, T.log_softmax, torch.special.log_softmax)
def log_softmax(ctx, x, dim=None, _stacklevel=3, dtype=None):
    """Log-softmax over ``dim``."""
    return _softmax(ctx, x, dim, dtype, log=True)


@handles(F.prelu)
def prelu(ctx, x, weight):
    """x if x >= 0 else weight * x, weight per channel (axis 1) or shared (one element, 0-d or 1-d)."""
    r = ctx.ref(x)
    w = ctx.ref(weight, prefer=[r.dims[1]] if r.ndim > 1 and weight.dim() == 1 else None)
    if w.ndim == 1 and w.shape[0] != 1:
        w = ctx.rename(w, {w.dims[0]: r.dims[1]})
    elif w.ndim == 1:
        w = ctx.squeeze(w, 0)
    return ctx.eval("tf.where(source(0) >= 0, source(0), source(0) * source(1))", [r, w], r.dims)
