import pytest
import torch.nn as nn
import torch.nn.functional as F
from parity_helpers import Case, Fn, assert_parity

D = ({2: "time"},)


def fn(name, f, shape=(3, 4, 11), dyn=D):
    return Case(name, lambda: Fn(lambda m, x: f(x)), [shape], dyn)


CASES = [
    fn("pad_last", lambda x: F.pad(x, (1, 2))),
    fn("pad_value", lambda x: F.pad(x, (2, 0), value=-1.0)),
    fn("pad_two_axes", lambda x: F.pad(x, (1, 1, 2, 3))),
    fn("pad_feature_only", lambda x: F.pad(x.transpose(1, 2), (0, 3))),
    fn("pad_reflect", lambda x: F.pad(x, (2, 2), mode="reflect")),
    fn("pad_replicate", lambda x: F.pad(x, (1, 3), mode="replicate")),
    Case("ConstantPad1d", lambda: nn.ConstantPad1d((2, 1), 0.5), [(3, 4, 11)], D),
    Case("ConstantPad2d", lambda: nn.ConstantPad2d((1, 2, 0, 1), 0.0), [(3, 2, 11, 5)], D),
    Case("ReflectionPad1d", lambda: nn.ReflectionPad1d(2), [(3, 4, 11)], D),
    Case("ReplicationPad1d", lambda: nn.ReplicationPad1d((1, 2)), [(3, 4, 11)], D),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_pad(case):
    assert_parity(case)


def test_reflect_right_padding_of_dynamic_axis_is_flagged_in_report():
    """Not per-sequence exact for padded batches: the parity report says so (exact at full length)."""
    net = assert_parity(fn("pad_reflect_flag", lambda x: F.pad(x, (2, 2), mode="reflect") * 1))
    notes = [r.note for r in net.parity if r.torch_op == "torch.nn.functional.pad"]
    assert notes and "not exact for shorter sequences" in notes[0]
    assert "not exact for shorter sequences" in str(net.parity)
