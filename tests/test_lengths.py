"""Length inputs (returnn_capture(lengths=...)): masks, max length, packing after subsampling."""

import numpy as np
import pytest
import torch
import torch.nn as nn
from parity_helpers import COVERED
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from torchdispatch_returnn import InputSpecError, ParityError, returnn_capture


class MaskedMean(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x, lengths):
        mask = torch.arange(x.shape[1])[None, :] < lengths[:, None]
        y = self.lin(x).masked_fill(~mask[:, :, None], 0.0)
        return y.sum(1) / lengths[:, None]


class MaxLenMask(nn.Module):
    def forward(self, x, lengths):
        t = lengths.max().item()
        mask = torch.arange(lengths.max())[None, :] < lengths[:, None]
        m2 = torch.arange(t).unsqueeze(0).expand(x.shape[0], t) < lengths.unsqueeze(1)
        return (x * mask[..., None]).sum(1) + m2.sum(1, keepdim=True)


class ConvThenPackedLSTM(nn.Module):
    """ASR-style: stride-2 conv, lengths from the conv formula, packed BLSTM."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 6, 3, stride=2, padding=1)
        self.lstm = nn.LSTM(6, 5, batch_first=True, bidirectional=True)

    def forward(self, x, lengths):
        y = torch.relu(self.conv(x.transpose(1, 2))).transpose(1, 2)
        lens = (lengths + 2 - 3) // 2 + 1
        out, _ = self.lstm(pack_padded_sequence(y, lens, batch_first=True, enforce_sorted=False))
        out, out_lens = pad_packed_sequence(out, batch_first=True)
        return out, out_lens


def _check(model, x, lens, x2, l2):
    with torch.no_grad():
        with returnn_capture(dynamic_shapes=({1: "time"}, None), lengths={"lengths": "time"}) as net:
            model(x, lens)
    assert net.parity.ok, str(net.parity)
    COVERED.update(net.ops_seen)
    got = net.run(x2, l2)
    got = list(got) if isinstance(got, tuple) else [got]
    for b in range(x2.shape[0]):
        n = int(l2[b])
        with torch.no_grad():
            want = model(x2[b:b + 1, :n], l2[b:b + 1])
        want = list(want) if isinstance(want, tuple) else [want]
        for g, w in zip(got, want):
            sl = (slice(b, b + 1),) + tuple(slice(0, s) for s in w.shape[1:])
            np.testing.assert_allclose(np.asarray(g)[sl], w.numpy(), rtol=1e-5, atol=1e-5)
    return net


def _garbage(b, t, lens):
    x = torch.randn(b, t, 4)
    for i, n in enumerate(lens):
        x[i, n:] = 500.0
    return x


@pytest.mark.parametrize("model", [MaskedMean, MaxLenMask, ConvThenPackedLSTM], ids=lambda m: m.__name__)
def test_length_input_models(model):
    torch.manual_seed(0)
    m = model().eval()
    x, lens = _garbage(3, 9, [9, 4, 6]), torch.tensor([9, 4, 6])
    l2 = torch.tensor([13, 5, 8])
    _check(m, x, lens, _garbage(3, 13, l2.tolist()), l2)


def test_wrong_lengths_for_packing_fail_parity():
    class WrongLens(ConvThenPackedLSTM):
        def forward(self, x, lengths):
            y = torch.relu(self.conv(x.transpose(1, 2))).transpose(1, 2)
            lens = torch.clamp(lengths // 3, min=1)  # not the conv's output lengths
            out, _ = self.lstm(pack_padded_sequence(y, lens, batch_first=True, enforce_sorted=False))
            return pad_packed_sequence(out, batch_first=True, total_length=y.shape[1])[0]

    with pytest.raises(ParityError):
        with returnn_capture(dynamic_shapes=({1: "time"}, None), lengths={"lengths": "time"}):
            WrongLens().eval()(torch.randn(3, 9, 4), torch.tensor([9, 4, 6]))


def test_lengths_spec_errors():
    with pytest.raises(InputSpecError, match="not a positional tensor argument"):
        with returnn_capture(dynamic_shapes=({1: "time"},), lengths={"lens": "time"}):
            MaskedMean()(torch.randn(3, 9, 4), torch.tensor([9, 4, 6]))
    with pytest.raises(InputSpecError, match="no input axis"):
        with returnn_capture(dynamic_shapes=({1: "time"}, None), lengths={"lengths": "frames"}):
            MaskedMean()(torch.randn(3, 9, 4), torch.tensor([9, 4, 6]))
    with pytest.raises(InputSpecError, match=r"must lie in \[0, 9\]"):
        with returnn_capture(dynamic_shapes=({1: "time"}, None), lengths={"lengths": "time"}):
            MaskedMean()(torch.randn(3, 9, 4), torch.tensor([10, 4, 6]))
