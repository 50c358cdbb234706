"""Pooling (max/avg 1-D and 2-D) and upsampling along axes (repeat_interleave, interpolate
"nearest" with integer factors); output lengths of dynamic axes are derived dims."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .common import mask_padding, ntuple, reduce_ref, slice_ref
from .conv import out_len_dim
from .registry import handles


def pool_nd(ctx, n, mode, x, kernel_size, stride, padding, dilation, ceil_mode, count_include_pad=True):
    if ceil_mode:
        raise NotImplementedError("pooling with ceil_mode=True")
    r = ctx.ref(x)
    if r.ndim != n + 2:
        raise NotImplementedError(f"{mode} pool{n}d input without a batch axis")
    ks = ntuple(kernel_size, n)
    stride = ntuple(stride if stride not in (None, []) else kernel_size, n)
    pads, dil = ntuple(padding, n), ntuple(dilation, n)
    if mode == "avg" and any(pads):
        raise NotImplementedError("avg pooling with padding")
    if mode == "max" and n == 2 and any(d > 1 for d in dil):  # RETURNN's 2-D dilated pool fails: a max over
        for ax in (3, 2):  # a 2-D window is the max over one axis of the max over the other
            r = _pool_axes(ctx, r, mode, [ax], [ks[ax - 2]], [stride[ax - 2]], [pads[ax - 2]], [dil[ax - 2]])
        return r
    return _pool_axes(ctx, r, mode, list(range(2, 2 + n)), ks, stride, pads, dil)


def _pool_axes(ctx, r, mode, axes, ks, stride, pads, dil):
    """A ``pool`` layer over the (B, C, ...) ref ``r`` along the torch axes ``axes`` (other axes kept)."""
    if any(d > 1 for d in dil) and any(st > 1 for st in stride):  # TF pools either strided or dilated:
        y = _pool_axes(ctx, r, mode, axes, ks, [1] * len(axes), pads, dil)  # dilated, then every stride-th window
        for ax, st in zip(axes, stride):
            y = slice_ref(ctx, y, ax, 0, None, st) if st > 1 else y
        return y
    spatial = [r.dims[ax] for ax in axes]
    out_sp = [out_len_dim(ctx, r.dims[ax], r.shape[ax], k, st, 2 * p, d) for ax, k, st, p, d in
              zip(axes, ks, stride, pads, dil)]
    d = {"class": "pool", "from": r, "mode": mode, "pool_size": list(ks), "strides": list(stride),
         "dilation_rate": list(dil), "padding": list(pads) if any(pads) else "valid", "in_dim": r.dims[1],
         "in_spatial_dims": spatial, "out_spatial_dims": out_sp,
         # valid avg windows of valid output frames never reach the padding (and RETURNN's masked avg
         # pool fails on a dtype mismatch); max pooling with padding needs the mask
         "use_time_mask": mode == "max"}
    dims = list(r.dims)
    for ax, o in zip(axes, out_sp):
        dims[ax] = o
    y = ctx.layer(d, dims)
    if mode == "max":  # windows inside the padding give -inf there: 0 instead, or 0 * inf makes NaN gradients
        for o in out_sp:  # of every later weight on a padded batch
            if o.is_dynamic() and not o.is_batch_dim():
                y = mask_padding(ctx, y, o)
    return y


@handles(F.max_pool1d)
def max_pool1d(ctx, input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Max over windows along T of (B, C, T)."""
    if return_indices:
        raise NotImplementedError("max_pool1d with return_indices")
    return pool_nd(ctx, 1, "max", input, kernel_size, stride, padding, dilation, ceil_mode)


@handles(F.max_pool2d)
def max_pool2d(ctx, input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Max over windows of (B, C, H, W)."""
    if return_indices:
        raise NotImplementedError("max_pool2d with return_indices")
    return pool_nd(ctx, 2, "max", input, kernel_size, stride, padding, dilation, ceil_mode)


@handles(F.avg_pool1d)
def avg_pool1d(ctx, input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """Mean over windows along T of (B, C, T)."""
    return pool_nd(ctx, 1, "avg", input, kernel_size, stride, padding, 1, ceil_mode, count_include_pad)


@handles(F.avg_pool2d)
def avg_pool2d(ctx, input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """Mean over windows of (B, C, H, W)."""
    if divisor_override is not None:
        raise NotImplementedError("avg_pool2d with divisor_override")
    return pool_nd(ctx, 2, "avg", input, kernel_size, stride, padding, 1, ceil_mode, count_include_pad)


def repeat_axis(ctx, r, ax, k: int):
    """Each frame along axis ``ax`` repeated ``k`` times (T -> T*k, per sequence)."""
    d = r.dims[ax]
    new = ctx.dims.derive("mul", d, k) if d.is_dynamic() else ctx.dims.static(r.shape[ax] * k, f"{ctx.op_name}_dim")
    dims = list(r.dims)
    dims[ax] = new
    if d.is_dynamic():
        return ctx.layer({"class": "repeat", "from": r, "repetitions": k, "axis": d, "out_dim": new}, dims,
                         dtype=r.dtype)
    return _static_repeat(ctx, r, ax, k, new)


def _static_repeat(ctx, r, ax, k, new):
    # split the axis into (n, 1), tile to (n, k), merge back
    one = ctx.dims.static(1, f"{ctx.op_name}_one")
    kd = ctx.dims.static(k, f"{ctx.op_name}_k")
    d = r.dims[ax]
    dims = list(r.dims[:ax + 1]) + [one] + list(r.dims[ax + 1:])
    s = ctx.layer({"class": "split_dims", "from": r, "axis": d, "dims": [d, one]}, dims, dtype=r.dtype)
    zeros = ctx.fill([kd], 0, r.dtype)
    t = ctx.eval("source(0) + source(1)" if r.dtype != torch.bool else "tf.logical_or(source(0), source(1))",
                 [ctx.squeeze(s, ax + 1), zeros], list(r.dims[:ax + 1]) + [kd] + list(r.dims[ax + 1:]),
                 dtype=r.dtype)
    out = list(r.dims)
    out[ax] = new
    return ctx.layer({"class": "merge_dims", "from": t, "axes": [d, kd], "out_dim": new}, out, dtype=r.dtype)


@handles(torch.repeat_interleave, torch.Tensor.repeat_interleave)
def repeat_interleave(ctx, x, repeats=None, dim=None, *, output_size=None):
    """Repeat each element ``repeats`` (an int) times along ``dim``."""
    if not isinstance(repeats, int) or dim is None:
        raise NotImplementedError("repeat_interleave with tensor repeats or without dim")
    r = ctx.ref(x)
    return repeat_axis(ctx, r, dim % r.ndim, repeats)


@handles(F.interpolate)
def interpolate(ctx, input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None, antialias=False):
    """Nearest-neighbour upsampling by integer factors (nn.Upsample)."""
    r = ctx.ref(input)
    n = r.ndim - 2
    if mode != "nearest":
        raise NotImplementedError(f"interpolate mode {mode!r}")
    if scale_factor is None:
        factors = [int(o) // int(i) for o, i in zip(ctx.out.shape[2:], r.shape[2:])]
        if any(int(o) != f * int(i) for o, f, i in zip(ctx.out.shape[2:], factors, r.shape[2:])):
            raise NotImplementedError("interpolate to a size that is not an integer multiple")
    else:
        factors = list(ntuple(scale_factor, n))
    if any(float(f) != int(f) for f in factors):
        raise NotImplementedError("interpolate with a non-integer scale factor")
    factors = [int(f) for f in factors]
    for i, f in enumerate(factors):
        if f != 1:
            r = repeat_axis(ctx, r, 2 + i, f)
    return r


@handles(torch.Tensor.unfold)
def unfold(ctx, x, dimension, size, step):
    """Sliding windows (framing) along ``dimension``: (..., T, ...) -> (..., n_frames, ..., size);
    a dynamic axis gives a derived frame count per sequence; a 0-d tensor gives one window of 1)."""
    r = ctx.ref(x)
    if r.ndim == 0:
        if size != 1:
            raise NotImplementedError(f"unfold of a 0-d tensor with size {size}")
        return ctx.unsqueeze(r, 0)
    ax = dimension % r.ndim
    d = r.dims[ax]
    if d.is_batch_dim():
        raise NotImplementedError("Tensor.unfold along the batch axis (windows over sequences)")
    if d.is_dynamic():
        n_dim = ctx.dims.derive("ceildiv", ctx.dims.derive("sub", d, size - 1), step)
    else:
        n_dim = ctx.dims.static((r.shape[ax] - size) // step + 1, f"{ctx.op_name}_frames")
    w_dim = ctx.dims.static(size, f"{ctx.op_name}_window")
    dims = list(r.dims)
    dims[ax] = n_dim
    return ctx.layer({"class": "window", "from": r, "axis": d, "window_size": size, "window_dim": w_dim,
                      "stride": step, "padding": "valid", "out_spatial_dim": n_dim}, dims + [w_dim])


def adaptive_pool(ctx, mode, n, x, output_size):
    """Adaptive pooling where it is a plain reduction or pooling: target 1 (global pooling over
    the axis, masked for a dynamic one), None/same size (kept), or an exact divisor of a static size."""
    r = ctx.ref(x)
    sizes = list(ntuple(output_size, n))
    spatial = list(range(r.ndim - n, r.ndim))
    red = [ax for ax, s in zip(spatial, sizes) if s == 1 and r.shape[ax] != 1]
    ks = []
    for ax, s in zip(spatial, sizes):
        if s is None or s == 1 or s == r.shape[ax] and not r.dims[ax].is_dynamic():
            ks.append(1)
        elif not r.dims[ax].is_dynamic() and r.shape[ax] % s == 0:
            ks.append(r.shape[ax] // s)
        else:
            raise NotImplementedError(f"adaptive {mode} pooling to {s} of an axis of size {r.shape[ax]} "
                                      "(only 1, the same size, or an exact divisor of a static size)")
    if any(k != 1 for k in ks):
        if red:
            raise NotImplementedError("adaptive pooling mixing global and windowed axes")
        return pool_nd(ctx, n, mode, x, ks, ks, 0, 1, False, True)
    if not red:
        return r
    return reduce_ref(ctx, r, "mean" if mode == "avg" else "max", red, True)


@handles(F.adaptive_avg_pool1d)
def adaptive_avg_pool1d(ctx, input, output_size):
    """Adaptive average pooling over T of (B, C, T)."""
    return adaptive_pool(ctx, "avg", 1, input, output_size)


@handles(F.adaptive_avg_pool2d)
def adaptive_avg_pool2d(ctx, input, output_size):
    """Adaptive average pooling over (H, W)."""
    return adaptive_pool(ctx, "avg", 2, input, output_size)


@handles(F.adaptive_max_pool1d, F.adaptive_max_pool2d)
def adaptive_max_pool(ctx, input, output_size, return_indices=False):
    """Adaptive max pooling over the last 1 or 2 axes."""
    if return_indices:
        raise NotImplementedError("adaptive max pooling with return_indices")
    n = 1 if ctx.func is F.adaptive_max_pool1d else 2
    return adaptive_pool(ctx, "max", n, input, output_size)
