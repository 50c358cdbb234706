"""The capture API as a user meets it: inputs, outputs, dims, parameters, control flow."""

import numpy as np
import pytest
import torch
import torch.nn as nn
from parity_helpers import Case, assert_parity

from torchdispatch_returnn import returnn_capture


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 5)
        self.norm = nn.LayerNorm(5)

    def forward(self, x):
        return torch.tanh(self.norm(self.lin(x)))


def test_quickstart_flow(tmp_path):
    torch.manual_seed(0)
    model = Small().eval()
    x = torch.randn(3, 20, 8)
    with returnn_capture(dynamic_shapes=({1: "time"},)) as net:
        y = model(x)
    assert net.parity.ok
    torch.testing.assert_close(y.as_subclass(torch.Tensor), model(x))
    assert type(y + 1) is torch.Tensor  # after the block: plain torch again
    code = net.config_code()
    assert "behavior_version" in code and "extern_data" in code and "network" in code
    x2 = torch.randn(2, 33, 8)
    out = net.run(x2)
    np.testing.assert_allclose(out, model(x2).detach().numpy(), rtol=1e-5, atol=1e-5)
    assert out.shape == (2, 33, 5)
    assert set(net.param_map) == {"lin.weight", "lin.bias", "norm.weight", "norm.bias"}
    assert str(net.parity).startswith("parity: OK")


def test_time_major_input():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(6, 4)

        def forward(self, x):  # (T, B, F)
            return self.lin(x).transpose(0, 1)

    assert_parity(Case("time_major", M, [(9, 3, 6)], ({0: "time", 1: "batch"},)))


def test_two_dynamic_axes():
    assert_parity(Case("conv2d_dyn_hw", lambda: nn.Conv2d(2, 3, 3, stride=2, padding=1), [(2, 2, 11, 9)],
                       ({2: "height", 3: "width"},)))


def test_two_inputs_dict_spec_and_tuple_output():
    class M(nn.Module):
        def forward(self, x, mem):
            s = x @ mem.transpose(1, 2)
            return s.softmax(-1) @ mem, s

    torch.manual_seed(0)
    x, mem = torch.randn(2, 7, 4), torch.randn(2, 5, 4)
    with returnn_capture(dynamic_shapes={"x": {1: "time"}, "mem": {1: "mem_time"}}) as net:
        y, s = M()(x, mem)
    assert net.parity.ok
    assert list(net.extern_data) == ["data", "mem"]
    assert "output" in net.net_dict and "output_1" in net.net_dict
    x2, m2 = torch.randn(2, 10, 4), torch.randn(2, 3, 4)
    y2, s2 = net.run(x2, m2)
    ey, es = M()(x2, m2)
    np.testing.assert_allclose(y2, ey.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(s2, es.numpy(), rtol=1e-5, atol=1e-5)


def test_free_function_input_output():
    torch.manual_seed(0)
    w = torch.randn(4, 3)
    x = torch.randn(2, 6, 4)
    with returnn_capture() as net:
        xi = net.input(x, dynamic={1: "time"})
        h = torch.relu(xi @ w)
        net.output(h * 2)
    assert net.parity.ok
    out = net.run(torch.randn(2, 9, 4))
    assert out.shape == (2, 9, 3)


def test_module_called_twice_shares_parameters():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.ff = nn.Linear(4, 4)

        def forward(self, x):
            return self.ff(torch.relu(self.ff(x)))

    net = assert_parity(Case("shared", M, [(2, 7, 4)], ({1: "time"},)))
    nd = net.net_dict
    assert nd["ff"]["class"] == nd["ff_1"]["class"] == "linear"  # the layer holds W and b; the second call reuses them
    assert "reuse_params" not in nd["ff"] and nd["ff_1"]["reuse_params"] == "ff"
    assert not [n for n, d in nd.items() if d["class"] == "variable"]
    assert len(net.network.get_params_list()) == 2
    assert {k: v["tf_vars"] for k, v in net.param_map.items()} == {"ff.weight": ["ff/W"], "ff.bias": ["ff/b"]}


def test_python_control_flow_and_sizes():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)

        def forward(self, x, add_bias: bool = True):
            b, t, f = x.shape
            assert f == 4
            for _ in range(2):
                x = self.lin(x)
            if x.shape[-1] == 4:
                x = x.reshape(b, t, 2, 2).sum(-1)
            x += 1.0  # in place
            return sum([x, x * 2])  # builtin sum: 0 + x + ...

    assert_parity(Case("control_flow", M, [(2, 9, 4)], ({1: "time"},)))


def test_inplace_on_input():
    class M(nn.Module):
        def forward(self, x):
            x += 1
            return x * 2

    assert_parity(Case("inplace_input", M, [(2, 5, 3)], ({1: "time"},)))


def test_const_with_batch_size_from_shape():
    class M(nn.Module):
        def forward(self, x):
            z = x.new_zeros((2, x.shape[0], 13))
            return z[0] + x[:, :1]

    assert_parity(Case("new_zeros_batch", M, [(3, 13)], None))


def test_int_token_ids():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(30, 8)
            self.out = nn.Linear(8, 30)

        def forward(self, tokens):
            return self.out(self.emb(tokens)).log_softmax(-1)

    assert_parity(Case("tokens", M, [(2, 9)], ({1: "time"},), dtypes=[torch.int64], high=30))


def test_nested_sequential_moduledict():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleDict({"a": nn.Sequential(nn.Linear(4, 6), nn.ReLU()), "b": nn.Linear(6, 2)})

        def forward(self, x):
            return self.blocks["b"](self.blocks["a"](x))

    net = assert_parity(Case("moduledict", M, [(2, 5, 4)], ({1: "time"},)))
    assert "blocks.a" in net.net_dict and "blocks.b" in net.net_dict and "blocks.a.0" in net.net_dict


def test_module_subclass_with_own_forward_is_traced():
    class FP32GroupNorm(nn.GroupNorm):
        def forward(self, x):
            out = nn.functional.group_norm(x.float(), self.num_groups, self.weight.float(), self.bias.float(),
                                           self.eps)
            return out.type_as(x)

    assert_parity(Case("fp32_groupnorm", lambda: nn.Sequential(FP32GroupNorm(5, 5)), [(3, 5, 17)], ({2: "time"},)))


def test_user_gets_torch_values_and_prints_work(capsys):
    class M(nn.Module):
        def forward(self, x):
            print("shape", tuple(x.shape), x.sum().item() > -1e9)
            return x * 3

    x = torch.randn(2, 4, 3)
    with returnn_capture(dynamic_shapes=({1: "time"},)) as net:
        y = M()(x)
    assert "shape (2, 4, 3) True" in capsys.readouterr().out
    torch.testing.assert_close(y.as_subclass(torch.Tensor), x * 3)
    assert net.parity.ok


def test_register_user_handler():
    import torchdispatch_returnn as tdr

    class M(nn.Module):
        def forward(self, x):
            return torch.vander(x, N=3) * 2

    def vander(ctx, x, N=None, increasing=False):  # columns x^(N-1), ..., x, 1
        if N is None or increasing:
            raise NotImplementedError("vander without N, or increasing")
        r = ctx.ref(x)
        powers = ", ".join(f"x0 ** {k}" for k in reversed(range(N)))
        return ctx.tf_op(f"tf.stack([{powers}], -1)", [r], list(r.dims) + [ctx.dims.static(N, "vander_cols")])

    assert tdr.handlers.lookup(torch.vander) is None, "pick a torch callable without a built-in handler"
    tdr.register(torch.vander, vander)
    try:
        net = assert_parity(Case("user_handler", M, [(5,)], None))
        assert "torch.vander" in {r.torch_op for r in net.parity}
        with pytest.raises(ValueError, match="already has a handler"):
            tdr.register(torch.vander, vander)
    finally:
        tdr.unregister(torch.vander)
    assert tdr.handlers.lookup(torch.vander) is None
