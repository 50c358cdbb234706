"""Reductions: sum, mean, prod, max/min (values and indices), amax/amin, argmax/argmin,
logsumexp, var/std, with ``dim`` tuples and ``keepdim``."""

from __future__ import annotations

import torch

from .common import SAFE_SQRT, T, apply, reduce_ref
from .registry import handles


def _axes(r, dim) -> list[int]:
    """The torch axes a reduction over ``dim`` covers (none for a 0-d tensor: torch takes dim 0 / -1
    there and the result is the value itself)."""
    if dim is None or (isinstance(dim, (list, tuple)) and len(dim) == 0) or r.ndim == 0:
        return list(range(r.ndim))
    if isinstance(dim, int):
        dim = [dim]
    return sorted({int(d) % r.ndim for d in dim})


def _zero_index(ctx, r):
    """The index of an arg-reduction over no axis (a 0-d tensor): 0, as torch."""
    return ctx.eval("tf.zeros_like(source(0), dtype=tf.int64)", [r], r.dims, dtype=torch.int64)


def _reduce(mode: str):
    def h(ctx, x, dim=None, keepdim=False, *, dtype=None, out=None):
        r = ctx.ref(x)
        if dtype is not None or (mode in ("sum", "prod") and r.dtype == torch.bool):
            r = ctx.cast(r, ctx.out.dtype)
        return ctx.cast(reduce_ref(ctx, r, mode, _axes(r, dim), keepdim), ctx.out.dtype)
    return h


handles(torch.sum, T.sum)(_reduce("sum"))
handles(torch.mean, T.mean)(_reduce("mean"))
handles(torch.amax, T.amax)(_reduce("max"))
handles(torch.amin, T.amin)(_reduce("min"))
handles(torch.logsumexp, T.logsumexp, torch.special.logsumexp)(_reduce("logsumexp"))


@handles(torch.prod, T.prod)
def prod(ctx, x, dim=None, keepdim=False, *, dtype=None):
    """Product over ``dim``: exp(sum(log|x|)) times the sign from the count of negative factors."""
    r = ctx.cast(ctx.ref(x), ctx.out.dtype)
    if not r.dtype.is_floating_point:
        raise NotImplementedError("prod of an integer tensor")
    axes = _axes(r, dim)
    parts = ctx.eval("tf.math.log(tf.abs(source(0)))", [r], r.dims)
    neg = ctx.eval("tf.cast(source(0) < 0, source(0).dtype)", [r], r.dims)
    logsum = reduce_ref(ctx, parts, "sum", axes, False)
    negsum = reduce_ref(ctx, neg, "sum", axes, False)
    res = ctx.eval("tf.exp(source(0)) * (1.0 - 2.0 * tf.math.floormod(source(1), 2.0))", [logsum, negsum],
                   logsum.dims)
    for i in axes if keepdim else ():
        res = ctx.unsqueeze(res, i)
    return res


def _arg(mode):
    def h(ctx, x, dim=None, keepdim=False):
        r = ctx.ref(x)
        if r.ndim == 0:
            return _zero_index(ctx, r)
        if dim is None:
            raise NotImplementedError(f"{mode} over all axes (a flat index) is not supported; give dim")
        return reduce_ref(ctx, r, mode, _axes(r, dim), keepdim)
    return h


@handles(torch.any, T.any, torch.all, T.all)
def any_all(ctx, x, dim=None, keepdim=False, *, out=None):
    """Whether any / all elements (over ``dim``, or all axes) are non-zero (masked over a dynamic axis:
    only the valid frames count)."""
    r = ctx.cast(ctx.ref(x), torch.bool)
    mode = "max" if ctx.func in (torch.any, T.any) else "min"
    y = reduce_ref(ctx, ctx.cast(r, torch.int32), mode, _axes(r, dim), keepdim, dtype=torch.int32)
    return ctx.cast(y, torch.bool)


handles(torch.argmax, T.argmax)(_arg("argmax"))
handles(torch.argmin, T.argmin)(_arg("argmin"))


def _maxmin(mode: str):
    def h(ctx, x, dim=None, keepdim=False, *, out=None):
        r = ctx.ref(x)
        if dim is None:
            out = reduce_ref(ctx, r, mode, _axes(r, None), False)
            dim_of = ctx.dims.lengths_dim(r.layer)
            if mode == "max" and dim_of is not None:  # max of a dim's lengths: its padded size
                ctx.dims.mark_size_tensor(out.layer, ctx.dims.lin_of(dim_of))
            return out
        if not isinstance(dim, int):  # torch.max(a, b): elementwise
            return apply(ctx, f"tf.{'maximum' if mode == 'max' else 'minimum'}({{0}}, {{1}})", x, dim)
        if r.ndim == 0:
            return r, _zero_index(ctx, r)
        axes = _axes(r, dim)
        values = reduce_ref(ctx, r, mode, axes, keepdim, dtype=r.dtype)
        indices = reduce_ref(ctx, r, "arg" + mode, axes, keepdim, dtype=torch.int64)
        return values, indices
    return h


handles(torch.max, T.max)(_maxmin("max"))
handles(torch.min, T.min)(_maxmin("min"))


def _var(ctx, x, dim, correction, keepdim, sqrt: bool):
    r = ctx.ref(x)
    axes = _axes(r, dim)
    mean = reduce_ref(ctx, r, "mean", axes, False)
    sq = ctx.eval("tf.square(source(0) - source(1))", [r, mean], r.dims)
    n = 1
    for i in axes:
        n *= r.shape[i] if not r.dims[i].is_dynamic() else 1
    var = reduce_ref(ctx, sq, "mean", axes, keepdim)
    dyn = [r.dims[i] for i in axes if r.dims[i].is_dynamic()]
    if correction and dyn:  # Bessel factor from each sequence's own length
        if len(dyn) > 1:
            raise NotImplementedError("var/std with a correction over several dynamic axes")
        length = ctx.cast(ctx.size_ref(dyn[0], var.dims), var.dtype)
        factor = f"(source(1) * {n}.0 / (source(1) * {n}.0 - {correction}))"
        expr = f"{SAFE_SQRT}(source(0) * {factor})" if sqrt else f"source(0) * {factor}"
        return ctx.eval(expr, [var, length], var.dims)
    factor = n / max(n - correction, 0) if n - correction > 0 else float("nan")
    expr = f"{SAFE_SQRT}(source(0) * {factor!r})" if sqrt else f"source(0) * {factor!r}"
    return ctx.eval(expr, [var], var.dims)


def _correction(unbiased, correction):
    if correction is not None:
        return correction
    return 1 if unbiased in (None, True) else 0


@handles(torch.var, T.var)
def var(ctx, x, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """Variance (Bessel-corrected by default, as torch)."""
    if isinstance(dim, bool):
        dim, unbiased = None, dim
    return _var(ctx, x, dim, _correction(unbiased, correction), keepdim, sqrt=False)


@handles(torch.std, T.std)
def std(ctx, x, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """Standard deviation (Bessel-corrected by default, as torch)."""
    if isinstance(dim, bool):
        dim, unbiased = None, dim
    return _var(ctx, x, dim, _correction(unbiased, correction), keepdim, sqrt=True)
