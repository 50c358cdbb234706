import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from parity_helpers import Case, Fn, assert_padded, assert_parity

D = ({2: "time"},)  # time is the first pooled axis
C = ({1: "time"},)  # time is the channel axis: pooling beside it
_ATEN = torch.ops.aten


def fn(f):
    return lambda: Fn(lambda m, *xs: f(*xs))


PADDED = [
    Case("MaxPool1d_ceil", lambda: nn.MaxPool1d(3, 2, ceil_mode=True), [(3, 4, 17)], D),
    Case("MaxPool1d_ceil_pad", lambda: nn.MaxPool1d(3, 2, padding=1, ceil_mode=True), [(3, 4, 17)], D),
    Case("MaxPool1d_ceil_stride_over_kernel", lambda: nn.MaxPool1d(2, 3, ceil_mode=True), [(3, 4, 17)], D),
    Case("MaxPool1d_dilation_stride_ceil", lambda: nn.MaxPool1d(3, 2, padding=1, dilation=2, ceil_mode=True),
         [(3, 4, 17)], D),
    Case("AvgPool1d_ceil", lambda: nn.AvgPool1d(3, 2, ceil_mode=True), [(3, 4, 17)], D),
    Case("AvgPool1d_pad", lambda: nn.AvgPool1d(3, 2, padding=1), [(3, 4, 17)], D),
    Case("AvgPool1d_pad_ceil", lambda: nn.AvgPool1d(4, 3, padding=2, ceil_mode=True), [(3, 4, 17)], D),
    Case("AvgPool1d_pad_exclude", lambda: nn.AvgPool1d(3, 2, padding=1, count_include_pad=False, ceil_mode=True),
         [(3, 4, 17)], D),
    Case("AvgPool2d_divisor", lambda: nn.AvgPool2d(3, 2, padding=1, divisor_override=4), [(3, 2, 17, 8)], D),
    Case("AvgPool2d_ceil_exclude", lambda: nn.AvgPool2d((3, 2), (2, 2), padding=1, ceil_mode=True,
                                                        count_include_pad=False), [(3, 2, 17, 7)], D),
    Case("MaxPool2d_ceil_dilation", lambda: nn.MaxPool2d(2, 2, dilation=(2, 1), ceil_mode=True), [(3, 2, 17, 7)], D),
    Case("max_pool1d_with_indices", fn(lambda x: F.max_pool1d(x, 3, 2, 1, return_indices=True)), [(3, 4, 17)], D),
    Case("MaxPool2d_indices", lambda: nn.MaxPool2d(3, 2, padding=1, ceil_mode=True, return_indices=True),
         [(3, 2, 17, 7)], D),
    Case("max_pool2d_with_indices", fn(lambda x: F.max_pool2d_with_indices(x, 2)), [(3, 2, 17, 6)], D),
    Case("MaxUnpool1d", fn(lambda x: F.max_unpool1d(*F.max_pool1d(x, 2, return_indices=True), 2)), [(3, 4, 17)], D),
    Case("MaxUnpool2d", fn(lambda x: nn.MaxUnpool2d(2)(*nn.MaxPool2d(2, return_indices=True)(x))),
         [(3, 2, 16, 6)], D),
    Case("MaxPool3d", lambda: nn.MaxPool3d((3, 2, 2), (2, 1, 2), padding=1, ceil_mode=True), [(3, 2, 11, 4, 5)], D),
    Case("AvgPool3d", lambda: nn.AvgPool3d(2, padding=1, count_include_pad=False), [(3, 2, 11, 4, 5)], D),
    Case("LPPool1d", lambda: nn.LPPool1d(2, 3, 2), [(3, 4, 17)], D),
    Case("LPPool2d_ceil", lambda: nn.LPPool2d(3.0, (2, 3), ceil_mode=True), [(3, 2, 17, 7)], D, positive=True),
    Case("lp_pool3d", fn(lambda x: F.lp_pool3d(x, 2, 2)), [(3, 2, 11, 4, 5)], D),
    Case("lp_pool1d_inf", fn(lambda x: F.lp_pool1d(x, float("inf"), 3, 2)), [(3, 4, 17)], D),
    Case("AdaptiveAvgPool1d_time", lambda: nn.AdaptiveAvgPool1d(5), [(3, 4, 17)], D),
    Case("AdaptiveMaxPool2d_time", lambda: nn.AdaptiveMaxPool2d((4, 3)), [(3, 2, 17, 7)], D),
    Case("AdaptiveMaxPool1d_time_indices", lambda: nn.AdaptiveMaxPool1d(3, return_indices=True), [(3, 4, 17)], D),
    Case("AdaptiveAvgPool2d_time_global_freq", lambda: nn.AdaptiveAvgPool2d((6, 1)), [(3, 2, 17, 7)], D),
    Case("AdaptiveMaxPool2d_time_indices", lambda: nn.AdaptiveMaxPool2d((4, 3), return_indices=True), [(3, 2, 17, 7)],
         D),
    Case("adaptive_max_pool3d_global_time_indices", fn(lambda x: F.adaptive_max_pool3d(x, (1, 2, 3), True)),
         [(3, 2, 11, 4, 5)], D),
    Case("torch_max_pool1d", fn(lambda x: torch.max_pool1d(x, 3, 2, 1, 1, True)), [(3, 4, 17)], D),
    Case("torch_max_pool2d", fn(lambda x: torch.max_pool2d(x, 2, 2, 0, 1, True)), [(3, 2, 17, 7)], D),
    Case("torch_max_pool3d", fn(lambda x: torch.max_pool3d(x, 2, 1)), [(3, 2, 11, 4, 5)], D),
    Case("max_pool3d_backward", fn(lambda x: (lambda y, i: _ATEN.max_pool3d_with_indices_backward.default(
        y.square(), x, 2, 2, 0, 1, False, i))(*F.max_pool3d_with_indices(x, 2))), [(3, 2, 10, 4, 4)], D),
    Case("torch_max_pool1d_with_indices", fn(lambda x: torch.max_pool1d_with_indices(x, 2)), [(3, 4, 17)], D),
    Case("torch_adaptive_max_pool1d", fn(lambda x: torch.adaptive_max_pool1d(x, (4,))), [(3, 4, 17)], D),
    Case("MaxPool1d_dilation_stride_pad", lambda: nn.MaxPool1d(3, 2, padding=1, dilation=2), [(3, 4, 17)], D),
    Case("MaxPool2d_dilation_stride_pad", lambda: nn.MaxPool2d(3, 2, padding=1, dilation=2), [(3, 2, 17, 9)], D),
    Case("adaptive_max_pool2d_keep_time_indices", fn(lambda x: F.adaptive_max_pool2d(x, (None, 3), True)),
         [(3, 2, 17, 7)], D),
    Case("AdaptiveAvgPool2d_keep_time", lambda: nn.AdaptiveAvgPool2d((None, 5)), [(3, 2, 17, 7)], D),
    Case("adaptive_max_pool2d_identity_indices", fn(lambda x: F.adaptive_max_pool2d(x, (None, None), True)),
         [(3, 2, 17, 7)], D),
    Case("max_pool2d_backward", fn(lambda x: (lambda y, i: _ATEN.max_pool2d_with_indices_backward.default(
        y.square(), x, 2, 2, 0, 1, False, i))(*F.max_pool2d_with_indices(x, 2))), [(3, 2, 16, 6)], D),
]


@pytest.mark.parametrize("case", PADDED, ids=str)
def test_pool_padded(case):
    assert_padded(case)


BESIDE = [
    Case("max_pool1d_unbatched", fn(lambda x: F.max_pool1d(x, 3, 2, ceil_mode=True)), [(5, 9)], ({1: "time"},)),
    Case("AdaptiveAvgPool1d_5of8", lambda: nn.AdaptiveAvgPool1d(5), [(3, 4, 8)], C),
    Case("AdaptiveMaxPool2d_indices", lambda: nn.AdaptiveMaxPool2d((3, 2), return_indices=True), [(3, 4, 7, 5)], C),
    Case("AdaptiveAvgPool3d", lambda: nn.AdaptiveAvgPool3d((2, 3, 1)), [(3, 4, 5, 7, 3)], C),
    Case("AdaptiveMaxPool3d", lambda: nn.AdaptiveMaxPool3d(2), [(3, 4, 5, 7, 3)], C),
    Case("adaptive_max_pool1d_with_indices", fn(lambda x: F.adaptive_max_pool1d_with_indices(x, 3)), [(3, 4, 8)], C),
    Case("MaxPool3d_indices", lambda: nn.MaxPool3d(2, return_indices=True), [(3, 4, 5, 6, 4)], C),
    Case("max_unpool3d", fn(lambda x: F.max_unpool3d(*F.max_pool3d(x, 2, return_indices=True), 2)),
         [(3, 4, 4, 6, 4)], C),
]


@pytest.mark.parametrize("case", BESIDE, ids=str)
def test_pool_beside_time(case):
    assert_parity(case)
