"""More ops: torch.gather, one_hot, narrow, PReLU, weight_norm parametrizations (HiFi-GAN style)."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from parity_helpers import Case, Fn, assert_padded
from torch.nn.utils.parametrizations import weight_norm

BTF = ({1: "time"},)


def fn(f, *p):
    return lambda: Fn(lambda m, *xs: f(m, *xs), *p)


CASES = [
 Case("gather_last", fn(lambda m, x: torch.gather(x, 2, (x.abs() * 3).long().clamp(max=3))), [(3, 9, 4)], BTF),
 Case("gather_time", fn(lambda m, x: torch.gather(x, 1, torch.zeros_like(x, dtype=torch.long))), [(3, 9, 4)], BTF),
 Case("one_hot", fn(lambda m, x: F.one_hot(x, 7) * 1), [(3, 9)], BTF, dtypes=[torch.int64], high=7),
 Case("narrow", fn(lambda m, x: torch.narrow(x, 2, 1, 2) * 1), [(3, 9, 4)], BTF),
 Case("prelu", lambda: nn.Sequential(nn.Conv1d(4, 4, 3), nn.PReLU(4)), [(3, 4, 9)], ({2: "time"},)),
 Case("prelu_shared", lambda: nn.PReLU(), [(3, 9, 4)], BTF),
 Case("weight_norm_conv", lambda: weight_norm(nn.Conv1d(4, 5, 3)), [(3, 4, 9)], ({2: "time"},)),
 Case("weight_norm_convT", lambda: weight_norm(nn.ConvTranspose1d(4, 5, 4, 2, 1)), [(3, 4, 9)], ({2: "time"},)),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_misc_padded(case):
    assert_padded(case)


def _set_slice(x):
    y = x * 1
    y[:, :, 1:3] = 0.0
    return y


def _set_int_and_step(x):
    y = x * 1
    y[:, 0] = -1.0
    y[..., ::2] = 5.0
    return y


def _set_bool(x):
    m = x > 0
    m[:, :, 0] = True
    return m


SETITEM = [
    Case("setitem_slice", fn(lambda m, x: _set_slice(x)), [(3, 9, 4)], BTF),
    Case("setitem_time_int_and_step", fn(lambda m, x: _set_int_and_step(x)), [(3, 9, 4)], BTF),
    Case("setitem_bool_mask", fn(lambda m, x: _set_bool(x)), [(3, 9, 4)], BTF),
]


@pytest.mark.parametrize("case", SETITEM, ids=str)
def test_setitem_padded(case):
    assert_padded(case)
