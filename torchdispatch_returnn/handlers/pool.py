"""Pooling (max/avg 1-D and 2-D, adaptive pooling 1-D to 3-D) and upsampling along axes
(repeat_interleave, interpolate "nearest" with integer factors); output lengths of dynamic axes are
derived dims. RETURNN's ``pool`` layer where it fits; the other variants (ceil_mode, avg padding,
divisor_override, indices, 3-D, no batch axis) are built by ``pool_extra``."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..tensor import Ref
from .common import mask_padding, ntuple, reduce_ref, slice_ref
from .conv import out_len_dim
from .pool_extra import adaptive_axis, adaptive_first_dynamic, adaptive_windows, pool_args, window_pool
from .registry import handles


def pool_nd(ctx, n, mode, x, kernel_size, stride, padding, dilation, ceil_mode, count_include_pad=True,
            divisor=None, with_indices=False):
    r = x if isinstance(x, Ref) else ctx.ref(x)
    ks, stride, pads, dil = pool_args(n, kernel_size, stride, padding, dilation)
    if ceil_mode or with_indices or divisor is not None or n > 2 or r.ndim != n + 2 or mode == "avg" and any(pads) \
            or not r.dtype.is_floating_point:
        return window_pool(ctx, r, mode, ks, stride, pads, dil, ceil_mode, count_include_pad=count_include_pad,
                           divisor=divisor, with_indices=with_indices)
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
    return pool_nd(ctx, 1, "max", input, kernel_size, stride, padding, dilation, ceil_mode,
                   with_indices=return_indices)


@handles(F.max_pool2d)
def max_pool2d(ctx, input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Max over windows of (B, C, H, W)."""
    return pool_nd(ctx, 2, "max", input, kernel_size, stride, padding, dilation, ceil_mode,
                   with_indices=return_indices)


@handles(F.avg_pool1d)
def avg_pool1d(ctx, input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """Mean over windows along T of (B, C, T)."""
    return pool_nd(ctx, 1, "avg", input, kernel_size, stride, padding, 1, ceil_mode, count_include_pad)


@handles(F.avg_pool2d)
def avg_pool2d(ctx, input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """Mean over windows of (B, C, H, W)."""
    return pool_nd(ctx, 2, "avg", input, kernel_size, stride, padding, 1, ceil_mode, count_include_pad,
                   divisor_override)


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
    """Each element along axis ``ax`` ``k`` times in a row: broadcast over a new axis of ``k`` after it, merged."""
    kd = ctx.dims.static(k, f"{ctx.op_name}_k")
    d = r.dims[ax]
    t = ctx.expand(r, list(r.dims[:ax + 1]) + [kd] + list(r.dims[ax + 1:]))
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


def adaptive_pool(ctx, mode, n, x, output_size, with_indices=False):
    """Adaptive pooling: target 1 (global pooling over the axis, masked for a dynamic one), None/same
    size (kept), an exact divisor of a static size (a pool layer); other sizes of static axes (and
    indices) by ``adaptive_windows``, of a dynamic axis by ``adaptive_axis`` (per sequence)."""
    r = ctx.ref(x)
    sizes = list(ntuple(output_size, n))
    spatial = list(range(r.ndim - n, r.ndim))
    for i, (ax, s) in enumerate(zip(spatial, sizes)):
        d = r.dims[ax]
        if (s not in (None, 1) or with_indices and s == 1) and d.is_dynamic() and not d.is_batch_dim():
            if with_indices:
                if i > 0:
                    raise NotImplementedError("adaptive max pooling indices of a dynamic axis after the first")
                return adaptive_axis(ctx, r, mode, ax, s, True) if n == 1 else adaptive_first_dynamic(ctx, r, mode,
                                                                                                       sizes)
            r, sizes[i] = adaptive_axis(ctx, r, mode, ax, s), None
    if with_indices or any(s not in (None, 1) and r.shape[ax] % s for ax, s in zip(spatial, sizes)):
        return adaptive_windows(ctx, r, mode, sizes, with_indices)
    red = [ax for ax, s in zip(spatial, sizes) if s == 1 and r.shape[ax] != 1]
    if red:
        r = reduce_ref(ctx, r, "mean" if mode == "avg" else "max", red, True)
    ks = [1 if s is None or s == 1 else r.shape[ax] // s for ax, s in zip(spatial, sizes)]
    if any(k != 1 for k in ks):
        return pool_nd(ctx, n, mode, r, ks, ks, 0, 1, False, True)
    return r


@handles(F.adaptive_avg_pool1d)
def adaptive_avg_pool1d(ctx, input, output_size):
    """Adaptive average pooling over T of (B, C, T)."""
    return adaptive_pool(ctx, "avg", 1, input, output_size)


@handles(F.adaptive_avg_pool2d)
def adaptive_avg_pool2d(ctx, input, output_size):
    """Adaptive average pooling over (H, W)."""
    return adaptive_pool(ctx, "avg", 2, input, output_size)


@handles(F.adaptive_avg_pool3d)
def adaptive_avg_pool3d(ctx, input, output_size):
    """Adaptive average pooling over (D, H, W)."""
    return adaptive_pool(ctx, "avg", 3, input, output_size)


_ADAPTIVE_MAX = {F.adaptive_max_pool1d: 1, F.adaptive_max_pool2d: 2, F.adaptive_max_pool3d: 3,
                 F.adaptive_max_pool1d_with_indices: 1, F.adaptive_max_pool2d_with_indices: 2,
                 F.adaptive_max_pool3d_with_indices: 3, torch.adaptive_max_pool1d: 1}


@handles(*_ADAPTIVE_MAX)
def adaptive_max_pool(ctx, input, output_size, return_indices=False):
    """Adaptive max pooling over the last 1 to 3 axes (``*_with_indices``: also the flat indices)."""
    with_indices = return_indices or ctx.func.__name__.endswith("_with_indices") or ctx.func is \
        torch.adaptive_max_pool1d
    return adaptive_pool(ctx, "max", _ADAPTIVE_MAX[ctx.func], input, output_size, with_indices)
