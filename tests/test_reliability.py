"""Nothing silently wrong: validated runs, NaN-aware parity, the second-length self-check, all missing
ops in one report, every result recorded."""

import numpy as np
import pytest
import torch
import torch.nn as nn
from parity_helpers import COVERED

from torchdispatch_returnn import (
    ConfigNetwork,
    InputSpecError,
    ParityError,
    UnsupportedOpError,
    register,
    returnn_capture,
    unregister,
)
from torchdispatch_returnn.handlers.registry import handles, lookup


class MaskedMean(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x, lengths):
        mask = torch.arange(x.shape[1])[None, :] < lengths[:, None]
        return (self.lin(x) * mask[..., None]).sum(1) / lengths[:, None]


@pytest.fixture(scope="module")
def masked(tmp_path_factory):
    torch.manual_seed(0)
    model = MaskedMean().eval()
    x, lens = torch.randn(3, 9, 4), torch.tensor([9, 6, 4])
    with torch.no_grad(), returnn_capture(dynamic_shapes=({1: "time"}, None), lengths={"lengths": "time"}) as net:
        model(x, lens)
    d = tmp_path_factory.mktemp("masked")
    fresh = ConfigNetwork(net.save_config(str(d / "returnn.config")), net.save_checkpoint(str(d / "model")))
    return model, net, fresh


def test_fresh_network_takes_the_same_arguments_as_net_run(masked):
    model, net, fresh = masked
    x, lens = torch.randn(3, 12, 4), torch.tensor([12, 5, 8])
    x[1, 5:], x[2, 8:] = float("nan"), float("nan")
    for run in (net.run, fresh.run):
        got = run(x, lens)
        for b, n in enumerate(lens.tolist()):
            with torch.no_grad():
                want = model(x[b:b + 1, :n], lens[b:b + 1])
            np.testing.assert_allclose(got[b:b + 1], want.numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(run(x, seq_lens={"time": lens}), got, rtol=1e-6)


@pytest.mark.parametrize("call, match", [
    (lambda r, x, n: r(x, seq_lens={"Time": n}), r"unknown dim\(s\) \['Time'\].*\['time'\]"),
    (lambda r, x, n: r(x, seq_lens=[9, 9, 9]), "seq_lens must be a dict"),
    (lambda r, x, n: r(x, n, n), r"expected 2 argument\(s\)"),
    (lambda r, x, n: r(x, torch.tensor([9, 9])), r"shape \(3,\)"),
    (lambda r, x, n: r(x, torch.tensor([10, 9, 9])), r"\[0, 9\]"),
    (lambda r, x, n: r(x, torch.tensor([9.0, 9, 9])), "integers"),
    (lambda r, x, n: r(x.double().numpy().astype("int64"), n), "must be float32"),
    (lambda r, x, n: r(torch.randn(3, 9, 5), n), "static with size 4"),
])
def test_run_inputs_are_validated(masked, call, match):
    _, net, fresh = masked
    x, lens = torch.randn(3, 9, 4), torch.tensor([9, 9, 9])
    for run in (net.run, fresh.run):
        with pytest.raises(InputSpecError, match=match):
            call(run, x, lens)


def test_shorter_longest_sequence_than_the_padded_size(masked):
    model, net, _ = masked
    x, lens = torch.randn(3, 12, 4), torch.tensor([7, 5, 3])
    got = net.run(x, lens)
    with torch.no_grad():
        want = model(x[:, :7], lens)
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-5)


def test_nan_at_the_same_places_is_parity():
    class M(nn.Module):
        def forward(self, x):
            return torch.sqrt(x) + torch.log(x)  # NaN where x < 0, -inf at 0

    x = torch.randn(2, 6, 3)
    x[0, 0, 0] = 0.0
    with returnn_capture(dynamic_shapes=({1: "time"},)) as net:
        M()(x)
    assert net.parity.ok, str(net.parity)


def test_all_missing_ops_in_one_report():
    class M(nn.Module):
        def forward(self, x):
            y = torch.special.entr(x.abs())  # a handler refusal
            for _ in range(2):
                y = torch.special.erfcx(y)  # no handler (twice)
            return torch.special.entr(y) + torch.sin(x)

    def refuse(ctx, x):
        raise NotImplementedError("entr is refused here")

    saved = lookup(torch.special.erfcx)
    unregister(torch.special.erfcx)
    register(torch.special.entr, refuse, override=True)
    try:
        with pytest.raises(UnsupportedOpError) as ei:
            with returnn_capture(dynamic_shapes=({1: "time"},), strict=False) as net:
                M()(torch.randn(2, 5, 3))
        msg = str(ei.value)
        assert "2 torch callable(s) have no conversion (4 uses)" in msg
        assert "torch.special.entr  x2" in msg and "entr is refused here" in msg
        assert "torch.special.erfcx  x2" in msg and "no handler" in msg
        assert [g["op"] for g in net.unsupported] == ["torch.special.entr", "torch.special.erfcx"]
        assert net.unsupported[0]["count"] == 2 and net.unsupported[0]["location"].endswith(
            str(M.forward.__code__.co_firstlineno + 1))
        with pytest.raises(UnsupportedOpError, match="entr is refused here"):  # strict: the first one
            with returnn_capture(dynamic_shapes=({1: "time"},)):
                M()(torch.randn(2, 5, 3))
    finally:
        unregister(torch.special.entr)
        if saved is not None:
            handles(*saved.targets, override=True)(saved.fn)


def test_a_value_the_network_does_not_have_is_not_used_silently():
    def no_indices(ctx, x, dim=-1, descending=False, stable=False, *, out=None):
        r = ctx.ref(x)
        return ctx.tf_op(f"tf.sort(x0, axis={dim % r.ndim})", [r], r.dims), None

    class M(nn.Module):
        def forward(self, x):
            v, i = torch.sort(x, -1)
            return v + i.float()

    register(torch.sort, no_indices, override=True)
    try:
        with pytest.raises(UnsupportedOpError, match="does not have"):
            with returnn_capture():
                M()(torch.randn(2, 5))
    finally:
        unregister(torch.sort)


def test_self_check_finds_what_is_fixed_to_the_capture_length():
    class Unrolled(nn.Module):  # a Python loop over the length: fine at the capture length only
        def forward(self, x):
            frames = [x[:, i] * (i + 1) for i in range(x.shape[1])]
            return torch.stack(frames, 1).sum(1)

    with pytest.raises(ParityError, match="differs from torch at sizes") as ei:
        with returnn_capture(dynamic_shapes=({1: "time"},)):
            Unrolled()(torch.randn(2, 6, 3))
    assert "fixed to the capture length" in str(ei.value)
    with returnn_capture(dynamic_shapes=({1: "time"},), self_check=False) as net:  # the opt-out
        Unrolled()(torch.randn(2, 6, 3))
    assert net.parity.ok and not net.parity.self_checks


def test_self_check_names_the_decisions_python_took_on_sizes():
    class PadToMultiple(nn.Module):  # torchaudio ConvTasNet's idiom: pad only where T is no multiple of 4
        def forward(self, x):
            rem = x.shape[1] - (x.shape[1] // 4) * 4
            if rem == 0:
                return x * 2
            return torch.nn.functional.pad(x, (0, 0, 0, 4 - rem)) * 2

    with pytest.raises(ParityError, match="differs from torch at sizes") as ei:
        with returnn_capture(dynamic_shapes=({1: "time"},), self_check={"time": [6]}):
            PadToMultiple()(torch.randn(2, 8, 3))
    msg = str(ei.value)
    assert "torch takes another path at these sizes" in msg and "Python decided on dynamic sizes at: " in msg
    site = f"{__file__}:{PadToMultiple.forward.__code__.co_firstlineno + 2}"
    with returnn_capture(dynamic_shapes=({1: "time"},), self_check={"time": [4]}, check=False) as net:
        PadToMultiple()(torch.randn(3, 8, 3))
    sizes, padded = net.parity.self_checks
    assert sizes.ok and sizes.what == "sizes {'time': 4}"  # the decision holds at 4
    assert padded.ok is False and "torch takes another path for sequence 1 alone" in padded.detail  # not at 6
    assert net.parity.guards == {site: "`time - 4*time//4 == 0` was True (time - 4*time//4 = 0)"}
    assert f"size decision at {site}: " in str(net.parity) and site in msg


def test_padded_self_check_finds_a_conversion_that_is_not_per_sequence():
    def unmasked_conv(ctx, input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
        r, w = ctx.ref(input), ctx.ref(weight)  # the padding frames leak into each sequence's last frame
        return ctx.tf_op("tf.transpose(tf.nn.conv1d(tf.transpose(x0, [0, 2, 1]), tf.transpose(x1, [2, 1, 0]), 1, "
                         "'SAME'), [0, 2, 1])", [r, w], [r.dims[0], w.dims[0], r.dims[2]])

    register(torch.nn.functional.conv1d, unmasked_conv, override=True)
    try:
        with pytest.raises(ParityError, match=r"padded batch .* first at torch.nn.functional.conv1d .* sequence 1 "
                                              r"differs"):
            with returnn_capture(dynamic_shapes=({2: "time"},)):
                nn.Conv1d(4, 5, 3, padding=1, bias=False)(torch.randn(3, 4, 8))
    finally:
        unregister(torch.nn.functional.conv1d)


def test_padded_self_check_skips_models_that_depend_on_the_padding():
    class MeanOverTime(nn.Module):
        def forward(self, x):  # torch's mean over a padded batch counts the padding; the network's is per sequence
            return torch.mean(x * 2, 1)

    class PaddedSize(nn.Module):
        def forward(self, x):  # a size made a constant tensor: the padded size, in torch and in the network
            return x * torch.tensor([x.shape[1], 2]).sum()

    with returnn_capture(dynamic_shapes=({1: "time"},)) as net:
        MeanOverTime()(torch.randn(3, 8, 4))
    assert net.parity.self_checks[-1].ok is True
    with returnn_capture(dynamic_shapes=({1: "time"},)) as net:
        PaddedSize()(torch.randn(3, 8, 4))
    padded = net.parity.self_checks[-1]
    assert padded.ok is None and "depend on the padding" in padded.detail


def test_padded_self_check_skips_models_that_mix_the_batch():
    """torch's own outputs on a batch are not each sequence's (a mean over the batch axis): the padded check,
    which compares with torch on each sequence alone, says it is skipped and why (after the network differed)."""

    class BatchCentered(nn.Module):
        def forward(self, x):
            return x - x.mean(0, keepdim=True)

    with returnn_capture(dynamic_shapes=({1: "time"},)) as net:
        BatchCentered()(torch.randn(3, 8, 4))
    assert net.parity.ok and net.parity.self_checks[0].ok is True  # (another length: full sequences)
    padded = net.parity.self_checks[-1]
    assert padded.ok is None and "op over the batch axis" in padded.detail, padded


def test_self_check_passes_and_is_reported():
    with returnn_capture(dynamic_shapes=({1: "time"}, None), lengths={"lengths": "time"},
                         self_check={"time": [5]}) as net:
        MaskedMean().eval()(torch.randn(3, 9, 4), torch.tensor([9, 6, 4]))
    checks = net.parity.self_checks
    assert len(checks) == 2 and checks[0].ok and checks[0].compared > 3
    assert "self-check at sizes {'time': 5}: OK" in str(net.parity)
    assert checks[1].ok and checks[1].what == "padded batch {'time': [9, 7, 5]}"  # NaN padding, per sequence
    COVERED.update(net.ops_seen)
