import pytest
import torch
from parity_helpers import Case, Fn, assert_parity

DYN = ({1: "time"},)


def rd(name, fn, shapes=[(3, 11, 6)], dyn=DYN, **kw):
    return Case(name, lambda: Fn(lambda m, *xs: fn(*xs)), shapes, dyn, **kw)


CASES = [
    rd("any_time", lambda x: (x > 1).any(1)),
    rd("all_last_keepdim", lambda x: torch.all(x > -1, dim=-1, keepdim=True)),
    rd("all_everything", lambda x: (x > -5).all()),
    rd("sum_last", lambda x: x.sum(-1)),
    rd("sum_time", lambda x: torch.sum(x, dim=1)),
    rd("sum_tuple_keepdim", lambda x: x.sum(dim=(1, 2), keepdim=True)),
    rd("sum_all", lambda x: x.sum()),
    rd("sum_int", lambda x: (x > 0).sum(-1)),
    rd("mean_last", lambda x: x.mean(-1)),
    rd("mean_time_keepdim", lambda x: x.mean(1, keepdim=True)),
    rd("mean_tuple", lambda x: torch.mean(x, (0, 2))),
    rd("max_values_indices", lambda x: x.max(-1)),
    rd("max_values", lambda x: torch.max(x, dim=2).values * 1),
    rd("max_all", lambda x: x.max()),
    rd("max_keepdim", lambda x: torch.max(x, 1, keepdim=True)[0] + 0),
    rd("max_elementwise", lambda x: torch.max(x, x * 0.5)),
    rd("min_indices", lambda x: x.min(dim=-1).indices + 0),
    rd("amax", lambda x: x.amax(dim=(1, 2))),
    rd("amin", lambda x: torch.amin(x, -1, keepdim=True)),
    rd("argmax", lambda x: x.argmax(-1)),
    rd("argmin_keepdim", lambda x: torch.argmin(x, dim=2, keepdim=True)),
    rd("var", lambda x: x.var(-1)),
    rd("var_biased", lambda x: torch.var(x, dim=-1, unbiased=False)),
    rd("var_correction_keepdim", lambda x: x.var(2, keepdim=True, correction=0)),
    rd("std", lambda x: x.std(-1)),
    rd("std_time_biased", lambda x: x.std(1, unbiased=False)),
    rd("prod", lambda x: x.prod(-1)),
    rd("prod_keepdim", lambda x: torch.prod(x, 2, keepdim=True)),
    rd("logsumexp", lambda x: torch.logsumexp(x, dim=-1)),
    rd("logsumexp_time", lambda x: x.logsumexp(1)),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_reduce(case):
    assert_parity(case)
