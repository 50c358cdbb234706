"""Plain tensors lined up with the batch axis (a closed-over target, a fixed matrix of the batch's
size): the network holds them at the capture's batch size, parity holds, and a run with another
batch size stops with a clear error instead of broadcasting silently."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from torchdispatch_returnn import CaptureError, ConfigNetwork, returnn_capture

C = torch.randn(4, 6)
TARGET = torch.tensor([1, 0, 3, 2])
A, B = torch.randn(4, 3), torch.randn(3, 6)


class Fn(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *xs):
        return self.fn(*xs)


CASES = {
    "where_const": (lambda x: torch.where(x > 0, x, C).sin(), (4, 6), None),
    "cross_entropy_closed_over_target": (lambda x: F.cross_entropy(x, TARGET, reduction="none"), (4, 6), None),
    "mse_closed_over_target": (lambda x: F.mse_loss(x, C), (4, 6), None),
    "addmm_of_constants": (lambda x: torch.addmm(x, A, B), (4, 6), None),  # the batch axis meets a static one
    "bmm_with_const": (lambda x: torch.bmm(x, torch.ones(4, 6, 2)), (4, 5, 6), None),
    "time_and_const_on_batch": (lambda x: x * C[:, None, :] + 1, (4, 7, 6), ({1: "time"},)),
}


@pytest.mark.parametrize("name", CASES)
def test_plain_tensor_along_batch(name, tmp_path):
    fn, shape, dyn = CASES[name]
    torch.manual_seed(0)
    x = torch.randn(*shape)
    model = Fn(fn)
    with returnn_capture(dynamic_shapes=dyn, check_grads=True) as net:
        model(x)
    assert net.parity.ok, str(net.parity)
    assert net.dims.batch_fixed and "batch size 4" in net.dims.batch_fixed[0]
    assert "fixed to the capture's batch size" in str(net.parity)  # the padded-batch check says why it is skipped
    cfg, ckpt = net.save_config(str(tmp_path / "net.config")), net.save_checkpoint(str(tmp_path / "model"))
    fresh = ConfigNetwork(cfg, ckpt)
    try:
        x2 = torch.randn(*shape[:1], *(s + 3 if dyn and i == 0 else s for i, s in enumerate(shape[1:])))
        with torch.no_grad():
            want = model(x2).numpy()
        for got in (net.run(x2), fresh.run(x2)):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        other = torch.randn(3, *shape[1:])
        with pytest.raises(CaptureError, match="fixed to batch size 4") as ei:
            fresh.run(other)
        assert "Traceback" not in str(ei.value)
        with pytest.raises(CaptureError, match="fixed to batch size 4"):
            net.run(other)
    finally:
        fresh.close()


def test_broadcasting_plain_tensor_does_not_fix_the_batch():
    """A size-1 axis against the batch axis broadcasts: the network takes any batch size."""
    C1 = torch.randn(1, 6)
    with returnn_capture() as net:
        Fn(lambda x: x * C1)(torch.randn(4, 6))
    assert not net.dims.batch_fixed
    x = torch.randn(3, 6)
    np.testing.assert_allclose(net.run(x), (x * C1).numpy(), rtol=1e-6)
