"""Gradient parity: the network built from the written config, trained in RETURNN, gets torch
autograd's gradients (``check_grads=True``), on the full batch and on a padded batch.

Every parity case of the suite runs with ``check_grads`` (see parity_helpers); these tests cover
the recurrent layers, attention, what the check reports and that it leaves the model alone.
"""

import pytest
import torch
import torch.nn as nn
from parity_helpers import Case, Fn, assert_parity

from torchdispatch_returnn import ParityError, register, returnn_capture, unregister
from torchdispatch_returnn.testing import assert_converts

BTF = ({1: "time"},)


class Pre(nn.Module):
    """A linear layer before the module under test: its gradient shows errors flowing back."""

    def __init__(self, inner, f=5):
        super().__init__()
        self.pre, self.inner = nn.Linear(f, f), inner

    def forward(self, x):
        y = self.inner(self.pre(x))
        return y[0] if isinstance(y, tuple) else y


RNNS = [
    ("lstm_2layer_bi", lambda: nn.LSTM(5, 6, num_layers=2, bidirectional=True, batch_first=True)),
    ("lstm_proj_bi", lambda: nn.LSTM(5, 6, proj_size=3, bidirectional=True, batch_first=True)),
    ("lstm_no_bias_time_major", lambda: nn.LSTM(5, 4, bias=False)),
    ("gru_bi", lambda: nn.GRU(5, 6, bidirectional=True, batch_first=True)),
    ("gru_2layer", lambda: nn.GRU(5, 4, num_layers=2, batch_first=True)),
    ("rnn_relu_bi", lambda: nn.RNN(5, 6, nonlinearity="relu", bidirectional=True, batch_first=True)),
    ("rnn_tanh", lambda: nn.RNN(5, 6, batch_first=True)),
]


@pytest.mark.parametrize("name,factory", RNNS, ids=[n for n, _ in RNNS])
def test_recurrent_gradients_match_torch(name, factory):
    time_major = "time_major" in name
    shape, dyn = ((9, 3, 5), ({0: "time", 1: "batch"},)) if time_major else ((3, 9, 5), BTF)
    torch.manual_seed(0)
    net = assert_parity(Case(name, lambda: Pre(factory()), [shape], dyn))
    checked = [g for g in net.parity.grads if g.ok is not None]
    names = {g.name for g in checked}
    m = Pre(factory())
    for key, _ in m.named_parameters():  # every weight, on the full and on the padded batch
        assert f"{key} (batch)" in names and f"{key} (padded batch)" in names, key
    assert all(g.ok for g in checked), str(net.parity)


def test_recurrent_float64_lstm_runs_the_scan_and_matches():
    torch.manual_seed(0)
    assert_parity(Case("lstm64", lambda: Pre(nn.LSTM(5, 6, batch_first=True)).double(), [(3, 9, 5)], BTF,
                       dtypes=[torch.float64]))


def test_transformer_encoder_gradients_match_torch():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, batch_first=True)
    net = assert_parity(Case("transformer", lambda: layer, [(3, 7, 8)], BTF))
    assert sum(1 for g in net.parity.grads if g.ok) >= 2 * len(list(layer.parameters()))


def test_grouped_conv_padding_idx_and_zero_std_get_torch_gradients():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(7, 4, padding_idx=0)
            self.conv = nn.Conv1d(4, 6, 3, groups=2, padding=1)

        def forward(self, ids):
            y = torch.relu(self.conv(self.emb(ids).transpose(1, 2)) - 10.0)  # all zero: std 0
            return y.std(-1) + self.emb(ids).sum(1).sum(-1, keepdim=True)

    ids = torch.tensor([[0, 1, 2, 3, 0, 5], [4, 0, 6, 1, 2, 0]])
    net = assert_converts(M(), ids, dynamic_shapes=({1: "time"},), grads=True)
    assert all(g.ok is not False for g in net.parity.grads) and any(g.ok for g in net.parity.grads)


@pytest.mark.parametrize("name,f", [
    ("sort_values", lambda m, x: (x @ m.p0).sort(-1, descending=True).values * 2),
    ("topk_values", lambda m, x: (x @ m.p0).topk(2, dim=-1).values.exp()),
    ("sort_time", lambda m, x: (x @ m.p0).sort(1).values.sum(1)),
], ids=lambda v: v if isinstance(v, str) else "")
def test_sorting_gradients_flow_to_the_sorted_entries(name, f):
    torch.manual_seed(0)
    net = assert_parity(Case(name, lambda: Fn(f, torch.randn(5, 5)), [(3, 9, 5)], BTF))
    assert any(g.ok for g in net.parity.grads) and all(g.ok is not False for g in net.parity.grads)


def test_fmod_gradient_in_both_arguments():
    torch.manual_seed(0)
    assert_parity(Case("fmod2", lambda: Fn(lambda m, x, y: torch.fmod(x * 4, y.abs() + 0.5)), [(3, 9, 4), (3, 9, 4)],
                       ({1: "time"}, {1: "time"})))


def test_a_wrong_gradient_fails_the_capture_naming_the_parameter():
    def detached_linear(ctx, input, weight, bias=None):
        return ctx.tf_op("tf.stop_gradient(tf.tensordot(x0, x1, [[2], [1]]))", [ctx.ref(input), ctx.ref(weight)],
                         list(ctx.ref(input).dims[:2]) + [ctx.ref(weight).dims[0]])

    register(torch.nn.functional.linear, detached_linear, override=True)
    try:
        with pytest.raises(ParityError, match=r"gradient.*lin\.weight"):
            with torch.no_grad(), returnn_capture(dynamic_shapes=BTF, check_grads=True):
                _Lin()(torch.randn(3, 9, 5))
    finally:
        unregister(torch.nn.functional.linear)


class _Lin(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(5, 3, bias=False)

    def forward(self, x):
        return self.lin(x)


def test_gradient_check_is_off_by_default_and_leaves_the_users_grads():
    m = _Lin()
    with returnn_capture(dynamic_shapes=BTF) as net:
        m(torch.randn(3, 9, 5))
    assert net.parity.grads == []
    m.lin.weight.grad = marker = torch.ones_like(m.lin.weight)
    with returnn_capture(dynamic_shapes=BTF, check_grads=True) as net:
        m(torch.randn(3, 9, 5))
    assert m.lin.weight.grad is marker
    assert "gradients: OK" in str(net.parity)


def test_ops_over_the_batch_skip_only_the_padded_gradient_check_with_the_reason():
    with returnn_capture(dynamic_shapes=BTF, check_grads=True) as net:
        Pre(nn.Softmax(0))(torch.randn(3, 9, 5))
    skipped = [g for g in net.parity.grads if g.ok is None]
    assert [g.name for g in skipped] == ["(padded batch)"]
    assert "not each sequence's own" in skipped[0].detail
    assert any(g.ok and "(batch)" in g.name for g in net.parity.grads)
