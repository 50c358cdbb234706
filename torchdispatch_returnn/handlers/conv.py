"""Convolutions: F.conv1d/2d/3d (stride, int/tuple/"same"/"valid" padding, dilation, groups, bias
or not) and F.conv_transpose1d/2d (also groups and dilation, by an equivalent dense kernel), as
RETURNN ``conv`` holding the module's weight and bias (or with the torch weight, a variable layer, as
filter) and ``transposed_conv``. Output
lengths of dynamic axes are derived dims."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .common import held_layer, held_out_dim, mask_padding, ntuple, slice_ref
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
    if r.dtype != weight.dtype:
        raise NotImplementedError("conv with input and weight of different dtypes")
    stride, dilation = ntuple(stride, n), ntuple(dilation, n)
    ks = [int(weight.shape[2 + i]) for i in range(n)]
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
    if r.ndim == n + 1:
        return _unbatched_conv(ctx, n, r, ctx.ref(weight), bias, stride, pads, dilation, groups)
    spatial = list(r.dims[2:])
    out_spatial = [out_len_dim(ctx, spatial[i], r.shape[2 + i], ks[i], stride[i], 2 * pads[i], dilation[i])
                   for i in range(n)]
    if not (any(d > 1 for d in dilation) and (n >= 2 or any(st > 1 for st in stride))) and \
            not (groups > 1 and (groups < r.shape[1] or n == 3)):
        y = _conv_layer(ctx, r, weight, bias, out_spatial, ks, stride, pads, dilation, groups)
        if y is not None:
            return y
    w = ctx.ref(weight, prefer=[None, r.dims[1] if groups == 1 else None])
    out_dim = w.dims[0]
    if any(d > 1 for d in dilation) and (n >= 2 or any(st > 1 for st in stride)):
        # RETURNN's 2-D dilated conv fails (TF loses static shapes), its strided dilated depthwise conv
        # drops frames: zero-insert the kernel instead
        w = _dilated_kernel(ctx, w, dilation)
        ks = [(k - 1) * d + 1 for k, d in zip(ks, dilation)]
        dilation = (1,) * n
    if groups > 1 and (groups < r.shape[1] or n == 3):
        # TF's CPU gradient of grouped convs fails, and TF has no grouped 3-D conv: one conv per group
        return _per_group_conv(ctx, n, r, w, bias, out_spatial, stride, pads, dilation, groups)
    in_dim = r.dims[1] if groups == 1 else ctx.dims.static_derived("floordiv", r.dims[1], groups)
    if out_dim is in_dim:  # (the filter's axes must differ: the other dim of that size for the output)
        out_dim = ctx.dims.shared.feature(out_dim.dimension, f"{ctx.op_name}_out", avoid=[in_dim])
    w = ctx.rename(w, {w.dims[0]: out_dim, w.dims[1]: in_dim})
    d = {"class": "conv", "from": r, "in_dim": r.dims[1], "in_spatial_dims": spatial, "out_dim": out_dim,
         "out_spatial_dims": out_spatial, "filter_size": list(w.dims[2:]), "filter": w,
         "padding": pads if any(pads) else "valid", "strides": list(stride), "dilation_rate": list(dilation),
         "groups": groups, "with_bias": bias is not None, "use_time_mask": True}
    if bias is not None:
        d["bias"] = _bias(ctx, bias, out_dim)
    return ctx.layer(d, [r.dims[0], out_dim] + out_spatial)


def _conv_layer(ctx, r, weight, bias, out_spatial, ks, stride, pads, dilation, groups):
    """RETURNN's ``conv`` holding the module's weight (as its ``W``: filter sizes + (in / groups, out), torch's
    layout transposed) and bias, initialised as torch's module would; a module called again reuses its
    layer's params. None where they are not a module's own float32 parameters."""
    owner = ctx.param_owner({"W": weight, "bias": bias})
    if owner is None or r.dtype != torch.float32:
        return None
    out_dim = held_out_dim(ctx, owner, int(weight.shape[0]), [r.dims[0], *r.dims[2:]])
    d = {"class": "conv", "from": r, "in_dim": r.dims[1], "in_spatial_dims": list(r.dims[2:]), "out_dim": out_dim,
         "out_spatial_dims": out_spatial, "filter_size": list(ks), "padding": pads if any(pads) else "valid",
         "strides": list(stride), "dilation_rate": list(dilation), "groups": groups, "with_bias": bias is not None,
         "use_time_mask": True}
    return held_layer(ctx, owner, d, [r.dims[0], out_dim] + list(out_spatial), {"W": weight, "bias": bias},
                      inits={"forward_weights_init": weight, "bias_init": bias},
                      perms={"W": list(range(2, len(ks) + 2)) + [1, 0]})


def _unbatched_conv(ctx, n, r, w, bias, stride, pads, dilation, groups):
    """A conv of an input without batch axis (C, S...) (RETURNN's conv layer needs one): TF's own
    convolution over the padded axes, as torch (a dense, undilated kernel)."""
    if any(d > 1 for d in dilation):
        w = _dilated_kernel(ctx, w, dilation)
    if groups > 1:
        w = _dense_grouped_kernel(ctx, w, groups, r.dims[0])
    ks = list(w.shape[2:])
    out_sp = [out_len_dim(ctx, r.dims[1 + i], r.shape[1 + i], ks[i], stride[i], 2 * pads[i], 1) for i in range(n)]
    spatial = list(range(1, n + 1))
    expr = (f"tf.transpose(tf.nn.convolution(tf.pad(tf.transpose(x0, {spatial + [0]})[None], "
            f"{[[0, 0]] + [[p, p] for p in pads] + [[0, 0]]}), tf.transpose(x1, {[a + 1 for a in spatial] + [1, 0]}), "
            f"strides={list(stride)}, padding='VALID')[0], {[n] + [a - 1 for a in spatial]})")
    return _plus_bias(ctx, ctx.tf_op(expr, [r, w], [w.dims[0]] + out_sp, dtype=r.dtype), bias, 0)


def _per_group_conv(ctx, n, r, w, bias, out_spatial, stride, pads, dilation, groups):
    """A grouped conv as one TF conv per group on its slice of channels, concatenated (memory and work of
    the grouped kernel, unlike a block-diagonal dense one); padding frames of the input are zeros first,
    as RETURNN's conv masks them."""
    for ax in range(2, 2 + n):
        if r.dims[ax].is_dynamic():
            r = mask_padding(ctx, r, r.dims[ax])
    sp = list(range(2, n + 2))
    expr = (f"tf.transpose(tf.concat([tf.nn.convolution(xg, wg, strides={list(stride)}, padding='VALID', "
            f"dilations={list(dilation)}) for xg, wg in zip(tf.split(tf.pad(tf.transpose(x0, {[0] + sp + [1]}), "
            f"{[[0, 0]] + [[p, p] for p in pads] + [[0, 0]]}), {groups}, axis=-1), tf.split(tf.transpose(x1, "
            f"{sp + [1, 0]}), {groups}, axis=-1))], axis=-1), {[0, n + 1] + [a - 1 for a in sp]})")
    y = ctx.tf_op(expr, [r, w], [r.dims[0], w.dims[0]] + list(out_spatial), dtype=r.dtype)
    return _plus_bias(ctx, y, bias, 1)


def _plus_bias(ctx, y, bias, ax):
    """``y`` plus a bias along its axis ``ax``."""
    if bias is None:
        return y
    return ctx.eval("source(0) + source(1)", [y, _bias(ctx, bias, y.dims[ax])], y.dims, dtype=y.dtype)


def _dense_grouped_kernel(ctx, w, groups, in_dim):
    """(O, I/g, k...) -> (O, I, k...), zero outside each group's block (exact, and TF's gradient of
    a dense conv is right where that of a grouped one is missing on CPU)."""
    o, i = w.shape[0], w.shape[1]
    dims = [w.dims[0], in_dim] + list(w.dims[2:])
    return ctx.tf_op(f"tf.reshape(tf.einsum('goi...,gh->gohi...', tf.reshape(x0, [{groups}, {o // groups}, {i}] + "
                     f"x0.shape[2:].as_list()), tf.eye({groups}, dtype=x0.dtype)), [{o}, {groups * i}] + "
                     f"x0.shape[2:].as_list())", [w], dims, dtype=w.dtype)


def _dilated_kernel(ctx, w, dilation):
    """(O, I, k...) -> (O, I, (k-1)*d+1 ...) with zeros between the taps (exact)."""
    n = len(dilation)
    ks = list(w.shape[2:])
    big = [(k - 1) * d + 1 for k, d in zip(ks, dilation)]
    dims = list(w.dims[:2]) + [ctx.dims.static(b, f"{ctx.op_name}_k{i}") for i, b in enumerate(big)]
    small, large = "hwd"[:n], "HWD"[:n]
    eyes = ", ".join(f"tf.one_hot(tf.range({k}) * {d}, {b}, dtype=x0.dtype)" for k, d, b in zip(ks, dilation, big))
    spec = f"oi{small}," + ",".join(f"{a}{b}" for a, b in zip(small, large)) + f"->oi{large}"
    return ctx.tf_op(f"tf.einsum({spec!r}, x0, {eyes})", [w], dims, dtype=w.dtype)


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
    if groups > 1:  # (I, O/g, k...) -> (I, O, k...), zero outside each group's block
        w = _dense_grouped_kernel(ctx, w, groups, ctx.dims.static(w.shape[1] * groups, f"{ctx.op_name}_out"))
    if any(d > 1 for d in dilation):  # the same as an undilated transposed conv with zeros between the taps
        w = _dilated_kernel(ctx, w, dilation)
    if any(op >= st for op, st in zip(output_padding, stride)):
        # TF needs output_padding < stride (torch: < stride or dilation): zero taps at the kernel's end
        # give the same output, that much longer (the kernel reaches no input from there)
        extra = [op if op >= st else 0 for op, st in zip(output_padding, stride)]
        dims = list(w.dims[:2]) + [ctx.dims.static(k + e, f"{ctx.op_name}_k{i}") if e else d
                                   for i, (k, e, d) in enumerate(zip(w.shape[2:], extra, w.dims[2:]))]
        w = ctx.tf_op(f"tf.pad(x0, {[[0, 0], [0, 0]] + [[0, e] for e in extra]})", [w], dims, dtype=w.dtype)
        output_padding = tuple(op - e for op, e in zip(output_padding, extra))
    ks = [w.shape[2 + i] for i in range(n)]
    if r.ndim == n + 1:
        return _unbatched_conv_transpose(ctx, n, r, w, bias, ks, stride, padding, output_padding)
    spatial = list(r.dims[2:])
    out_dim = w.dims[1]
    # RETURNN's output length is T*s + max(k-s, 0), or T*s + k-s + output_padding with an output_padding;
    # torch's is T*s + k-s + output_padding - 2*padding: cut from the ends afterwards
    exact = any(output_padding)
    full = []
    for i in range(n):
        extra = ks[i] - stride[i] + output_padding[i] if exact else max(ks[i] - stride[i], 0)
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
    crops = [(padding[i], padding[i] + (0 if exact else max(stride[i] - ks[i], 0))) for i in range(n)]
    y = ctx.layer(d, [r.dims[0], out_dim] + full)
    for i, (left, right) in enumerate(crops):
        if left or right:
            y = slice_ref(ctx, y, 2 + i, left, -right if right else None)
    return y


def _unbatched_conv_transpose(ctx, n, r, w, bias, ks, stride, padding, output_padding):
    """A transposed conv of an input without batch axis (C, S...): TF's own, output lengths
    (S-1)*s + k + output_padding - 2*padding as torch."""
    out = []
    for i in range(n):
        extra = ks[i] - stride[i] + output_padding[i] - 2 * padding[i]
        d, size = r.dims[1 + i], r.shape[1 + i]
        out.append(ctx.dims.derive("add", ctx.dims.derive("mul", d, stride[i]), extra) if d.is_dynamic() else
                   ctx.dims.static(size * stride[i] + extra, f"{ctx.op_name}_len"))
    spatial = list(range(1, n + 1))
    full = [f"tf.shape(x0)[{a}] * {st} + {k - st + op}" if r.dims[a].is_dynamic() else
            str(r.shape[a] * st + k - st + op) for a, st, k, op in zip(spatial, stride, ks, output_padding)]
    crop = ", ".join(f"{p}:{-p}" if p else ":" for p in padding)  # constant bounds keep static shapes
    full = ", ".join(full)
    expr = (f"(lambda y: tf.transpose(y[0, {crop}], {[n] + [a - 1 for a in spatial]}))("
            f"tf.nn.conv_transpose(tf.transpose(x0, {spatial + [0]})[None], tf.transpose(x1, "
            f"{[a + 1 for a in spatial] + [1, 0]}), tf.stack([1, {full}, {w.shape[1]}]), strides={list(stride)}, "
            "padding='VALID'))")
    return _plus_bias(ctx, ctx.tf_op(expr, [r, w], [w.dims[1]] + out, dtype=r.dtype), bias, 0)


@handles(F.conv3d)
def conv3d(ctx, input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """3-D convolution over (B, C, D, H, W)."""
    return conv_nd(ctx, 3, input, weight, bias, stride, padding, dilation, groups)


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
