"""Pooling variants that RETURNN's ``pool`` layer does not cover, as TF code over the window taps:
``ceil_mode``, avg pooling with padding (``count_include_pad``, ``divisor_override``), max pooling
with indices (``F.max_pool{1,2,3}d_with_indices``, flat positions within each channel plane, as
torch), 3-D pooling, inputs without a batch axis, ``F.lp_pool{1,2,3}d``, ``F.max_unpool{1,2,3}d``,
and adaptive pooling of static axes to any size.

Each output frame is the max (or sum) over the kernel taps, one strided slice of the padded input
per tap. On a dynamic axis the output length is a derived dim, and padded batches are exact per
sequence: the input's padding frames are -inf (max) or 0 (avg) before pooling, avg divisors count
each sequence's own frames, and the output's padding frames are 0.
"""

from __future__ import annotations

import functools
import itertools
import math

import torch
import torch.nn.functional as F

from .common import mask_padding, ntuple
from .conv import out_len_dim
from .registry import handles


def _keff(k, d):
    return d * (k - 1) + 1


def pool_out_dim(ctx, dim, size, k, s, p, d, ceil):
    """The output length of a pooled axis (torch's rule: with ``ceil``, the last window must start
    inside the input or its left padding)."""
    if not ceil:
        return out_len_dim(ctx, dim, size, k, s, 2 * p, d)
    c = 2 * p - _keff(k, d) + s if s <= _keff(k, d) - p else p
    if not dim.is_dynamic():
        return ctx.dims.static(-(-(size + c) // s), f"{ctx.op_name}_len")
    return ctx.dims.derive("ceildiv", ctx.dims.derive("add", dim, c), s)


def _out_len_expr(length, k, s, p, d, ceil):
    """The output length as TF code of the input length ``length`` (an int32 scalar)."""
    if not ceil:
        return f"(({length}) + {2 * p - _keff(k, d)}) // {s} + 1"
    c = 2 * p - _keff(k, d) + s if s <= _keff(k, d) - p else p
    return f"-((-(({length}) + {c})) // {s})"


def _spatial(ctx, r, n):
    """The torch axes of the last ``n`` (pooled) axes; refuses pooling over the batch axis."""
    axes = list(range(r.ndim - n, r.ndim))
    if r.ndim < n + 1 or any(r.dims[ax].is_batch_dim() for ax in axes):
        raise NotImplementedError(f"{n}-D pooling of a {r.ndim}-D input (or over its batch axis)")
    return axes


def _masked(ctx, r, axes, value):
    """``r`` with the padding frames of its dynamic pooled axes set to ``value``."""
    for ax in axes:
        if r.dims[ax].is_dynamic():
            r = mask_padding(ctx, r, r.dims[ax], value)
    return r


def _has_seqs(r, axes):
    return any(r.dims[ax].is_dynamic() for ax in axes) and any(d.is_batch_dim() for d in r.dims)


def _tap_slices(var, lead, ks, stride, dil, ns):
    """One strided slice of ``var`` per kernel tap (in torch's window order)."""
    out = []
    for js in itertools.product(*[range(k) for k in ks]):
        idx = [f"{j * d}:{j * d}+({n}-1)*{s}+1:{s}" for j, d, n, s in zip(js, dil, ns, stride)]
        # one slice per axis: a tensor bound in a multi-axis slice loses the static sizes of the others
        out.append(var + "".join(f"[{', '.join([':'] * (lead + i) + [ix])}]" for i, ix in enumerate(idx)))
    return out


def window_pool(ctx, r, mode, ks, stride, pads, dil, ceil_mode, *, count_include_pad=True, divisor=None,
                with_indices=False):
    """Max or avg pooling of the last ``len(ks)`` axes of ``r`` (any leading axes); returns the
    ref, or (values, indices) ``with_indices`` (max only)."""
    n = len(ks)
    axes = _spatial(ctx, r, n)
    lead = r.ndim - n
    if any(2 * p > k for p, k in zip(pads, ks)):
        raise NotImplementedError("pooling with padding over half the kernel size")
    floating = r.dtype.is_floating_point
    if mode == "max" and not floating and _has_seqs(r, axes):
        raise NotImplementedError("integer max pooling over a dynamic axis of a padded batch")
    fill = ("float('-inf')" if floating else str(torch.iinfo(r.dtype).min)) if mode == "max" else "0"
    x = _masked(ctx, r, axes, float("-inf") if mode == "max" else 0.0)
    out_dims = [pool_out_dim(ctx, r.dims[ax], r.shape[ax], k, s, p, d, ceil_mode)
                for ax, k, s, p, d in zip(axes, ks, stride, pads, dil)]
    ns = [f"n{i}" for i in range(n)]
    n_vals = [str(o.dimension) if not o.is_dynamic() else _out_len_expr(f"tf.shape(x0)[{ax}]", k, s, p, d, ceil_mode)
              for o, ax, k, s, p, d in zip(out_dims, axes, ks, stride, pads, dil)]
    pad_spec = [[0, 0]] * lead + [[p, p + _keff(k, d) - 1] for p, k, d in zip(pads, ks, dil)]
    taps = _tap_slices("xp", lead, ks, stride, dil, ns)
    inputs = [x]
    if mode == "max":
        body = functools.reduce(lambda a, b: f"tf.maximum({a}, {b})", taps)
    else:
        body = f"tf.add_n([{', '.join(taps)}])"
        if divisor is not None:
            body = f"({body}) / {float(divisor)!r}"
        elif any(pads) or ceil_mode:
            body = f"(lambda v, c: tf.where(c > 0, v / tf.maximum(c, 1), tf.zeros_like(v)))({body}, " \
                   f"{_count_expr(ctx, r, axes, inputs, pads, count_include_pad, pad_spec, ks, stride, dil, ns)})"
        else:
            body = f"({body}) / {float(math.prod(ks))!r}"
    lam = f"(lambda xp, {', '.join(ns)}: {body})"
    expr = f"{lam}(tf.pad(x0, {pad_spec}, constant_values={fill}), {', '.join(n_vals)})"
    dims = list(r.dims[:lead]) + out_dims
    y = _masked(ctx, ctx.tf_op(expr, inputs, dims, dtype=r.dtype), range(lead, r.ndim), 0.0)
    if not with_indices:
        return y
    return y, _indices(ctx, r, x, lead, ks, stride, pads, dil, pad_spec, fill, ns, n_vals, dims)


def _count_expr(ctx, r, axes, inputs, pads, count_include_pad, pad_spec, ks, stride, dil, ns):
    """TF code of each window's avg divisor: the taps inside each sequence's frames (or inside them
    and the padding, ``count_include_pad``), from a mask of ones padded with zeros."""
    if _has_seqs(r, axes):
        ones = ctx.eval("tf.ones_like(source(0))", [r], r.dims, dtype=r.dtype)
        inputs.append(_masked(ctx, ones, axes, 0.0))
        m = "x1"
    else:
        m = "tf.ones_like(x0)"
    m = f"tf.pad({m}, {pad_spec})"
    if count_include_pad:  # the padding counts: widen each sequence's box of ones by p on both sides
        for ax, p in zip(axes, pads):
            if p:
                m = f"(lambda m: tf.reduce_max(tf.stack([tf.roll(m, sh, {ax}) for sh in range({-p}, {p + 1})]), 0))" \
                    f"({m})"
    return f"(lambda mp: tf.add_n([{', '.join(_tap_slices('mp', r.ndim - len(ks), ks, stride, dil, ns))}]))({m})"


def _indices(ctx, r, x, lead, ks, stride, pads, dil, pad_spec, fill, ns, n_vals, dims):
    """The flat position (within each channel plane) of each window's first max."""
    n = len(ks)
    if any(r.dims[lead + i].is_dynamic() for i in range(1, n)):
        raise NotImplementedError("max pooling indices with a dynamic axis after the first pooled axis")
    sizes = [r.shape[lead + i] for i in range(n)]
    plane = [math.prod(sizes[i + 1:]) for i in range(n)]
    offs = [sum(j * d * w for j, d, w in zip(js, dil, plane)) for js in itertools.product(*[range(k) for k in ks])]
    taps = _tap_slices("xp", lead, ks, stride, dil, ns)
    base = " + ".join(f"tf.reshape((tf.range({nv}, dtype=tf.int64) * {s} - {p}) * {w}, [-1] + {[1] * (n - 1 - i)})"
                      for i, (nv, s, p, w) in enumerate(zip(ns, stride, pads, plane)))
    arg = f"tf.argmax(tf.stack([{', '.join(taps)}], -1), -1)"
    body = f"{base} + tf.gather(tf.constant({offs}, tf.int64), {arg})"
    expr = f"(lambda xp, {', '.join(ns)}: {body})(tf.pad(x0, {pad_spec}, constant_values={fill}), {', '.join(n_vals)})"
    return ctx.tf_op(expr, [x], dims, dtype=torch.int64)


def pool_tuple(v, n):
    """A pooling argument as ``n`` ints (an int or a 1-sequence is repeated, as torch does)."""
    v = ntuple(v, n)
    return tuple(v) * n if len(v) == 1 else tuple(v)


def pool_args(n, kernel_size, stride, padding, dilation=1):
    """Kernel, stride (default: the kernel), padding and dilation as ``n``-tuples."""
    ks = pool_tuple(kernel_size, n)
    st = pool_tuple(kernel_size if stride is None or not isinstance(stride, int) and len(stride) == 0 else stride, n)
    return ks, st, pool_tuple(padding, n), pool_tuple(dilation, n)


_WITH_INDICES = {F.max_pool1d_with_indices: 1, F.max_pool2d_with_indices: 2, F.max_pool3d_with_indices: 3,
                 torch.max_pool1d_with_indices: 1, torch.max_pool1d: 1, torch.max_pool2d: 2, torch.max_pool3d: 3}


@handles(*_WITH_INDICES)
def max_pool_with_indices(ctx, input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                          return_indices=False):
    """Max pooling returning (values, flat indices within each channel plane); ``torch.max_pool1d``
    and co. only the values."""
    ks, st, pads, dil = pool_args(_WITH_INDICES[ctx.func], kernel_size, stride, padding, dilation)
    with_indices = ctx.func.__name__.endswith("_with_indices")
    return window_pool(ctx, ctx.ref(input), "max", ks, st, pads, dil, ceil_mode, with_indices=with_indices)


@handles(F.max_pool3d)
def max_pool3d(ctx, input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Max over windows of (B, C, D, H, W) or (C, D, H, W)."""
    ks, st, pads, dil = pool_args(3, kernel_size, stride, padding, dilation)
    return window_pool(ctx, ctx.ref(input), "max", ks, st, pads, dil, ceil_mode, with_indices=return_indices)


@handles(F.avg_pool3d)
def avg_pool3d(ctx, input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """Mean over windows of (B, C, D, H, W) or (C, D, H, W)."""
    ks, st, pads, dil = pool_args(3, kernel_size, stride, padding)
    return window_pool(ctx, ctx.ref(input), "avg", ks, st, pads, dil, ceil_mode, count_include_pad=count_include_pad,
                       divisor=divisor_override)


@handles(F.lp_pool1d, F.lp_pool2d, F.lp_pool3d)
def lp_pool(ctx, input, norm_type, kernel_size, stride=None, ceil_mode=False):
    """Power-average pooling: (sum over the window of x**p) ** (1/p), as torch computes it (from an
    avg pool times the kernel size); p = inf is the max of |x|."""
    n = {F.lp_pool1d: 1, F.lp_pool2d: 2}.get(ctx.func, 3)
    ks, st, pads, dil = pool_args(n, kernel_size, stride, 0)
    r = ctx.ref(input)
    p = float(norm_type)
    if math.isinf(p):
        a = ctx.eval("tf.abs(source(0))" if p > 0 else "-tf.abs(source(0))", [r], r.dims, dtype=r.dtype)
        y = window_pool(ctx, a, "max", ks, st, pads, dil, ceil_mode)
        return y if p > 0 else ctx.eval("-source(0)", [y], y.dims, dtype=y.dtype)
    powed = ctx.eval(f"tf.pow(source(0), {p!r})", [r], r.dims, dtype=r.dtype)
    avg = window_pool(ctx, powed, "avg", ks, st, pads, dil, ceil_mode)
    return ctx.eval(f"tf.pow(tf.sign(source(0)) * tf.nn.relu(tf.abs(source(0))) * {float(math.prod(ks))!r}, "
                    f"{1.0 / p!r})", [avg], avg.dims, dtype=avg.dtype)


@handles(F.max_unpool1d, F.max_unpool2d, F.max_unpool3d)
def max_unpool(ctx, input, indices, kernel_size, stride=None, padding=0, output_size=None):
    """Partial inverse of max pooling: zeros, with each value written at its flat index within its
    channel plane (the padding frames of a padded batch write nothing)."""
    n = {F.max_unpool1d: 1, F.max_unpool2d: 2}.get(ctx.func, 3)
    ks, st, pads, _ = pool_args(n, kernel_size, stride, padding)
    r = ctx.ref(input)
    axes = _spatial(ctx, r, n)
    lead = r.ndim - n
    idx = ctx.ref(indices)  # a constant fits the input's sizes at capture only (as in torch)
    if tuple(idx.shape) != tuple(r.shape):
        raise NotImplementedError("max_unpool with indices of another shape than the input")
    if any(r.dims[ax].is_dynamic() for ax in axes[1:]):
        raise NotImplementedError("max_unpool with a dynamic axis after the first unpooled axis")
    out_sp = [int(s) for s in ctx.out.shape[lead:]]
    out_dims = []
    for ax, k, s, p, o in zip(axes, ks, st, pads, out_sp):
        d = r.dims[ax]
        if d.is_dynamic():
            if o != (r.shape[ax] - 1) * s + k - 2 * p:
                raise NotImplementedError("max_unpool along a dynamic axis to another output_size than the default")
            out_dims.append(ctx.dims.derive("add", ctx.dims.derive("mul", d, s), k - s - 2 * p))
        else:
            out_dims.append(ctx.dims.static(o, f"{ctx.op_name}_len"))
    first = (f"((tf.shape(x0)[{lead}] - 1) * {st[0]} + {ks[0] - 2 * pads[0]})" if r.dims[lead].is_dynamic()
             else str(out_sp[0]))
    return _scatter_planes(ctx, r, idx, axes, list(r.dims[:lead]) + out_dims, first, out_sp[1:], "update")


def _scatter_planes(ctx, r, idx, axes, dims, first, rest, op, extra=()):
    """Each value of ``r`` written (``op`` "update") or added ("add") at its flat index ``idx``
    within its plane of zeros of sizes ([first] + rest) (``first``: TF code, may use x3, x4... for
    ``extra`` inputs); the padding frames of a padded batch write nothing."""
    lead = axes[0]
    inputs = [r, ctx.cast(idx, torch.int64)]
    valid = "tf.ones_like(x1, tf.bool)"
    if _has_seqs(r, axes):
        ones = ctx.eval("tf.ones_like(source(0))", [r], r.dims, dtype=r.dtype)
        inputs.append(_masked(ctx, ones, axes, 0.0))
        valid = "x2 > 0"
    else:
        inputs.append(r)
    inputs += list(extra)
    # rows: every leading position; the padding frames write into an extra slot cut off afterwards
    rows = f"[-1, tf.reduce_prod(tf.shape(x0)[{lead}:])]"
    shape = f"tf.concat([tf.shape(x0)[:{lead}], [{first}], tf.constant({list(rest)}, tf.int32)], 0)"
    expr = (f"(lambda v, i, ok, P: tf.reshape(tf.tensor_scatter_nd_{op}(tf.zeros([tf.shape(v)[0], P + 1], v.dtype), "
            f"tf.stack([tf.broadcast_to(tf.range(tf.shape(v)[0], dtype=tf.int64)[:, None], tf.shape(i)), "
            f"tf.where(ok, i, tf.cast(P, tf.int64))], -1), v)[:, :P], {shape}))"
            f"(tf.reshape(x0, {rows}), tf.reshape(x1, {rows}), tf.reshape({valid}, {rows}), "
            f"{first} * {math.prod(rest)})")
    return ctx.tf_op(expr, inputs, dims, dtype=r.dtype)


_ATEN = torch.ops.aten


@handles(_ATEN.max_pool2d_with_indices_backward.default, _ATEN.max_pool3d_with_indices_backward.default)
def max_pool_backward(ctx, grad_output, input, kernel_size, stride, padding, dilation, ceil_mode, indices):
    """The gradient of max pooling: each output gradient added at its max's flat index."""
    n = 2 if ctx.func is _ATEN.max_pool2d_with_indices_backward.default else 3
    g, x = ctx.ref(grad_output), ctx.ref(input)
    axes = _spatial(ctx, g, n)
    lead = axes[0]
    if g.ndim != x.ndim or any(x.dims[ax].is_dynamic() for ax in axes[1:]):
        raise NotImplementedError("max pooling backward with a dynamic axis after the first pooled axis")
    idx = ctx.ref(indices)
    if tuple(idx.shape) != tuple(g.shape):
        raise NotImplementedError("max pooling backward with indices of another shape than the gradient")
    first = f"tf.shape(x3)[{lead}]" if x.dims[lead].is_dynamic() else str(x.shape[lead])
    return _scatter_planes(ctx, g, idx, axes, list(x.dims), first, x.shape[lead + 1:], "add", [x])


def adaptive_windows(ctx, r, mode, sizes, with_indices=False):
    """Adaptive pooling of the last ``len(sizes)`` static axes of ``r`` to ``sizes``: output i of an
    axis of length L pools frames floor(i*L/o) .. ceil((i+1)*L/o) - 1, as torch."""
    n = len(sizes)
    axes = _spatial(ctx, r, n)
    lead = r.ndim - n
    keep = [ax for ax, o in zip(axes, sizes) if o is None or not r.dims[ax].is_dynamic() and o == r.shape[ax]]
    if len(keep) == n:  # identity: each element is its own window
        return (r, _identity_indices(ctx, r, axes)) if with_indices else r
    if with_indices and r.dims[lead].is_dynamic() and keep[:1] == [lead]:  # a kept dynamic first axis: its frame
        y, idx = adaptive_windows(ctx, r, mode, sizes[1:], True)  # plus the index within the plane of the others
        frames = f"tf.reshape(tf.range(tf.shape(x0)[{lead}], dtype=tf.int64) * {math.prod(r.shape[lead + 1:])}, " \
                 f"[-1] + {[1] * (n - 1)})"
        return y, ctx.tf_op(f"x0 + {frames}", [idx], idx.dims, dtype=torch.int64)
    if keep and not with_indices:  # kept dynamic axes go in front, with the other leading axes
        order = [i for i in range(r.ndim) if i not in axes] + keep + [ax for ax in axes if ax not in keep]
        y = adaptive_windows(ctx, ctx.transpose_to(r, [r.dims[i] for i in order]), mode,
                             [o for ax, o in zip(axes, sizes) if ax not in keep])
        return ctx.transpose_to(y, [y.dims[order.index(i)] for i in range(r.ndim)])
    if any(r.dims[ax].is_dynamic() for ax in axes):
        raise NotImplementedError("adaptive pooling indices of a dynamic axis to a size other than 1 or its own")
    lens = [r.shape[ax] for ax in axes]
    sizes = [ln if o is None else int(o) for o, ln in zip(sizes, lens)]
    wins = [[(i * ln // o, -(-(i + 1) * ln // o)) for i in range(o)] for o, ln in zip(sizes, lens)]
    plane = [math.prod(lens[i + 1:]) for i in range(n)]
    vals, idxs = [], []
    for box in itertools.product(*wins):
        part = f"x0[{', '.join([':'] * lead + [f'{a}:{b}' for a, b in box])}]"
        flat = f"tf.reshape({part}, tf.concat([tf.shape(x0)[:{lead}], [{math.prod(b - a for a, b in box)}]], 0))"
        red = {"max": "tf.reduce_max", "avg": "tf.reduce_mean"}[mode]
        vals.append(f"{red}({flat}, -1)")
        if with_indices:
            bl = [b - a for a, b in box]
            q = f"tf.argmax({flat}, -1)"
            idxs.append(" + ".join(f"(({q} // {math.prod(bl[i + 1:])}) % {bl[i]} + {a}) * {w}"
                                   for i, ((a, _), w) in enumerate(zip(box, plane))))
    shape = f"tf.concat([tf.shape(x0)[:{lead}], {sizes}], 0)"
    out_dims = list(r.dims[:lead]) + [ctx.dims.static(o, f"{ctx.op_name}_len") for o in sizes]
    y = ctx.tf_op(f"tf.reshape(tf.stack([{', '.join(vals)}], -1), {shape})", [r], out_dims, dtype=r.dtype)
    if not with_indices:
        return y
    return y, ctx.tf_op(f"tf.reshape(tf.stack([{', '.join(idxs)}], -1), {shape})", [r], out_dims, dtype=torch.int64)


def _identity_indices(ctx, r, axes):
    """Each element's flat position within its plane of the (last) ``axes``."""
    if any(r.dims[ax].is_dynamic() for ax in axes[1:]):
        raise NotImplementedError("adaptive max pooling indices with a dynamic axis after the first pooled axis")
    n = len(axes)
    plane = [math.prod(r.shape[ax + 1:]) for ax in axes]
    pos = " + ".join(f"tf.reshape(tf.range(tf.shape(x0)[{ax}], dtype=tf.int64) * {w}, [-1] + {[1] * (n - 1 - i)})"
                     for i, (ax, w) in enumerate(zip(axes, plane)))
    return ctx.tf_op(f"tf.broadcast_to({pos}, tf.shape(x0))", [r], r.dims, dtype=torch.int64)


def adaptive_axis(ctx, r, mode, ax, size, with_indices=False):
    """Adaptive avg/max pooling of the dynamic axis ``ax`` of ``r`` to ``size`` frames, per sequence:
    output i pools frames floor(i*L/o) .. ceil((i+1)*L/o) - 1 of each sequence's own length L
    (``with_indices``: also the frame of each window's first max)."""
    lens = ctx.size_ref(r.dims[ax], r.dims)
    perm = [i for i in range(r.ndim) if i != ax] + [ax]
    inv = [perm.index(i) for i in range(r.ndim)]
    lshape = [1] * (r.ndim + 1)
    if lens.ndim:
        lshape[perm.index(next(i for i, d in enumerate(r.dims) if d is lens.dims[0] or d == lens.dims[0]))] = -1
    win = (f"(lambda x, L: (lambda i, t: (lambda s, e: (lambda m: BODY)((t >= s) & (t < e)))((i * L) // {size}, "
           f"-((-(i + 1) * L) // {size})))(tf.range({size})[:, None], tf.range(tf.shape(x)[-1])))"
           f"(tf.transpose(x0, {perm}), tf.reshape(x1, {lshape}))")
    xb = "x[..., None, :]"
    if mode == "avg":
        body = f"tf.reduce_sum(tf.where(m, {xb}, tf.zeros_like({xb})), -1) / tf.cast(e - s, x.dtype)[..., 0]"
    else:
        body = f"tf.reduce_max(tf.where(m, {xb}, tf.constant(float('-inf'), x.dtype)), -1)"
    dims = list(r.dims)
    dims[ax] = ctx.dims.static(size, f"{ctx.op_name}_len")
    y = ctx.tf_op(f"tf.transpose({win.replace('BODY', body)}, {inv})", [r, lens], dims, dtype=r.dtype)
    if not with_indices:
        return y
    body = f"tf.argmax(tf.where(m, {xb}, tf.constant(float('-inf'), x.dtype)), -1)"
    return y, ctx.tf_op(f"tf.transpose({win.replace('BODY', body)}, {inv})", [r, lens], dims, dtype=torch.int64)


def adaptive_first_dynamic(ctx, r, mode, sizes):
    """Adaptive max pooling with indices, dynamic first pooled axis (T -> sizes[0]), other axes
    static: the windows of the static axes per frame, then the first frame of the window maximum
    per sequence; the index is that frame's index within its box (as torch, first max wins)."""
    lead = r.ndim - len(sizes)
    box, box_idx = adaptive_windows(ctx, r, mode, sizes[1:], True)  # T is a leading axis here
    y, t = adaptive_axis(ctx, box, mode, lead, sizes[0], True)
    perm = [i for i in range(r.ndim) if i != lead] + [lead]
    inv = [perm.index(i) for i in range(r.ndim)]
    expr = (f"tf.transpose(tf.gather(tf.transpose(x0, {perm}), tf.transpose(x1, {perm}), batch_dims={r.ndim - 1}), "
            f"{inv}) + x1 * {math.prod(r.shape[lead + 1:])}")
    return y, ctx.tf_op(expr, [box_idx, t], t.dims, dtype=torch.int64)
