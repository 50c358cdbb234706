"""Loss functions of ``torch.nn.functional`` (and so their ``nn.*Loss`` modules): regression (mse, l1,
smooth_l1, huber, poisson/gaussian NLL), classification (cross_entropy with class indices or class
probabilities, weight, ignore_index, label_smoothing; nll_loss; binary cross entropy with and without
logits; multi_margin; multilabel soft margin; soft margin; linear_cross_entropy), kl_div, the
ranking/embedding losses (margin ranking, hinge/cosine embedding, triplet margin) and ctc_loss (TF's
``tf.nn.ctc_loss``), with the reductions 'none', 'mean' and 'sum'.

'mean' and 'sum' over a dynamic axis cover the valid frames only (masked reductions): on a padded
batch the result is torch's on the valid frames of all sequences taken together.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .common import SAFE_SQRT, along_time, apply, dot, lit, mask_padding, range_ref, reduce_ref
from .registry import handles

_PLAIN_ALONG = ("a plain tensor (e.g. a closed-over target) along a dynamic axis would fix the network to the "
                "capture's length; pass it as an input of the module")


def _reduction(size_average=None, reduce=None, reduction="mean", extra=()) -> str:
    """The reduction, also from the deprecated ``size_average``/``reduce`` flags."""
    if size_average is not None or reduce is not None:
        return "none" if reduce is False else ("sum" if size_average is False else "mean")
    if reduction not in ("none", "mean", "sum", *extra):
        raise NotImplementedError(f"reduction {reduction!r}")
    return reduction


def _check_plain(ctx, *xs) -> None:
    """Refuse plain tensors that broadcast against a dynamic axis (not the batch axis) of the captured ones."""
    caps = [ctx.ref(x) for x in xs if ctx.is_captured(x)]
    for x in xs:
        if isinstance(x, torch.Tensor) and not ctx.is_captured(x):
            for pos in range(1, x.dim() + 1):
                if x.shape[-pos] != 1 and any(r.ndim >= pos and along_time(r.dims[-pos]) for r in caps):
                    raise NotImplementedError(_PLAIN_ALONG)


def _ew(ctx, fmt: str, *xs):
    """``apply`` (broadcast, one eval layer) after refusing plain tensors along dynamic axes."""
    xs = [x for x in xs if x is not None]
    _check_plain(ctx, *xs)
    return apply(ctx, fmt, *xs, dtype=ctx.out.dtype)


def _onto(ctx, x, dims):
    """``x`` (tensor, captured or plain) broadcast by torch's positional rule onto ``dims``."""
    if ctx.is_captured(x):
        return ctx.align(ctx.ref(x), dims)
    t = x if isinstance(x, torch.Tensor) else torch.tensor(x)
    dims = list(dims)[len(dims) - t.dim():]
    keep = [i for i, s in enumerate(t.shape) if not (s == 1 and (dims[i].is_dynamic() or ctx.dims.size(dims[i]) != 1))]
    if any(along_time(dims[i]) for i in keep):
        raise NotImplementedError(_PLAIN_ALONG)
    return ctx.const(t.reshape([t.shape[i] for i in keep]), [dims[i] for i in keep])


def _reduce(ctx, loss, reduction="sum"):
    return loss if reduction == "none" else reduce_ref(ctx, loss, reduction, list(range(loss.ndim)), False)


def _div(ctx, num, den):
    return ctx.eval("source(0) / tf.cast(source(1), source(0).dtype)", [num, den], num.dims)


# -- regression ---------------------------------------------------------------------------------------
def _pointwise(ctx, expr, input, target, reduction, weight=None, weight_mean="sum", extra=()):
    fmt = expr if weight is None else f"({expr}) * {{{2 + len(extra)}}}"
    loss = _ew(ctx, fmt, input, target, *extra, weight)
    if weight is not None and reduction == "mean" and weight_mean == "sum":  # sum(loss) / sum(w), valid frames
        return _div(ctx, _reduce(ctx, loss), _reduce(ctx, ctx.cast(_onto(ctx, weight, loss.dims), loss.dtype)))
    return _reduce(ctx, loss, reduction)


def _simple(expr):
    def h(ctx, input, target, size_average=None, reduce=None, reduction="mean", weight=None):
        return _pointwise(ctx, expr, input, target, _reduction(size_average, reduce, reduction), weight)
    return h


# with ``weight`` the mean is divided by the sum of the weights, as torch
handles(F.mse_loss)(_simple("tf.math.squared_difference({0}, {1})"))
handles(F.l1_loss)(_simple("tf.abs({0} - {1})"))
handles(F.soft_margin_loss)(_simple("tf.nn.softplus(-{0} * {1})"))


@handles(F.smooth_l1_loss)
def smooth_l1_loss(ctx, input, target, size_average=None, reduce=None, reduction="mean", beta=1.0):
    """0.5 d^2 / beta below ``beta``, else d - 0.5 beta (l1 for beta 0)."""
    b = lit(beta)  # l1 for beta 0
    expr = f"(lambda d: tf.where(d < {b}, 0.5 * d * d / {b}, d - 0.5 * {b}))(tf.abs({{0}} - {{1}}))" if beta else \
        "tf.abs({0} - {1})"
    return _pointwise(ctx, expr, input, target, _reduction(size_average, reduce, reduction))


@handles(F.huber_loss)
def huber_loss(ctx, input, target, reduction="mean", delta=1.0, weight=None):
    """0.5 d^2 below ``delta``, else delta (d - 0.5 delta); with ``weight`` the plain mean of the product."""
    d = lit(delta)
    expr = f"(lambda d: tf.where(d < {d}, 0.5 * d * d, {d} * (d - 0.5 * {d})))(tf.abs({{0}} - {{1}}))"
    return _pointwise(ctx, expr, input, target, _reduction(reduction=reduction), weight, weight_mean="plain")


@handles(F.poisson_nll_loss)
def poisson_nll_loss(ctx, input, target, log_input=True, full=False, size_average=None, eps=1e-8, reduce=None,
                     reduction="mean"):
    """exp(x) - t x (or x - t log(x + eps)), plus Stirling's term for t > 1 with ``full``."""
    expr = "tf.exp({0}) - {1} * {0}" if log_input else f"{{0}} - {{1}} * tf.math.log({{0}} + {lit(eps)})"
    if full:
        expr += (" + tf.where({1} > 1.0, (lambda t: t * tf.math.log(t) - t + 0.5 * tf.math.log(2 * math.pi * t))("
                 "tf.where({1} > 1.0, {1}, tf.ones_like({1}))), 0.0)").replace("math.pi", repr(math.pi))
    return _pointwise(ctx, expr, input, target, _reduction(size_average, reduce, reduction))


@handles(F.gaussian_nll_loss)
def gaussian_nll_loss(ctx, input, target, var, full=False, eps=1e-6, reduction="mean"):
    """0.5 (log v + (x - t)^2 / v) with v clamped to ``eps`` (the gradient passes the clamp, as torch)."""
    if isinstance(var, torch.Tensor) and var.dim() == input.dim() - 1 and tuple(var.shape) == tuple(input.shape[:-1]):
        if ctx.is_captured(var):
            raise NotImplementedError("gaussian_nll_loss with a computed var one axis short: use var[..., None]")
        var = var.unsqueeze(-1)
    expr = (f"0.5 * (lambda v: tf.math.log(v) + tf.square({{0}} - {{1}}) / v)("
            f"tf.grad_pass_through(lambda u: tf.maximum(u, {lit(eps)}))({{2}}))")
    if full:
        expr += f" + {0.5 * math.log(2 * math.pi)!r}"
    return _pointwise(ctx, expr, input, target, _reduction(reduction=reduction), extra=(var,))


# -- binary / margin ------------------------------------------------------------------------------------
@handles(F.binary_cross_entropy)
def binary_cross_entropy(ctx, input, target, weight=None, size_average=None, reduce=None, reduction="mean"):
    """-(t log x + (1 - t) log(1 - x)), each log clamped at -100 as torch."""
    expr = ("-({1} * tf.maximum(tf.math.log({0}), -100.0) + (1.0 - {1}) * "
            "tf.maximum(tf.math.log1p(-{0}), -100.0))")
    return _pointwise(ctx, expr, input, target, _reduction(size_average, reduce, reduction), weight, "plain")


@handles(F.binary_cross_entropy_with_logits)
def binary_cross_entropy_with_logits(ctx, input, target, weight=None, size_average=None, reduce=None,
                                     reduction="mean", pos_weight=None):
    """(1 - t) x + (1 + (pos_weight - 1) t) softplus(-x), times ``weight``."""
    lw = "1.0" if pos_weight is None else "(1.0 + ({2} - 1.0) * {1})"
    return _pointwise(ctx, f"(1.0 - {{1}}) * {{0}} + {lw} * tf.nn.softplus(-{{0}})", input, target,
                      _reduction(size_average, reduce, reduction), weight, "plain",
                      extra=() if pos_weight is None else (pos_weight,))


@handles(F.multilabel_soft_margin_loss)
def multilabel_soft_margin_loss(ctx, input, target, weight=None, size_average=None, reduce=None, reduction="mean"):
    """Per sample: the mean over classes (last axis) of the binary logistic losses, times ``weight``."""
    expr = "{1} * tf.nn.softplus(-{0}) + (1.0 - {1}) * tf.nn.softplus({0})"
    loss = _ew(ctx, expr if weight is None else f"({expr}) * {{2}}", input, target, weight)
    loss = reduce_ref(ctx, loss, "mean", [loss.ndim - 1] if loss.ndim else [], False)
    return _reduce(ctx, loss, _reduction(size_average, reduce, reduction))


@handles(F.margin_ranking_loss)
def margin_ranking_loss(ctx, input1, input2, target, margin=0, size_average=None, reduce=None, reduction="mean"):
    """max(0, -y (x1 - x2) + margin)."""
    return _pointwise(ctx, f"tf.maximum(-{{2}} * ({{0}} - {{1}}) + {lit(margin)}, 0.0)", input1, input2,
                      _reduction(size_average, reduce, reduction), extra=(target,))


@handles(F.hinge_embedding_loss)
def hinge_embedding_loss(ctx, input, target, margin=1.0, size_average=None, reduce=None, reduction="mean"):
    """x where y != -1, plus max(0, margin - x) where y != 1."""
    expr = (f"tf.where(tf.not_equal({{1}}, 1.0), tf.maximum({lit(margin)} - {{0}}, 0.0), 0.0) + "
            "tf.where(tf.not_equal({1}, -1.0), {0}, 0.0)")
    return _pointwise(ctx, expr, input, target, _reduction(size_average, reduce, reduction))


@handles(F.kl_div)
def kl_div(ctx, input, target, size_average=None, reduce=None, reduction="mean", log_target=False):
    """t (log t - x) (xlogy: 0 where t = 0), or exp(t) (t - x) with ``log_target``; also 'batchmean'."""
    red = _reduction(size_average, reduce, reduction, extra=("batchmean",))
    expr = "tf.exp({1}) * ({1} - {0})" if log_target else "tf.math.xlogy({1}, {1}) - {1} * {0}"
    loss = _ew(ctx, expr, input, target)
    if red != "batchmean":
        return _reduce(ctx, loss, red)
    total = _reduce(ctx, loss)
    return total if input.dim() == 0 else _div(ctx, total, ctx.size_ref(ctx.ref(input).dims[0], []))


# -- class scores ------------------------------------------------------------------------------------------
def _pick(ctx, r, cdim, t, dims):
    """sum over the class dim ``cdim`` of ``r`` where the class is ``t`` (int ref): r[..., t, ...]."""
    sel = ctx.eval("tf.where(tf.equal(tf.cast(source(1), tf.int64), tf.cast(source(2), tf.int64)), source(0), "
                   "tf.zeros_like(source(0)))", [r, t, range_ref(ctx, cdim)], dims, dtype=r.dtype)
    return reduce_ref(ctx, sel, "sum", [list(dims).index(cdim)], False)


def _class_vec(ctx, w, cdim):
    """A per-class tensor (C,) on the class dim."""
    r = ctx.ref(w, prefer=[cdim])
    return ctx.rename(r, {r.dims[0]: cdim})


def _class_loss(ctx, logp, cax, target, weight, ignore_index, reduction, smoothing=0.0):
    """nll_loss of log-probabilities ``logp`` (class axis ``cax``) against class indices or probabilities."""
    cdim = logp.dims[cax] if logp.ndim else None
    if cdim is None or cdim.is_dynamic():
        raise NotImplementedError("class scores of a 0-d tensor, or along the batch or a dynamic axis")
    frame = [d for i, d in enumerate(logp.dims) if i != cax]
    w = None if weight is None else ctx.cast(_class_vec(ctx, weight, cdim), logp.dtype)
    if target.dtype.is_floating_point:  # class probabilities
        t = ctx.cast(_onto(ctx, target, logp.dims), logp.dtype)
        srcs, expr = [logp, t], f"-source(0) * (source(1) * {1.0 - smoothing!r} + {smoothing / cdim.dimension!r})"
        if w is not None:
            srcs, expr = srcs + [w], expr + " * source(2)"
        per = reduce_ref(ctx, ctx.eval(expr, srcs, logp.dims, dtype=logp.dtype), "sum", [cax], False)
        return _reduce(ctx, per, reduction)
    t = _onto(ctx, target, frame)
    keep = f"tf.not_equal(tf.cast(source(1), tf.int64), {int(ignore_index)})"
    wt = ctx.fill([], 1.0, logp.dtype) if w is None else _pick(ctx, w, cdim, t, list(frame) + [cdim])
    w_frame = ctx.eval(f"tf.where({keep}, source(0), tf.zeros_like(source(0)))", [wt, t], frame, dtype=logp.dtype)
    nll = ctx.eval("-source(0) * source(1)", [_pick(ctx, logp, cdim, t, logp.dims), w_frame], frame, dtype=logp.dtype)
    if smoothing:
        sm = logp if w is None else ctx.eval("source(0) * source(1)", [logp, w], logp.dims, dtype=logp.dtype)
        smooth = reduce_ref(ctx, sm, "sum", [cax], False)
        nll = ctx.eval(f"{1.0 - smoothing!r} * source(0) - {smoothing / cdim.dimension!r} * "
                       f"tf.where({keep}, source(2), tf.zeros_like(source(2)))", [nll, t, smooth], frame,
                       dtype=logp.dtype)
    if reduction == "mean":
        return _div(ctx, _reduce(ctx, nll), _reduce(ctx, w_frame))
    return _reduce(ctx, nll, reduction)


def _log_softmax(ctx, r, cax):
    return ctx.eval("tf.nn.log_softmax(source(0), axis={axis})", [r], r.dims, axis=r.dims[cax], dtype=r.dtype)


@handles(F.cross_entropy)
def cross_entropy(ctx, input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
                  reduction="mean", label_smoothing=0.0):
    """log_softmax over the class axis (1, or 0 for unbatched input), then the nll of class indices
    (``ignore_index``, ``weight``: the mean divides by the summed weights) or of class probabilities."""
    cax, r = int(input.dim() > 1), ctx.ref(input)
    return _class_loss(ctx, _log_softmax(ctx, r, cax) if r.ndim else r, cax, target, weight, ignore_index,
                       _reduction(size_average, reduce, reduction), float(label_smoothing))


@handles(F.nll_loss)
def nll_loss(ctx, input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean"):
    """-input[class] per sample (``ignore_index``, ``weight``: the mean divides by the summed weights)."""
    return _class_loss(ctx, ctx.ref(input), int(input.dim() > 1), target, weight, ignore_index,
                       _reduction(size_average, reduce, reduction))


@handles(F.linear_cross_entropy)
def linear_cross_entropy(ctx, input, linear_weight, target, *, linear_bias=None, weight=None, reduction="mean",
                         ignore_index=None, label_smoothing=0.0, options=None):
    """cross_entropy(linear(input, linear_weight, linear_bias), target) (chunking ``options`` change nothing)."""
    x, w = ctx.ref(input), ctx.ref(linear_weight)
    logits = dot(ctx, x, w, [], [(x.ndim - 1, w.ndim - 1)],
                 [("a", i) for i in range(x.ndim - 1)] + [("b", j) for j in range(w.ndim - 1)])
    if linear_bias is not None:
        b = ctx.ref(linear_bias, prefer=list(logits.dims[x.ndim - 1:]))
        b = ctx.rename(b, dict(zip(b.dims, logits.dims[x.ndim - 1:])))
        logits = ctx.eval("source(0) + source(1)", [logits, b], logits.dims)
    cax = x.ndim - 1
    return _class_loss(ctx, _log_softmax(ctx, logits, cax), cax, target, weight,
                       -100 if ignore_index is None else ignore_index, _reduction(reduction=reduction),
                       float(label_smoothing))


@handles(F.multi_margin_loss)
def multi_margin_loss(ctx, input, target, p=1, margin=1.0, weight=None, size_average=None, reduce=None,
                      reduction="mean"):
    """Per sample: sum over classes i != y of max(0, margin - x[y] + x[i])^p (times weight[y]) / C."""
    x = ctx.ref(input)
    if x.ndim not in (1, 2) or x.dims[-1].is_dynamic():
        raise NotImplementedError("multi_margin_loss of a 0-d input, or with classes along the batch or a dynamic axis")
    cdim, frame = x.dims[-1], list(x.dims[:-1])
    if isinstance(target, torch.Tensor) and not ctx.is_captured(target):
        target = target.reshape(input.shape[:-1])
    t = _onto(ctx, target, frame)
    xt = _pick(ctx, x, cdim, t, x.dims)
    hinge = "z" if p == 1 else "z * z"
    h = ctx.eval(f"(lambda z: tf.where((z > 0) & tf.not_equal(tf.cast(source(2), tf.int64), source(3)), {hinge}, "
                 f"tf.zeros_like(z)))({lit(margin)} - source(1) + source(0))", [x, xt, t, range_ref(ctx, cdim)],
                 x.dims, dtype=x.dtype)
    loss = reduce_ref(ctx, h, "mean", [x.ndim - 1], False)
    if weight is not None:
        wt = _pick(ctx, ctx.cast(_class_vec(ctx, weight, cdim), x.dtype), cdim, t, frame + [cdim])
        loss = ctx.eval("source(0) * source(1)", [loss, wt], frame, dtype=x.dtype)
    return _reduce(ctx, loss, _reduction(size_average, reduce, reduction))


# -- embeddings ------------------------------------------------------------------------------------------------
@handles(F.cosine_embedding_loss)
def cosine_embedding_loss(ctx, input1, input2, target, margin=0, size_average=None, reduce=None, reduction="mean"):
    """1 - cos(x1, x2) where y = 1, max(0, cos - margin) where y = -1 (cos over the last axis)."""
    _check_plain(ctx, input1, input2)
    (a, b), dims = ctx.broadcast(input1, input2, dtype=ctx.out.dtype)
    sums = [reduce_ref(ctx, ctx.eval(e, srcs, dims), "sum", [len(dims) - 1], False)
            for e, srcs in (("source(0) * source(1)", [a, b]), ("tf.square(source(0))", [a]),
                            ("tf.square(source(0))", [b]))]
    y = _onto(ctx, target, sums[0].dims)
    expr = (f"(lambda c, y: tf.where(tf.equal(y, 1.0), 1.0 - c, tf.zeros_like(c)) + tf.where(tf.equal(y, -1.0), "
            f"tf.maximum(c - {lit(margin)}, 0.0), tf.zeros_like(c)))(source(0) / tf.sqrt((source(1) + 1e-12) * "
            "(source(2) + 1e-12)), tf.cast(source(3), source(0).dtype))")
    loss = ctx.eval(expr, sums + [y], sums[0].dims)
    return _reduce(ctx, loss, _reduction(size_average, reduce, reduction))


def _pdist(ctx, a, b, dims, p, eps):
    """pairwise_distance: the p-norm of a - b + eps over the last axis."""
    d = ctx.eval(f"tf.abs(source(0) - source(1) + {lit(eps)})", [a, b], dims)
    last = [len(dims) - 1]
    if p in (1, math.inf):
        return reduce_ref(ctx, d, "sum" if p == 1 else "max", last, False)
    s = reduce_ref(ctx, ctx.eval(f"tf.pow(source(0), {lit(p)})", [d], dims), "sum", last, False)
    return ctx.eval(f"{SAFE_SQRT}(source(0))" if p == 2 else f"tf.pow(source(0), {1.0 / p!r})", [s], s.dims)


def _triplet(ctx, anchor, positive, negative, margin, p, eps, swap, reduction):
    _check_plain(ctx, anchor, positive, negative)
    (a, pos, neg), dims = ctx.broadcast(anchor, positive, negative, dtype=ctx.out.dtype)
    dp, dn = _pdist(ctx, a, pos, dims, p, eps), _pdist(ctx, a, neg, dims, p, eps)
    if swap:
        dn = ctx.eval("tf.minimum(source(0), source(1))", [dn, _pdist(ctx, pos, neg, dims, p, eps)], dn.dims)
    loss = ctx.eval(f"tf.maximum({lit(margin)} + source(0) - source(1), 0.0)", [dp, dn], dp.dims)
    return _reduce(ctx, loss, reduction)


@handles(F.triplet_margin_loss)
def triplet_margin_loss(ctx, anchor, positive, negative, margin=1.0, p=2, eps=1e-6, swap=False, size_average=None,
                        reduce=None, reduction="mean"):
    """max(0, margin + d(a, p) - d(a, n)), d the pairwise p-norm distance (``swap``: min with d(p, n))."""
    return _triplet(ctx, anchor, positive, negative, margin, p, eps, swap, _reduction(size_average, reduce, reduction))


@handles(F.triplet_margin_with_distance_loss)
def triplet_margin_with_distance_loss(ctx, anchor, positive, negative, *, distance_function=None, margin=1.0,
                                      swap=False, reduction="mean"):
    """The triplet loss with pairwise_distance (also an nn.PairwiseDistance); another distance function is refused."""
    pd = isinstance(distance_function, torch.nn.PairwiseDistance) and not distance_function.keepdim
    if not pd and distance_function not in (None, F.pairwise_distance, torch.pairwise_distance):
        raise NotImplementedError("triplet_margin_with_distance_loss with a custom distance_function (its ops run "
                                  "inside torch, unseen); compute the distances and the loss with torch ops instead")
    p, eps = (distance_function.norm, distance_function.eps) if pd else (2, 1e-6)
    return _triplet(ctx, anchor, positive, negative, margin, p, eps, swap, _reduction(reduction=reduction))


# -- CTC ----------------------------------------------------------------------------------------------------
def _lengths(ctx, lengths, dim, bdim, what):
    """Per-sequence lengths along ``dim`` as an int32 [batch] ref: a captured tensor as it is; plain values
    must be the full size of ``dim`` (a dynamic dim then gives each sequence's own length)."""
    if ctx.is_captured(lengths):
        return ctx.cast(ctx.align(ctx.ref(lengths), [bdim]), torch.int32)
    vals = torch.as_tensor(lengths).reshape(-1).tolist()
    if not (dim.is_dynamic() or bdim.is_dynamic()):  # all static: the values as constants
        return ctx.const(torch.tensor(vals, dtype=torch.int32), [bdim])
    if any(v != ctx.dims.size(dim) for v in vals):
        raise NotImplementedError(f"ctc_loss with plain {what} other than the full size of their axis would fix the "
                                  "network to the capture's batch; pass lengths computed from the sizes or inputs")
    return ctx.eval("tf.cast(source(0), tf.int32)", [ctx.size_ref(dim, [bdim])], [bdim], dtype=torch.int32) \
        if dim.is_dynamic() else ctx.fill([bdim], dim.dimension, torch.int32)


@handles(F.ctc_loss)
def ctc_loss(ctx, log_probs, targets, input_lengths, target_lengths, blank=0, reduction="mean", zero_infinity=False):
    """Negative log likelihood of the targets over all CTC alignments (``tf.nn.ctc_loss``, whose gradient,
    as torch's, treats ``log_probs`` as the output of a log_softmax). log_probs (T, N, C); targets padded
    (N, S) or concatenated (plain); a dynamic T takes each sequence's length."""
    lp = ctx.ref(log_probs)
    if lp.ndim != 3:
        raise NotImplementedError("ctc_loss of unbatched log_probs (T, C)")
    tdim, bdim = lp.dims[0], lp.dims[1]
    if tdim.is_batch_dim():
        raise NotImplementedError("ctc_loss with the time axis of log_probs (axis 0) as the batch axis")
    if targets.dim() == 1:
        if ctx.is_captured(targets):
            raise NotImplementedError("ctc_loss with computed concatenated targets; pass them padded (N, S)")
        tl = torch.as_tensor(target_lengths).reshape(-1).tolist()
        targets = torch.nn.utils.rnn.pad_sequence(list(torch.split(targets, tl)), batch_first=True)
    tg = _onto(ctx, targets, [bdim, ctx.dims.static(targets.shape[1], f"{ctx.op_name}_S")]) \
        if not ctx.is_captured(targets) else ctx.ref(targets)
    il = _lengths(ctx, input_lengths, tdim, bdim, "input_lengths")
    tl = _lengths(ctx, target_lengths, tg.dims[1], bdim, "target_lengths")
    if tdim.is_dynamic() and not tdim.is_batch_dim():
        lp = mask_padding(ctx, lp, tdim)
    # too few frames for the targets (each label plus a blank between repeats): inf as torch (0 with zero_infinity)
    expr = ("(lambda lp, t, il, tl: tf.where(il < tl + tf.reduce_sum(tf.cast(tf.equal(t[:, 1:], t[:, :-1]) & "
            "(tf.range(1, tf.shape(t)[1])[None] < tl[:, None]), tf.int32), 1), "
            f"tf.fill(tf.shape(il), tf.constant({0.0 if zero_infinity else 'float(1e999)'}, lp.dtype)), "
            f"tf.nn.ctc_loss(t, lp, tl, il, logits_time_major=True, blank_index={int(blank)})))"
            "(x0, tf.cast(x1, tf.int32), tf.cast(x2, tf.int32), tf.cast(x3, tf.int32))")
    loss = ctx.tf_op(expr, [lp, tg, il, tl], [bdim], dtype=lp.dtype)
    red = _reduction(reduction=reduction)
    if red == "mean":
        loss = ctx.eval("source(0) / tf.cast(tf.maximum(source(1), 1), source(0).dtype)", [loss, tl], [bdim])
    return _reduce(ctx, loss, red)
