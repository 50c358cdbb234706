import pytest
import torch
from parity_helpers import Case, Fn, assert_parity

T3 = [(3, 11, 5)]
DYN = ({1: "time"},)


def ew(name, fn, shapes=T3, dyn=DYN, **kw):
    return Case(name, lambda: Fn(lambda m, *xs: fn(*xs)), shapes, dyn, **kw)


CASES = [
    ew("add", lambda x, y: x + y, [(3, 11, 5), (3, 11, 5)], ({1: "time"}, {1: "time"})),
    ew("add_bcast_const", lambda x: x + torch.arange(5.0)),
    ew("radd_scalar", lambda x: 2.5 + x),
    ew("sub_alpha", lambda x: torch.sub(x, x * 2, alpha=0.5)),
    ew("rsub", lambda x: 1 - x),
    ew("mul_param", lambda x: x * torch.linspace(0, 1, 5)),
    ew("div", lambda x: x / (x.abs() + 1)),
    ew("rdiv", lambda x: 1.0 / (x.abs() + 1)),
    ew("floordiv", lambda x: (x * 4) // 3),
    ew("rfloordiv", lambda x: 7.0 // (x.abs() + 1)),
    ew("div_floor", lambda x: torch.div(x * 4, 3, rounding_mode="floor")),
    ew("div_trunc", lambda x: torch.div(x * 4, 3, rounding_mode="trunc")),
    ew("mod", lambda x: (x * 4) % 3),
    ew("pow", lambda x: x ** 2),
    ew("pow_tensor", lambda x: (x.abs() + 0.5) ** x),
    ew("rpow", lambda x: 2 ** x),
    ew("neg", lambda x: -x),
    ew("abs", torch.abs),
    ew("reciprocal", lambda x: (x.abs() + 1).reciprocal()),
    ew("exp", torch.exp),
    ew("log", lambda x: torch.log(x.abs() + 0.1)),
    ew("log1p", lambda x: x.abs().log1p()),
    ew("sqrt", lambda x: (x.abs()).sqrt()),
    ew("rsqrt", lambda x: torch.rsqrt(x.abs() + 0.1)),
    ew("sin", torch.sin),
    ew("cos", lambda x: x.cos()),
    ew("tanh", torch.tanh),
    ew("sigmoid", lambda x: x.sigmoid()),
    ew("erf", torch.erf),
    ew("floor", lambda x: (x * 3).floor()),
    ew("ceil", lambda x: torch.ceil(x * 3)),
    ew("round", lambda x: torch.round(x * 3)),
    ew("round_decimals", lambda x: torch.round(x, decimals=1)),
    ew("sign", torch.sign),
    ew("eq", lambda x: (x * 2).round() == 1),
    ew("ne", lambda x: (x * 2).round() != 1),
    ew("lt_gt", lambda x: (x < 0.5) & (x > -0.5)),
    ew("le_ge_or", lambda x: (x <= -0.5) | (x >= 0.5)),
    ew("not", lambda x: ~(x > 0)),
    ew("compare_tensors", lambda x, y: x > y, [(3, 11, 5), (3, 11, 5)], ({1: "time"}, {1: "time"})),
    ew("where", lambda x: torch.where(x > 0, x, x * 0.1)),
    ew("where_scalar", lambda x: torch.where(x > 0, x, 0.0)),
    ew("masked_fill", lambda x: x.masked_fill(x < 0, -1e4)),
    ew("masked_fill_bcast", lambda x: x.masked_fill((x.sum(-1) > 0)[:, :, None], 0.0)),
    ew("clamp", lambda x: x.clamp(-0.5, 0.5)),
    ew("clamp_min", lambda x: torch.clamp(x, min=0.1)),
    ew("clip_max", lambda x: x.clip(max=0.2)),
    ew("minimum_maximum", lambda x, y: torch.maximum(torch.minimum(x, y), -y), [(3, 11, 5), (3, 11, 5)],
       ({1: "time"}, {1: "time"})),
    ew("bcast_outer", lambda x, y: x[:, :, None] * y[:, None, :], [(3, 11), (3, 4)], ({1: "time"}, None)),
    ew("int_promotion", lambda x: x + 1.5, [(3, 11)], DYN, dtypes=[torch.int64]),
    ew("int_arith", lambda x: (x * 3 + 1) // 2 - x % 3, [(3, 11)], DYN, dtypes=[torch.int64]),
    ew("bool_input", lambda x: torch.where(x, 1.0, -1.0), [(3, 11)], DYN, dtypes=[torch.bool]),
    ew("bool_mul_and_or", lambda x: torch.where((x > 0) * (x < 0.5) | (x > 0.8) & (x < 0.9), x, 0.0)),
    ew("inplace_add", lambda x: x.clone().add_(1.0).mul_(2.0)),
    ew("iadd", lambda x: _iadd(x)),
    ew("trunc", lambda x: torch.trunc(x * 3)),
    ew("square_expm1", lambda x: torch.expm1(x).square()),
    ew("fmod", lambda x: torch.fmod(x * 4, 3)),
    ew("xor", lambda x: (x > 0) ^ (x > 0.5)),
    ew("logical_xor", lambda x: torch.logical_xor(x > 0, x < 0.5)),
    ew("rmod", lambda x: 2.5 % (x.abs() + 1)),
    ew("rsub_fn", lambda x: torch.rsub(x, 2.0)),
    ew("radd_rmul_explicit", lambda x: x.__radd__(2.0).__rmul__(3.0)),
    ew("rand_ror", lambda x: (x > 0).__rand__(x < 0.5).__ror__(x > 1)),
    ew("isfinite_isinf_isnan", lambda x: torch.isfinite(x) & ~torch.isinf(x) & ~x.isnan()),
    ew("log2_log10", lambda x: torch.log2(x.abs() + 1) + (x.abs() + 1).log10()),
    ew("tan", lambda x: torch.tan(x * 0.5)),
    ew("clamp_min_max_fns", lambda x: torch.clamp_max(torch.clamp_min(x, -0.5), 0.5)),
]


def _iadd(x):
    y = x * 1.0
    y += 3.0
    y *= x
    return y


@pytest.mark.parametrize("case", CASES, ids=str)
def test_elementwise(case):
    assert_parity(case)
