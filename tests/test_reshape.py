import pytest
import torch
from parity_helpers import Case, Fn, assert_parity

DYN = ({1: "time"},)


def sh(name, fn, shapes=[(3, 11, 8)], dyn=DYN, **kw):
    return Case(name, lambda: Fn(lambda m, *xs: fn(*xs)), shapes, dyn, **kw)


def _heads(x):
    b, t, f = x.shape
    return x.view(b, t, 2, f // 2).transpose(1, 2)


def _stack(x):
    b, t, f = x.shape
    return x.reshape(b, t // 2, 2 * f)


def _stack_back(x):
    b, t, f = x.shape
    return (x.reshape(b, t // 2, 2 * f) * 2).reshape(b, t, f)


CASES = [
    sh("view_split_heads", lambda x: _heads(x) * 1.0),
    sh("view_roundtrip", lambda x: _heads(x).transpose(1, 2).reshape(x.shape[0], x.shape[1], -1) + 1),
    sh("reshape_minus1", lambda x: x.reshape(x.size(0), x.size(1), 4, -1).sum(-1)),
    sh("view_merge_static", lambda x: x.view(*x.shape[:2], 2, 2, 2).flatten(2) * 2),
    sh("flatten", lambda x: torch.flatten(x[:, :, :, None] * 1.0, 2), ),
    sh("unflatten", lambda x: x.unflatten(2, (2, 4)) + 0.5),
    sh("view_as", lambda x: x.sum(-1).view_as(x[:, :, 0]) * 1),
    sh("reshape_as", lambda x: x.reshape(x.shape[0], x.shape[1], 4, 2).sum(-1).reshape_as(x[:, :, :4]) + x[:, :, 4:]),
    sh("frame_stacking", _stack, [(3, 12, 4)], other_sizes=(8, 14)),
    sh("frame_stacking_and_back", _stack_back, [(3, 12, 4)], other_sizes=(8, 14)),
    sh("merge_batch_time", lambda x: x.reshape(-1, x.shape[2]).relu().view(x.shape[0], x.shape[1], -1) + x),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_reshape(case):
    assert_parity(case)
