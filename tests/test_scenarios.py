"""Whole-model scenarios in the style of the predecessor's layer tests (time-major inputs,
several dynamic axes, constants from numpy, chunks through a shared Linear, batch flattening)."""

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from parity_helpers import Case, Fn, assert_parity


def fn(f):
    return lambda: Fn(lambda m, *xs: f(*xs))


class LinChunks(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(11, 13)

    def forward(self, x):
        return sum(self.lin(c) for c in x.chunk(3, dim=-1))


class PositionWise(nn.Module):
    """Merge batch and time for a position-wise Linear, then split back."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(5, 4)

    def forward(self, x):
        b, t, f = x.shape
        y = self.lin(x.reshape(b * t, f))
        return y.view(b, t, -1) + x[:, :, :4]


class ClsTokenPosEmb(nn.Module):
    def __init__(self):
        super().__init__(); self.cls = nn.Parameter(torch.randn(1, 1, 4)); self.pos = nn.Embedding(50, 4)
    def forward(self, x):
        b, t, d = x.shape
        x = x + self.pos(torch.arange(t))
        x = torch.cat([self.cls.expand(b, -1, -1), x], dim=1)
        return x.mean(1)


def _np(*shape):
    return torch.from_numpy(np.linspace(-1, 1, int(np.prod(shape)), dtype="float32").reshape(shape))


CASES = [
    Case("slice_batch_then_feature", fn(lambda x: x[0][:3] * 1), [(3, 7)], None),
    Case("slice_feature", fn(lambda x: x[:, 3:] * 1), [(3, 7)], None),
    Case("expand_new_leading", fn(lambda x: x.expand(3, 2, -1, 7) * 1), [(5, 1)], None),
    Case("broadcast_different_axes", fn(lambda x: x * torch.ones(5).view(1, -1, 1)), [(3, 5, 7)], ({2: "time"},)),
    Case("broadcast_bias_from_numpy", fn(lambda x: x + _np(5)), [(3, 5)], None),
    Case("bmm_time_major", fn(lambda x: torch.bmm(x.transpose(0, 1), x.new_zeros(x.shape[1], 11, 13) + 1)),
         [(5, 3, 11)], ({0: "time", 1: "batch"},)),
    Case("view_static_split_merge", fn(lambda x: x.view(3, 5, 8 // 2, 6 * 2) * 1), [(3, 5, 8, 6)], None,
         other_sizes=()),
    Case("conv_then_movedim", lambda: nn.Sequential(nn.Conv1d(11, 13, 3), Fn(lambda m, x: torch.movedim(x, 0, 1))),
         [(3, 11, 7)], ({2: "time"},)),
    Case("embedding_time_major", lambda: nn.Embedding(11, 13), [(7, 3)], ({0: "time", 1: "batch"},),
         dtypes=[torch.int64], high=11),
    Case("linear_on_chunks_shared", LinChunks, [(3, 7, 33)], ({1: "time"},)),
    Case("glu_via_chunk", fn(lambda x: (lambda a, b: a * b.sigmoid())(*x.chunk(2, dim=1))), [(3, 12, 7)],
         ({2: "time"},)),
    Case("depthwise_after_empty_pad",
         lambda: nn.Sequential(Fn(lambda m, x: F.pad(x, (0, 0))), nn.Conv1d(12, 24, [3], groups=12)),
         [(3, 12, 7)], ({2: "time"},)),
    Case("flatten_batch_time", fn(lambda x: torch.reshape(torch.movedim(x, 1, 0), (x.shape[1], -1)) * 1),
         [(3, 11, 7)], ({2: "time"},)),
    Case("merge_batch_time_and_back", PositionWise, [(3, 11, 5)], ({1: "time"},)),
    Case("cls_token_and_position_embedding", ClsTokenPosEmb, [(3, 9, 4)], ({1: "time"},)),
    Case("new_ones_of_shape_slice", fn(lambda x: x.new_ones(x.shape[:2], dtype=torch.bool) & (x.sum(-1) > 0)),
         [(3, 9, 4)], ({1: "time"},)),
    Case("odd_frames", fn(lambda x: x[:, 1::2] * 1), [(3, 9, 4)], ({1: "time"},)),
    Case("softmax_float_type_as", fn(lambda x: F.softmax(x.float(), dim=-1).type_as(x)), [(3, 9, 4)], ({1: "time"},)),
    Case("flatten_module", lambda: nn.Sequential(nn.Flatten()), [(3, 4, 5)], None),
    Case("repeat_over_heads", fn(lambda x: x.unsqueeze(1).repeat(1, 4, 1, 1) * 1), [(3, 9, 4)], ({1: "time"},)),
    Case("mean_over_everything", fn(lambda x: x.mean()), [(3, 5)], None),
    Case("matmul_numpy_weight", fn(lambda x: torch.matmul(x.transpose(1, 2), _np(11, 13))), [(3, 11, 7)],
         ({2: "time"},)),
    Case("linear_numpy_weight", fn(lambda x: F.linear(x.transpose(1, 2), _np(13, 11), _np(13))), [(3, 11, 7)],
         ({2: "time"},)),
    Case("conv2d_both_spatial_dynamic", lambda: nn.Conv2d(11, 13, (3, 5), stride=2), [(3, 11, 17, 19)],
         ({2: "h", 3: "w"},)),
    Case("convT2d_both_spatial_dynamic",
         lambda: nn.ConvTranspose2d(11, 13, kernel_size=(10, 3), stride=5, padding=(2, 3), output_padding=1),
         [(3, 11, 17, 19)], ({2: "h", 3: "w"},)),
    Case("F_conv2d_const_weight", fn(lambda x: F.conv2d(x, torch.ones(13, 11, 3, 5) * 0.01, torch.ones(13), stride=2)),
         [(3, 11, 17, 19)], ({2: "h", 3: "w"},)),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_scenario(case):
    assert_parity(case)
