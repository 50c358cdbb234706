import pytest
import torch
import torch.nn.functional as F
from parity_helpers import Case, Fn, assert_padded, assert_parity

from torchdispatch_returnn import returnn_capture

T3 = [(3, 11, 6)]
DYN = ({1: "time"},)
DYN2 = ({1: "time"}, {1: "time"})
S = torch.special
POLYS = [S.chebyshev_polynomial_t, S.chebyshev_polynomial_u, S.chebyshev_polynomial_v, S.chebyshev_polynomial_w,
         S.shifted_chebyshev_polynomial_t, S.shifted_chebyshev_polynomial_u, S.shifted_chebyshev_polynomial_v,
         S.shifted_chebyshev_polynomial_w, S.hermite_polynomial_h, S.hermite_polynomial_he, S.laguerre_polynomial_l,
         S.legendre_polynomial_p]


def fc(name, fn, shapes=T3, dyn=DYN, **kw):
    return Case(name, lambda: Fn(lambda m, *xs: fn(*xs)), shapes, dyn, **kw)


def mod(name, make, shapes=T3, dyn=DYN, **kw):
    """A case whose module holds parameters/buffers: ``make()`` returns (fn(m, *xs), params, buffers)."""
    def build():
        fn, params, buffers = make()
        return Fn(fn, *params, **buffers)
    return Case(name, build, shapes, dyn, **kw)


def edge(x):
    """x with exact +-1 and 0 at some places (the special cases of the polynomials)."""
    return torch.where(x > 1.2, torch.ones_like(x), torch.where(x < -1.2, -torch.ones_like(x), x))


def _poly_cases():
    out = []
    for f in POLYS:
        nm = f.__name__.removeprefix("special_")
        # degree tensor (ints, some negative and beyond the closed-form thresholds), and a float degree
        out.append(fc(f"{nm}_tensor_n", lambda x, n, f=f: f(edge(x * 1.5), n - 3) + f(0.3, n), [(3, 11, 6), (3, 11, 6)], DYN2,
                      dtypes=[None, torch.int64], high=16, grads=False))
        out.append(fc(f"{nm}_number_n", lambda x, f=f: f(x * 0.5 + 0.5, 5) + f(x, 2.7) + f(x.clamp(-0.9, 0.9), 12),
                      grads=False))
    return out


def _bilinear():
    return lambda m, a, b: F.bilinear(a, b, m.p0, m.p1), [torch.randn(4, 6, 5), torch.randn(4)], {}


def _bn_eval(legit):
    def make():
        def fn(m, x):
            y = (torch._native_batch_norm_legit if legit else torch.native_batch_norm)(
                x, m.p0, m.p1, m.rm, m.rv, False, 0.1, 1e-3)
            return y[0]
        return fn, [torch.randn(6), torch.randn(6)], {"rm": torch.randn(6), "rv": torch.rand(6) + 0.5}
    return make


def _bn_train_stats():
    return (lambda m, x: torch._native_batch_norm_legit(x, m.p0, None, True, 0.1, 1e-5),
            [torch.randn(11)], {})


CASES = _poly_cases() + [
    fc("addcmul", lambda x, y: torch.addcmul(x, y, x * 2) + x.addcmul(y, y, value=0.5), [(3, 11, 6)] * 2, DYN2),
    fc("addcdiv", lambda x, y: torch.addcdiv(x, y, x.abs() + 1, value=-2) + x.addcdiv(y, y * y + 1), [(3, 11, 6)] * 2,
       DYN2),
    fc("addcmul_inplace", lambda x, y: x.clone().addcmul_(y, y[:, :, :1], value=3).addcdiv_(x, y.abs() + 1),
       [(3, 11, 6)] * 2, DYN2),
    fc("positive_resolve_neg", lambda x: torch.positive(x) * 2 + torch.resolve_neg(x) + x.positive()),
    fc("isreal_isinf", lambda x: torch.isreal(x).float() + torch.isposinf(1 / (x > 0.5)) * 2.0
       + (x / (x > -0.5)).isneginf() * 3.0 + (x > 0).isposinf().float()),
    fc("isclose", lambda x, y: torch.isclose(x, x + y * 1e-4, rtol=1e-3, atol=1e-6).float()
       + torch.isclose(x / (x > 0), x / (x > 0), equal_nan=True) * 2.0 + x.isclose(torch.ones(6)).float(),
       [(3, 11, 6)] * 2, DYN2),
    fc("isin", lambda x: torch.isin(x, torch.tensor([0, 2, 3, 7])).float()
       + torch.isin(x, torch.tensor([1, 5]), invert=True) * 2.0, dtypes=[torch.int64], high=8),
    fc("isin_float_elements", lambda x: torch.isin(torch.round(x * 2), x[0, 0, :3].round()) * 1.0),
    fc("frexp", lambda x: (lambda m, e: m * 3 + e)(*torch.frexp(x * torch.tensor([1, 1e-3, 1e3, 1e-30, 0, 7]))),
       grads=False),
    fc("frexp_grad", lambda x: torch.frexp(x * 5)[0] * x.frexp().exponent),
    fc("dist", lambda x, y: torch.dist(x, y) + x.dist(y[:, :, :1], p=1) + torch.dist(x, y, 3.5), [(3, 11, 6)] * 2,
       DYN2),
    fc("dist_inf_zero", lambda x, y: torch.dist(x, y, float("inf")) + torch.dist(x, y, 0) + torch.dist(x, y, -float(
        "inf")), [(3, 11, 6)] * 2, DYN2),
    fc("renorm", lambda x: torch.renorm(x, 2, 2, 1.5) + x.renorm(1, -1, 2.0) + x.renorm(float("inf"), 2, 1.0)),
    fc("pdist", lambda x: F.pdist(x[0, :, :4].T) + F.pdist(x[1, :, 2:5].T, p=1).sum() + F.pdist(x[2, :, :4].T, 3.5)),
    mod("bilinear", _bilinear, [(3, 11, 6), (3, 11, 5)], DYN2),
    fc("native_layer_norm", lambda x: torch.native_layer_norm(x, (6,), torch.ones(6) * 2, torch.ones(6) * 0.5, 1e-5)),
    fc("native_layer_norm_stats", lambda x: torch.native_layer_norm(x, (6,), None, None, 1e-5)[1:]),
    fc("native_layer_norm_time", lambda x: torch.native_layer_norm(x, x.shape[1:], None, None, 1e-5)[0],
       [(3, 6, 11)], ({2: "time"},)),
    fc("native_group_norm", lambda x: torch.native_group_norm(x.transpose(1, 2).contiguous(), torch.ones(6),
                                                              torch.zeros(6), x.shape[0], 6, x.shape[1], 2, 1e-5)),
    mod("native_batch_norm_eval", _bn_eval(False), [(3, 6, 11)], ({2: "time"},)),
    mod("native_batch_norm_legit_eval", _bn_eval(True), [(3, 6, 11)], ({2: "time"},)),
    mod("native_batch_norm_legit_no_stats", _bn_train_stats, [(3, 11, 6)], ({2: "time"},)),
    fc("rms_norm", lambda x: F.rms_norm(x, (6,), torch.linspace(0.5, 2, 6)) + F.rms_norm(x, (6,), eps=1e-3)),
    fc("rms_norm_time", lambda x: F.rms_norm(x.transpose(1, 2), (x.shape[1],))),
    fc("local_response_norm", lambda x: F.local_response_norm(x.transpose(1, 2), 3, alpha=0.1, beta=0.6, k=1.5)),
    fc("local_response_norm_time_channels", lambda x: F.local_response_norm(x, 4, alpha=0.2) +
       F.local_response_norm(x[:, :, None], 2)[:, :, 0]),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_special_poly(case):
    assert_parity(case)


PADDED = [c for c in CASES if c.name in ("chebyshev_polynomial_t_tensor_n", "legendre_polynomial_p_number_n",
                                         "local_response_norm_time_channels", "rms_norm_time", "native_group_norm",
                                         "native_layer_norm_time")]


@pytest.mark.parametrize("case", PADDED, ids=str)
def test_special_poly_padded(case):
    assert_padded(case)


def _bn_train(m, x):
    return torch.native_batch_norm(x, None, None, torch.zeros(4), torch.ones(4), True, 0.1, 1e-5)


def test_native_batch_norm_training_needs_train_capture():
    with pytest.raises(NotImplementedError, match="train=True"):
        with returnn_capture():
            Fn(_bn_train)(torch.randn(3, 4, 5))


def test_native_batch_norm_training_batch_statistics():
    x = torch.randn(3, 4, 5)
    with returnn_capture(train=True) as net:
        y = Fn(_bn_train)(x)
    assert net.parity.ok, str(net.parity)
    assert [t.shape for t in y] == [(3, 4, 5), (4,), (4,)]


def test_pdist_over_time_refused():
    with pytest.raises(NotImplementedError, match="pdist"):
        with returnn_capture(dynamic_shapes=DYN):
            Fn(lambda m, x: F.pdist(x[0]))(torch.randn(3, 11, 6))


def test_pdist_over_batch_refused():
    with pytest.raises(NotImplementedError, match="pdist"):
        with returnn_capture():
            Fn(lambda m, x: F.pdist(x))(torch.randn(4, 3))


def test_dynamic_size_one_broadcast_refused():
    with pytest.raises(NotImplementedError, match="size 1 broadcast"):
        with returnn_capture(dynamic_shapes=DYN):
            Fn(lambda m, x: S.chebyshev_polynomial_t(x, torch.arange(5.0)))(torch.randn(3, 1))
