import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from parity_helpers import Case, Fn, assert_parity


def _stats(m):
    with torch.no_grad():
        m.running_mean.uniform_(-1, 1)
        m.running_var.uniform_(0.5, 2.0)
        if m.weight is not None:
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-0.5, 0.5)
    return m


def _affine(m):
    with torch.no_grad():
        m.weight.uniform_(0.5, 1.5)
        m.bias.uniform_(-0.5, 0.5)
    return m


CASES = [
    Case("LayerNorm", lambda: _affine(nn.LayerNorm(6)), [(3, 11, 6)], ({1: "time"},)),
    Case("LayerNorm_2d", lambda: _affine(nn.LayerNorm([4, 6])), [(3, 11, 4, 6)], ({1: "time"},)),
    Case("LayerNorm_noaffine", lambda: nn.LayerNorm(6, elementwise_affine=False), [(3, 11, 6)], ({1: "time"},)),
    Case("F_layer_norm", lambda: Fn(lambda m, x: F.layer_norm(x, (6,), m.p0, None, 1e-3), torch.randn(6)),
         [(3, 11, 6)], ({1: "time"},)),
    Case("BatchNorm1d", lambda: _stats(nn.BatchNorm1d(5)), [(3, 5, 11)], ({2: "time"},)),
    Case("BatchNorm1d_2d_input", lambda: _stats(nn.BatchNorm1d(5)), [(4, 5)], None),
    Case("BatchNorm1d_noaffine", lambda: _stats(nn.BatchNorm1d(5, affine=False)), [(3, 5, 11)], ({2: "time"},)),
    Case("BatchNorm2d", lambda: _stats(nn.BatchNorm2d(3)), [(3, 3, 11, 4)], ({2: "time"},)),
    Case("GroupNorm", lambda: _affine(nn.GroupNorm(2, 4)), [(3, 4, 11)], ({2: "time"},)),
    Case("GroupNorm_1group", lambda: _affine(nn.GroupNorm(1, 4)), [(3, 4, 11)], ({2: "time"},)),
    Case("GroupNorm_2d", lambda: _affine(nn.GroupNorm(3, 6)), [(3, 6, 11, 4)], ({2: "time"},)),
    Case("InstanceNorm1d", lambda: nn.InstanceNorm1d(4, affine=True), [(3, 4, 11)], ({2: "time"},)),
    Case("normalize", lambda: Fn(lambda m, x: F.normalize(x, dim=-1)), [(3, 11, 6)], ({1: "time"},)),
    Case("normalize_p_half_time", lambda: Fn(lambda m, x: F.normalize(x, p=0.5, dim=1)), [(3, 11, 6)], ({1: "time"},),
         positive=True),
    Case("normalize_p3", lambda: Fn(lambda m, x: F.normalize(x, p=3.0, dim=-1)), [(3, 11, 6)], ({1: "time"},)),
    Case("normalize_p_inf_time", lambda: Fn(lambda m, x: F.normalize(x, p=float("inf"), dim=1)), [(3, 11, 6)],
         ({1: "time"},)),
    Case("normalize_p_minus_inf", lambda: Fn(lambda m, x: F.normalize(x, p=float("-inf"), dim=-1)), [(3, 11, 6)],
         ({1: "time"},)),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_norm(case):
    assert_parity(case)


def test_batch_norm_training_mode_batch_statistics():
    """BatchNorm in train mode (capture with train=True) normalises with the batch statistics."""
    from torchdispatch_returnn import returnn_capture

    torch.manual_seed(0)
    m = _affine(nn.BatchNorm1d(5)).train()
    x = torch.randn(3, 5, 11)
    expected = m(x.clone())
    with returnn_capture(dynamic_shapes=({2: "time"},), train=True) as net:
        y = m(x.clone())
    assert net.parity.ok, str(net.parity)
    torch.testing.assert_close(y.as_subclass(torch.Tensor), expected)


def test_batch_norm_training_mode_needs_train_capture():
    from torchdispatch_returnn import UnsupportedOpError, returnn_capture

    m = nn.BatchNorm1d(5).train()
    with pytest.raises(NotImplementedError, match="train=True"):
        with returnn_capture(dynamic_shapes=({2: "time"},)):
            m(torch.randn(3, 5, 11))
    assert UnsupportedOpError  # the message is a plain NotImplementedError from the handler
