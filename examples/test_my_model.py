"""Parity tests for your own model, as a pytest file: copy it next to your model and adapt.

    python -m pytest -p torchdispatch_returnn.pytest_plugin examples/test_my_model.py

(or put ``pytest_plugins = ["torchdispatch_returnn.pytest_plugin"]`` in your ``conftest.py``).
Each test converts the model once and checks every op against torch, the network rebuilt from the
written config + checkpoint, other lengths along the time axis and a padded batch with NaN in the
padding. ``--returnn-report-dir DIR`` keeps each test's HTML parity report.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest
import torch
from torch import nn

from torchdispatch_returnn.testing import assert_converts


class ConvFrontend(nn.Module):
    """(B, T, 80) features -> (B, ceil(T / 2), 64): a strided conv, a norm and a projection."""

    def __init__(self, feat=80, dim=64):
        super().__init__()
        self.conv = nn.Conv1d(feat, dim, kernel_size=3, stride=2, padding=1)
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        y = self.conv(x.transpose(1, 2)).transpose(1, 2)
        return self.proj(torch.relu(self.norm(y)))


class Tagger(nn.Module):
    """Embedding + BLSTM + output layer over token ids (B, T)."""

    def __init__(self, vocab=30, dim=32, classes=7):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.lstm = nn.LSTM(dim, dim, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * dim, classes)

    def forward(self, ids):
        return self.out(self.lstm(self.emb(ids))[0]).log_softmax(-1)


TIME = ({1: "time"},)


def test_frontend(returnn_parity):
    torch.manual_seed(0)
    net = returnn_parity(ConvFrontend(), torch.randn(3, 40, 80), dynamic_shapes=TIME)
    assert net.parity.ok


@pytest.mark.returnn_parity(grads=True, other_lengths=[9, 57])  # options for every call in this test
def test_frontend_gradients_and_lengths(returnn_parity):
    torch.manual_seed(0)
    net = returnn_parity(ConvFrontend(), torch.randn(2, 31, 80), dynamic_shapes=TIME)
    assert any(g.ok for g in net.parity.grads)


def test_tagger_without_the_fixture():
    torch.manual_seed(0)
    ids = torch.randint(0, 30, (3, 12))
    assert_converts(Tagger(), ids, dynamic_shapes=TIME, seq_lens=[12, 7, 3])
