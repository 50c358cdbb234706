"""Recurrent layers: every option, final states, packed sequences; padded batches with garbage
padding compared per sequence, at other lengths too."""

import pytest
import torch
import torch.nn as nn
from parity_helpers import COVERED, Case, assert_padded, assert_parity
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

BTF = ({1: "time"},)


class BF(nn.Module):
    """The RNN's output and final states, batch-first (so the padded check can slice sequences)."""

    def __init__(self, rnn, time_major=False):
        super().__init__()
        self.rnn = rnn
        self.time_major = time_major

    def forward(self, x):
        out, st = self.rnn(x)
        st = st if isinstance(st, tuple) else (st,)
        return ((out.transpose(0, 1) if self.time_major else out),) + tuple(s.transpose(0, 1) for s in st)


class WithInitialState(nn.Module):
    def __init__(self, kind="LSTM"):
        super().__init__()
        self.kind = kind
        self.rnn = getattr(nn, kind)(4, 5, num_layers=2, batch_first=True, bidirectional=True)
        self.h_init = nn.Linear(4, 5)

    def forward(self, x):
        h0 = torch.tanh(self.h_init(x.mean(1)))  # (B, H) from the input
        h0 = h0.unsqueeze(0).expand(4, -1, -1).contiguous()
        hx = (h0, h0 * 0.5) if self.kind == "LSTM" else h0
        out, st = self.rnn(x, hx)
        h = st[0] if self.kind == "LSTM" else st
        return out, h.transpose(0, 1)


class NewZerosState(nn.Module):
    """Predecessor style: time-major LSTM with (h0, c0) from new_zeros((L, B, H))."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(4, 5, num_layers=2)

    def forward(self, x):
        b = x.shape[1]
        out, _ = self.lstm(x, (x.new_zeros((2, b, 5)), x.new_zeros((2, b, 5))))
        return out.transpose(0, 1)


class Packed(nn.Module):
    def __init__(self, kind="LSTM", enforce_sorted=False):
        super().__init__()
        self.rnn = getattr(nn, kind)(4, 5, batch_first=True, bidirectional=True)
        self.enforce_sorted = enforce_sorted

    def forward(self, x, lengths):
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=self.enforce_sorted)
        out, st = self.rnn(packed)
        y, out_lens = pad_packed_sequence(out, batch_first=True)
        h = st[0] if isinstance(st, tuple) else st
        return y * 1.0, h.transpose(0, 1) + 0.0


CASES = [
    Case("LSTM", lambda: BF(nn.LSTM(4, 5, batch_first=True)), [(3, 9, 4)], BTF),
    Case("LSTM_time_major", lambda: BF(nn.LSTM(4, 5), time_major=True), [(9, 3, 4)], ({0: "time", 1: "batch"},)),
    Case("LSTM_2layer_bidirectional", lambda: BF(nn.LSTM(4, 5, 2, batch_first=True, bidirectional=True)),
         [(3, 9, 4)], BTF),
    Case("LSTM_nobias", lambda: BF(nn.LSTM(4, 5, batch_first=True, bias=False)), [(3, 9, 4)], BTF),
    Case("LSTM_proj", lambda: BF(nn.LSTM(4, 6, proj_size=3, batch_first=True)), [(3, 9, 4)], BTF),
    Case("LSTM_proj_bidirectional", lambda: BF(nn.LSTM(4, 6, proj_size=3, batch_first=True, bidirectional=True)),
         [(3, 9, 4)], BTF),
    Case("LSTM_dropout_eval", lambda: BF(nn.LSTM(4, 5, 2, batch_first=True, dropout=0.3)), [(3, 9, 4)], BTF),
    Case("GRU", lambda: BF(nn.GRU(4, 5, batch_first=True)), [(3, 9, 4)], BTF),
    Case("GRU_2layer_bidirectional", lambda: BF(nn.GRU(4, 5, 2, batch_first=True, bidirectional=True)),
         [(3, 9, 4)], BTF),
    Case("GRU_nobias_time_major", lambda: BF(nn.GRU(4, 5, bias=False), time_major=True), [(9, 3, 4)],
         ({0: "time", 1: "batch"},)),
    Case("RNN_tanh", lambda: BF(nn.RNN(4, 5, batch_first=True)), [(3, 9, 4)], BTF),
    Case("RNN_relu_bidirectional", lambda: BF(nn.RNN(4, 5, nonlinearity="relu", batch_first=True,
                                                     bidirectional=True)), [(3, 9, 4)], BTF),
    Case("LSTM_initial_state", lambda: WithInitialState("LSTM"), [(3, 9, 4)], BTF),
    Case("GRU_initial_state", lambda: WithInitialState("GRU"), [(3, 9, 4)], BTF),
    Case("LSTM_new_zeros_state", NewZerosState, [(9, 3, 4)], ({0: "time", 1: "batch"},)),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_rnn_padded(case):
    assert_padded(case)


@pytest.mark.parametrize("kind, enforce_sorted", [("LSTM", False), ("GRU", False), ("LSTM", True)])
def test_packed_sequence_with_length_input(kind, enforce_sorted):
    import numpy as np

    from torchdispatch_returnn import returnn_capture

    torch.manual_seed(0)
    model = Packed(kind, enforce_sorted).eval()
    x = torch.randn(3, 9, 4)
    lens = torch.tensor([9, 7, 4]) if enforce_sorted else torch.tensor([9, 4, 6])
    with torch.no_grad():
        with returnn_capture(dynamic_shapes=({1: "time"}, None), lengths={"lengths": "time"}) as net:
            model(x, lens)
    assert net.parity.ok, str(net.parity)
    COVERED.update(net.ops_seen)
    x2 = torch.randn(3, 12, 4)
    x2[1, 5:] = 1000.0  # garbage in the padding
    l2 = torch.tensor([12, 5, 8]) if not enforce_sorted else torch.tensor([12, 8, 5])
    if enforce_sorted:
        x2[2, 5:] = 1000.0
        x2[1, 8:] = 1000.0
    y, h = net.run(x2, l2)
    for b in range(3):
        n = int(l2[b])
        with torch.no_grad():
            wy, wh = model(x2[b:b + 1, :n], torch.tensor([n]))
        np.testing.assert_allclose(y[b, :n], wy[0].numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(h[b], wh[0].numpy(), rtol=1e-5, atol=1e-5)


def test_lstm_cell_loop_unrolled():
    class CellLoop(nn.Module):
        def __init__(self):
            super().__init__()
            self.cell = nn.LSTMCell(4, 5)
            self.gru = nn.GRUCell(5, 3)
            self.rnn = nn.RNNCell(3, 2)
            self.relu_rnn = nn.RNNCell(2, 2, nonlinearity="relu")

        def forward(self, x):
            h = x.new_zeros(x.shape[0], 5)
            c = x.new_zeros(x.shape[0], 5)
            g = x.new_zeros(x.shape[0], 3)
            r = x.new_zeros(x.shape[0], 2)
            outs = []
            for t in range(x.shape[1]):
                h, c = self.cell(x[:, t], (h, c))
                g = self.gru(h, g)
                r = self.relu_rnn(self.rnn(g, r), r)
                outs.append(r)
            return torch.stack(outs, 1)

    assert_parity(Case("cell_loop", CellLoop, [(3, 6, 4)], None))
