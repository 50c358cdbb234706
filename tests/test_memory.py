"""What a capture holds while it checks: torch's values kept without copies where their memory is held
anyway (and copied before an op writes to them), the network's values compared as TF computes them
(sinks), and the weights loaded from aligned arrays TF feeds without a copy of its own."""

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from torchdispatch_returnn import params, returnn_capture, sinks
from torchdispatch_returnn.kept import Kept, stale
from torchdispatch_returnn.parity import STALE, ParityRecord
from torchdispatch_returnn.testing import assert_converts

DYN = ({1: "time"},)


class _Rec:
    value = None
    version = None


def test_views_are_kept_without_a_copy_and_copied_before_a_write():
    kept = Kept()
    base, view, part = _Rec(), _Rec(), _Rec()
    x = torch.randn(4, 6)
    kept.keep(base, x)
    kept.keep(view, x.t())  # a view of a kept storage: no copy
    assert base.value.data_ptr() == x.data_ptr() and view.value.untyped_storage().data_ptr() == x.data_ptr()
    big = torch.randn(100, 6)
    kept.keep(part, big[:2])  # a small part of a storage no record keeps: its own copy
    assert part.value.data_ptr() != big.data_ptr() and part.version is None
    before = x.clone()
    kept.before(torch.Tensor.add_, (x, 1.0), {})  # about to write to x: its records get copies
    x.add_(1.0)
    torch.testing.assert_close(base.value, before)
    torch.testing.assert_close(view.value, before.t())
    assert not stale(base) and not stale(view)


@pytest.mark.parametrize("func, args, kwargs", [
    (torch.Tensor.__setitem__, (0, 1.0), {}),
    (torch.Tensor.__iadd__, (1.0,), {}),
    (F.relu, (True,), {}),  # inplace given by position
    (F.dropout, (0.5, False, True), {}),
    (F.relu, (), {"inplace": True}),
    (torch.ops.aten.add_.Tensor, (torch.ones(1),), {}),
])
def test_writes_are_seen_by_name_position_or_keyword(func, args, kwargs):
    kept, rec = Kept(), _Rec()
    x = torch.randn(3, 4)
    kept.keep(rec, x)
    kept.before(func, (x, *args), kwargs)
    assert rec.version is None and rec.value.data_ptr() != x.data_ptr()


def test_out_argument_is_a_write_and_reads_are_not():
    kept, rec, other = Kept(), _Rec(), _Rec()
    x, y = torch.randn(3), torch.randn(3)
    kept.keep(rec, x)
    kept.keep(other, y)
    kept.before(torch.add, (y, 1.0), {"out": x})
    assert rec.version is None and other.version is not None  # (y is only read)
    kept.before(torch.Tensor.__index__, (y,), {})
    kept.before(torch.ops.aten.add.Tensor, (y, y), {})  # (an aten overload that does not write)
    assert other.version is not None


def test_a_write_not_seen_is_found_stale():
    kept, rec = Kept(), _Rec()
    x = torch.randn(3)
    kept.keep(rec, x)
    x.mul_(2.0)  # (outside any capture: not seen)
    assert stale(rec)


def test_in_place_ops_on_recorded_results_keep_each_op_s_value():
    """Each op's record keeps the value that op gave, though later ops write to its result in place in
    every way torch has: the records are copied before the writes."""

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 5)

        def forward(self, x):
            h = self.lin(x)
            v = h.transpose(1, 2)  # a view of h (its record keeps the value before the writes)
            s = v.sum(1, keepdim=True).transpose(1, 2)
            h.relu_()
            h[:, 0] = 0.5
            h += 1.0
            g = torch.tanh(h)
            torch.mul(g, 2.0, out=g)
            g = F.relu(g, True)
            g = F.dropout(g, 0.3, False, True)
            return g * 2 + s

    torch.manual_seed(0)
    net = assert_converts(M().eval(), torch.randn(2, 7, 4), dynamic_shapes=DYN)
    checked = [r for r in net.parity.records if r.check]
    assert checked and all(r.ok for r in checked) and not any(STALE in r.note for r in net.parity.records)
    assert {"linear", "transpose", "relu_", "add"} <= {r.torch_op.rsplit(".", 1)[-1] for r in checked}


def test_a_stale_record_is_left_unchecked_saying_why(monkeypatch):
    """A record whose kept value changed after its op (a write not seen) is not compared with the
    changed value: it is unchecked, with the reason."""
    from torchdispatch_returnn import kept

    monkeypatch.setattr(kept.Kept, "before", lambda self, func, args, kwargs: None)  # (no write seen)

    class M(nn.Module):
        def forward(self, x):
            h = x * 2
            h.add_(1.0)
            return h + 1

    with torch.no_grad(), returnn_capture(dynamic_shapes=DYN, self_check=False) as net:
        M()(torch.randn(2, 5, 3))
    first = net.parity.records[0]
    assert first.ok is None and STALE in first.note and net.parity.ok
    assert all(r.ok for r in net.parity.records[1:] if r.check)


def test_values_are_compared_as_tf_computes_them_in_many_sinks(monkeypatch):
    """With one record per sink, every record is still compared once, the self-checks run through the
    same sinks, and a failing op is still named."""
    monkeypatch.setattr(sinks, "SINK_BYTES", 1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.LayerNorm(8), nn.Linear(8, 3)).eval()
    net = assert_converts(model, torch.randn(3, 6, 4), dynamic_shapes=DYN)
    ops = [o for o in net.graph.get_operations() if o.type == "PyFunc"]
    checked = [r for r in net.parity.records if r.check]
    assert len(ops) >= len(checked) >= 4 and all(r.ok for r in checked)
    assert net.parity.self_checks and all(c.ok for c in net.parity.self_checks)


def test_a_disagreeing_op_is_reported_from_its_sink():
    def off_by_one(ctx, x):
        return ctx.eval("source(0) + 1.0", [ctx.ref(x)], ctx.ref(x).dims)

    from torchdispatch_returnn import register, unregister
    from torchdispatch_returnn.errors import ParityError

    class M(nn.Module):
        def forward(self, x):
            return torch.special.expit(x) * 2

    register(torch.special.expit, off_by_one, override=True)
    try:
        with pytest.raises(ParityError) as ei:
            with returnn_capture(dynamic_shapes=DYN):
                M()(torch.randn(2, 5, 3))
        fails = ei.value.report.failures
        assert [r.torch_op for r in fails][:1] == ["torch.special.expit"] and fails[0].max_abs_diff > 0.1
        assert fails[0].value is not None  # (a failure keeps torch's value)
    finally:
        unregister(torch.special.expit)


def test_weights_are_fed_from_aligned_arrays():
    w = np.random.randn(6, 4).astype(np.float32)
    b = np.arange(5, dtype=np.float32)
    frozen = np.random.randn(3, 5)
    frozen.flags.writeable = False
    values = [w.T, b, w[:, 1:], w[::-1], frozen.T]  # (torch's copy; numpy's for negative strides, read-only arrays)
    out = params._aligned(values)
    for got, want in zip(out, values):
        assert got.flags.c_contiguous and got.ctypes.data % params.ALIGN == 0
        np.testing.assert_array_equal(got, want)


def test_parity_record_has_no_version_for_copies():
    rec = ParityRecord(torch_op="t", module_path="", layer="", ref=None, value=None, location="")
    Kept().keep(rec, torch.zeros(10)[:1])
    assert rec.version is None and not stale(rec)


def test_an_op_tf_fails_at_another_length_is_named_by_the_self_check():
    """The sinks' run at another length fails in TF: the self-check names the op whose layer fails alone."""
    from torchdispatch_returnn import register, unregister
    from torchdispatch_returnn.errors import ParityError

    def fixed(ctx, x):  # runs at the capture's length (5) only
        r = ctx.ref(x)
        return ctx.eval("tf.reshape(-source(0) * tf.math.log(source(0)), [2, 5, 3])", [r], r.dims)

    class M(nn.Module):
        def forward(self, x):
            return torch.special.entr(x.abs() + 0.1) * 2

    register(torch.special.entr, fixed, override=True)
    try:
        with pytest.raises(ParityError) as ei:
            with returnn_capture(dynamic_shapes=DYN):
                M()(torch.randn(2, 5, 3))
        failed = [c for c in ei.value.report.self_checks if c.ok is False]
        assert failed and failed[0].first.torch_op == "torch.special.entr"
        assert "fails in TensorFlow" in failed[0].detail and "reshape" in failed[0].detail
    finally:
        unregister(torch.special.entr)
