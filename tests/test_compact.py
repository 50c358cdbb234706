"""Compact, idiomatic output: layers that hold their module's parameters (``linear``, ``layer_norm``/``norm``,
``conv``, MultiheadAttention's packed in-projection), shared parameters and dims, few layers per op.

Every case goes through ``assert_converts`` with gradients (values and gradients against torch, other
lengths, a padded batch with NaN padding, the network rebuilt from the written config + checkpoint)."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from parity_helpers import Case, assert_padded

from torchdispatch_returnn import convert_checkpoint, returnn_capture
from torchdispatch_returnn.testing import assert_converts

DYN = ({1: "time"},)


def _classes(net) -> dict:
    return {name: d["class"] for name, d in net.net_dict.items()}


def _declared(net) -> list:
    """The dim declarations of the written config."""
    return net.dims.declarations(net.net_dict, net.extern_data)


def _dim_names(net) -> set:
    """The names of the dims the written config declares."""
    return {line.split("name=")[1].split("'")[1] for line in _declared(net)}


class TiedLM(nn.Module):
    """An embedding whose weight the output projection uses too (F.linear with the embedding's weight)."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(11, 6)
        self.proj = nn.Linear(6, 6)

    def forward(self, ids):
        return F.linear(torch.tanh(self.proj(self.emb(ids))), self.emb.weight)


def test_tied_weight_is_one_variable():
    torch.manual_seed(0)
    ids = torch.randint(0, 11, (3, 9))
    net = assert_converts(TiedLM().eval(), ids, dynamic_shapes=DYN, grads=True)
    variables = [n for n, c in _classes(net).items() if c == "variable"]
    assert variables == ["emb.weight"]  # one variable: the embedding and the output projection share it
    assert _classes(net)["proj"] == "linear"
    assert len(net.network.get_params_list()) == 3  # emb.weight, proj/W, proj/b


class TwoLinears(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 6), nn.Linear(6, 3, bias=False)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


def test_linear_holds_its_weight_in_returnns_layout(tmp_path):
    """``W`` is (in, out), RETURNN's layout (no ``use_transposed_weights``: its matmul with ``transpose_b`` is
    slower); the param map says how to transpose, and converted torch weights load into the written config.
    The live network's variables are TF1 reference variables (cheaper to build); the config RETURNN builds
    has its own kind."""
    torch.manual_seed(0)
    x = torch.randn(3, 9, 4)
    model = TwoLinears().eval()
    net = assert_converts(model, x, dynamic_shapes=DYN, grads=True)
    assert "use_transposed_weights" not in net.net_dict["a"] and net.param_map["a.weight"]["perm"] == [1, 0]
    assert net.param_map["a.bias"]["transform"].startswith("none")
    values = net.network.get_layer("a").params["W"].eval(session=net.session)
    assert values.shape == (4, 6) and (values == model.a.weight.detach().numpy().T).all()
    assert all(not hasattr(v, "handle") for v in net.network.get_params_list())  # (no resource variables)
    m2 = TwoLinears().eval()
    cfg = net.save_config(str(tmp_path / "net.config"))
    ckpt = convert_checkpoint(m2.state_dict(), net.param_map, str(tmp_path / "ck" / "model"), config=cfg)
    from torchdispatch_returnn import ConfigNetwork

    fresh = ConfigNetwork(cfg, ckpt)
    try:
        got = fresh.run(x[:2, :5])
        assert all(hasattr(v, "handle") for v in fresh.network.get_params_list())  # (RETURNN's default kind)
    finally:
        fresh.close()
    with torch.no_grad():
        torch.testing.assert_close(torch.as_tensor(got), m2(x[:2, :5]), rtol=1e-5, atol=1e-5)


def test_a_config_with_torch_layout_linear_weights_still_converts():
    """A config an earlier version wrote (``use_transposed_weights``: W as torch's (out, in)) gets its shapes right."""
    from returnn.tensor import Dim

    from torchdispatch_returnn.checkpoint import _held_params

    d_in, d_out = Dim(4, name="in"), Dim(6, name="out")
    old = {"class": "linear", "in_dim": d_in, "out_dim": d_out, "use_transposed_weights": True}
    assert _held_params(old) == {"W": (6, 4), "b": (6,)}
    assert _held_params({**old, "use_transposed_weights": False, "with_bias": False}) == {"W": (4, 6)}


class Reused(nn.Module):
    """A Linear whose weight is also used by another op after its layer took it."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(6, 5)

    def forward(self, x):
        return self.lin(x) * self.lin.weight.sum() + self.lin.bias


def test_parameter_used_again_shares_the_layers_variable():
    torch.manual_seed(0)
    net = assert_padded(Case("reused", Reused, [(3, 11, 6)], DYN))
    nd = net.net_dict
    shared = [d for d in nd.values() if d["class"] == "variable"]
    assert {d["param_name"] for d in shared} == {"W", "b"}  # variables reading lin's W and b
    assert all(d["reuse_params"]["map"][d["param_name"]]["reuse_layer"] == "lin" for d in shared)
    assert len(net.network.get_params_list()) == 2


class Norms(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln = nn.LayerNorm(6)
        self.plain = nn.LayerNorm(6, elementwise_affine=False)
        self.nobias = nn.LayerNorm(6, bias=False)
        self.two = nn.LayerNorm((4, 6))

    def forward(self, x):
        y = self.nobias(self.plain(self.ln(x)))
        return self.two(y.view(y.shape[0], y.shape[1] // 4, 4, 6))


def test_layer_norms_are_returnn_norm_layers():
    torch.manual_seed(0)
    m = Norms().eval()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_()
    net = assert_converts(m, torch.randn(3, 8, 6), dynamic_shapes=None, grads=True)
    nd = net.net_dict
    assert nd["ln"]["class"] == "layer_norm" and nd["ln"]["epsilon"] == 1e-5
    assert nd["plain"]["class"] == "norm" and not nd["plain"]["scale"] and not nd["plain"]["bias"]
    assert nd["nobias"]["class"] == "norm" and nd["nobias"]["scale"] and not nd["nobias"]["bias"]
    assert nd["two"]["class"] == "norm" and len(nd["two"]["axes"]) == 2
    assert net.param_map["two.weight"]["tf_vars"] == ["two/scale"]
    assert not [c for c in _classes(net).values() if c in ("variable", "reduce")]


class ConvTwice(nn.Module):
    """One Conv1d called twice (its params reused) and a depthwise conv."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 4, 3, padding=1)
        self.dw = nn.Conv1d(4, 4, 5, padding=2, groups=4)

    def forward(self, x):
        y = self.conv(torch.relu(self.conv(x.transpose(1, 2))))
        return self.dw(y).transpose(1, 2)


def test_conv_holds_its_weight_transposed(tmp_path):
    torch.manual_seed(0)
    net = assert_padded(Case("conv_twice", ConvTwice, [(3, 11, 4)], DYN))
    nd = net.net_dict
    assert nd["conv"]["class"] == nd["conv_1"]["class"] == "conv" and nd["conv_1"]["reuse_params"] == "conv"
    assert nd["dw"]["groups"] == 4 and "filter" not in nd["dw"]
    assert net.param_map["conv.weight"]["perm"] == [2, 1, 0]
    # new torch weights converted into a checkpoint (transposed as the param map says) load into the config
    m2 = ConvTwice().eval()
    cfg = net.save_config(str(tmp_path / "net.config"))
    ckpt = convert_checkpoint(m2.state_dict(), net.param_map, str(tmp_path / "ck" / "model"), config=cfg)
    from torchdispatch_returnn import ConfigNetwork

    x = torch.randn(2, 7, 4)
    fresh = ConfigNetwork(cfg, ckpt)
    try:
        got = fresh.run(x)
    finally:
        fresh.close()
    with torch.no_grad():
        torch.testing.assert_close(torch.as_tensor(got), m2(x), rtol=1e-5, atol=1e-5)


def test_multihead_attention_packed_projection_is_one_linear():
    torch.manual_seed(0)
    att = nn.MultiheadAttention(8, 2, batch_first=True).eval()

    class SelfAtt(nn.Module):
        def __init__(self):
            super().__init__()
            self.att = att

        def forward(self, x):
            return self.att(x, x, x, need_weights=False)[0] + x

    net = assert_converts(SelfAtt(), torch.randn(3, 9, 8), dynamic_shapes=DYN, grads=True)
    linears = {n: d for n, d in net.net_dict.items() if d["class"] == "linear"}
    assert len(linears) == 2  # the in-projection (3 * 8 outputs) and out_proj
    assert sorted(d["out_dim"].dimension for d in linears.values()) == [8, 24]
    assert net.param_map["att.in_proj_weight"]["tf_vars"][0].endswith("/W")
    assert not [n for n, c in _classes(net).items() if c == "variable"]


class Block(nn.Module):
    """A pre-LN transformer block as users write it."""

    def __init__(self, d=16, heads=4):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.ff1, self.ff2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        b, t, d = x.shape
        h = self.ln1(x)

        def split(y):
            return y.view(b, t, self.heads, d // self.heads).transpose(1, 2)

        q, k, v = split(self.q(h)), split(self.k(h)), split(self.v(h))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // self.heads), dim=-1)
        x = x + self.o((att @ v).transpose(1, 2).reshape(b, t, d))
        return x + self.ff2(F.gelu(self.ff1(self.ln2(x))))


def test_transformer_blocks_are_compact():
    torch.manual_seed(0)
    model = nn.Sequential(Block(), Block()).eval()
    net = assert_converts(model, torch.randn(3, 10, 16), dynamic_shapes=DYN, grads=True)
    classes = list(_classes(net).values())
    assert len(classes) <= 1.3 * len(net.parity)  # layers per captured op
    assert "copy" not in classes and "variable" not in classes
    # one dim per size origin: time, its key twin, the model dim, heads, head size, the feed-forward dim,
    # named by module path (without the index of the repeated block: every block uses them) and role
    assert _dim_names(net) == {"time", "data_feature", "heads", "head_dim", "time_kv", "ff1.linear_out"}
    assert "heads_dim = Dim(4, name='heads', kind=Dim.Types.Feature)" in net.config_code()
    with returnn_capture(dynamic_shapes=DYN) as net2:  # the residual adds need no renames
        model(torch.randn(3, 10, 16))
    assert not [n for n in net2.net_dict if "rename" in n and "matmul" not in n]
    # RETURNN's own layers for the residual adds and GELU; numbers in eval code without casts
    nd = net2.net_dict
    assert nd["0"] == {"class": "combine", "from": ["0.add", "0.ff2"], "kind": "add"}
    assert nd["0.gelu"] == {"class": "activation", "from": "0.ff1", "activation": "gelu",
                            "opts": {"approximate": False}}
    assert nd["0.div"]["eval"] == "source(0) / 2.0"


def test_elementwise_ops_become_combine_and_activation_layers():
    """Two tensors with +-*/, maximum/minimum: ``combine`` where one has all the result's dims (else ``eval``);
    one TF function RETURNN has by name: ``activation``; other lengths, padded batch and gradients as always."""

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.bias = nn.Parameter(torch.randn(8))

        def forward(self, x):
            a = torch.tanh(x) * torch.sigmoid(x)  # activation, activation, combine mul
            b = torch.maximum(a, x) - torch.relu(x) / (torch.exp(-x) + 2.0)  # combine maximum/sub/truediv, eval +2
            c = x[:, :, :1] + x[:, :1, :]  # neither has all dims: eval (broadcast)
            return b + self.bias + F.silu(x) + F.gelu(x, approximate="tanh") + c

    torch.manual_seed(0)
    net = assert_converts(M(), torch.randn(3, 10, 8), dynamic_shapes=DYN, grads=True)
    kinds = sorted(d.get("kind") or d.get("activation") for d in net.net_dict.values()
                   if d["class"] in ("combine", "activation"))
    assert kinds == sorted(["tanh", "sigmoid", "mul", "maximum", "relu", "exp", "truediv", "sub", "add", "silu",
                            "gelu", "add", "add", "add"]), kinds
    assert [d["opts"] for d in net.net_dict.values() if d.get("activation") == "gelu"] == [{"approximate": True}]
    evals = [d["eval"] for d in net.net_dict.values() if d["class"] == "eval"]
    assert "source(0) + 2.0" in evals and "source(0) + source(1)" in evals and not [e for e in evals if "2.0, " in e]


def test_broadcast_to_new_axes_is_a_combine_with_zeros():
    """``expand``/``broadcast_to``/``repeat_interleave`` onto axes the tensor lacks: a ``combine``
    (``add``; ``logical_or`` for bool) with a zeros ``constant`` of the missing axes, no ``eval``."""

    class M(nn.Module):
        def forward(self, x):
            b, t, f = x.shape
            y = x[:, :, :1].expand(b, t, f) * x  # (B, T, 1) -> (B, T, F)
            m = (x[:, :1, :] > 0).expand(b, t, f)  # bool
            r = torch.repeat_interleave(x, 2, dim=2)
            return torch.where(m, y, -y) + r[..., ::2] + r[..., 1::2]

    torch.manual_seed(0)
    net = assert_converts(M(), torch.randn(3, 10, 4), dynamic_shapes=DYN, grads=True)
    combines = [d for d in net.net_dict.values() if d["class"] == "combine" and d.get("allow_broadcast_all_sources")]
    assert sorted(d["kind"] for d in combines) == ["add", "add", "logical_or"], combines
    for d in combines:
        assert net.net_dict[d["from"][1]]["class"] == "constant" and net.net_dict[d["from"][1]]["value"] in (0.0, False)
    assert not [d for d in net.net_dict.values() if d["class"] == "eval" and "tf.add" in d["eval"]]


class ConvBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 6, 3, padding=1)
        self.bn = nn.BatchNorm1d(6)
        with torch.no_grad():  # (statistics and affine parameters that are not the identity)
            self.bn.running_mean.normal_()
            self.bn.running_var.uniform_(0.5, 2.0)
            self.bn.weight.normal_()
            self.bn.bias.normal_()

    def forward(self, x):
        return self.bn(self.conv(x.transpose(1, 2))).transpose(1, 2)


def test_batch_norm_is_one_layer_holding_the_statistics():
    torch.manual_seed(0)
    net = assert_padded(Case("conv_bn", lambda: ConvBN().eval(), [(3, 11, 4)], DYN))
    assert _classes(net) == {"conv": "conv", "bn": "batch_norm", "output": "transpose"}
    assert net.net_dict["bn"]["epsilon"] == 1e-5 and net.net_dict["bn"]["momentum"] == 0.1
    assert net.param_map["bn.running_var"]["tf_vars"] == ["bn/batch_norm/v2_variance"]
    assert net.param_map["bn.weight"]["tf_vars"] == ["bn/batch_norm/v2_gamma"]
    trainable = {v.op.name for v in net.graph.get_collection("trainable_variables")}
    assert "bn/batch_norm/v2_gamma" in trainable and "bn/batch_norm/v2_mean" not in trainable


class ConvModule(nn.Module):
    """A Conformer-style conv module: pointwise conv + GLU, depthwise conv, norm, pointwise conv; and the
    attention of nn.MultiheadAttention, whose averaged weights are returned but not read."""

    def __init__(self, d=8):
        super().__init__()
        self.att = nn.MultiheadAttention(d, 2, batch_first=True)
        self.pw1, self.dw = nn.Conv1d(d, 2 * d, 1), nn.Conv1d(d, d, 3, padding=1, groups=d)
        self.pw2 = nn.Conv1d(d, d, 1)

    def forward(self, x):
        x = x + self.att(x, x, x)[0]  # (need_weights=True: the weights are computed by torch, read by nobody)
        y = F.glu(self.pw1(x.transpose(1, 2)), dim=1)
        return x + self.pw2(torch.relu(self.dw(y))).transpose(1, 2)


def test_blocks_share_dims_and_the_config_has_no_unread_layers():
    torch.manual_seed(0)
    model = nn.Sequential(ConvModule(), ConvModule(), ConvModule()).eval()
    net = assert_converts(model, torch.randn(2, 9, 8), dynamic_shapes=DYN, grads=True)
    # time, its key twin, the model dim, the in-projection (3 * 8) and its parts (3, heads, head size),
    # the heads merged, the pointwise conv's 16: the same for all 3 blocks
    assert len(_declared(net)) <= 9, _declared(net)
    # the roles of MultiheadAttention's dims, without the block index (all 3 blocks use them)
    assert {"time", "data_feature", "att.in_proj", "att.qkv", "att.heads", "att.head_dim", "att.time_kv",
            "att.embed"} <= _dim_names(net), _dim_names(net)
    dw = [d for n, d in net.net_dict.items() if d["class"] == "conv" and d.get("groups", 1) > 1]
    assert len(dw) == 3 and len({id(d["out_dim"]) for d in dw}) == 1
    # the depthwise conv maps the model dim onto itself (no dim of its own), as a person would write it
    assert all(d["out_dim"] is d["in_dim"] for d in dw)
    # GLU over the conv's channels (its only static axis, RETURNN's feature axis) is RETURNN's gating layer
    gates = [d for d in net.net_dict.values() if d["class"] == "gating"]
    assert len(gates) == 3 and all(d["activation"] == "identity" for d in gates)
    merges = [d for d in net.net_dict.values() if d["class"] == "merge_dims"]
    assert len(merges) == 3 and len({id(d["out_dim"]) for d in merges}) == 1
    # the averaged attention weights stay in the live network, not in the written config
    pruned = set(net.builder.network.layers_desc) - set(net.net_dict)
    assert pruned == {f"{i}.att.multi_head_attention_forward_1" for i in range(3)}  # (the second result)


def test_lstm_final_states_nobody_reads_are_not_written():
    torch.manual_seed(0)
    lstm = nn.LSTM(4, 5, batch_first=True, bidirectional=True)

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = lstm

        def forward(self, x):
            return self.lstm(x)[0]

    net = assert_converts(M().eval(), torch.randn(3, 7, 4), dynamic_shapes=DYN, grads=True)
    assert len(net.net_dict) < len(net.builder.network.layers_desc)
    assert not [n for n, d in net.net_dict.items() if d["class"] == "gather"]  # (the last frames)
    assert {k for k in net.param_map} == {k for k, _ in lstm.named_parameters(prefix="lstm")}


class MaskedBlock(nn.Module):
    """Makes the key-padding mask from ``lengths`` anew each call, as torchaudio's Conformer layers do."""

    def __init__(self, d=8):
        super().__init__()
        self.att = nn.MultiheadAttention(d, 2, batch_first=True)

    def forward(self, x, lengths):
        pad = torch.arange(x.shape[1])[None, :] >= lengths[:, None]
        bias = torch.zeros(pad.shape).masked_fill(pad, float("-inf"))
        return x + self.att(x, x, x, key_padding_mask=bias, need_weights=False)[0]


class MaskedStack(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([MaskedBlock() for _ in range(3)])

    def forward(self, x, lengths):
        for blk in self.blocks:
            x = blk(x, lengths)
        return x


def test_a_computation_made_again_is_one_layer():
    """Each block's mask is the same computation of the same inputs: one set of layers, which the later blocks
    read (flat and nested); parameter layers are never merged (the blocks' attentions stay their own)."""
    for nested in (False, True):
        torch.manual_seed(0)
        model = MaskedStack().eval()
        x, lengths = torch.randn(3, 9, 8), torch.tensor([9, 7, 5])
        net = assert_converts(model, x, lengths, dynamic_shapes=(DYN[0], {}), lengths={"lengths": "time"},
                              grads=True, nested=nested)
        flat = net.builder.network.layers_desc  # (the live network: flat in both cases)
        masks = [n for n, d in flat.items() if d["class"] == "constant" and d.get("value") == 0.0]
        assert len(masks) == 1, masks  # (torch.zeros: made by block 0, read by blocks 1 and 2)
        assert sum(net.builder.shared.values()) >= 2 * 3 - 2  # (blocks 1, 2: the zeros and the masked_fill)
        linears = [n for n, d in flat.items() if d["class"] == "linear"]
        assert len(linears) == 3 * 2, linears  # (each block's in-projection and out-projection)
        if not nested:
            assert [d["class"] for d in net.net_dict.values()].count("constant") == 1


def test_a_recurrent_module_declares_one_set_of_dims():
    """All layers and directions of an LSTM share the gates dim (weights and biases), the hidden dim (the model's
    dim of that size) and the two directions' dim; the final states nobody reads declare nothing."""
    torch.manual_seed(0)

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(4, 6)
            self.lstm = nn.LSTM(6, 6, num_layers=2, bidirectional=True, batch_first=True)

        def forward(self, x):
            return self.lstm(self.proj(x))[0]

    net = assert_converts(M().eval(), torch.randn(3, 7, 4), dynamic_shapes=DYN, grads=True)
    assert _dim_names(net) == {"time", "data_feature", "proj.linear_out", "lstm.gates", "lstm.hc",
                               "lstm.bidirectional"}, _declared(net)
    shapes = {n: d["shape"] for n, d in net.net_dict.items() if d["class"] == "variable"}
    assert len(shapes) == 16 and len({id(s[0]) for s in shapes.values()}) == 1  # (the gates)
    hidden = net.net_dict["proj"]["out_dim"]  # (6: the model's dim of that size)
    assert all(s[1] is hidden for n, s in shapes.items() if "weight_hh" in n or n.endswith("weight_ih_l0"))
    assert all(s[1] is shapes["lstm.weight_ih_l1"][1] for n, s in shapes.items() if "weight_ih_l1" in n)


def test_gru_and_projected_lstm_weights_take_the_module_dims():
    torch.manual_seed(0)
    for rnn in (nn.GRU(4, 5, batch_first=True), nn.RNN(4, 5, batch_first=True), nn.LSTM(4, 5, proj_size=3,
                                                                                          batch_first=True)):
        net = assert_converts(rnn.eval(), torch.randn(2, 6, 4), dynamic_shapes=DYN, grads=True)
        names = _dim_names(net)
        assert not [n for n in names if ":" in n or n.startswith("param")], names  # (the module's dims, not per weight)


class WeightNormConvs(nn.Module):
    """Weight-normed convs: each weight is made by an ``eval`` from ``weight_v`` and ``weight_g`` before its conv,
    so no op names their axes."""

    def __init__(self):
        super().__init__()
        wn = nn.utils.parametrizations.weight_norm
        self.convs = nn.Sequential(*[wn(nn.Conv1d(6, 6, 3, padding=1)) for _ in range(4)])

    def forward(self, x):
        return self.convs(x.transpose(1, 2)).transpose(1, 2)


def test_parameter_axes_no_op_names_share_one_dim_per_size():
    torch.manual_seed(0)
    net = assert_converts(WeightNormConvs().eval(), torch.randn(2, 9, 6), dynamic_shapes=DYN, grads=True)
    shapes = {n: d["shape"] for n, d in net.net_dict.items() if d["class"] == "variable"}
    assert len([n for n in shapes if n.endswith("original1")]) == 4, list(shapes)  # (the four weight_v)
    # weight_v (6, 6, 3) and weight_g (6, 1, 1) of all four convs: sizes 6, 6, 3, 1, 1 -> five dims, not 24
    assert len({id(x) for s in shapes.values() for x in s}) <= 6, shapes  # (and the biases': the conv's out dim)
    assert len(_declared(net)) <= 9, _declared(net)


def test_a_size_one_axis_added_and_broadcast_away_writes_no_layers():
    """``arange(T) >= lengths.unsqueeze(1)``: the compare squeezes the unsqueezed axis again, which is the
    unsqueeze's input (no expand_dims and squeeze pair, no size-1 dim in the config)."""

    class M(nn.Module):
        def forward(self, x, lengths):
            pad = torch.arange(x.shape[1]).expand(x.shape[0], x.shape[1]) >= lengths.unsqueeze(1)
            return x.masked_fill(pad[..., None], 0.0)

    net = assert_converts(M(), torch.randn(3, 9, 4), torch.tensor([9, 7, 5]), dynamic_shapes=(DYN[0], {}),
                          lengths={"lengths": "time"}, grads=True)
    assert not {"expand_dims", "squeeze"} & set(_classes(net).values()), _classes(net)
    assert _dim_names(net) == {"time", "data_feature"}


class ChunkedAttention(nn.Module):
    """q, k and v chunked (and split) from one projection: GPT-2's and SpeechBrain's idiom, plus a GLU by hand."""

    def __init__(self):
        super().__init__()
        self.qkv, self.gate = nn.Linear(8, 3 * 8), nn.Linear(8, 2 * 8)

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(8), dim=-1) @ v
        a, b = self.gate(att).split(8, dim=-1)
        h = a * torch.sigmoid(b)
        lo, mid, hi = h.split([3, 2, 3], dim=-1)  # (pieces of one size share a dim, the others do not)
        return torch.cat((-hi, mid, lo), dim=-1), lo.unsqueeze(-1) * hi.unsqueeze(-2)


def test_pieces_of_one_split_share_their_dim():
    torch.manual_seed(0)
    net = assert_converts(ChunkedAttention().eval(), torch.randn(3, 9, 8), dynamic_shapes=DYN, grads=True)
    nd = net.net_dict
    slices = [d for d in nd.values() if d["class"] == "slice"]
    q, k, v = (d["out_dim"] for d in slices[:3])
    assert q is k is v  # one dim for the three pieces: no renames to line them up
    assert slices[3]["out_dim"] is slices[4]["out_dim"]  # (the GLU's halves)
    lo, mid, hi = (d["out_dim"] for d in slices[5:8])
    assert lo is hi and mid is not lo
    assert nd["mul"]["from"] == ["split", "sigmoid"]  # (the GLU's halves line up with no rename)


class Rotary(nn.Module):
    """Rotary position embeddings with LLaMA's ``rotate_half`` (slices, concatenated the other way round)."""

    def __init__(self):
        super().__init__()
        self.q, self.k = nn.Linear(8, 8), nn.Linear(8, 8)

    def forward(self, x):
        def rotate_half(y):
            return torch.cat((-y[..., 4:], y[..., :4]), dim=-1)

        pos = torch.arange(x.shape[1], dtype=x.dtype)[:, None] * torch.arange(1, 9, dtype=x.dtype) / 8
        q, k = (y * torch.cos(pos) + rotate_half(y) * torch.sin(pos) for y in (self.q(x), self.k(x)))
        return torch.softmax(q @ k.transpose(1, 2), dim=-1) @ x


def test_an_axis_cut_and_concatenated_back_keeps_its_dim():
    torch.manual_seed(0)
    net = assert_converts(Rotary().eval(), torch.randn(3, 9, 8), dynamic_shapes=DYN, grads=True)
    nd = net.net_dict
    cats = [d for d in nd.values() if d["class"] == "concat"]
    assert len(cats) == 2 and cats[0]["out_dim"] is cats[1]["out_dim"] is nd["q"]["out_dim"], cats
    slices = [d["out_dim"] for d in nd.values() if d["class"] == "slice"]
    assert len(slices) == 4 and len({id(d) for d in slices}) == 2  # q's and k's halves: one dim per half
    # time, the model dim, the halves, the attention's key axis and the arange constant's axis; no cat dim
    assert len(_declared(net)) == 6 and not any("cat" in n for n in _dim_names(net)), _declared(net)
    assert [nd[f"mul_{i}"]["from"][0] for i in (2, 4)] == ["cat", "cat_1"]  # (no rename before the products)


def test_the_live_network_is_a_snapshot_of_the_weights_loaded_in_bounded_runs(monkeypatch):
    """The torch values are set in runs of at most ``params.LOAD_BYTES`` (here: one variable per run), and the
    live network's variables own their values: changing the torch model afterwards leaves the network as captured."""
    from torchdispatch_returnn import params

    monkeypatch.setattr(params, "LOAD_BYTES", 1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.LayerNorm(6), nn.Linear(6, 3)).eval()
    x = torch.randn(2, 5, 4)
    with torch.no_grad():
        want = model(x)
    net = assert_converts(model, x, dynamic_shapes=DYN)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    torch.testing.assert_close(torch.as_tensor(net.run(x)), want, rtol=1e-5, atol=1e-5)
    scale = net.network.get_layer("1").params["scale"].eval(session=net.session)
    assert (scale == 1.0).all()  # (LayerNorm's weight as captured, not as changed)
