"""Sizes keep their dim through the idioms of real model code (issue: real model code converts)."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from parity_helpers import COVERED

from torchdispatch_returnn.testing import assert_converts

X = torch.randn(3, 11, 4)
LENS = torch.tensor([11, 8, 6])
DYN = ({1: "time"},)
DYN_L = ({1: "time"}, None)


def check(fn, *inputs, dyn=DYN, lengths=None, **kw):
    class M(nn.Module):
        def forward(self, *xs):
            return fn(*xs)

    net = assert_converts(M(), *inputs, dynamic_shapes=dyn, lengths=lengths, **{"grads": True, **kw})
    COVERED.update(net.ops_seen)
    return net


def test_int_of_item_max_length_mask():
    def f(x, lengths):
        max_len = int(lengths.max().item())
        mask = torch.arange(max_len)[None, :] < lengths[:, None]
        return x * mask[..., None]

    check(f, X, LENS, dyn=DYN_L, lengths={1: "time"})


def test_int_of_size_and_len():
    def f(x):
        b, t = len(x), int(x.size(1))
        return x + x.new_zeros(b, t, 4) + torch.arange(t).float()[None, :, None]

    check(f, X)


def test_len_of_lengths_in_expand():
    def f(x, lengths):
        max_len = int(lengths.max())
        seq = torch.arange(0, max_len, dtype=torch.int64)
        mask = seq.unsqueeze(0).expand(len(lengths), max_len) < lengths.unsqueeze(-1)
        return x.masked_fill(~mask[..., None], 0.0)

    check(f, X, LENS, dyn=DYN_L, lengths={1: "time"})


def test_reflected_and_unary_size_arithmetic():
    def f(x):
        t = x.size(1)
        z = x.new_zeros(x.shape[0], 2 * t, 4)
        k = 3 + t - 1  # t + 2
        y = torch.cat([x, x[:, :2]], 1) + x.new_ones(x.shape[0], k, 1)
        return z[:, :t] + x + y[:, :-2] + math.ceil(t / 1) * 0

    check(f, X)


def test_zero_dim_size_tensor_as_size():
    def f(x, lengths):
        maxlen = lengths.max()
        tri = torch.ones(maxlen + 1, maxlen + 1, dtype=torch.bool).triu(1)[1:, :-1]
        mask = tri[lengths - 1][..., :maxlen]  # ESPnet's traceable make_pad_mask
        return x.masked_fill(mask[..., None], 0.0)

    check(f, X, LENS, dyn=DYN_L, lengths={1: "time"})


def test_repeat_by_a_size():
    def f(x):
        w = x.mean(2, keepdim=True)  # (B, T, 1)
        return w.repeat(1, 1, x.size(1)) + x.sum(2)[:, None, :]

    check(f, X)


def test_as_tensor_cast_and_tensor_of_shape():
    def f(x):
        m = torch.as_tensor(x > 0, dtype=torch.float32)
        shape = torch.tensor(x.shape)
        return m * x + shape[2]

    check(f, X)


def test_plain_tensor_attribute_sliced_by_sizes():
    class RelPE(nn.Module):
        def __init__(self):
            super().__init__()
            self.pe = torch.randn(1, 41, 4)  # a plain attribute, not a buffer

        def forward(self, x):
            t, c = x.size(1), 20
            pos = self.pe[:, c - t + 1:c + t]  # 2T - 1 relative positions around the centre
            return pos.sum(1, keepdim=True) + x

    net = assert_converts(RelPE(), X, dynamic_shapes=DYN, padded=False, grads=True)
    COVERED.update(net.ops_seen)


def test_odd_size_arithmetic_does_not_divide_by_zero():
    def f(x):
        is_odd = x.size(2) % 2
        return F.pad(x, (0, is_odd)) * (is_odd + 1)

    check(f, X)


def test_ceil_of_size_quotient():
    def f(x):
        n = math.ceil(x.size(1) / 2)
        return F.pad(x, (0, 0, 0, 2 * n - x.size(1)))[:, ::2] * 1

    check(f, X, padded=False, other_lengths=[8, 13])


def test_length_one_dynamic_axis_is_no_static_axis():
    def f(x):
        return x.unsqueeze(1).transpose(1, 2).flatten(2) + x.mean(1, keepdim=True)

    check(f, torch.randn(3, 1, 4), other_lengths=[5, 11])
