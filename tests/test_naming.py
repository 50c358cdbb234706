"""Layer names: module attribute paths + op names, exact."""

import torch
import torch.nn as nn

from torchdispatch_returnn import returnn_capture


class FF(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin1 = nn.Linear(4, 6)
        self.lin2 = nn.Linear(6, 4)

    def forward(self, x):
        return self.lin2(torch.relu(self.lin1(x)))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([FF(), FF()])

    def forward(self, x):
        for layer in self.layers:
            x = x + layer(x)
        return x


def _capture(model, x):
    with returnn_capture(dynamic_shapes=({1: "time"},)) as net:
        model(x)
    assert net.parity.ok
    return net


def test_exact_layer_names():
    net = _capture(Net().eval(), torch.randn(2, 5, 4))
    names = list(net.net_dict)
    # a module's result is its last op's layer, renamed to the module path (no copy layer); a module whose
    # result is its last child's (FF returns lin2's) takes that layer's name over; each Linear is one
    # ``linear`` layer holding its weight and bias, and its output takes the model's dim of that size (the
    # input's), so the residual add needs no rename
    expected_ff = lambda p: [f"{p}.lin1", f"{p}.relu", p]
    assert names == expected_ff("layers.0") + ["add"] + expected_ff("layers.1") + ["add_1", "output"]
    assert net.net_dict["layers.0.relu"]["from"] == "layers.0.lin1"  # (an activation layer)
    assert net.net_dict["layers.0"]["class"] == "linear" and net.net_dict["layers.0"]["from"] == "layers.0.relu"
    assert not any(d["class"] == "copy" for d in net.net_dict.values())
    assert net.net_dict["add"]["from"] == ["data", "layers.0"]
    assert net.net_dict["add_1"]["from"] == ["add", "layers.1"]
    assert net.net_dict["output"]["from"] == "add_1"


def test_variable_names_follow_state_dict_and_checkpoint(tmp_path):
    import tensorflow as tf

    net = _capture(Net().eval(), torch.randn(2, 5, 4))
    ckpt = net.save_checkpoint(str(tmp_path / "model"))
    stored = {name for name, _ in tf.train.list_variables(ckpt)}
    assert set(net.param_map) == set(Net().state_dict())
    for key, entry in net.param_map.items():  # a Linear's weight and bias are its linear layer's W and b
        module, name = key.rsplit(".", 1)
        layer = "layers.0" if module == "layers.0.lin2" else "layers.1" if module == "layers.1.lin2" else module
        assert entry["tf_vars"] == [f"{layer}/{dict(weight='W', bias='b')[name]}"]
        assert entry["tf_vars"][0] in stored
        assert entry["layer"] == layer
    assert "layers.1/b" in stored


def test_repeated_call_names_and_root_ops():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.act = nn.Tanh()

        def forward(self, x):
            return self.act(self.act(x)) * 2 + x * 3

    net = _capture(M(), torch.randn(2, 5, 4))
    assert list(net.net_dict) == ["act", "act_1", "mul", "mul_1", "add", "output"]  # calls of a module: _1, _2


def _dim_names(net) -> list:
    return [line.split("name=")[1].split("'")[1] for line in net.dims.declarations(net.net_dict, net.extern_data)]


def test_dim_names_are_module_path_and_role():
    # the hidden dim of both FF blocks: made by layers.0.lin1, used by layers.1 (an FF too): no index
    net = _capture(Net().eval(), torch.randn(2, 5, 4))
    assert _dim_names(net) == ["time", "data_feature", "layers.lin1.linear_out"]
    code = net.config_code()
    assert "layers_lin1_linear_out_dim = Dim(6, name='layers.lin1.linear_out', kind=Dim.Types.Feature)" in code
    assert "'out_dim': layers_lin1_linear_out_dim" in code

    class Heads(nn.Module):  # one module: its dims keep no index to drop; roles from the batched products
        def __init__(self):
            super().__init__()
            self.q, self.k = nn.Linear(6, 6), nn.Linear(6, 6)

        def forward(self, x):
            b, t, _ = x.shape
            q = self.q(x).view(b, t, 2, 3).transpose(1, 2)
            k = self.k(x).view(b, t, 2, 3).transpose(1, 2)
            return (torch.softmax(q @ k.transpose(-1, -2), -1) @ k).transpose(1, 2).reshape(b, t, 6)

    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.ModuleList([Heads(), nn.Linear(6, 6)])

        def forward(self, x):
            return self.enc[0](x) + self.enc[1](x)

    net = _capture(Two().eval(), torch.randn(2, 5, 6))
    assert _dim_names(net)[:5] == ["time", "data_feature", "enc.0.heads", "enc.0.head_dim", "enc.0.time_kv"]
