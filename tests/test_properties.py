"""Property-based tests: random op chains over (B, T, F) with a dynamic T, drawn from the supported
vocabulary of speech encoders (linear, activations, strided/dilated convs, pooling, pads, slices,
cat, LSTM/GRU, self-attention, norms, reductions over time). Each chain goes through
:func:`~torchdispatch_returnn.testing.assert_converts`: per-op parity, self-check and gradient
parity at capture, other lengths, a padded batch with NaN padding per sequence, and the network
rebuilt from the written config + checkpoint. Hypothesis runs derandomized (a fixed seed) with a
fixed number of examples; every failure it found is a case in ``REGRESSIONS``."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from parity_helpers import COVERED
from torch import nn

from torchdispatch_returnn.testing import assert_converts

T0 = 16  # capture length: padded sequences of 16, 12, 8; at most two halvings keep every sequence >= 2


class Chain(nn.Module):
    """Steps applied in order to a (B, T, F) tensor; each keeps the layout (time may shrink)."""

    def __init__(self, steps: list):
        super().__init__()
        self.names = [name for name, _, _ in steps]
        self.mods = nn.ModuleList([mod for _, _, mod in steps])
        self.fns = [fn for _, fn, _ in steps]

    def forward(self, x):
        for fn, mod in zip(self.fns, self.mods):
            x = fn(mod, x)
        return x

    def __repr__(self):
        return f"Chain({self.names})"


def _time_conv(m, x):
    return m(x.transpose(1, 2)).transpose(1, 2)


def _rnn(m, x):
    return m(x)[0]


def _attention(m, x):
    return m(x, x, x, need_weights=False)[0]


@st.composite
def steps(draw, f: int, downsample_left: int) -> tuple:
    """One step on features ``f``: (name, fn(module, x), module or identity, new f, halvings used)."""
    kinds = ["linear", "act", "conv", "pad", "slice", "cat_feat", "cat_time", "rnn", "attention", "norm",
             "cumsum", "center", "softmax_time"] + (["conv_stride", "pool"] if downsample_left else [])
    kind = draw(st.sampled_from(kinds))
    ident = nn.Identity()
    if kind == "linear":
        g = draw(st.sampled_from([4, 6, 8]))
        return (f"linear{g}", lambda m, x: m(x), nn.Linear(f, g)), g, 0
    if kind == "act":
        name = draw(st.sampled_from(["relu", "tanh", "gelu", "sigmoid", "silu"]))
        act = getattr(F, name)
        return (name, lambda m, x, fn=act: fn(x), ident), f, 0
    if kind == "conv":
        k, d = draw(st.sampled_from([1, 3, 5])), draw(st.sampled_from([1, 2]))
        groups = draw(st.sampled_from([1, f]))
        return (f"conv k{k} d{d} g{groups}", _time_conv,
                nn.Conv1d(f, f, k, padding=d * (k - 1) // 2, dilation=d, groups=groups)), f, 0
    if kind == "conv_stride":
        k = draw(st.sampled_from([2, 3, 4]))
        return (f"conv k{k} s2", _time_conv, nn.Conv1d(f, f, k, stride=2, padding=k // 2)), f, 1
    if kind == "pool":
        which = draw(st.sampled_from(["max", "avg"]))
        mod = nn.MaxPool1d(2, 2) if which == "max" else nn.AvgPool1d(2, 2)
        return (f"{which}pool", _time_conv, mod), f, 1
    if kind == "pad":
        left, right = draw(st.integers(0, 2)), draw(st.integers(0, 2))
        mode = draw(st.sampled_from(["constant", "replicate"]))
        return (f"pad {left},{right} {mode}",
                lambda m, x, p=(left, right), md=mode: F.pad(x.transpose(1, 2), p, mode=md).transpose(1, 2),
                ident), f, 0
    if kind == "slice":
        which = draw(st.sampled_from(["[:, 1:]", "[:, :-1]", "[..., :2]"]))
        fn = {"[:, 1:]": lambda m, x: x[:, 1:], "[:, :-1]": lambda m, x: x[:, :-1],
              "[..., :2]": lambda m, x: x[..., :2]}[which]
        return (f"slice {which}", fn, ident), (2 if which == "[..., :2]" else f), 0
    if kind == "cat_feat":
        return ("cat feat", lambda m, x: torch.cat([x, x * 2], -1), ident), 2 * f, 0
    if kind == "cat_time":
        return ("cat time", lambda m, x: torch.cat([x, -x], 1), ident), f, 0
    if kind == "rnn":
        cls = draw(st.sampled_from([nn.LSTM, nn.GRU]))
        bi = draw(st.booleans())
        h = 4
        return (f"{cls.__name__} bi={bi}", _rnn, cls(f, h, batch_first=True, bidirectional=bi)), h * (1 + bi), 0
    if kind == "attention":
        heads = draw(st.sampled_from([h for h in (1, 2) if f % h == 0]))
        return (f"mha h{heads}", _attention, nn.MultiheadAttention(f, heads, batch_first=True)), f, 0
    if kind == "norm":
        return ("layer_norm", lambda m, x: m(x), nn.LayerNorm(f)), f, 0
    if kind == "cumsum":
        return ("cumsum time", lambda m, x: x.cumsum(1), ident), f, 0
    if kind == "center":
        # (half the mean: the exact centering makes the last frame of a later cumsum over time pure rounding
        # noise, which a layer norm then blows up differently in torch and TF; found by hypothesis)
        return ("x - mean/2 over time", lambda m, x: x - 0.5 * x.mean(1, keepdim=True), ident), f, 0
    return ("softmax time", lambda m, x: x.softmax(1), ident), f, 0


@st.composite
def chains(draw) -> Chain:
    f, left, out = 4, 2, []
    for _ in range(draw(st.integers(1, 6))):
        step, f, used = draw(steps(f, left))
        left -= used
        out.append(step)
    return Chain(out)


def _check(chain: Chain) -> None:
    torch.manual_seed(0)
    x = torch.randn(3, T0, 4)
    net = assert_converts(chain, x, dynamic_shapes=({1: "time"},), other_lengths=[11, 23], grads=True)
    COVERED.update(net.ops_seen)


#: chains hypothesis found failing, kept as cases (what was wrong)
REGRESSIONS = [
    # the capture's values differed from plain torch by rounding: eval-mode MultiheadAttention takes
    # torch's fused kernel on plain tensors, not on captured ones (assert_converts compared exactly)
    [("mha h2", _attention, nn.MultiheadAttention(4, 2, batch_first=True))],
    # NaN weight gradients on a padded batch: max pooling left -inf in the padding, and a later linear
    # layer's weight gradient took 0 * inf there (now the pool's padding is 0)
    [("cat feat", lambda m, x: torch.cat([x, x * 2], -1), nn.Identity()), ("linear4", lambda m, x: m(x),
     nn.Linear(8, 4)), ("linear4", lambda m, x: m(x), nn.Linear(4, 4)), ("maxpool", _time_conv, nn.MaxPool1d(2, 2)),
     ("mha h1", _attention, nn.MultiheadAttention(4, 1, batch_first=True))],
]


@pytest.mark.parametrize("steps", REGRESSIONS, ids=lambda s: "+".join(n for n, _, _ in s))
def test_regressions_found_by_hypothesis(steps):
    _check(Chain(steps).eval())


@settings(max_examples=15, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(chains())
def test_random_op_chains_convert(chain):
    torch.manual_seed(0)
    _check(chain.eval())


@pytest.mark.slow
@seed(20261129)
@settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(chains())
def test_random_op_chains_convert_more(chain):
    torch.manual_seed(0)
    _check(chain.eval())
