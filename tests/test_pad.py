import pytest
import torch.nn as nn
import torch.nn.functional as F
from parity_helpers import Case, Fn, assert_padded, assert_parity

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
    fn("pad_circular", lambda x: F.pad(x, (2, 3), mode="circular")),
    Case("CircularPad1d", lambda: nn.CircularPad1d((1, 2)), [(3, 4, 11)], D),
    fn("pad_circular_static", lambda x: F.pad(x.transpose(1, 2), (1, 2), mode="circular")),
    fn("pad_reflect_2d", lambda x: F.pad(x.unsqueeze(1), (2, 1, 1, 1), mode="reflect"), shape=(3, 11, 4),
       dyn=({1: "time"},)),
]

#: every mode pads each sequence of a padded batch at its own end, as torch pads it alone
PADDED = [
    fn("padded_reflect", lambda x: F.pad(x, (2, 3), mode="reflect")),
    fn("padded_replicate", lambda x: F.pad(x, (1, 3), mode="replicate")),
    fn("padded_circular", lambda x: F.pad(x, (3, 2), mode="circular")),
    fn("padded_constant", lambda x: F.pad(x, (2, 2), value=1.5)),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_pad(case):
    assert_parity(case)


@pytest.mark.parametrize("case", PADDED, ids=str)
def test_pad_is_exact_per_sequence_of_a_padded_batch(case):
    net = assert_padded(case)
    assert not any(r.note for r in net.parity)
