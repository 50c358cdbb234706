"""Padded batches: with garbage in the padding and per-sequence lengths, every sequence's valid
frames equal PyTorch run on that sequence alone (live network and rebuilt config + checkpoint)."""

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from parity_helpers import Case, Fn, assert_padded

BTF = ({1: "time"},)
BFT = ({2: "time"},)


def fn(f):
    return lambda: Fn(lambda m, *xs: f(*xs))


class Attention(nn.Module):
    def __init__(self, d=8, h=2):
        super().__init__()
        self.h = h
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        q, k, v = (y.view(b, t, self.h, d // self.h).transpose(1, 2) for y in (q, k, v))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // self.h), dim=-1)
        return self.out((att @ v).transpose(1, 2).reshape(b, t, d))


class ConvFrontend(nn.Module):
    """ASR-style: two stride-2 Conv2d over (time, freq), then merge channels with freq."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(1, 4, 3, 2), nn.ReLU(), nn.Conv2d(4, 4, 3, 2), nn.ReLU())
        self.out = nn.Linear(4 * 3, 6)

    def forward(self, x):  # (B, T, F=16)
        y = self.conv(x.unsqueeze(1))  # (B, C, T', F')
        b, c, t, f = y.shape
        return self.out(y.transpose(1, 2).reshape(b, t, c * f))


class StatsPool(nn.Module):
    def forward(self, x):  # (B, T, F)
        return torch.cat([x.mean(1), x.std(1), x.amax(1), x.logsumexp(1), x.sum(1)], dim=-1)


CASES = [
    Case("conv_stack", lambda: nn.Sequential(nn.Conv1d(4, 6, 3, padding=1), nn.ReLU(), nn.Conv1d(6, 5, 5, 2, 2)),
         [(3, 4, 9)], BFT),
    Case("conv_frontend_2d", ConvFrontend, [(3, 21, 16)], BTF, seq_lens=(21, 9, 14)),
    Case("maxpool", lambda: nn.Sequential(nn.Conv1d(4, 4, 3), nn.MaxPool1d(3, 2, padding=1)), [(3, 4, 9)], BFT),
    Case("avgpool", lambda: nn.AvgPool1d(2), [(3, 4, 9)], BFT),
    Case("reductions_over_time", StatsPool, [(3, 9, 4)], BTF),
    Case("var_over_time", fn(lambda x: x.var(1, unbiased=False)), [(3, 9, 4)], BTF),
    Case("std_over_time_bessel", fn(lambda x: x.std(1) + x.var(1, keepdim=True).squeeze(1)), [(3, 9, 4)], BTF),
    Case("softmax_over_time", fn(lambda x: x.softmax(1)), [(3, 9, 4)], BTF),
    Case("log_softmax_over_time", fn(lambda x: F.log_softmax(x, dim=1)), [(3, 9, 4)], BTF),
    Case("self_attention", Attention, [(3, 9, 8)], BTF),
    Case("group_norm_over_time", lambda: nn.GroupNorm(2, 4), [(3, 4, 9)], BFT),
    Case("instance_norm_over_time", lambda: nn.InstanceNorm1d(4, affine=True), [(3, 4, 9)], BFT),
    Case("cumsum_time", fn(lambda x: x.cumsum(1)), [(3, 9, 4)], BTF),
    Case("cat_time", fn(lambda x: torch.cat([x, x * 2], dim=1)), [(3, 9, 4)], BTF),
    Case("cat_time_slices", fn(lambda x: torch.cat([x[:, 1:], x[:, :-1] + 1], dim=1)), [(3, 9, 4)], BTF),
    Case("flip_time", fn(lambda x: x.flip(1) + 0), [(3, 9, 4)], BTF),
    Case("pad_time", fn(lambda x: F.pad(x, (2, 3), value=-1.0)), [(3, 4, 9)], BFT),
    Case("slice_time", fn(lambda x: x[:, 1:-1] * 2), [(3, 9, 4)], BTF),
    Case("last_frame", fn(lambda x: x[:, -1] * 2), [(3, 9, 4)], BTF),
    Case("conv_transpose", lambda: nn.ConvTranspose1d(4, 3, 4, 2, 1), [(3, 4, 9)], BFT),
    Case("repeat_time", fn(lambda x: x.repeat_interleave(2, dim=1) * 1), [(3, 9, 4)], BTF),
    Case("mean_by_length", fn(lambda x: x.sum(1) / x.shape[1]), [(3, 9, 4)], BTF),
    Case("unfold_frames", fn(lambda x: x.unfold(1, 3, 2).mean(-1)), [(3, 9, 4)], BTF),
    Case("global_avg_pool", lambda: nn.Sequential(nn.Conv1d(4, 3, 3), nn.AdaptiveAvgPool1d(1)), [(3, 4, 9)], BFT),
    Case("global_max_pool", lambda: nn.AdaptiveMaxPool1d(1), [(3, 4, 9)], BFT),
    Case("upsample_time", lambda: nn.Upsample(scale_factor=3), [(3, 4, 9)], BFT),
    Case("depthwise_conv_same", lambda: nn.Conv1d(4, 4, 5, padding=2, groups=4), [(3, 4, 9)], BFT),
    Case("batchnorm_eval_then_conv", lambda: nn.Sequential(nn.BatchNorm1d(4).eval(), nn.Conv1d(4, 3, 3)),
         [(3, 4, 9)], BFT),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_padded_batch(case):
    assert_padded(case)
