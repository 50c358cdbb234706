"""Metadata queries build no layer; sizes carry dims."""

import torch
import torch.nn as nn

from torchdispatch_returnn import returnn_capture
from torchdispatch_returnn.sizes import DimInt, SymShape


def test_metadata_queries_build_no_layer():
    seen = {}

    class M(nn.Module):
        def forward(self, x):
            before = len(net.net_dict)
            seen["shape"] = x.shape
            seen["size"] = x.size()
            seen["size1"] = x.size(1)
            seen["dim"] = x.dim()
            seen["ndim"] = x.ndim
            seen["dtype"] = x.dtype
            seen["device"] = x.device
            seen["requires_grad"] = x.requires_grad
            seen["numel"] = x.numel()
            seen["len"] = len(x)
            seen["repr"] = repr(x)
            seen["format"] = f"{x.shape}"
            seen["is_floating_point"] = x.is_floating_point()
            seen["contig"] = x.is_contiguous()
            seen["layers_added"] = len(net.net_dict) - before
            return x * 2

    x = torch.randn(2, 7, 3)
    with returnn_capture(dynamic_shapes=({1: "time"},), self_check=False) as net:  # (no second run of forward)
        M()(x)
    assert seen["layers_added"] == 0
    assert isinstance(seen["shape"], SymShape) and seen["shape"] == (2, 7, 3) == x.shape
    assert seen["size"] == torch.Size([2, 7, 3])
    assert isinstance(seen["size1"], DimInt) and seen["size1"] == 7 and seen["size1"].dim.is_dynamic()
    assert isinstance(seen["shape"][0], DimInt) and seen["shape"][0].dim.is_batch_dim()
    assert type(seen["shape"][2]) is int
    assert (seen["dim"], seen["ndim"], seen["numel"], seen["len"]) == (3, 3, 42, 2)
    assert seen["dtype"] == torch.float32 and seen["device"].type == "cpu" and seen["requires_grad"] is False
    assert "tensor(" in seen["repr"]
    assert net.parity.ok


def test_dim_arithmetic_keeps_dims():
    shapes = {}

    class M(nn.Module):
        def forward(self, x):
            t = x.shape[1]
            shapes["t-1"], shapes["t//2"], shapes["2*t"], shapes["t+t"] = t - 1, t // 2, 2 * t, t + t
            return x[:, 1:] * 1

    with returnn_capture(dynamic_shapes=({1: "time"},), self_check=False):  # (no second run of forward)
        M()(torch.randn(2, 9, 3))
    assert shapes["t-1"] == 8 and isinstance(shapes["t-1"], DimInt)
    assert shapes["t//2"] == 4 and shapes["2*t"] == 18 and shapes["t+t"] == 18
    assert shapes["2*t"].dim == shapes["t+t"].dim
