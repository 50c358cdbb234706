"""x[idx] and x[idx] = value in the forms real encoders use."""

import math

import torch
import torch.nn as nn
from parity_helpers import COVERED

from torchdispatch_returnn.testing import assert_converts

X = torch.randn(3, 11, 4)
LENS = torch.tensor([11, 8, 6])


def check(fn, *inputs, dyn=({1: "time"},), lengths=None, **kw):
    class M(nn.Module):
        def forward(self, *xs):
            return fn(*xs)

    net = assert_converts(M(), *inputs, dynamic_shapes=dyn, lengths=lengths, **{"grads": True, **kw})
    COVERED.update(net.ops_seen)
    return net


def test_sinusoidal_table_written_through_strided_slices():
    def f(x):
        t, d = x.size(1), x.size(2)
        pe = torch.zeros(t, d)
        pos = torch.arange(0, t, dtype=torch.float32).unsqueeze(1)
        div = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
        pe[:, 0::2] = torch.sin(pos * div)
        pe[:, 1::2] = torch.cos(pos * div)
        return x + pe[None]

    check(f, X)


def test_boolean_mask_write():
    def f(x, lengths):
        b, t, _ = x.shape
        mask = torch.arange(t).expand(b, t) >= lengths[:, None]
        x = x * 1.0
        x[mask] = 0.0
        return x

    check(f, X, LENS, dyn=({1: "time"}, None), lengths={1: "time"})


def test_write_at_each_sequences_last_frame():
    def f(x, lengths):  # HF wav2vec2's attention mask from output lengths
        m = torch.zeros(x.shape[:2], dtype=x.dtype)
        m[(torch.arange(m.shape[0]), lengths - 1)] = 1
        m = m.flip([-1]).cumsum(-1).flip([-1]).bool()
        return x * m[..., None]

    check(f, X, LENS, dyn=({1: "time"}, None), lengths={1: "time"})


def test_several_index_tensors_broadcast():
    def f(x, lengths):  # HF masking_utils: padding_mask[batch_idx, kv_idx]
        pad = torch.arange(x.shape[1])[None, :] < lengths[:, None]
        b = torch.arange(x.shape[0])[:, None, None]
        kv = torch.arange(x.shape[1])[None, None, :]
        m = pad[b, kv]  # (B, 1, T)
        return x * m.transpose(1, 2)

    check(f, X, LENS, dyn=({1: "time"}, None), lengths={1: "time"})


def test_index_tensor_on_a_static_axis_and_value_write():
    def f(x):
        idx = torch.tensor([2, 0, 3])
        y = x[:, :, idx]  # (B, T, 3)
        y = y * 1.0
        y[..., 1] = x[..., 0] * 2
        y[:, 0] = 5.0
        return y

    check(f, X)


def test_boolean_mask_read_is_a_clear_error():
    import pytest

    from torchdispatch_returnn import UnsupportedOpError, returnn_capture

    with pytest.raises(UnsupportedOpError, match="boolean mask"):
        with returnn_capture(dynamic_shapes=({1: "time"},)):
            nn.Sequential(nn.Identity())(X)[X > 0]


def test_relative_shift_by_pad_and_view():
    def f(x):  # Transformer-XL / ESPnet rel_shift of (B, H, T, 2T-1) scores, exact at every length
        b, t, _ = x.shape
        pos = torch.arange(2 * t - 1).float()
        scores = (x.sum(-1)[:, None, :, None] * pos[None, None, None, :]).expand(b, 2, t, 2 * t - 1)
        zero_pad = torch.zeros((*scores.size()[:3], 1))
        padded = torch.cat([zero_pad, scores], dim=-1).view(*scores.size()[:2], scores.size(3) + 1, scores.size(2))
        out = padded[:, :, 1:].view_as(scores)[:, :, :, : scores.size(-1) // 2 + 1]
        return out  # (B, H, T, T)

    check(f, X, padded=False)


def test_relative_shift_speechbrain_style():
    def f(x):
        b, t, _ = x.shape
        s = x[:, None, :, :1] * torch.arange(2 * t - 1).float()  # (B, 1, T, 2T-1)
        h, qlen, pos_len = s.shape[1], s.shape[2], s.shape[3]
        s = torch.nn.functional.pad(s, pad=(1, 0))
        s = s.view(b, h, -1, qlen)
        return s[:, :, 1:].view(b, h, qlen, pos_len)

    check(f, X, padded=False)
