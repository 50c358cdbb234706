"""Normalisation: F.layer_norm (RETURNN ``layer_norm``/``norm`` holding the module's parameters, else reduce +
eval layers), F.batch_norm (running statistics), F.group_norm, F.instance_norm (no running stats),
F.normalize, as reduce + eval layers with the torch parameters as variables."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..tensor import MergedDim
from .common import SAFE_SQRT, held_layer, lit, reduce_ref
from .registry import handles


def _affine(ctx, y, weight, bias, axes):
    """y * weight + bias, weight/bias over the torch axes ``axes`` of ``y``."""
    srcs, expr = [y], "source(0)"
    for t, op in ((weight, "*"), (bias, "+")):
        if t is None:
            continue
        p = ctx.ref(t, prefer=[y.dims[a] for a in axes])
        p = ctx.rename(p, {pd: y.dims[a] for pd, a in zip(p.dims, axes)})
        srcs.append(p)
        expr = f"({expr}) {op} source({len(srcs) - 1})"
    if len(srcs) == 1:
        return y
    return ctx.eval(expr, srcs, y.dims)


def normalize_over(ctx, r, axes, eps):
    """(x - mean) / sqrt(var + eps) over the torch axes ``axes`` (biased variance)."""
    mean = reduce_ref(ctx, r, "mean", axes, False)
    cen = ctx.eval("source(0) - source(1)", [r, mean], r.dims)
    var = reduce_ref(ctx, ctx.eval("tf.square(source(0))", [cen], r.dims), "mean", axes, False)
    return ctx.eval(f"source(0) * tf.math.rsqrt(source(1) + {lit(eps)})", [cen, var], r.dims)


@handles(F.layer_norm)
def layer_norm(ctx, input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalise over the last len(normalized_shape) axes, then scale and shift."""
    r = ctx.cast(ctx.ref(input), ctx.out.dtype)
    n = len(normalized_shape)
    axes = list(range(r.ndim - n, r.ndim))
    y = _norm_layer(ctx, r, axes, weight, bias, eps)
    if y is not None:
        return y
    y = normalize_over(ctx, r, axes, eps)
    return _affine(ctx, y, weight, bias, axes)


def _norm_layer(ctx, r, axes, weight, bias, eps):
    """RETURNN's ``layer_norm`` (one axis, scale and bias) or ``norm`` over the static ``axes`` of ``r``, holding
    the module's weight and bias as its ``scale`` and ``bias``; None where they are not a module's own
    parameters (see ``ctx.param_owner``) or an axis is not a static one."""
    dims = [r.dims[a] for a in axes]
    if r.dtype != torch.float32 or any(isinstance(d, MergedDim) or d.is_dynamic() or d.is_batch_dim() for d in dims):
        return None
    params = {k: t for k, t in (("scale", weight), ("bias", bias)) if t is not None}
    owner = ctx.param_owner(params) if params else True
    if owner is None:
        return None
    if len(dims) == 1 and len(params) == 2:
        d = {"class": "layer_norm", "from": r, "in_dim": dims[0], "epsilon": float(eps)}
    else:
        d = {"class": "norm", "from": r, "axes": dims, "scale": weight is not None, "bias": bias is not None,
             "epsilon": float(eps)}
        if params:
            d["param_shape"] = dims
    return held_layer(ctx, owner, d, r.dims, params)


@handles(F.batch_norm)
def batch_norm(ctx, input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
               eps=1e-5):
    """Batch norm over channel axis 1: running statistics (eval), or batch statistics when training
    (capture with ``train=True``; the running-stat update stays in torch)."""
    r = ctx.ref(input)
    if training or running_mean is None:
        if not ctx.train and running_mean is not None:
            raise NotImplementedError("batch_norm in training mode in a capture with train=False: call "
                                      "model.eval() or capture with train=True")
        y = normalize_over(ctx, r, [0] + list(range(2, r.ndim)), eps)
        return _affine(ctx, y, weight, bias, [1])
    y = _batch_norm_layer(ctx, r, running_mean, running_var, weight, bias, momentum, eps)
    if y is not None:
        return y
    c = r.dims[1]
    srcs, expr = [r], f"(source(0) - source(1)) * tf.math.rsqrt(source(2) + {lit(eps)})"
    for t, op in ((running_mean, None), (running_var, None), (weight, "*"), (bias, "+")):
        if t is None:
            continue
        p = ctx.ref(t, prefer=[c])
        srcs.append(ctx.rename(p, {p.dims[0]: c}))
        expr = f"({expr}) {op} source({len(srcs) - 1})" if op else expr
    return ctx.eval(expr, srcs, r.dims)  # (one layer: statistics, scale and shift)


def _batch_norm_layer(ctx, r, running_mean, running_var, weight, bias, momentum, eps):
    """RETURNN's ``batch_norm`` holding the module's running statistics and affine parameters (their torch values;
    at inference it normalises with the running statistics as torch's eval mode does, and a RETURNN training
    uses batch statistics over the valid frames and updates them, with torch's momentum); None where they are
    not the module's own."""
    c = r.dims[1]
    if r.dtype != torch.float32 or isinstance(c, MergedDim) or c.is_dynamic() or c.is_batch_dim() or \
            not r.dims[0].is_batch_dim():
        return None
    params = {"batch_norm/v2_mean": running_mean, "batch_norm/v2_variance": running_var,
              "batch_norm/v2_gamma": weight, "batch_norm/v2_beta": bias}
    owner = ctx.param_owner(params, buffers=True)
    if owner is None:
        return None
    d = {"class": "batch_norm", "from": r, "in_dim": c, "epsilon": float(eps), "use_std": weight is not None,
         "use_shift": bias is not None, "momentum": float(momentum if momentum is not None else 0.1),
         "masked_time": True}
    return held_layer(ctx, owner, d, r.dims, params)


@handles(F.group_norm)
def group_norm(ctx, input, num_groups, weight=None, bias=None, eps=1e-5):
    """Normalise each group of channels over (channels in group, spatial axes)."""
    r = ctx.ref(input)
    c = r.dims[1]
    g = ctx.dims.static(num_groups, f"{ctx.op_name}_groups")
    cg = ctx.dims.static(r.shape[1] // num_groups, f"{ctx.op_name}_per_group")
    dims = [r.dims[0], g, cg] + list(r.dims[2:])
    split = ctx.layer({"class": "split_dims", "from": r, "axis": c, "dims": [g, cg]}, dims, dtype=r.dtype)
    y = normalize_over(ctx, split, list(range(2, len(dims))), eps)
    merged = ctx.layer({"class": "merge_dims", "from": y, "axes": [g, cg], "out_dim": c}, r.dims, dtype=r.dtype)
    return _affine(ctx, merged, weight, bias, [1])


@handles(F.instance_norm)
def instance_norm(ctx, input, running_mean=None, running_var=None, weight=None, bias=None,
                  use_input_stats=True, momentum=0.1, eps=1e-5):
    """Normalise each channel of each sequence over its spatial axes."""
    if not use_input_stats:
        return batch_norm(ctx, input, running_mean, running_var, weight, bias, False, momentum, eps)
    r = ctx.ref(input)
    y = normalize_over(ctx, r, list(range(2, r.ndim)), eps)
    return _affine(ctx, y, weight, bias, [1])


@handles(F.normalize)
def normalize(ctx, input, p=2.0, dim=1, eps=1e-12, out=None):
    """x / max(||x||_p, eps) along ``dim``."""
    r = ctx.ref(input)
    ax = dim % r.ndim
    if p == 2:
        norm = reduce_ref(ctx, ctx.eval("tf.square(source(0))", [r], r.dims), "sum", [ax], False)
        expr = f"source(0) / tf.maximum({SAFE_SQRT}(source(1)), {lit(eps)})"
    elif p == 1:
        norm = reduce_ref(ctx, ctx.eval("tf.abs(source(0))", [r], r.dims), "sum", [ax], False)
        expr = f"source(0) / tf.maximum(source(1), {lit(eps)})"
    elif p in (float("inf"), float("-inf")):
        absx = ctx.eval("tf.abs(source(0))", [r], r.dims)
        norm = reduce_ref(ctx, absx, "max" if p > 0 else "min", [ax], False)
        expr = f"source(0) / tf.maximum(source(1), {lit(eps)})"
    elif p == 0:  # the count of nonzero entries
        nz = ctx.eval("tf.cast(tf.not_equal(source(0), 0), source(0).dtype)", [r], r.dims)
        norm = reduce_ref(ctx, nz, "sum", [ax], False)
        expr = f"source(0) / tf.maximum(source(1), {lit(eps)})"
    else:
        norm = reduce_ref(ctx, ctx.eval(f"tf.pow(tf.abs(source(0)), {lit(float(p))})", [r], r.dims), "sum", [ax],
                          False)
        expr = f"source(0) / tf.maximum(tf.pow(source(1), {lit(1.0 / float(p))}), {lit(eps)})"
    return ctx.eval(expr, [r, norm], r.dims)


@handles(torch._weight_norm)
def weight_norm(ctx, v, g, dim=0):
    """weight = g * v / ||v|| (norm over all axes but ``dim``): nn.utils weight_norm parametrizations."""
    rv, rg = ctx.ref(v), ctx.ref(g)
    ax = dim % rv.ndim if dim is not None and dim != -1 else None
    others = [k for k in range(rv.ndim) if k != ax]
    sq = ctx.eval("tf.square(source(0))", [rv], rv.dims)
    norm = reduce_ref(ctx, sq, "sum", others, False)
    for k in reversed(range(rg.ndim)):  # g is (O, 1, 1, ...): keep the axis of ``dim`` only
        if rg.shape[k] == 1:
            rg = ctx.squeeze(rg, k)
    if ax is not None and rg.ndim == 1:
        rg = ctx.rename(rg, {rg.dims[0]: rv.dims[ax]})
    # (g / ||v|| first, as torch: one product of v's size, not two)
    return ctx.eval("source(0) * (source(1) * tf.math.rsqrt(source(2)))", [rv, rg, norm], rv.dims)
