"""Convolutions: F.conv1d/conv2d (stride, int/tuple/"same"/"valid" padding, dilation, groups,
bias or not) and F.conv_transpose1d/2d, as RETURNN ``conv``/``transposed_conv`` with the torch
weight (a variable layer) as filter. Output lengths of dynamic axes are derived dims."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._backend import tf_dtype
from .common import ntuple, slice_ref
from .registry import handles


def out_len_dim(ctx, dim, size, k, s, p_total, d):
    """torch's conv output length floor((T + p_total - d(k-1) - 1)/s) + 1 as a dim."""
    if not dim.is_dynamic():
        return ctx.dims.static((size + p_total - d * (k - 1) - 1) // s + 1, f"{ctx.op_name}_len")
    out = ctx.dims.derive("add", dim, p_total - d * (k - 1))
    return ctx.dims.derive("ceildiv", out, s)


def _bias(ctx, bias, out_dim):
    if bias is None:
        return None
    b = ctx.ref(bias, prefer=[out_dim])
    return ctx.rename(b, {b.dims[0]: out_dim})


def conv_nd(ctx, n, x, weight, bias, stride, padding, dilation, groups):
    r = ctx.ref(x)
    w = ctx.ref(weight, prefer=[None, r.dims[1] if groups == 1 else None])
    if r.ndim != n + 2:
        raise NotImplementedError(f"conv{n}d input without a batch axis")
    if r.dtype != w.dtype:
        raise NotImplementedError("conv with input and weight of different dtypes")
    stride, dilation = ntuple(stride, n), ntuple(dilation, n)
    ks = [w.shape[2 + i] for i in range(n)]
    if isinstance(padding, str):
        if padding == "same":
            pads = [d * (k - 1) for k, d in zip(ks, dilation)]
            if any(p % 2 for p in pads):
                raise NotImplementedError("padding='same' with an asymmetric amount")
            pads = [p // 2 for p in pads]
        else:
            pads = [0] * n
    else:
        pads = list(ntuple(padding, n))
    spatial = list(r.dims[2:])
    out_dim = w.dims[0]
    if n == 2 and any(d > 1 for d in dilation):
        # RETURNN's 2-D dilated conv fails (TF loses static shapes): zero-insert the kernel instead
        w = _dilated_kernel(ctx, w, dilation)
        ks = [(k - 1) * d + 1 for k, d in zip(ks, dilation)]
        dilation = (1,) * n
    in_dim = r.dims[1] if groups == 1 else ctx.dims.static_derived("floordiv", r.dims[1], groups)
    w = ctx.rename(w, {w.dims[1]: in_dim})
    out_spatial = [out_len_dim(ctx, spatial[i], r.shape[2 + i], ks[i], stride[i], 2 * pads[i], dilation[i])
                   for i in range(n)]
    d = {"class": "conv", "from": r, "in_dim": r.dims[1], "in_spatial_dims": spatial, "out_dim": out_dim,
         "out_spatial_dims": out_spatial, "filter_size": list(w.dims[2:]), "filter": w,
         "padding": pads if any(pads) else "valid", "strides": list(stride), "dilation_rate": list(dilation),
         "groups": groups, "with_bias": bias is not None, "use_time_mask": True}
    if bias is not None:
        d["bias"] = _bias(ctx, bias, out_dim)
    return ctx.layer(d, [r.dims[0], out_dim] + out_spatial)


def _dilated_kernel(ctx, w, dilation):
    """(O, I, kh, kw) -> (O, I, (kh-1)*dh+1, (kw-1)*dw+1) with zeros between the taps (exact)."""
    o, i, kh, kw = w.shape
    dh, dw = dilation
    big_h, big_w = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    dims = [w.dims[0], w.dims[1], ctx.dims.static(big_h, f"{ctx.op_name}_kh"),
            ctx.dims.static(big_w, f"{ctx.op_name}_kw")]
    expr = ("tf.einsum('oihw,hH,wW->oiHW', source(0, auto_convert=False), "
            f"tf.one_hot(tf.range({kh}) * {dh}, {big_h}, dtype=source(0).dtype), "
            f"tf.one_hot(tf.range({kw}) * {dw}, {big_w}, dtype=source(0).dtype))")
    d = {"class": "eval", "from": [w], "eval": expr, "out_type": {"dims": dims, "dtype": tf_dtype(w.dtype)}}
    return ctx.layer(d, dims, dtype=w.dtype)


@handles(F.conv1d)
def conv1d(ctx, input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """1-D convolution over (B, C, T)."""
    return conv_nd(ctx, 1, input, weight, bias, stride, padding, dilation, groups)


@handles(F.conv2d)
def conv2d(ctx, input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution over (B, C, H, W)."""
    return conv_nd(ctx, 2, input, weight, bias, stride, padding, dilation, groups)


def conv_transpose_nd(ctx, n, x, weight, bias, stride, padding, output_padding, groups, dilation):
    r, w = ctx.ref(x), ctx.ref(weight)
    stride, padding = ntuple(stride, n), ntuple(padding, n)
    output_padding, dilation = ntuple(output_padding, n), ntuple(dilation, n)
    if groups != 1 or any(d != 1 for d in dilation):
        raise NotImplementedError("transposed conv with groups or dilation")
    ks = [w.shape[2 + i] for i in range(n)]
    spatial = list(r.dims[2:])
    out_dim = w.dims[1]
    # RETURNN's output length is T*s + max(k-s, 0) + output_padding; torch's is that minus
    # 2*padding and minus (s-k) when k < s: cut from the ends afterwards
    full = []
    for i in range(n):
        extra = max(ks[i] - stride[i], 0) + output_padding[i]
        if spatial[i].is_dynamic():
            full.append(ctx.dims.derive("add", ctx.dims.derive("mul", spatial[i], stride[i]), extra))
        else:
            full.append(ctx.dims.static(r.shape[2 + i] * stride[i] + extra, f"{ctx.op_name}_len"))
    # RETURNN wants the filter as [k..., out, in]; torch's is (in, out, k...)
    filt = ctx.layer({"class": "transpose", "from": w, "perm": list(w.dims[2:]) + [w.dims[1], w.dims[0]]},
                     w.dims, dtype=w.dtype)
    d = {"class": "transposed_conv", "from": r, "in_dim": r.dims[1], "in_spatial_dims": spatial,
         "out_dim": out_dim, "out_spatial_dims": full, "filter_size": ks, "strides": list(stride),
         "padding": "valid", "filter": filt, "with_bias": bias is not None, "use_time_mask": True}
    if any(output_padding):
        d["output_padding"] = list(output_padding)
    if bias is not None:
        d["bias"] = _bias(ctx, bias, out_dim)
    crops = [(padding[i], padding[i] + max(stride[i] - ks[i], 0)) for i in range(n)]
    y = ctx.layer(d, [r.dims[0], out_dim] + full)
    for i, (left, right) in enumerate(crops):
        if left or right:
            y = slice_ref(ctx, y, 2 + i, left, -right if right else None)
    return y


@handles(F.conv_transpose1d)
def conv_transpose1d(ctx, input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """1-D transposed convolution over (B, C, T)."""
    return conv_transpose_nd(ctx, 1, input, weight, bias, stride, padding, output_padding, groups, dilation)


@handles(F.conv_transpose2d)
def conv_transpose2d(ctx, input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """2-D transposed convolution over (B, C, H, W)."""
    return conv_transpose_nd(ctx, 2, input, weight, bias, stride, padding, output_padding, groups, dilation)


@handles(F.unfold)
def unfold_windows(ctx, input, kernel_size, dilation=1, padding=0, stride=1):
    """im2col: each (kh, kw) window as a column, (B, C*kh*kw, L): a conv with a one-hot kernel
    (output channel c*kh*kw + i*kw + j reads channel c at window position (i, j), as torch orders them)."""
    r = ctx.ref(input)
    if r.ndim != 4:
        raise NotImplementedError("F.unfold of a tensor without batch axis")
    kh, kw = ntuple(kernel_size, 2)
    ck = r.shape[1] * kh * kw
    eye = torch.eye(ck, dtype=input.dtype).view(ck, r.shape[1], kh, kw)
    y = conv_nd(ctx, 2, input, eye, None, stride, padding, dilation, 1)  # (B, CK, nH, nW)
    nh, nw = y.dims[2], y.dims[3]
    if nw.dimension == 1 or nh.dimension == 1:
        return ctx.squeeze(y, 3 if nw.dimension == 1 else 2)
    merged = ctx.dims.derive("mul", nh, nw)
    merged = merged if not isinstance(merged, int) else ctx.dims.static(merged, f"{ctx.op_name}_windows")
    return ctx.layer({"class": "merge_dims", "from": y, "axes": [nh, nw], "out_dim": merged},
                     [y.dims[0], y.dims[1], merged])
