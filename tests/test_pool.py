import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from parity_helpers import Case, Fn, assert_parity

D = ({2: "time"},)


def fn(f):
    return lambda: Fn(lambda m, *xs: f(*xs))


CASES = [
    Case("MaxPool1d", lambda: nn.MaxPool1d(3, 2), [(3, 4, 17)], D),
    Case("MaxPool1d_pad", lambda: nn.MaxPool1d(3, 2, padding=1), [(3, 4, 17)], D),
    Case("MaxPool1d_dilation", lambda: nn.MaxPool1d(2, 1, dilation=2), [(3, 4, 17)], D),
    Case("AvgPool1d", lambda: nn.AvgPool1d(2), [(3, 4, 17)], D),
    Case("AvgPool1d_stride", lambda: nn.AvgPool1d(4, 3), [(3, 4, 17)], D),
    Case("MaxPool2d", lambda: nn.MaxPool2d(2), [(3, 2, 17, 8)], D),
    Case("AvgPool2d", lambda: nn.AvgPool2d((3, 2), stride=(2, 1)), [(3, 2, 17, 8)], D),
    Case("F_max_pool1d", fn(lambda x: F.max_pool1d(x, 2) * 1), [(3, 4, 17)], D),
    Case("repeat_interleave_time", fn(lambda x: x.repeat_interleave(2, dim=2) * 1), [(3, 4, 11)], D),
    Case("repeat_interleave_static", fn(lambda x: torch.repeat_interleave(x, 3, dim=1) * 1), [(3, 4, 11)], D),
    Case("Upsample_nearest", lambda: nn.Upsample(scale_factor=2), [(3, 4, 11)], D),
    Case("interpolate_2d", fn(lambda x: F.interpolate(x, scale_factor=(2, 3))), [(3, 2, 11, 4)], D),
    Case("interpolate_size", fn(lambda x: F.interpolate(x, size=x.shape[2] * 2)), [(3, 4, 11)], D),
    Case("AdaptiveAvgPool1d_global", lambda: nn.Sequential(nn.Conv1d(4, 3, 3), nn.AdaptiveAvgPool1d(1), nn.Flatten()),
         [(3, 4, 17)], D),
    Case("AdaptiveMaxPool1d_global", lambda: nn.AdaptiveMaxPool1d(1), [(3, 4, 17)], D),
    Case("AdaptiveAvgPool2d_freq_divisor", lambda: nn.AdaptiveAvgPool2d((None, 4)), [(3, 2, 17, 8)], D),
    Case("AdaptiveMaxPool2d_global", lambda: nn.Sequential(nn.Conv2d(1, 3, 3), nn.AdaptiveMaxPool2d((1, 1)),
                                                            nn.Flatten()), [(3, 1, 17, 6)], D),
    Case("mean_by_dynamic_length", fn(lambda x: x.sum(2) / x.shape[2]), [(3, 4, 11)], D),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_pool(case):
    assert_parity(case)


UNFOLD = [
    Case("unfold_time", fn(lambda x: x.unfold(2, 4, 2) * 1), [(3, 4, 17)], D),
    Case("unfold_time_step3", fn(lambda x: x.transpose(1, 2).unfold(1, 5, 3).sum(-1)), [(3, 4, 17)], D),
    Case("unfold_static", fn(lambda x: x.unfold(1, 2, 2) + 0), [(3, 4, 17)], D),
]


@pytest.mark.parametrize("case", UNFOLD, ids=str)
def test_unfold(case):
    assert_parity(case)
