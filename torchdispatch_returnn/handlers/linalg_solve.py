"""Decompositions and solvers on the last two (matrix) axes with TF's own kernels: det/logdet/slogdet,
inverse/inv(_ex), solve(_ex), cholesky(_ex), cholesky_solve, lu_solve, triangular_solve/solve_triangular, qr,
svdvals (and svd/eigh with only their values: the vectors' signs are not unique, TF's differ from LAPACK's),
eigvalsh, pinv/pinverse, matrix_power, matrix_exp, cov and corrcoef.

The matrix axes must not be dynamic (time) axes: padding would enter every entry of the result. The
batch axis may be one of them where the result keeps the matrix's dims (op_db's (n, n) samples).
"""

from __future__ import annotations

import torch

from ..tensor import Ref
from .common import SAFE_SQRT, T, dot, mask_padding, reduce_ref
from .registry import handles


def _mat(ctx, x, what: str):
    """The ref of a stack of matrices (float), refusing padded (dynamic) matrix axes."""
    r = ctx.cast(ctx.ref(x), ctx.out[0].dtype if isinstance(ctx.out, tuple) else ctx.out.dtype)
    if r.ndim < 2:
        raise NotImplementedError(f"{what} of a tensor with fewer than 2 axes")
    if any(d.is_dynamic() and not d.is_batch_dim() for d in r.dims[-2:]):
        raise NotImplementedError(f"{what} over a dynamic (padded) axis")
    dyn = [d for d in r.dims[:-2] if d.is_dynamic() and not d.is_batch_dim()]
    if dyn:  # padding frames hold garbage: the identity there, so TF's kernels neither fail nor spread NaN
        valid = ctx.fill(list(r.dims[:-2]), 1.0, r.dtype)
        for d in dyn:
            valid = mask_padding(ctx, valid, d)
        r = ctx.tf_op("tf.where(x1[..., None, None] > 0, x0, tf.eye(tf.shape(x0)[-2], tf.shape(x0)[-1], "
                      "dtype=x0.dtype))", [r, valid], r.dims, dtype=r.dtype)
    return r


def _static_mat(ctx, r, what: str):
    if any(d.is_dynamic() or d.is_batch_dim() for d in r.dims[-2:]):
        raise NotImplementedError(f"{what} of matrices with a batch axis among the matrix axes (the result's size "
                                  "would follow the batch size)")


def _sym_from(r_expr: str, lower: bool) -> str:
    """TF source: the symmetric matrix from one triangle of ``r_expr``; its gradient is the symmetric part
    (as torch's for eigh/cholesky: the full symmetric gradient, not a triangle)."""
    tri = "tf.linalg.band_part(a, -1, 0)" if lower else "tf.linalg.band_part(a, 0, -1)"
    sym = f"({tri} + tf.linalg.matrix_transpose({tri}) - tf.linalg.diag(tf.linalg.diag_part(a)))"
    half = "(a + tf.linalg.matrix_transpose(a)) / 2"
    return f"(lambda a: tf.stop_gradient({sym}) + ({half} - tf.stop_gradient({half})))({r_expr})"


@handles(torch.det, T.det, torch.linalg.det)
def det(ctx, A):
    """Determinant."""
    r = _mat(ctx, A, "det")
    return ctx.tf_op("tf.linalg.det(x0)", [r], r.dims[:-2])


@handles(torch.slogdet, T.slogdet, torch.linalg.slogdet)
def slogdet(ctx, A, *, out=None):
    """(sign, log|det|)."""
    r = _mat(ctx, A, "slogdet")
    sign = ctx.tf_op("tf.stop_gradient(tf.linalg.slogdet(x0)[0])", [r], r.dims[:-2], dtype=r.dtype)
    return sign, ctx.tf_op("tf.linalg.slogdet(x0)[1]", [r], r.dims[:-2], dtype=r.dtype)


@handles(torch.logdet, T.logdet)
def logdet(ctx, A):
    """log(det): NaN for a negative determinant, -inf for 0."""
    r = _mat(ctx, A, "logdet")
    return ctx.tf_op("(lambda s: tf.where(s[0] < 0, tf.constant(float('nan'), s[1].dtype), s[1]))"
                     "(tf.linalg.slogdet(x0))", [r], r.dims[:-2])


def _info(ctx, r):
    return ctx.tf_op("tf.zeros(tf.shape(x0)[:-2], tf.int32)", [r], r.dims[:-2], dtype=torch.int32)


@handles(torch.inverse, T.inverse, torch.linalg.inv, torch.linalg.inv_ex)
def inv(ctx, A, *, check_errors=False, out=None):
    """Matrix inverse (inv_ex: with zero info codes)."""
    r = _mat(ctx, A, "inverse")
    y = ctx.tf_op("tf.linalg.inv(x0)", [r], r.dims, dtype=r.dtype)
    return (y, _info(ctx, r)) if ctx.func is torch.linalg.inv_ex else y


def _rhs(ctx, r, B, vector: bool):
    """B aligned onto the batch axes of ``r`` (rows: r's rows)."""
    rb = ctx.cast(B if isinstance(B, Ref) else ctx.ref(B), r.dtype)
    if any(d.is_dynamic() and not d.is_batch_dim() for d in rb.dims[-1 if vector else -2:]):
        raise NotImplementedError("a right-hand side with a dynamic (padded) axis among its matrix axes")
    lead = list(r.dims[:-2])
    core = [r.dims[-2]] if vector else [r.dims[-2], rb.dims[-1]]
    nb = rb.ndim - len(core)
    if nb > len(lead):
        raise NotImplementedError("a right-hand side with more batch axes than the matrix")
    return ctx.align(rb, lead + core, expand=True)


def _bshape(vector: bool = False) -> str:
    """TF source: x1 (a stack of right-hand sides) broadcast onto the batch axes of x0."""
    return "tf.broadcast_to(x1, tf.concat([tf.shape(x0)[:-2], tf.shape(x1)[-2:]], 0))"


@handles(torch.linalg.solve, torch.linalg.solve_ex)
def solve(ctx, A, B, *, left=True, check_errors=False, out=None):
    """X with A X = B (left) or X A = B; B a vector where torch takes it as one."""
    r = _mat(ctx, A, "solve")
    vector = B.dim() == 1 or (B.dim() == A.dim() - 1 and tuple(B.shape) == tuple(A.shape[:-1]))
    if not left:
        if vector:
            raise NotImplementedError("solve(left=False) with a vector right-hand side")
        r = ctx.tf_op("tf.linalg.matrix_transpose(x0)", [r], r.dims, dtype=r.dtype)
        rb = ctx.cast(ctx.ref(B), r.dtype)
        rb = ctx.tf_op("tf.linalg.matrix_transpose(x0)", [rb], list(rb.dims[:-2]) + [rb.dims[-1], rb.dims[-2]],
                       dtype=r.dtype)
        rb = _rhs(ctx, r, rb, False)
    else:
        rb = _rhs(ctx, r, B, vector)
    if vector:
        expr = "tf.linalg.solve(x0, tf.broadcast_to(x1[..., None], tf.concat([tf.shape(x0)[:-1], [1]], 0)))[..., 0]"
    else:
        expr = f"tf.linalg.solve(x0, {_bshape(False)})"
    dims = list(r.dims[:-2]) + [r.dims[-1]] + ([] if vector else [rb.dims[-1]])
    if not left:
        expr = f"tf.linalg.matrix_transpose({expr})"
        dims = list(r.dims[:-2]) + [rb.dims[-1], r.dims[-1]]
    y = ctx.tf_op(expr, [r, rb], dims, dtype=r.dtype)
    return (y, _info(ctx, r)) if ctx.func is torch.linalg.solve_ex else y


@handles(torch.cholesky, T.cholesky, torch.linalg.cholesky, torch.linalg.cholesky_ex)
def cholesky(ctx, A, upper=False, *, check_errors=False, out=None):
    """Cholesky factor L (or U = L^T) of a symmetric positive-definite matrix (from its lower or upper
    triangle, as torch)."""
    r = _mat(ctx, A, "cholesky")
    if r.shape[-1] == 0:  # TF's kernel refuses empty matrices
        y = ctx.tf_op("tf.identity(x0)", [r], r.dims, dtype=r.dtype)
        return (y, _info(ctx, r)) if ctx.func is torch.linalg.cholesky_ex else y
    expr = f"tf.linalg.cholesky({_sym_from('x0', not upper)})"
    y = ctx.tf_op(f"tf.linalg.matrix_transpose({expr})" if upper else expr, [r], r.dims, dtype=r.dtype)
    return (y, _info(ctx, r)) if ctx.func is torch.linalg.cholesky_ex else y


@handles(torch.cholesky_solve, T.cholesky_solve)
def cholesky_solve(ctx, B, L, upper=False, *, out=None):
    """X with (L L^T) X = B, from the Cholesky factor L (or U with upper=True)."""
    r = _mat(ctx, L, "cholesky_solve")
    rb = _rhs(ctx, r, B, False)
    low = "tf.linalg.matrix_transpose(x0)" if upper else "x0"
    return ctx.tf_op(f"tf.linalg.cholesky_solve(tf.broadcast_to({low}, tf.shape(x0)), {_bshape(False)})", [r, rb],
                     list(r.dims[:-2]) + [r.dims[-1], rb.dims[-1]], dtype=r.dtype)


def _tri_solve(ctx, A, B, upper, left, unitriangular, adjoint=False):
    r = _mat(ctx, A, "triangular solve")
    a = "tf.linalg.set_diag(x0, tf.ones_like(tf.linalg.diag_part(x0)))" if unitriangular else "x0"
    if left:
        rb = _rhs(ctx, r, B, False)
        expr = f"tf.linalg.triangular_solve({a}, {_bshape(False)}, lower={not upper}, adjoint={adjoint})"
        return ctx.tf_op(expr, [r, rb], list(r.dims[:-2]) + [r.dims[-1], rb.dims[-1]], dtype=r.dtype)
    rb = ctx.cast(ctx.ref(B), r.dtype)  # X A = B: A^T X^T = B^T
    rb = ctx.tf_op("tf.linalg.matrix_transpose(x0)", [rb], list(rb.dims[:-2]) + [rb.dims[-1], rb.dims[-2]],
                   dtype=r.dtype)
    rb = _rhs(ctx, r, rb, False)
    expr = f"tf.linalg.matrix_transpose(tf.linalg.triangular_solve({a}, {_bshape(False)}, lower={not upper}, " \
           f"adjoint={not adjoint}))"
    return ctx.tf_op(expr, [r, rb], list(r.dims[:-2]) + [rb.dims[-1], r.dims[-1]], dtype=r.dtype)


@handles(torch.linalg.solve_triangular)
def solve_triangular(ctx, A, B, *, upper, left=True, unitriangular=False, out=None):
    """X with A X = B (or X A = B) for a triangular A (only its triangle is read)."""
    return _tri_solve(ctx, A, B, upper, left, unitriangular)


@handles(torch.triangular_solve, T.triangular_solve)
def triangular_solve(ctx, b, A, upper=True, transpose=False, unitriangular=False, *, out=None):
    """(X, A) with A X = b (A^T X = b with transpose=True)."""
    return _tri_solve(ctx, A, b, upper, True, unitriangular, adjoint=transpose), ctx.ref(A)


def _perm_expr(n: int, lead: int) -> str:
    """TF source: the row permutation (A[perm] = L U) from LAPACK's 1-based pivots ``x1`` (sequential swaps)."""
    swap = (f"lambda p, i, j: (lambda pi, pj: p + tf.one_hot(i, {n}, dtype=tf.int32) * (pj - pi)[..., None] + "
            f"tf.one_hot(j, {n}, dtype=tf.int32) * (pi - pj)[..., None])(p[..., i], "
            f"tf.gather(p, j[..., None], batch_dims={lead})[..., 0])")
    perm = "tf.broadcast_to(tf.range(" + str(n) + "), tf.shape(piv))"
    for i in range(n):
        perm = f"swap({perm}, {i}, piv[..., {i}])"
    return f"(lambda swap, piv: {perm})({swap}, tf.cast(x1, tf.int32) - 1)"


@handles(torch.linalg.lu_solve, torch.lu_solve, T.lu_solve)
def lu_solve(ctx, *args, left=True, adjoint=False, out=None):
    """X with A X = B from the LU factorization (LU, pivots) of A (left=True, adjoint=False only)."""
    LU, pivots, B = args if ctx.func is torch.linalg.lu_solve else (args[1], args[2], args[0])
    if not left or adjoint:
        raise NotImplementedError("lu_solve with left=False or adjoint=True")
    r = _mat(ctx, LU, "lu_solve")
    piv = ctx.ref(pivots)
    if piv.ndim != r.ndim - 1 or any(d.is_dynamic() and not d.is_batch_dim() for d in piv.dims[-1:]):
        raise NotImplementedError("lu_solve with pivots broadcast over the batch axes")
    piv = ctx.align(piv, list(r.dims[:-1]))
    rb = _rhs(ctx, r, B, False)
    expr = f"tf.linalg.lu_solve(x0, {_perm_expr(r.shape[-1], r.ndim - 2)}, {_bshape().replace('x1', 'x2')})"
    return ctx.tf_op(expr, [r, piv, rb], list(r.dims[:-2]) + [r.dims[-1], rb.dims[-1]], dtype=r.dtype)


@handles(torch.linalg.qr, torch.qr, T.qr)
def qr(ctx, A, mode="reduced", *, some=None, out=None):
    """Q, R by Householder reflections (TF's kernel; signs as LAPACK's)."""
    if isinstance(mode, bool) or some is not None:
        mode = "reduced" if (mode if isinstance(mode, bool) else some) else "complete"
    r = _mat(ctx, A, "qr")
    _static_mat(ctx, r, "qr")
    q_out, r_out = ctx.out
    kq = ctx.dims.static(q_out.shape[-1], f"{ctx.op_name}_k") if q_out.dim() else None
    kr = ctx.dims.static(r_out.shape[-2], f"{ctx.op_name}_kr")
    full = mode == "complete"
    rr = ctx.tf_op(f"tf.linalg.qr(x0, full_matrices={full})[1]", [r], list(r.dims[:-2]) + [kr, r.dims[-1]],
                   dtype=r.dtype)
    if mode == "r":
        return ctx.const(torch.zeros(0), [ctx.dims.static(0, f"{ctx.op_name}_empty")]), rr
    q = ctx.tf_op(f"tf.linalg.qr(x0, full_matrices={full})[0]", [r], list(r.dims[:-2]) + [r.dims[-2], kq],
                  dtype=r.dtype)
    return q, rr


def _svals(ctx, A, what):
    r = _mat(ctx, A, what)
    _static_mat(ctx, r, what)
    k = ctx.dims.static(min(r.shape[-2:]), f"{ctx.op_name}_k")
    return r, k


@handles(torch.linalg.svdvals)
def svdvals(ctx, A, *, driver=None, out=None):
    """Singular values, largest first."""
    r, k = _svals(ctx, A, "svdvals")
    return ctx.tf_op("tf.linalg.svd(x0, compute_uv=False)", [r], list(r.dims[:-2]) + [k], dtype=r.dtype)


@handles(torch.linalg.svd, torch.svd, T.svd)
def svd(ctx, A, *args, **kwargs):
    """Only the singular values: U and V are unique only up to the sign of each pair, and TF's signs are
    not LAPACK's (the network has no layer for them; using them is an error naming this op)."""
    ctx.note("U and V not converted (signs not unique): only S")
    return None, svdvals(ctx, A), None


def _eigvals(ctx, A, UPLO):
    r = _mat(ctx, A, "eigh")
    return ctx.tf_op(f"tf.linalg.eigvalsh({_sym_from('x0', UPLO.upper() == 'L')})", [r], r.dims[:-1],
                     dtype=r.dtype)


@handles(torch.linalg.eigvalsh)
def eigvalsh(ctx, A, UPLO="L", *, out=None):
    """Eigenvalues of a symmetric matrix (from its lower or upper triangle), ascending."""
    return _eigvals(ctx, A, UPLO)


@handles(torch.linalg.eigh)
def eigh(ctx, A, UPLO="L", *, out=None):
    """Only the eigenvalues: the eigenvectors' signs are not unique (no layer for them)."""
    ctx.note("eigenvectors not converted (signs not unique): only the eigenvalues")
    return _eigvals(ctx, A, UPLO), None


@handles(torch.linalg.pinv, torch.pinverse, T.pinverse)
def pinv(ctx, A, rcond=None, hermitian=False, *, atol=None, rtol=None, out=None):
    """Pseudo-inverse by SVD: singular values up to rtol * the largest count as 0 (default max(m, n) * eps)."""
    if ctx.func is not torch.linalg.pinv:
        rtol, rcond = (1e-15 if rcond is None else rcond), None
    elif rcond is not None:
        rtol = rcond
    if isinstance(rtol, torch.Tensor) or isinstance(atol, torch.Tensor) or atol not in (None, 0):
        raise NotImplementedError("pinv with atol, or a tensor rtol")
    r = _mat(ctx, A, "pinv")
    if rtol is None:
        rtol = max(r.shape[-2:]) * torch.finfo(r.dtype).eps
    dims = list(r.dims[:-2]) + [r.dims[-1], r.dims[-2]]
    if min(r.shape[-2:]) == 0:  # TF's SVD refuses empty matrices
        return ctx.tf_op("tf.zeros_like(tf.linalg.matrix_transpose(x0))", [r], dims, dtype=r.dtype)
    a = _sym_from("x0", True) if hermitian else "x0"  # torch reads the lower triangle of a Hermitian input
    return ctx.tf_op(f"tf.linalg.pinv({a}, rcond={float(rtol)!r})", [r], dims, dtype=r.dtype)


def _power_expr(n: int, v: str) -> str:
    if n == 1:
        return v
    half = _power_expr(n // 2, v)
    sq = f"(lambda h: tf.linalg.matmul(h, h))({half})"
    return sq if n % 2 == 0 else f"tf.linalg.matmul({sq}, {v})"


@handles(torch.linalg.matrix_power, torch.matrix_power, T.matrix_power)
def matrix_power(ctx, A, n, *, out=None):
    """A^n by repeated squaring (n = 0: the identity; n < 0: of the inverse)."""
    r = _mat(ctx, A, "matrix_power")
    n = int(n)
    if n == 0:
        expr = "tf.broadcast_to(tf.eye(tf.shape(x0)[-1], dtype=x0.dtype), tf.shape(x0))"
    else:
        expr = _power_expr(abs(n), "tf.linalg.inv(x0)" if n < 0 else "x0")
    return ctx.tf_op(expr, [r], r.dims, dtype=r.dtype)


@handles(torch.linalg.matrix_exp, torch.matrix_exp, T.matrix_exp)
def matrix_exp(ctx, A):
    """Matrix exponential (TF's Pade approximation with scaling and squaring)."""
    r = _mat(ctx, A, "matrix_exp")
    return ctx.tf_op("tf.linalg.expm(x0)", [r], r.dims, dtype=r.dtype)


def _cov(ctx, x, correction):
    """Covariance of the rows of ``x`` (observations along the last axis; a 1-D x: one variable)."""
    r = ctx.cast(ctx.ref(x), ctx.out.dtype)
    if r.ndim not in (1, 2):
        raise NotImplementedError("cov of a tensor with more than 2 axes")
    obs = r.ndim - 1
    mean = reduce_ref(ctx, r, "mean", [obs], False)
    xc = ctx.eval("source(0) - source(1)", [r, mean], r.dims)
    out = [] if r.ndim == 1 else [("a", 0), ("b", 0)]
    s = dot(ctx, xc, xc, [], [(obs, obs)], out)
    d = r.dims[obs]
    n = ctx.cast(ctx.size_ref(d, s.dims), s.dtype) if d.is_dynamic() else ctx.const(
        torch.tensor(float(r.shape[obs])), [])
    return ctx.eval(f"source(0) / tf.maximum(source(1) - {float(correction)!r}, 0.0)", [s, n], s.dims)


@handles(torch.cov, T.cov)
def cov(ctx, x, *, correction=1, fweights=None, aweights=None):
    """Covariance matrix of the variables (rows) over the observations (columns); no weights."""
    if fweights is not None or aweights is not None:
        raise NotImplementedError("cov with fweights or aweights")
    return _cov(ctx, x, correction)


@handles(torch.corrcoef, T.corrcoef)
def corrcoef(ctx, x):
    """Pearson correlation coefficients, clipped to [-1, 1]."""
    c = _cov(ctx, x, 1)
    if c.ndim == 0:
        return ctx.eval("source(0) / source(0)", [c], [])
    sd = ctx.tf_op(f"{SAFE_SQRT}(tf.linalg.diag_part(x0))", [c], [c.dims[0]])
    sd2 = ctx.rename(sd, {c.dims[0]: c.dims[1]})
    return ctx.eval("tf.clip_by_value(source(0) / source(1) / source(2), -1.0, 1.0)", [c, sd, sd2], c.dims)
