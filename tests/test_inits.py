"""The written variables carry torch's initializers: a network built from the config alone (no
checkpoint) starts as a freshly constructed torch module would, and trains from scratch in RETURNN."""

import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from torchdispatch_returnn import ConfigNetwork, returnn_capture

F_IN, HID, OUT = 6, 32, 3


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, F_IN)
        self.conv = nn.Conv1d(F_IN, HID, 3, padding=1)
        self.norm = nn.LayerNorm(HID)
        self.lstm = nn.LSTM(HID, HID, batch_first=True)
        self.att = nn.MultiheadAttention(HID, 4, batch_first=True)
        self.out = nn.Linear(HID, OUT)
        self.register_buffer("table", torch.arange(12.0).reshape(3, 4))

    def forward(self, ids):
        x = self.conv(self.emb(ids).transpose(1, 2)).transpose(1, 2)
        h = self.lstm(self.norm(x))[0]
        h = h + self.att(h, h, h, need_weights=False)[0]
        return self.out(h) + self.table.sum()


def _variables(cfg_path: str) -> dict:
    fresh = ConfigNetwork(cfg_path)  # no checkpoint: the initializers only
    try:
        out = {}
        for layer in fresh.network.layers.values():
            for var in layer.params.values():
                out[var.op.name] = fresh.session.run(var)
        return out
    finally:
        fresh.close()


def test_variables_start_as_torch_would(tmp_path):
    torch.manual_seed(0)
    with returnn_capture(dynamic_shapes=({1: "time"},)) as net:
        Net().eval()(torch.randint(0, 10, (2, 7)))
    layers = {d.get("name_scope", "") + "/" + d.get("param_name", ""): d for d in net.net_dict.values()
              if d["class"] == "variable"}
    assert not any(isinstance(d.get("init", 0), (int, float)) and d.get("init", 0) == 0 and d["trainable"]
                   and len(d["shape"]) > 1 for d in layers.values())
    values = _variables(net.save_config(str(tmp_path / "net.config")))

    def value(key):  # (a Linear's weight is its linear layer's W, a LayerNorm's its layer_norm's scale)
        return values[net.param_map[key]["tf_vars"][0]]

    def uniform_ok(v, bound):
        assert np.abs(v).max() <= bound * (1 + 1e-6) and np.abs(v).max() > 0, (v, bound)
        assert v.size < 20 or v.std() > 0.4 * bound, (v.std(), bound)  # uniform: std = bound / sqrt(3)

    uniform_ok(value("out.weight"), 1 / math.sqrt(HID))
    uniform_ok(value("out.bias"), 1 / math.sqrt(HID))
    uniform_ok(value("conv.weight"), 1 / math.sqrt(F_IN * 3))
    uniform_ok(value("lstm.weight_ih_l0"), 1 / math.sqrt(HID))
    uniform_ok(value("att.in_proj_weight"), math.sqrt(6 / (4 * HID)))
    np.testing.assert_array_equal(value("att.in_proj_bias"), 0)
    np.testing.assert_array_equal(value("att.out_proj.bias"), 0)
    np.testing.assert_array_equal(value("norm.weight"), 1)
    np.testing.assert_array_equal(value("norm.bias"), 0)
    emb = value("emb.weight")
    assert 0.6 < emb.std() < 1.4 and abs(emb.mean()) < 0.5  # normal(0, 1)
    np.testing.assert_array_equal(value("table"), np.arange(12.0).reshape(3, 4))  # a buffer: its value


def _scores(path: str) -> dict:
    text = open(path).read()
    return {int(e): float(v) for e, v in re.findall(r"(\d+): EpochData\(.*?'train_score[^']*': ([-0-9.e+]+)", text,
                                                     re.S)}


@pytest.mark.slow
def test_trains_from_scratch_in_returnn(tmp_path):
    """The written architecture alone (no checkpoint) trained by ``python -m returnn``: the loss falls."""
    class Small(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(F_IN, HID, 3, padding=1)
            self.norm = nn.LayerNorm(HID)
            self.out = nn.Linear(HID, OUT)

        def forward(self, x):
            return self.out(torch.relu(self.norm(self.conv(x.transpose(1, 2)).transpose(1, 2))))

    torch.manual_seed(0)
    with returnn_capture(dynamic_shapes=({1: "time"},)) as net:
        Small()(torch.randn(2, 9, F_IN))
    rng = np.random.default_rng(0)
    seqs = [rng.standard_normal((n, F_IN)).astype("float32") for n in (9, 7, 12, 5, 8, 10)]
    data = ", ".join(f"{{'data': numpy.array({s.tolist()!r}, dtype='float32'), 'classes': numpy.array("
                     f"{np.tanh(s[:, :OUT] * 2).tolist()!r}, dtype='float32')}}" for s in seqs)
    cfg = tmp_path / "train.config"
    cfg.write_text(net.config_code() + f"""
extern_data["classes"] = {{"dim_tags": [batch_dim, time_dim, Dim({OUT}, name='classes_feature')], "dtype": "float32"}}
network["loss"] = {{"class": "copy", "from": "output", "loss": "mse", "target": "classes"}}
task = "train"
train = {{"class": "StaticDataset", "data": [{data}], "output_dim": {{"data": [{F_IN}, 2], "classes": [{OUT}, 2]}}}}
num_epochs = 8
learning_rate = 0.01
optimizer = {{"class": "adam"}}
batch_size = 1000
model = {str(tmp_path / "model")!r}
learning_rate_file = {str(tmp_path / "lr.txt")!r}
""")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", DISABLE_CUDA="1")
    proc = subprocess.run([sys.executable, "-m", "returnn", str(cfg)], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    scores = _scores(str(tmp_path / "lr.txt"))
    assert len(scores) == 8 and scores[8] < 0.7 * scores[1], scores
