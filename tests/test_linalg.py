import pytest
import torch
import torch.nn.functional as F
from parity_helpers import Case, Fn, assert_padded, assert_parity

from torchdispatch_returnn import UnsupportedOpError, returnn_capture

DYN = ({1: "time"},)
DYN2 = ({1: "time"}, {1: "time"})


def la(name, fn, shapes=((3, 11, 4),), dyn=DYN, params=(), **kw):
    return Case(name, lambda: Fn(fn, *[torch.randn(*p) for p in params]), list(shapes), dyn, **kw)


def spd(x):
    """A well-conditioned symmetric positive-definite matrix per frame from x (..., n, n)."""
    return x @ x.transpose(-1, -2) + 3 * torch.eye(x.shape[-1])


CASES = [
    la("dot", lambda m, x: torch.dot(x.sum((0, 1)), m.p0), params=[(4,)]),
    la("vdot", lambda m, x: torch.vdot(m.p0, x.mean((0, 1))), params=[(4,)]),
    la("inner", lambda m, x: torch.inner(x, m.p0), params=[(5, 4)]),
    la("vecdot_time", lambda m, x, y: torch.linalg.vecdot(x, y, dim=1), shapes=[(3, 11, 4)] * 2, dyn=DYN2),
    la("vecdot_last", lambda m, x, y: torch.linalg.vecdot(x, y), shapes=[(3, 11, 4)] * 2, dyn=DYN2),
    la("addmv", lambda m, x: torch.addmv(m.p0, m.p1, x.sum((0, 1)), beta=0.5, alpha=2.0), params=[(5,), (5, 4)]),
    la("addr", lambda m, x: torch.addr(m.p0, x.mean((0, 1)), m.p1, alpha=2), params=[(4, 6), (6,)]),
    la("addbmm", lambda m, x, y: torch.addbmm(m.p0, x.transpose(1, 2), y, beta=0.5),
       shapes=[(3, 11, 4), (3, 11, 5)], dyn=DYN2, params=[(4, 5)]),
    la("multi_dot", lambda m, x: torch.linalg.multi_dot([x, m.p0, m.p1]), shapes=[(3, 4)], dyn=None,
       params=[(4, 5), (5, 2)]),
    la("chain_matmul", lambda m, x: torch.chain_matmul(x.mean(1), m.p0, m.p1), params=[(4, 5), (5, 2)]),
    la("tensordot_int", lambda m, x: torch.tensordot(x, m.p0, dims=1), params=[(4, 5)]),
    la("tensordot_lists", lambda m, x: torch.tensordot(x, m.p0, dims=([2], [1])), params=[(5, 4)]),
    la("kron", lambda m, x: torch.kron(x, m.p0), shapes=[(3, 11, 2)], params=[(1, 1, 3)]),
    la("trace", lambda m, x: torch.trace(x), shapes=[(3, 4)], dyn=None),
    la("trace_time", lambda m, x: x.trace(), shapes=[(3, 11)]),
    la("diagonal_time_twin", lambda m, x: torch.diagonal(x @ x.transpose(1, 2), dim1=1, dim2=2)),
    la("diagonal_static_offset", lambda m, x: x.diagonal(1, 2, 3), shapes=[(3, 11, 4, 5)]),
    la("linalg_diagonal", lambda m, x: torch.linalg.diagonal(x, offset=-1), shapes=[(3, 11, 4, 5)]),
    la("diag_embed", lambda m, x: torch.diag_embed(x, offset=1)),
    la("diag_1d_2d", lambda m, x: torch.diag(x.sum((0, 1))) + torch.diag(m.p0, 1).sum(), params=[(4, 5)]),
    la("vector_norm_time", lambda m, x: torch.linalg.vector_norm(x, dim=1)),
    la("vector_norm_ords", lambda m, x: torch.stack([torch.linalg.vector_norm(x, o, dim=(1, 2)) for o in
                                                      (1, 3, float("inf"), float("-inf"), 0)], -1), grads=False),
    la("vector_norm_all_keepdim", lambda m, x: torch.linalg.vector_norm(x, 1, keepdim=True)),
    la("matrix_norm_fro_time", lambda m, x: torch.linalg.matrix_norm(x, dim=(1, 2))),
    la("matrix_norm_nuc_time", lambda m, x: torch.linalg.matrix_norm(x, "nuc", dim=(1, 2))),
    la("matrix_norm_1_inf", lambda m, x: torch.linalg.matrix_norm(x, 1, dim=(1, 2)) +
       torch.linalg.matrix_norm(x, float("inf"), dim=(1, 2), keepdim=True).squeeze(-1).squeeze(-1)),
    la("matrix_norm_2", lambda m, x: torch.linalg.matrix_norm(x, 2), shapes=[(3, 11, 4, 3)]),
    la("linalg_norm", lambda m, x: torch.linalg.norm(x, dim=-1) + torch.linalg.norm(x, 1, dim=(1, 2)).sum() + torch.linalg.norm(x[0, 0])),
    la("torch_norm", lambda m, x: x.norm(dim=-1) + torch.norm(x, p=1, dim=1).sum(-1, keepdim=True)
       + torch.norm(x, "fro", dim=(1, 2))[:, None] + x.norm()),
    la("cross", lambda m, x, y: torch.cross(x, y, dim=-1) + torch.linalg.cross(y, x),
       shapes=[(3, 11, 3)] * 2, dyn=DYN2),
    la("cdist_p2", lambda m, x, y: torch.cdist(x, y), shapes=[(3, 11, 4), (3, 6, 4)], dyn=({1: "time"}, None)),
    la("cdist_p1_time", lambda m, x, y: torch.cdist(x.transpose(1, 2), y.transpose(1, 2), p=1),
       shapes=[(3, 11, 4), (3, 11, 2)], dyn=DYN2),
    la("pairwise_distance", lambda m, x, y: F.pairwise_distance(x, y, keepdim=True), shapes=[(3, 11, 4)] * 2,
       dyn=DYN2),
    la("cosine_similarity", lambda m, x, y: F.cosine_similarity(x, y, dim=-1), shapes=[(3, 11, 4)] * 2, dyn=DYN2),
    la("cosine_similarity_time", lambda m, x, y: F.cosine_similarity(x, y), shapes=[(3, 11, 4)] * 2, dyn=DYN2),
    la("det", lambda m, x: torch.linalg.det(x) + x.det(), shapes=[(3, 11, 3, 3)]),
    la("logdet_slogdet", lambda m, x: torch.logdet(spd(x)) + torch.linalg.slogdet(x)[1] * torch.slogdet(x)[0],
       shapes=[(3, 11, 3, 3)]),
    la("inverse", lambda m, x: torch.linalg.inv(spd(x)) + torch.inverse(spd(x)) + torch.linalg.inv_ex(spd(x))[0],
       shapes=[(3, 11, 3, 3)]),
    la("solve_vector", lambda m, x, b: torch.linalg.solve(spd(x), b), shapes=[(3, 11, 3, 3), (3, 11, 3)], dyn=DYN2),
    la("solve_matrix_right", lambda m, x: torch.linalg.solve(spd(x), m.p0) + torch.linalg.solve(
        spd(x), m.p1, left=False) + torch.linalg.solve_ex(spd(x), m.p0)[0].sum(-1, keepdim=True),
       shapes=[(3, 11, 3, 3)], params=[(3, 3), (3, 3)]),
    la("cholesky", lambda m, x: torch.linalg.cholesky(spd(x)) + torch.cholesky(spd(x), upper=True) +
       torch.linalg.cholesky_ex(spd(x), upper=True)[0], shapes=[(3, 11, 3, 3)]),
    la("cholesky_solve", lambda m, x: torch.cholesky_solve(m.p0, torch.linalg.cholesky(spd(x))) +
       torch.cholesky_solve(m.p0, torch.linalg.cholesky(spd(x)).mT, upper=True), shapes=[(3, 11, 3, 3)],
       params=[(3, 2)]),
    la("qr", lambda m, x: torch.linalg.qr(x)[0].sum(-1) + torch.linalg.qr(x, "r")[1].sum(-2)[..., :1],
       shapes=[(3, 11, 4, 3)]),
    la("svdvals", lambda m, x: torch.linalg.svdvals(x) + torch.linalg.svd(x)[1], shapes=[(3, 11, 4, 3)]),
    la("eigvalsh", lambda m, x: torch.linalg.eigvalsh(x) + torch.linalg.eigh(x, UPLO="U")[0], shapes=[(3, 11, 3, 3)]),
    la("pinv", lambda m, x: torch.linalg.pinv(x) + torch.pinverse(x), shapes=[(3, 11, 4, 3)]),
    la("matrix_power", lambda m, x: torch.linalg.matrix_power(x, 3) + torch.matrix_power(x, 0) +
       torch.linalg.matrix_power(spd(x), -2), shapes=[(3, 11, 3, 3)]),
    la("matrix_exp", lambda m, x: torch.linalg.matrix_exp(x * 0.5), shapes=[(3, 11, 3, 3)]),
    la("solve_triangular", lambda m, x, b: torch.linalg.solve_triangular(spd(x), b, upper=True) +
       torch.linalg.solve_triangular(spd(x), b, upper=False, unitriangular=True), shapes=[(3, 11, 3, 3), (3, 11, 3, 2)],
       dyn=DYN2),
    la("solve_triangular_right", lambda m, x: torch.linalg.solve_triangular(spd(x), m.p0, upper=False, left=False),
       shapes=[(3, 11, 3, 3)], params=[(2, 3)]),
    la("triangular_solve", lambda m, x: torch.triangular_solve(m.p0, spd(x))[0] +
       torch.triangular_solve(m.p0, spd(x), upper=False, transpose=True)[0], shapes=[(3, 11, 3, 3)], params=[(3, 2)]),
    Case("lu_solve", lambda: Fn(lambda m, x, piv, b: torch.linalg.lu_solve(spd(x), piv + 1, b) +
                                torch.lu_solve(b, spd(x), piv + 1)), [(3, 11, 3, 3), (3, 11, 3), (3, 11, 3, 2)],
         ({1: "time"},) * 3, dtypes=[None, torch.int32, None], high=3),
    la("cov", lambda m, x: torch.cov(x.mean(1).T) + torch.cov(x.mean(1).T, correction=0)),
    la("cov_1d", lambda m, x: torch.cov(x.sum((1, 2)))),
    la("corrcoef", lambda m, x: torch.corrcoef(x.mean(1).T) + torch.corrcoef(x.sum((1, 2)))),
    la("trapezoid", lambda m, x: torch.trapezoid(x) + torch.trapz(x, dx=0.5) + torch.trapezoid(x, m.p0)
       + torch.trapz(x, x * 2), params=[(4,)]),
    la("cumulative_trapezoid", lambda m, x: torch.cumulative_trapezoid(x, dx=2.0)
       + torch.cumulative_trapezoid(x, m.p0), params=[(4,)]),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_linalg(case):
    assert_parity(case)


PADDED = [
    la("vector_norm_time_padded", lambda m, x: torch.linalg.vector_norm(x, 3, dim=1)),
    la("matrix_norm_nuc_padded", lambda m, x: torch.linalg.matrix_norm(x, "nuc", dim=(1, 2))),
    la("diagonal_twin_padded", lambda m, x: torch.diagonal(x @ x.transpose(1, 2), dim1=1, dim2=2).sum(-1)),
    la("cosine_time_padded", lambda m, x, y: F.cosine_similarity(x, y), shapes=[(3, 11, 4)] * 2, dyn=DYN2),
    la("inverse_det_padded", lambda m, x: torch.linalg.inv(spd(x)).sum(-1) + torch.linalg.det(x)[..., None],
       shapes=[(3, 11, 3, 3)]),
    la("cdist_time_padded", lambda m, x, y: torch.cdist(x.transpose(1, 2), y.transpose(1, 2), p=2),
       shapes=[(3, 11, 4), (3, 11, 2)], dyn=DYN2),
]


@pytest.mark.parametrize("case", PADDED, ids=str)
def test_linalg_padded(case):
    assert_padded(case)


def test_refusals():
    x = torch.randn(3, 5, 5)
    for fn in (lambda t: torch.linalg.inv(t), lambda t: torch.diag_embed(t.transpose(1, 2)), lambda t: torch.linalg.svd(t)[0]):
        with pytest.raises(UnsupportedOpError):
            with returnn_capture(dynamic_shapes=({1: "time"},)):
                Fn(lambda m, t: fn(t))(x)
