"""Linear algebra beyond the plain products of ``linear``: dot/vdot/inner/vecdot, addmv/addr/addbmm, kron,
chain_matmul/multi_dot, tensordot, trace/diag/diagonal/diag_embed, vector and matrix norms (linalg.norm,
torch.norm), cross, cdist, pairwise_distance, cosine_similarity, trapezoid/cumulative_trapezoid.
Decompositions and solvers are in ``linalg_solve`` (imported here).

Sums, maxima and minima over a dynamic axis ignore the padding (``reduce`` layers, masked products);
ops whose output size would follow a dynamic or batch axis in a way RETURNN cannot express refuse.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from . import linalg_solve  # noqa: F401  (registers the decompositions and solvers)
from .common import SAFE_SQRT, T, apply, dot, lit, mask_padding, matmul_ref, reduce_ref
from .registry import handles


def _cast(ctx, x):
    return ctx.cast(ctx.ref(x), ctx.out.dtype)


def _static(d) -> bool:
    return not d.is_dynamic() and not d.is_batch_dim()


def _mask(ctx, r, d):
    """``r`` with the padding of ``d`` set to 0 if ``d`` is a dynamic (time) axis."""
    return mask_padding(ctx, r, d) if d.is_dynamic() and not d.is_batch_dim() else r


# -- products -----------------------------------------------------------------------------------------
@handles(torch.dot, T.dot, torch.vdot, T.vdot, torch.inner, T.inner)
def inner(ctx, a, b, *, out=None):
    """Sum over the last axes of both (dot/vdot of real vectors; a 0-d operand multiplies)."""
    if ctx.out.is_complex():
        raise NotImplementedError("dot/vdot/inner of complex tensors")
    ra, rb = _cast(ctx, a), _cast(ctx, b)
    if ra.ndim == 0 or rb.ndim == 0:
        return apply(ctx, "{0} * {1}", a, b)
    return dot(ctx, ra, rb, [], [(ra.ndim - 1, rb.ndim - 1)],
               [("a", i) for i in range(ra.ndim - 1)] + [("b", i) for i in range(rb.ndim - 1)])


@handles(torch.linalg.vecdot)
def vecdot(ctx, x, y, *, dim=-1, out=None):
    """Sum of x * y over ``dim`` (broadcast)."""
    prod = apply(ctx, "{0} * {1}", x, y)
    return reduce_ref(ctx, prod, "sum", [dim % prod.ndim] if prod.ndim else [], False)


def _add_scaled(ctx, input, prod, beta, alpha):
    """beta * input + alpha * prod (input ignored for beta == 0, as torch: NaN there does not show)."""
    scaled = "source(0)" if alpha == 1 else f"{lit(alpha)} * source(0)"
    if beta == 0:
        return ctx.eval(scaled, [prod], prod.dims)
    inp = ctx.align(_cast(ctx, input), prod.dims)
    return ctx.eval(f"{lit(beta)} * source(1) + {scaled}", [prod, inp], prod.dims)


@handles(torch.addmv, T.addmv)
def addmv(ctx, input, mat, vec, *, beta=1, alpha=1, out=None):
    """beta * input + alpha * (mat @ vec)."""
    return _add_scaled(ctx, input, matmul_ref(ctx, _cast(ctx, mat), _cast(ctx, vec)), beta, alpha)


@handles(torch.addr, T.addr)
def addr(ctx, input, vec1, vec2, *, beta=1, alpha=1, out=None):
    """beta * input + alpha * outer(vec1, vec2)."""
    a, b = _cast(ctx, vec1), _cast(ctx, vec2)
    return _add_scaled(ctx, input, dot(ctx, a, b, [], [], [("a", 0), ("b", 0)]), beta, alpha)


@handles(torch.addbmm, T.addbmm)
def addbmm(ctx, input, batch1, batch2, *, beta=1, alpha=1, out=None):
    """beta * input + alpha * sum_i batch1[i] @ batch2[i]."""
    a, b = _cast(ctx, batch1), _cast(ctx, batch2)
    return _add_scaled(ctx, input, dot(ctx, a, b, [], [(0, 0), (2, 1)], [("a", 1), ("b", 2)]), beta, alpha)


@handles(torch.chain_matmul, torch.linalg.multi_dot)
def multi_dot(ctx, *matrices, out=None):
    """Product of a chain of matrices (multi_dot: the first and last may be vectors)."""
    if len(matrices) == 1 and isinstance(matrices[0], (list, tuple)):
        matrices = matrices[0]
    refs = [_cast(ctx, m) for m in matrices]
    y = refs[0]
    for r in refs[1:]:
        y = matmul_ref(ctx, y, r)
    return y if len(refs) > 1 else ctx.eval("source(0)", [y], y.dims)


@handles(torch.tensordot)
def tensordot(ctx, a, b, dims=2, out=None):
    """Sum over the axis pairs ``dims`` (an int: the last n of a with the first n of b)."""
    ra, rb = _cast(ctx, a), _cast(ctx, b)
    if isinstance(dims, torch.Tensor):
        dims = dims.tolist()
    if isinstance(dims, int):
        pairs = [(ra.ndim - dims + k, k) for k in range(dims)]
    else:
        da, db = ([d] if isinstance(d, int) else list(d) for d in dims)
        pairs = [(i % ra.ndim, j % rb.ndim) for i, j in zip(da, db)]
    out_order = [("a", i) for i in range(ra.ndim) if i not in [p[0] for p in pairs]]
    out_order += [("b", j) for j in range(rb.ndim) if j not in [p[1] for p in pairs]]
    return dot(ctx, ra, rb, [], pairs, out_order)


@handles(torch.kron, T.kron)
def kron(ctx, a, b, *, out=None):
    """Kronecker product (every axis where both sizes exceed 1 must be static)."""
    ra, rb = _cast(ctx, a), _cast(ctx, b)
    n = max(ra.ndim, rb.ndim)
    while ra.ndim < n:
        ra = ctx.unsqueeze(ra, 0)
    while rb.ndim < n:
        rb = ctx.unsqueeze(rb, 0)
    dims = []
    for k in range(n):
        da, db = ra.dims[k], rb.dims[k]
        if _static(db) and rb.shape[k] == 1:
            dims.append(da)
        elif _static(da) and ra.shape[k] == 1:
            dims.append(db)
        elif _static(da) and _static(db):
            dims.append(ctx.dims.static(ra.shape[k] * rb.shape[k], f"{ctx.op_name}_d{k}"))
        else:
            raise NotImplementedError("kron along a dynamic or batch axis (its size would multiply)")
    ia = "[" + ", ".join([":", "None"] * n) + "]"
    ib = "[" + ", ".join(["None", ":"] * n) + "]"
    shape = ", ".join(str(ra.shape[k] * rb.shape[k]) if _static(d) else f"tf.shape(x{int(d is rb.dims[k])})[{k}]"
                      for k, d in enumerate(dims))  # static sizes as numbers: TF then knows them
    expr = f"tf.reshape(x0{ia} * x1{ib}, [{shape}])" if n else "x0 * x1"
    return ctx.tf_op(expr, [ra, rb], dims)


# -- diagonals ----------------------------------------------------------------------------------------
def _same_length(ctx, d1, d2) -> bool:
    return ctx.dims.twin_origin(d1) is ctx.dims.twin_origin(d2)


def _eye_masked(ctx, r, ax1, ax2, offset):
    """``r`` with the axes ax1, ax2 moved last and 0 off their diagonal ``offset`` (NaN-safe)."""
    rest = [i for i in range(r.ndim) if i not in (ax1, ax2)]
    expr = (f"(lambda x: tf.where(tf.equal(tf.range(tf.shape(x)[-2])[:, None] + {int(offset)}, "
            f"tf.range(tf.shape(x)[-1])[None, :]), x, tf.zeros_like(x)))(tf.transpose(x0, {rest + [ax1, ax2]}))")
    return ctx.tf_op(expr, [r], [r.dims[i] for i in rest] + [r.dims[ax1], r.dims[ax2]], dtype=r.dtype)


@handles(torch.trace, T.trace)
def trace(ctx, x):
    """Sum of the diagonal (padding frames of a dynamic axis count as 0)."""
    r = ctx.ref(x)
    if r.ndim != 2:
        raise NotImplementedError("trace of a tensor that is not 2-D")
    r = ctx.cast(r, ctx.out.dtype)
    return reduce_ref(ctx, _eye_masked(ctx, r, 0, 1, 0), "sum", [0, 1], False)  # reduce: padding ignored


@handles(torch.diagonal, T.diagonal, torch.linalg.diagonal)
def diagonal(ctx, x, offset=0, dim1=0, dim2=1, *, outdim=None):
    """The diagonal ``offset`` of the axes dim1, dim2, as the last axis."""
    r = ctx.ref(x)
    if ctx.func is torch.linalg.diagonal and (dim1, dim2) == (0, 1):
        dim1, dim2 = -2, -1
    a1, a2 = dim1 % r.ndim, dim2 % r.ndim
    rest = [i for i in range(r.ndim) if i not in (a1, a2)]
    d1, d2 = r.dims[a1], r.dims[a2]
    if _static(d1) and _static(d2):
        kd = ctx.dims.static(ctx.out.shape[-1], f"{ctx.op_name}_diag")
        moved = f"tf.transpose(x0, {rest + [a1, a2]})"
        expr = f"tf.linalg.diag_part({moved}, k={int(offset)})" if ctx.out.shape[-1] else \
            f"tf.zeros(tf.concat([tf.shape({moved})[:-2], [0]], 0), x0.dtype)"
        return ctx.tf_op(expr, [r], [r.dims[i] for i in rest] + [kd], dtype=r.dtype)
    if offset == 0 and not d1.is_batch_dim() and not d2.is_batch_dim() and _same_length(ctx, d1, d2):
        return reduce_ref(ctx, _eye_masked(ctx, r, a1, a2, 0), "sum", [r.ndim - 1], False)
    raise NotImplementedError("diagonal over a dynamic or batch axis (other than offset 0 of two axes of one length)")


@handles(torch.diag_embed, T.diag_embed)
def diag_embed(ctx, x, offset=0, dim1=-2, dim2=-1):
    """The last axis as the diagonal ``offset`` of two new axes dim1, dim2 (the last axis must be static)."""
    r = ctx.ref(x)
    if not _static(r.dims[-1]):
        raise NotImplementedError("diag_embed of a dynamic or batch axis")
    n = r.ndim + 1
    a1, a2 = dim1 % n, dim2 % n
    size = ctx.out.shape[a1]
    da = ctx.dims.static(size, f"{ctx.op_name}_row")
    db = ctx.dims.static(size, f"{ctx.op_name}_col")
    lead = list(r.dims[:-1])
    order = []  # output axis -> axis of tf.linalg.diag's result (lead..., row, col)
    it = iter(range(len(lead)))
    for i in range(n):
        order.append(len(lead) if i == a1 else len(lead) + 1 if i == a2 else next(it))
    dims = [da if i == a1 else db if i == a2 else None for i in range(n)]
    it = iter(lead)
    dims = [d if d is not None else next(it) for d in dims]
    expr = f"tf.transpose(tf.linalg.diag(x0, k={int(offset)}, num_rows={size}, num_cols={size}), {order})"
    return ctx.tf_op(expr, [r], dims, dtype=r.dtype)


@handles(torch.diag, T.diag)
def diag(ctx, x, diagonal=0, *, out=None):
    """1-D: a matrix with ``x`` on the diagonal; 2-D: the diagonal."""
    if x.dim() == 1:
        return diag_embed(ctx, x, diagonal, 0, 1)
    return globals()["diagonal"](ctx, x, diagonal, 0, 1)


# -- norms --------------------------------------------------------------------------------------------
def vnorm(ctx, r, ord, axes, keepdim):
    """The vector ``ord``-norm of ``r`` over ``axes`` (masked over dynamic axes by the reduce layers)."""
    ord = float(ord)
    if ord == 2:
        s = reduce_ref(ctx, ctx.eval("tf.square(source(0))", [r], r.dims), "sum", axes, keepdim)
        return ctx.eval(f"{SAFE_SQRT}(source(0))", [s], s.dims)
    ab = ctx.eval("tf.abs(source(0))", [r], r.dims)
    if math.isinf(ord):
        return reduce_ref(ctx, ab, "max" if ord > 0 else "min", axes, keepdim)
    if ord == 0:
        nz = ctx.eval("tf.cast(tf.not_equal(source(0), 0), source(0).dtype)", [r], r.dims)
        return reduce_ref(ctx, nz, "sum", axes, keepdim)
    if ord == 1:
        return reduce_ref(ctx, ab, "sum", axes, keepdim)
    s = reduce_ref(ctx, ctx.eval(f"tf.pow(source(0), {ord!r})", [ab], r.dims), "sum", axes, keepdim)
    return ctx.eval(f"tf.pow(source(0), {1.0 / ord!r})", [s], s.dims)


def _axes(r, dim):
    if dim is None or r.ndim == 0:
        return list(range(r.ndim))
    return sorted({int(d) % r.ndim for d in ([dim] if isinstance(dim, int) else dim)})


@handles(torch.linalg.vector_norm)
def vector_norm(ctx, x, ord=2, dim=None, keepdim=False, *, dtype=None, out=None):
    """``ord``-norm over ``dim`` (all axes by default)."""
    r = _cast(ctx, x)
    return vnorm(ctx, r, ord, _axes(r, dim), keepdim)


def _svals_reduce(ctx, r, a1, a2, how):
    """max/min/sum of the singular values of the matrices over axes a1, a2 (computed in one TF op)."""
    rest = [i for i in range(r.ndim) if i not in (a1, a2)]
    if any(r.dims[a].is_batch_dim() for a in (a1, a2)) or (how == "min" and not all(_static(r.dims[a]) for a in (
            a1, a2))):
        raise NotImplementedError("singular values over a batch axis (or the smallest one over a dynamic axis)")
    for a in (a1, a2):  # zero padding rows/columns add only zero singular values
        r = _mask(ctx, r, r.dims[a])
    s = f"tf.linalg.svd(tf.transpose(x0, {rest + [a1, a2]}), compute_uv=False)"
    return ctx.tf_op(f"tf.reduce_{how}({s}, axis=-1)", [r], [r.dims[i] for i in rest], dtype=r.dtype)


def mnorm(ctx, r, ord, dim, keepdim):
    """The matrix ``ord``-norm over the axis pair ``dim``."""
    a1, a2 = (int(d) % r.ndim for d in dim)
    if ord == "fro":
        y = vnorm(ctx, r, 2, sorted((a1, a2)), False)
    elif ord in ("nuc", 2, -2):
        y = _svals_reduce(ctx, r, a1, a2, {"nuc": "sum", 2: "max", -2: "min"}[ord])
    elif ord in (1, -1, math.inf, -math.inf):
        inner_ax, outer_ax = (a1, a2) if abs(ord) == 1 else (a2, a1)
        s = reduce_ref(ctx, ctx.eval("tf.abs(source(0))", [r], r.dims), "sum", [inner_ax], False)
        y = reduce_ref(ctx, s, "max" if ord > 0 else "min", [outer_ax - (outer_ax > inner_ax)], False)
    else:
        raise NotImplementedError(f"matrix norm of order {ord!r}")
    if keepdim:
        for i in sorted((a1, a2)):
            y = ctx.unsqueeze(y, i)
    return y


@handles(torch.linalg.matrix_norm)
def matrix_norm(ctx, A, ord="fro", dim=(-2, -1), keepdim=False, *, dtype=None, out=None):
    """Frobenius, nuclear, 1/inf (max column/row sums) and 2 (largest singular value) norms."""
    return mnorm(ctx, _cast(ctx, A), ord, dim, keepdim)


@handles(torch.linalg.norm)
def linalg_norm(ctx, A, ord=None, dim=None, keepdim=False, *, dtype=None, out=None):
    """Vector norm over one axis (or all, flattened), matrix norm over two."""
    r = _cast(ctx, A)
    if isinstance(dim, int) or (dim is not None and len(dim) == 1):
        return vnorm(ctx, r, 2 if ord is None else ord, _axes(r, dim), keepdim)
    if dim is not None:
        return mnorm(ctx, r, "fro" if ord is None else ord, dim, keepdim)
    if ord is None or r.ndim == 1:
        return vnorm(ctx, r, 2 if ord is None else ord, _axes(r, None), keepdim)
    return mnorm(ctx, r, ord, (0, 1), keepdim)


@handles(torch.norm, T.norm)
def norm(ctx, input, p="fro", dim=None, keepdim=False, out=None, dtype=None):
    """torch.norm: 'fro' (2-norm over dim or all), 'nuc' (matrix), numbers (vector norm over dim)."""
    r = _cast(ctx, input)
    if isinstance(p, str):
        if p == "fro" and (dim is None or isinstance(dim, int) or len(dim) <= 2):
            return vnorm(ctx, r, 2, _axes(r, dim), keepdim)
        return mnorm(ctx, r, p, list(range(r.ndim)) if dim is None else dim, keepdim)
    return vnorm(ctx, r, 2.0 if p is None else p, _axes(r, dim), keepdim)


# -- distances ----------------------------------------------------------------------------------------
@handles(torch.cross, T.cross, torch.linalg.cross)
def cross(ctx, a, b, dim=None, *, out=None):
    """Cross product of 3-vectors along ``dim`` (torch.cross default: the first axis of size 3)."""
    items, dims = ctx.broadcast(a, b, dtype=ctx.out.dtype)
    if dim is None:
        dim = -1 if ctx.func is torch.linalg.cross else list(ctx.out.shape).index(3)
    ax = dim % len(dims)
    if not _static(dims[ax]):
        raise NotImplementedError("cross along a dynamic or batch axis")
    ra, rb = (ctx.align(it, dims, expand=True) for it in items)
    g = "tf.gather(x{}, {}, axis=" + str(ax) + ")"
    expr = (f"{g.format(0, [1, 2, 0])} * {g.format(1, [2, 0, 1])} - "
            f"{g.format(0, [2, 0, 1])} * {g.format(1, [1, 2, 0])}")
    return ctx.tf_op(expr, [ra, rb], dims)


@handles(torch.cdist)
def cdist(ctx, x1, x2, p=2.0, compute_mode=None):
    """p-norm distance between each row of x1 (..., P, M) and each row of x2 (..., R, M), exactly (no mm)."""
    a, b = _cast(ctx, x1), _cast(ctx, x2)
    lead = list(a.dims[:-2])
    if b.ndim - 2 > len(lead) or any(s == 1 and t != 1 for s, t in zip(a.shape[:-2][::-1], b.shape[:-2][::-1])):
        raise NotImplementedError("cdist with x1 broadcast over the batch axes of x2")
    r_dim = b.dims[-2]
    if any(r_dim is d for d in a.dims):
        r_dim = ctx.twin(r_dim)
    b = ctx.align(b, lead[len(lead) - (b.ndim - 2):] + [r_dim, a.dims[-1]])
    dims = lead + [a.dims[-2], r_dim, a.dims[-1]]
    diff = ctx.eval("source(0) - source(1)", [a, b], dims)
    return vnorm(ctx, diff, p, [len(dims) - 1], False)


@handles(F.pairwise_distance, torch.pairwise_distance)
def pairwise_distance(ctx, x1, x2, p=2.0, eps=1e-6, keepdim=False):
    """p-norm of x1 - x2 + eps over the last axis."""
    diff = apply(ctx, f"{{0}} - {{1}} + {lit(eps)}", x1, x2)
    return vnorm(ctx, diff, p, [diff.ndim - 1] if diff.ndim else [], keepdim)


@handles(F.cosine_similarity, torch.cosine_similarity)
def cosine_similarity(ctx, x1, x2, dim=1, eps=1e-8):
    """sum(x1 / max(|x1|, eps) * x2 / max(|x2|, eps)) over ``dim`` (the clamp without gradient, as torch)."""
    items, dims = ctx.broadcast(x1, x2, dtype=ctx.out.dtype)
    ra, rb = (ctx.align(it, dims, expand=True) for it in items)
    axes = [dim % len(dims)] if dims else []
    na, nb = (vnorm(ctx, r, 2, axes, False) for r in (ra, rb))
    clamp = f"(lambda n: n + tf.stop_gradient(tf.maximum(n, {lit(eps)}) - n))"
    prod = ctx.eval(f"source(0) / {clamp}(source(1)) * (source(2) / {clamp}(source(3)))", [ra, na, rb, nb], dims)
    return reduce_ref(ctx, prod, "sum", axes, False)


# -- integration --------------------------------------------------------------------------------------
def _trapz_parts(ctx, y, x, dx, dim):
    ry = _cast(ctx, y)
    ax = dim % ry.ndim
    if not _static(ry.dims[ax]):
        raise NotImplementedError("trapezoid along a dynamic or batch axis")
    lo = "x0[" + ":, " * ax + ":-1]"
    hi = "x0[" + ":, " * ax + "1:]"
    if x is None or not isinstance(x, torch.Tensor):
        step = lit(1 if dx is None and x is None else x if dx is None else dx)
        return ry, ax, [ry], f"({hi} + {lo}) * ({step} / 2.0)"
    rx = _cast(ctx, x)
    if rx.ndim == 1:
        shape = [-1] + [1] * (ry.ndim - 1 - ax)
        return ry, ax, [ry, rx], f"({hi} + {lo}) * tf.reshape(x1[1:] - x1[:-1], {shape}) / 2.0"
    items, dims = ctx.broadcast(y, x, dtype=ctx.out.dtype)
    if list(dims) != list(ry.dims):
        raise NotImplementedError("trapezoid with x broadcasting y to more axes")
    rx = ctx.align(items[1], dims, expand=True)
    xd = "(x1[" + ":, " * ax + "1:] - x1[" + ":, " * ax + ":-1])"
    return ry, ax, [ry, rx], f"({hi} + {lo}) * {xd} / 2.0"


@handles(torch.trapezoid, torch.trapz)
def trapezoid(ctx, y, x=None, *, dx=None, dim=-1):
    """Trapezoidal rule along ``dim`` (spacing dx, or the sample points x)."""
    ry, ax, srcs, parts = _trapz_parts(ctx, y, x, dx, dim)
    return ctx.tf_op(f"tf.reduce_sum({parts}, axis={ax})", srcs, [d for i, d in enumerate(ry.dims) if i != ax])


@handles(torch.cumulative_trapezoid)
def cumulative_trapezoid(ctx, y, x=None, *, dx=None, dim=-1):
    """Running trapezoidal sums along ``dim`` (one fewer entry)."""
    ry, ax, srcs, parts = _trapz_parts(ctx, y, x, dx, dim)
    dims = list(ry.dims)
    dims[ax] = ctx.dims.static(ctx.out.shape[ax], f"{ctx.op_name}_n")
    return ctx.tf_op(f"tf.cumsum({parts}, axis={ax})", srcs, dims)
