"""``returnn_capture(..., nested=True)``: each module call that makes two or more layers is a RETURNN
``subnetwork`` (variables ``blocks.0/att/q/W``), references between them are relative (``base:``, ``att/k``).

Every case goes through ``assert_converts(..., nested=True)``: values and gradients of the network built from
the written nested config + checkpoint against torch, other lengths, a padded batch with NaN padding."""

import pytest
import torch
import torch.nn as nn
from test_returnn_entry import _forward_equals_torch, preload

from torchdispatch_returnn import convert_checkpoint, returnn_capture
from torchdispatch_returnn._backend import tf
from torchdispatch_returnn.testing import assert_converts

DYN = ({1: "time"},)
D = 5


class Att(nn.Module):
    def __init__(self):
        super().__init__()
        self.q, self.k, self.out = nn.Linear(D, D), nn.Linear(D, D), nn.Linear(D, D)
        self.pos = nn.Parameter(torch.randn(D))

    def forward(self, x):
        a = torch.softmax(self.q(x) @ self.k(x).transpose(1, 2) / D ** 0.5, -1)
        return self.out(a @ x + self.pos)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.att = Att()
        self.ff = nn.Sequential(nn.Linear(D, 2 * D), nn.ReLU(), nn.Linear(2 * D, D))
        self.norm = nn.LayerNorm(D)

    def forward(self, x):
        x = x + self.att(x)
        return self.norm(x + self.ff(x))


class Encoder(nn.Module):
    def __init__(self, n=2):
        super().__init__()
        self.inp = nn.Linear(D, D)
        self.blocks = nn.ModuleList([Block() for _ in range(n)])

    def forward(self, x):
        x = self.inp(x)
        for b in self.blocks:
            x = b(x)
        return x


def _sub(net_dict: dict, *path: str) -> dict:
    for name in path:
        assert net_dict[name]["class"] == "subnetwork", (name, net_dict[name])
        net_dict = net_dict[name]["subnetwork"]
    return net_dict


def test_blocks_become_subnetworks_with_module_named_variables(tmp_path):
    torch.manual_seed(0)
    net = assert_converts(Encoder().eval(), torch.randn(3, 11, D), dynamic_shapes=DYN, grads=True, nested=True)
    top = net.net_dict
    assert set(top) == {"inp", "blocks.0", "blocks.1", "output"}
    att = _sub(top, "blocks.1", "att")
    assert att["q"]["class"] == "linear" and att["q"]["from"] == "base:base:blocks.0"
    assert att["output"] == {"class": "copy", "from": "out"}
    assert _sub(top, "blocks.0")["add"]["from"] == ["base:inp", "att"]  # the residual: the subnetwork's result
    assert set(_sub(top, "blocks.0", "ff")) == {"0", "1", "2", "output"}
    # the written config trains from scratch (torch's initializers); the live nested network starts at zero
    assert _sub(top, "blocks.0", "ff")["0"]["forward_weights_init"].startswith("random_uniform_initializer(")
    live = net.nested.built.config.typed_value("network")
    assert _sub(live, "blocks.0", "ff")["0"]["forward_weights_init"] == 0
    assert net.param_map["blocks.1.att.q.weight"]["tf_vars"] == ["blocks.1/att/q/W"]
    assert net.param_map["blocks.1.att.q.weight"]["layer"] == "blocks.1/att/q"
    assert net.param_map["blocks.0.att.pos"]["tf_vars"] == ["blocks.0/att/pos"]
    assert net.param_map["blocks.0.ff.0.bias"]["tf_vars"] == ["blocks.0/ff/0/b"]
    assert net.param_map["blocks.0.norm.weight"]["tf_vars"] == ["blocks.0/norm/scale"]
    ckpt = net.save_checkpoint(str(tmp_path / "model"))
    saved = {name for name, _ in tf.train.list_variables(ckpt)}
    assert {v for e in net.param_map.values() for v in e["tf_vars"]} <= saved
    code = net.config_code()
    assert "\n    'blocks.0': {'class': 'subnetwork', 'from': [], 'subnetwork': {\n        'att': {" in code
    # the torch state_dict converts to the nested names too
    sd = {k: v.detach() for k, v in Encoder().state_dict().items()}
    out = convert_checkpoint(sd, net.param_map, str(tmp_path / "converted"), config=net.config_code())
    assert {name for name, _ in tf.train.list_variables(out)} >= {"blocks.1/att/q/W", "blocks.0/att/pos"}


class Shared(nn.Module):
    """One block called twice (shared weights), a module returning a tuple, a parameter of a child used
    by the parent, an identity module and a module computing a value nobody reads."""

    def __init__(self):
        super().__init__()
        self.block = nn.Sequential(nn.Linear(D, D), nn.Tanh())
        self.pair = Pair()
        self.skip = nn.Identity()

    def forward(self, x):
        y = self.block(self.block(x))
        a, b = self.pair(self.skip(y))
        return a * b + self.pair.scale


class Pair(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(D, D)
        self.unused = nn.Linear(D, 3)
        self.scale = nn.Parameter(torch.randn(D))

    def forward(self, x):
        self.unused(x)  # (a layer holding parameters that feeds nothing)
        h = self.lin(x)
        return torch.relu(h), torch.sigmoid(h) + x


def test_shared_block_tuple_results_and_unused_layers():
    torch.manual_seed(0)
    net = assert_converts(Shared().eval(), torch.randn(2, 8, D), dynamic_shapes=DYN, grads=True, nested=True)
    top = net.net_dict
    first, second = _sub(top, "block"), _sub(top, "block_1")
    assert second["0"]["reuse_params"] == "base:block/0" and "reuse_params" not in first["0"]
    pair = _sub(top, "pair")
    assert pair["unused"].get("is_output_layer") is True  # built, so its variables are in the checkpoint
    assert net.param_map["pair.unused.weight"]["tf_vars"] == ["pair/unused/W"]
    assert net.param_map["pair.scale"]["tf_vars"] == ["pair/scale"]
    # the second result of the tuple is read from outside the subnetwork by its path
    assert any(isinstance(d.get("from"), list) and any(f.startswith("pair/") for f in d["from"])
               for d in top.values())


class RnnBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.pre = nn.Conv1d(D, 6, 3, padding=1)
        self.lstm = nn.LSTM(6, 4, batch_first=True, bidirectional=True)
        self.att = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, x):
        h = torch.relu(self.pre(x.transpose(1, 2))).transpose(1, 2)
        h = self.lstm(h)[0]
        return self.att(h, h, h, need_weights=False)[0] + h


class RnnModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = RnnBlock()
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.enc(x))


def test_rnn_and_multihead_attention_inside_a_subnetwork():
    torch.manual_seed(0)
    net = assert_converts(RnnModel().eval(), torch.randn(3, 10, D), dynamic_shapes=DYN, grads=True, nested=True)
    enc = _sub(net.net_dict, "enc")
    assert enc["lstm"]["class"] == "concat"  # (both directions)
    assert net.param_map["enc.lstm.weight_ih_l0_reverse"]["tf_vars"] == ["enc/lstm/weight_ih_l0_reverse"]
    assert enc["att"]["class"] == "subnetwork"
    assert net.param_map["enc.att.in_proj_weight"]["tf_vars"][0].startswith("enc/att/")
    assert net.param_map["head.weight"]["tf_vars"] == ["head/W"]


def test_nested_run_and_flat_default_unchanged():
    torch.manual_seed(0)
    model, x = Encoder(1).eval(), torch.randn(2, 7, D)
    with torch.no_grad(), returnn_capture(dynamic_shapes=DYN, nested=True, progress=False) as net:
        model(x)
    with torch.no_grad():
        want = model(x).numpy()
    assert abs(net.run(x) - want).max() < 1e-5
    assert net.network.get_layer("blocks.0/att/q").params["W"].name == "blocks.0/att/q/W:0"
    with torch.no_grad(), returnn_capture(dynamic_shapes=DYN, progress=False) as flat:
        model(x)
    assert flat.nested is None and all(d["class"] != "subnetwork" for d in flat.net_dict.values())


def test_deep_nested_config_raises_the_recursion_limit():
    """RETURNN builds layers recursively through the subnetworks too: a config counts all its layers."""
    torch.manual_seed(0)
    with torch.no_grad(), returnn_capture(dynamic_shapes=DYN, nested=True, progress=False, self_check=False) as net:
        Encoder(6).eval()(torch.randn(2, 5, D))
    assert len(net.net_dict) < 10 and "sys.setrecursionlimit" in net.config_code()
    assert "sys.setrecursionlimit" in net.config_code(subnetwork="enc")


@pytest.mark.slow
def test_nested_network_as_subnetwork_with_preloaded_checkpoint_in_returnn(tmp_path):
    torch.manual_seed(0)
    model = Encoder().eval()
    with torch.no_grad(), returnn_capture(dynamic_shapes=DYN, nested=True, progress=False) as net:
        model(torch.randn(2, 9, D))
    code = net.config_code(subnetwork="enc")
    assert "'from': 'base:base:inp'" in code  # (relative references kept one level deeper)
    ckpt = net.save_checkpoint(str(tmp_path / "torch_model"))
    _forward_equals_torch(tmp_path, model, code, ckpt, [torch.randn(n, D) for n in (7, 12, 3)], preload(ckpt),
                          rtol=0.0)


NESTED_FILE = """
import torch
from torch import nn


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 8)
        self.ln = nn.LayerNorm(8)

    def forward(self, x):
        return self.ln(x + torch.tanh(self.lin(x)))


def build():
    return nn.Sequential(Block(), Block())
"""


def test_cli_convert_nested(tmp_path, capsys):
    from torchdispatch_returnn.cli import main
    from torchdispatch_returnn.runtime import ConfigNetwork

    file = tmp_path / "m.py"
    file.write_text(NESTED_FILE)
    out = tmp_path / "out"
    rc = main(["convert", f"{file}:build", "--shape", "2,5,8", "--dynamic", "1=time", "--nested", "--out", str(out)])
    assert rc == 0, capsys.readouterr()
    code = (out / "returnn.config").read_text()
    assert "'0': {'class': 'subnetwork'" in code and "'1': {'class': 'subnetwork'" in code
    fresh = ConfigNetwork(str(out / "returnn.config"), str(out / "model"))
    try:
        assert fresh.network.get_layer("1/lin").params["W"].name == "1/lin/W:0"
    finally:
        fresh.close()
