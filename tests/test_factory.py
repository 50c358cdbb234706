import pytest
import torch
from parity_helpers import Case, Fn, assert_parity

DYN = ({1: "time"},)


def fc(name, fn, shapes=[(3, 11, 6)], dyn=DYN, **kw):
    return Case(name, lambda: Fn(lambda m, *xs: fn(*xs)), shapes, dyn, **kw)


def _mask(x):
    t = x.shape[1]
    pos = torch.arange(t)
    return x * (pos[None, :, None] % 2 == 0)


CASES = [
    fc("arange_dynamic", lambda x: x + torch.arange(x.shape[1])[None, :, None]),
    fc("arange_dynamic_float", lambda x: x * torch.arange(x.size(1), dtype=torch.float32).unsqueeze(-1)),
    fc("arange_dynamic_start", lambda x: x + torch.arange(1, x.shape[1] + 1)[:, None]),
    fc("arange_static", lambda x: x + torch.arange(6)),
    fc("arange_static_step", lambda x: x + torch.arange(0.0, 3.0, 0.5)),
    fc("arange_mask", _mask),
    fc("zeros_dynamic", lambda x: x + torch.zeros(x.shape[0], x.shape[1], 6)),
    fc("ones_static", lambda x: x * torch.ones(6)),
    fc("ones_dynamic", lambda x: x * torch.ones(x.shape[0], x.shape[1], 1)),
    fc("full", lambda x: x + torch.full((x.shape[0], x.shape[1], 1), 2.0)),
    fc("empty_then_fill", lambda x: torch.empty(x.shape).fill_(2.0) + x),
    fc("zero_", lambda x: (x * 1).zero_() + x),
    fc("zeros_like", lambda x: torch.zeros_like(x) + x * 2),
    fc("ones_like_int", lambda x: torch.ones_like(x, dtype=torch.int64) + 1),
    fc("full_like", lambda x: torch.full_like(x, 3.0) - x),
    fc("new_zeros", lambda x: x.new_zeros(x.shape[0], x.shape[1], 2)),
    fc("new_ones", lambda x: x.new_ones(x.shape) * x),
    fc("new_full", lambda x: x.new_full((x.size(0), x.size(1)), 1.5) + x.sum(-1)),
    fc("tensor_const", lambda x: x * torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])),
    fc("as_tensor_scalar", lambda x: x + torch.as_tensor(0.25)),
    fc("float_cast", lambda x: (x > 0).float() * x),
    fc("double_cast", lambda x: x.double() * 2),
    fc("int_long", lambda x: (x * 4).long() + (x * 4).int()),
    fc("bool_cast", lambda x: x.round().bool()),
    fc("to_dtype", lambda x: x.to(torch.float64).to(torch.float32) + 1),
    fc("to_device_noop", lambda x: x.to("cpu") * 2),
    fc("type_as", lambda x: (x > 0).type_as(x) + x),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_factory(case):
    assert_parity(case)


def test_tensor_of_sizes_follows_the_length():
    assert_parity(Case("tensor_of_shape", lambda: Fn(lambda m, x: x * torch.tensor([x.shape[1], 2]).sum()),
                       [(2, 5, 3)], ({1: "time"},)))
    assert_parity(Case("tensor_shape_index", lambda: Fn(lambda m, x: x[:, :torch.tensor(x.shape)[1] - 1]),
                       [(2, 5, 3)], ({1: "time"},)))
