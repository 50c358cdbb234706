import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from parity_helpers import Case, Fn, assert_parity

DYN = ({1: "time"},)


def fn(name, f, shapes=[(3, 11, 6)], dyn=DYN, params=(), **kw):
    return Case(name, lambda: Fn(lambda m, *xs: f(m, *xs), *[p() for p in params]), shapes, dyn, **kw)


def _attn(x):
    b, t, f = x.shape
    q = x.view(b, t, 2, 3).transpose(1, 2)
    s = q @ q.transpose(-2, -1)
    return torch.softmax(s, -1) @ q


CASES = [
    Case("Linear", lambda: nn.Linear(6, 4), [(3, 11, 6)], DYN),
    Case("Linear_nobias", lambda: nn.Linear(6, 4, bias=False), [(3, 11, 6)], DYN),
    Case("Linear_2d", lambda: nn.Linear(6, 4), [(3, 6)], None),
    fn("F_linear", lambda m, x: F.linear(x, m.p0, m.p1), params=(lambda: torch.randn(5, 6), lambda: torch.randn(5))),
    fn("matmul_param", lambda m, x: x @ m.p0, params=(lambda: torch.randn(6, 7),)),
    fn("matmul_vec", lambda m, x: torch.matmul(x, m.p0), params=(lambda: torch.randn(6),)),
    fn("rmatmul_vec", lambda m, x: m.p0 @ x.transpose(1, 2), params=(lambda: torch.randn(6),)),
    fn("rmatmul_explicit", lambda m, x: x.transpose(1, 2).__rmatmul__(m.p0), params=(lambda: torch.randn(6),)),
    fn("mm", lambda m, x: torch.mm(x.sum(1), m.p0), params=(lambda: torch.randn(6, 2),)),
    fn("bmm", lambda m, x: torch.bmm(x, x.transpose(1, 2))),
    fn("attention_scores", lambda m, x: _attn(x)),
    fn("matmul_bcast_batch", lambda m, x: torch.matmul(x.unsqueeze(1), m.p0), params=(lambda: torch.randn(4, 6, 3),)),
    fn("addmm", lambda m, x: torch.addmm(m.p1, x.sum(1), m.p0, beta=0.5, alpha=2.0),
       params=(lambda: torch.randn(6, 3), lambda: torch.randn(3))),
    fn("baddbmm", lambda m, x: torch.baddbmm(x[:, :, :3], x, m.p0.expand(x.shape[0], -1, -1), alpha=0.5),
       params=(lambda: torch.randn(6, 3),)),
    fn("outer", lambda m, x: torch.outer(x.sum((0, 1)), x.mean((0, 1)))),
    fn("einsum_bt", lambda m, x: torch.einsum("btf,fo->bto", x, m.p0), params=(lambda: torch.randn(6, 3),)),
    fn("einsum_attn", lambda m, x: torch.einsum("bif,bjf->bij", x, x * 0.5)),
    fn("einsum_outer", lambda m, x: torch.einsum("bi,bj->bij", x.sum(1), x.mean(1))),
    fn("einsum_sum_out", lambda m, x: torch.einsum("btf->bf", x)),
    fn("einsum_transpose", lambda m, x: torch.einsum("btf->bft", x) + 0),
    fn("einsum_ellipsis", lambda m, x: torch.einsum("...tf,...sf->...ts", x, x * 2)),
    fn("einsum_ellipsis_heads", lambda m, x: torch.einsum("...ij,jk->...ik", x.view(*x.shape[:2], 2, 3), m.p0),
       params=(lambda: torch.randn(3, 4),)),
    fn("einsum_implicit", lambda m, x: torch.einsum("btf,f", x, m.p0), params=(lambda: torch.randn(6),)),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_linear(case):
    assert_parity(case)
