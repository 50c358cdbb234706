"""Valid inputs that used to crash a handler: 0-d tensors, keyword arguments, unbatched convs, strided
dilated convs and pools, transposed convs with k < stride, ops over the batch axis, twins of derived dims.
Each converts with parity (values, gradients, the rebuilt config, other lengths) or is a clear
UnsupportedOpError naming the callable."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from parity_helpers import Case, Fn, assert_parity

from torchdispatch_returnn import CaptureError, UnsupportedOpError, returnn_capture

DYN = ({1: "time"},)
DYN4 = ({2: "time"},)


def fn(name, f, shapes=((3, 11, 6),), dyn=DYN, **kw):
    return Case(name, lambda: Fn(lambda m, *xs: f(*xs)), list(shapes), dyn, **kw)


def mod(name, factory, shapes, dyn=DYN, **kw):
    return Case(name, factory, list(shapes), dyn, **kw)


# -- 1./2./7. 0-d tensors (torch takes dim 0 / -1 there) -------------------------------------------------
ZERO_D = [
    fn("sum_dim0", lambda x: x.sum().sum(0)),
    fn("sum_int_keepdim", lambda x: (x > 0).sum().sum(0, keepdim=True)),
    fn("mean_dim_last", lambda x: x.sum().mean(-1)),
    fn("amax_dim0", lambda x: x.sum().amax(0)),
    fn("amin_keepdim", lambda x: torch.amin(x.sum(), -1, keepdim=True)),
    fn("argmax_dim0", lambda x: x.sum().argmax(0)),
    fn("argmax_no_dim", lambda x: x.mean().argmax()),
    fn("argmin_dim_last", lambda x: torch.argmin(x.sum(), dim=-1)),
    fn("logsumexp_dim0", lambda x: x.sum().logsumexp(0)),
    fn("max_dim0", lambda x: x.sum().max(0)),
    fn("min_dim_last", lambda x: torch.min(x.sum(), -1)),
    fn("cumsum", lambda x: x.sum().cumsum(0)),
    fn("index_select", lambda x: x.sum().index_select(0, torch.tensor([0]))),
    fn("unfold", lambda x: x.sum().unfold(0, 1, 1)),
    fn("flip", lambda x: torch.flip(x.sum(), dims=(0,))),
    fn("repeat", lambda x: x.sum().repeat(3)),
    fn("repeat_2d", lambda x: x.sum().repeat(2, 3)),
    fn("repeat_empty_sizes", lambda x: x.sum().repeat(())),
    fn("repeat_zero", lambda x: x.sum().repeat(0)),
]


@pytest.mark.parametrize("case", ZERO_D, ids=str)
def test_zero_d(case):
    assert_parity(case)


# -- 3./4./5. keyword arguments, plain targets, 0-d prelu weight -------------------------------------------
ARGS = [
    fn("flip_dims_keyword", lambda x: torch.flip(x, dims=(1, 2)) + x.flip(dims=[-1])),
    fn("flip_input_keyword", lambda x: torch.flip(input=x, dims=[1])),
    fn("view_as_plain", lambda x: x[:, :2].view_as(torch.zeros(3, 12))),
    fn("reshape_as_plain", lambda x: x[:, :2].reshape_as(torch.zeros(3, 2, 3, 2)) * 2),
    fn("prelu_plain_0d_weight", lambda x: F.prelu(x, torch.tensor(0.25))),
    mod("prelu_0d_parameter", lambda: Fn(lambda m, x: F.prelu(x, m.p0), torch.tensor(0.25)), [(3, 11, 6)]),
]


@pytest.mark.parametrize("case", ARGS, ids=str)
def test_arguments(case):
    assert_parity(case)


# -- 6. convs of an input without batch axis ---------------------------------------------------------------
class Unbatched(nn.Module):
    """The conv over the first sequence of the batch (``x[0]``), time dynamic."""

    def __init__(self, conv, two_d=False):
        super().__init__()
        self.conv, self.two_d = conv, two_d

    def forward(self, x):
        return self.conv(x[0] if self.two_d else x[0].transpose(0, 1))


UNBATCHED = [
    mod("conv_transpose1d", lambda: Unbatched(nn.ConvTranspose1d(6, 4, 3, stride=2, padding=1, output_padding=1)),
        [(3, 11, 6)]),
    mod("conv_transpose1d_k_lt_stride", lambda: Unbatched(nn.ConvTranspose1d(6, 4, 2, stride=3)), [(3, 11, 6)]),
    mod("conv_transpose2d", lambda: Unbatched(nn.ConvTranspose2d(2, 3, (3, 2), stride=(2, 1), padding=(1, 0)), True),
        [(3, 2, 11, 5)], DYN4),
    mod("conv1d", lambda: Unbatched(nn.Conv1d(6, 4, 3, stride=2, padding=1)), [(3, 11, 6)]),
    mod("conv1d_grouped_dilated", lambda: Unbatched(nn.Conv1d(6, 6, 3, stride=2, dilation=2, groups=3)),
        [(3, 13, 6)]),
    mod("conv2d", lambda: Unbatched(nn.Conv2d(2, 3, 3, stride=(2, 1), padding=1), True), [(3, 2, 11, 5)], DYN4),
]


@pytest.mark.parametrize("case", UNBATCHED, ids=str)
def test_unbatched_conv(case):
    assert_parity(case)


# -- 8./9./10. output lengths of transposed, strided dilated depthwise convs and dilated pools ---------------
class OnTime(nn.Module):
    """A (B, C, T) module over (B, T, C) input."""

    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x):
        return self.m(x.transpose(1, 2))


LENGTHS = [
    mod("conv_transpose1d_k2_s3_output_padding", lambda: OnTime(nn.ConvTranspose1d(6, 4, 2, stride=3, output_padding=1)),
        [(3, 11, 6)]),
    mod("conv_transpose1d_padding_output_padding",
        lambda: OnTime(nn.ConvTranspose1d(6, 4, 4, stride=2, padding=1, output_padding=1)), [(3, 11, 6)]),
    mod("conv_transpose2d_k_lt_stride_output_padding",
        lambda: nn.ConvTranspose2d(2, 3, (2, 1), stride=(3, 2), output_padding=(2, 1)), [(3, 2, 11, 5)], DYN4),
    mod("depthwise_conv1d_stride2_dilation2", lambda: OnTime(nn.Conv1d(6, 6, 3, stride=2, dilation=2, groups=6)),
        [(3, 11, 6)], other_sizes=(7, 8, 13, 14)),
    mod("maxpool1d_dilation", lambda: OnTime(nn.MaxPool1d(3, 2, dilation=2)), [(3, 11, 6)], other_sizes=(7, 8, 14)),
    mod("maxpool2d_dilation_padding", lambda: nn.MaxPool2d(3, 2, padding=1, dilation=2), [(3, 2, 11, 6)], DYN4),
]


@pytest.mark.parametrize("case", LENGTHS, ids=str)
def test_lengths(case):
    assert_parity(case)


# -- 11. ops over or with the batch axis -----------------------------------------------------------------------
BATCH = [
    fn("matmul_batch_vectors", lambda x: torch.matmul(x[:, 0, 0], x[:, 1, 0])),
    fn("mm_over_batch", lambda x: torch.mm(x[:, 0].t(), x[:, 1])),
    fn("addmm_batched_bias", lambda x: torch.addmm(x[:, 0, :2], x[:, 0], torch.ones(6, 2), beta=0.5)),
    fn("cat_batch", lambda x: torch.cat([x, x * 2], 0)),
    fn("cat_batch_reduced", lambda x: torch.cat([x[:, 0], x[:, 1]], 0).sum(0)),
    fn("cat_batch_and_back", lambda x: torch.cat([x, x * 2], 0).view(2, x.shape[0], x.shape[1], 6)[1]),
    fn("flatten_batch_static", lambda x: x[:, 0].flatten()),
    fn("flatten_batch_static_sum", lambda x: x[:, 0].flatten().sum(0)),
    fn("sdpa_plain_shared_kv", lambda x: F.scaled_dot_product_attention(x, torch.ones(4, 6), torch.arange(24.0).view(4, 6))),
]


@pytest.mark.parametrize("case", BATCH, ids=str)
def test_batch_axis(case):
    assert_parity(case)


W = torch.randn(2, 3)
KV = torch.randn(3, 4, 6)


@pytest.mark.parametrize("f", [
    lambda x: F.linear(x[:, 0, 0], W),
    lambda x: torch.addmm(x[:, 0, :2], torch.ones(3, 6), torch.ones(6, 2)),
    lambda x: F.scaled_dot_product_attention(x, KV, KV),
], ids=["linear_weight_on_batch", "addmm_plain_per_batch", "sdpa_plain_per_batch_kv"])
def test_plain_tensor_on_the_batch_axis_fixes_the_batch_size(f):
    """A plain tensor lined up with the batch axis (size 3 = the batch): converted at that batch size, and a
    run with another batch size stops with a clear error (see tests/test_plain_batch.py)."""
    with torch.no_grad(), returnn_capture(dynamic_shapes=DYN) as net:
        Fn(lambda m, x: f(x))(torch.randn(3, 11, 6))
    assert net.parity.ok and net.dims.batch_fixed and "test_crashes.py:" in net.dims.batch_fixed[0]
    with pytest.raises(CaptureError, match="fixed to batch size 3"):
        net.run(torch.randn(2, 11, 6))


def test_batch_axis_unsupported():
    with pytest.raises(UnsupportedOpError, match="along the batch axis") as ei:
        with torch.no_grad(), returnn_capture(dynamic_shapes=DYN):
            Fn(lambda m, x: x.unfold(0, 2, 1))(torch.randn(3, 11, 6))
    assert ei.value.op == "torch.Tensor.unfold"
    assert "test_crashes.py:" in ei.value.location


# -- 12./13. twins of derived dims (frame stacking), conv2d front-end + linear ---------------------------------
class Stacked(nn.Module):
    def __init__(self, attention):
        super().__init__()
        self.attention = attention

    def forward(self, x):
        b, t, f = x.shape
        y = x.reshape(b, t // 2, 2 * f)
        if self.attention:
            return F.scaled_dot_product_attention(y, y, y)
        return torch.bmm(y, y.transpose(1, 2))


class ConvFrontEnd(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, stride=(2, 2))
        self.out = nn.Linear(4 * 4, 5)

    def forward(self, x):  # (B, 1, T, F)
        return self.out(torch.relu(self.conv(x)).transpose(1, 2).flatten(2))


DERIVED = [
    mod("frame_stacking_bmm", lambda: Stacked(False), [(3, 12, 4)], other_sizes=(8, 14)),
    mod("frame_stacking_attention", lambda: Stacked(True), [(3, 12, 4)], other_sizes=(8, 14)),
    mod("conv2d_flatten_linear", ConvFrontEnd, [(3, 1, 13, 9)], DYN4),
]


@pytest.mark.parametrize("case", DERIVED, ids=str)
def test_derived_dims(case):
    assert_parity(case)


def test_first_input_without_batch_axis_then_a_batched_one(tmp_path):
    """The first input is 0-d (no batch axis): RETURNN's batch-size placeholder is fed from the next one."""
    from torchdispatch_returnn import ConfigNetwork

    class Scale(nn.Module):
        def forward(self, a, b):
            return torch.tanh(b * a + 1)

    a, b = torch.randn(()), torch.randn(3, 5)
    with returnn_capture() as net:
        Scale()(a, b)
    assert net.parity.ok
    fresh = ConfigNetwork(net.save_config(str(tmp_path / "c.config")), net.save_checkpoint(str(tmp_path / "m")))
    try:
        a2, b2 = torch.randn(()), torch.randn(4, 5)  # another batch size
        for got in (net.run(a2, b2), fresh.run(a2, b2)):
            torch.testing.assert_close(torch.as_tensor(got), torch.tanh(b2 * a2 + 1))
    finally:
        fresh.close()
