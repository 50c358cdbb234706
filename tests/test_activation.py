import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from parity_helpers import Case, Fn, assert_parity

S = [(3, 11, 6)]
DYN = ({1: "time"},)


def act(name, fn, shapes=S, dyn=DYN, **kw):
    return Case(name, lambda: Fn(lambda m, *xs: fn(*xs)), shapes, dyn, **kw)


def mod(name, factory, shapes=S, dyn=DYN, **kw):
    return Case(name, factory, shapes, dyn, **kw)


CASES = [
    act("relu", F.relu), mod("ReLU", nn.ReLU), act("relu_method", lambda x: x.relu()),
    act("relu6", F.relu6),
    act("gelu", F.gelu), act("gelu_tanh", lambda x: F.gelu(x, approximate="tanh")), mod("GELU", nn.GELU),
    act("tanh", torch.tanh), mod("Tanh", nn.Tanh), act("sigmoid", torch.sigmoid), mod("Sigmoid", nn.Sigmoid),
    act("leaky_relu", lambda x: F.leaky_relu(x, 0.2)), mod("LeakyReLU", nn.LeakyReLU),
    act("elu", lambda x: F.elu(x, alpha=0.7)), mod("ELU", nn.ELU),
    act("silu", F.silu), mod("SiLU", nn.SiLU), act("mish", F.mish),
    act("softplus", F.softplus), act("softplus_beta", lambda x: F.softplus(x * 10, beta=2.0, threshold=5.0)),
    act("hardtanh", lambda x: F.hardtanh(x, -0.5, 0.5)), mod("Hardtanh", nn.Hardtanh),
    act("hardsigmoid", F.hardsigmoid), act("hardswish", F.hardswish), act("softsign", F.softsign),
    act("logsigmoid", F.logsigmoid), mod("LogSigmoid", nn.LogSigmoid),
    act("glu", F.glu), mod("GLU_dim1", lambda: nn.GLU(dim=1), [(3, 4, 11)], ({2: "time"},)),
    act("softmax_last", lambda x: F.softmax(x, dim=-1)),
    act("softmax_time", lambda x: torch.softmax(x, dim=1)),
    act("softmax_batch", lambda x: x.softmax(0)),
    act("log_softmax_last", lambda x: F.log_softmax(x, dim=-1)),
    act("log_softmax_time", lambda x: x.log_softmax(dim=1)),
    mod("Softmax", lambda: nn.Softmax(dim=-1)), mod("LogSoftmax", lambda: nn.LogSoftmax(dim=2)),
    act("softmax_dtype", lambda x: F.softmax(x, dim=-1, dtype=torch.float64)),
    mod("Dropout_eval", lambda: nn.Sequential(nn.Linear(6, 6), nn.Dropout(0.3))),
    act("dropout_functional_eval", lambda x: F.dropout(x, 0.5, training=False) * 2),
    mod("Identity", lambda: nn.Sequential(nn.Identity(), nn.ReLU())),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_activation(case):
    assert_parity(case)
