import pytest
import torch
from parity_helpers import Case, Fn, assert_parity

from torchdispatch_returnn import UnsupportedOpError, returnn_capture

DYN = ({1: "time"},)


def od(name, fn, shapes=[(3, 11, 6)], dyn=DYN, **kw):
    return Case(name, lambda: Fn(lambda m, *xs: fn(*xs)), shapes, dyn, **kw)


def _with_nan(x):
    return torch.where(x > 1.2, float("nan"), x)


CASES = [
    od("kthvalue_last", lambda x: torch.kthvalue(x, 2)),
    od("kthvalue_time", lambda x: x.kthvalue(3, dim=1)),
    od("kthvalue_keepdim", lambda x: torch.kthvalue(x, 4, 2, True).values * 1),
    od("kthvalue_per_sequence_k", lambda x: x.kthvalue(x.size(1) // 2 + 1, dim=1)),
    od("kthvalue_per_sequence_k_last", lambda x: x.transpose(1, 2).kthvalue(x.shape[1] - 2).values),
    od("kthvalue_batch_axis", lambda x: torch.kthvalue(x, 2, 0)),
    od("kthvalue_0d", lambda x: torch.kthvalue(x.sum(), 1, 0)[0] + torch.kthvalue(x.sum(), 1)[1]),
    od("median_all", lambda x: torch.median(x)),
    od("median_int", lambda x: x.median(1), dtypes=[torch.int64], high=5, grads=False),
    od("median_all_static", lambda x: x.median(), dyn=None),
    od("median_last", lambda x: torch.median(x, -1)),
    od("median_time_keepdim", lambda x: x.median(dim=1, keepdim=True)),
    od("median_time_nan", lambda x: torch.median(_with_nan(x), 1).values.nan_to_num(7.0)),
    od("nanmedian_time", lambda x: torch.nanmedian(_with_nan(x), 1)),
    od("nanmedian_all", lambda x: _with_nan(x).nanmedian()),
    od("mode_last", lambda x: torch.mode(x, -1)),
    od("mode_time_ints", lambda x: torch.mode(x, 1), dtypes=[torch.int64], high=3, grads=False),
    od("mode_keepdim", lambda x: x.mode(2, True).values + 0),
    od("quantile_scalar", lambda x: torch.quantile(x, 0.3, dim=-1)),
    od("quantile_time", lambda x: x.quantile(0.7, dim=1, keepdim=True)),
    od("quantile_all", lambda x: torch.quantile(x, 0.4)),
    od("quantile_tensor_q", lambda x: torch.quantile(x, torch.tensor([0.1, 0.5, 0.95]), dim=1)),
    od("quantile_lower", lambda x: torch.quantile(x, 0.33, 1, interpolation="lower")),
    od("quantile_higher", lambda x: torch.quantile(x, 0.33, 1, interpolation="higher")),
    od("quantile_nearest", lambda x: torch.quantile(x, torch.tensor([0.25, 0.5]), 1, interpolation="nearest")),
    od("quantile_midpoint", lambda x: torch.quantile(x, 0.6, -1, interpolation="midpoint")),
    od("quantile_nan", lambda x: torch.quantile(_with_nan(x), 0.5, 1).nan_to_num(7.0)),
    od("nanquantile_time", lambda x: torch.nanquantile(_with_nan(x), torch.tensor([0.2, 0.8]), 1)),
    od("nanquantile_method", lambda x: _with_nan(x).nanquantile(0.5, dim=-1)),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_order(case):
    assert_parity(case)


_BOUNDS = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.3, 1.0, 2.5])


def _sorted_rows(x):
    return torch.sort(x, -1).values


SEARCH = [
    od("searchsorted_1d", lambda x: torch.searchsorted(_BOUNDS, x), grads=False),
    od("searchsorted_right_int32", lambda x: torch.searchsorted(_BOUNDS, x.round(), right=True, out_int32=True),
       grads=False),
    od("searchsorted_nd_time", lambda x: torch.searchsorted(_sorted_rows(x), x[..., :2] * 0.5, side="right"),
       grads=False),
    od("searchsorted_padded_axis", lambda x: torch.searchsorted(_sorted_rows(x), x[:, :3] + 0.1),
       [(3, 2, 11)], ({2: "time"},), grads=False),
    od("searchsorted_int_padded_axis", lambda x: torch.searchsorted((x * 3).long().sort(-1).values, (x[:, :3] * 3).long(),
                                                                   right=True), [(3, 2, 11)], ({2: "time"},), grads=False),
    od("searchsorted_sorter", lambda x: torch.searchsorted(x, x[..., :3] * 0.5, sorter=torch.argsort(x, -1)),
       grads=False),
    od("searchsorted_scalar", lambda s: torch.searchsorted(_sorted_rows(s), 0.25), [(5,)], None, grads=False),
    od("bucketize", lambda x: torch.bucketize(x.round(), _BOUNDS), grads=False),
    od("bucketize_right", lambda x: torch.bucketize(x, torch.tensor([-1.0, 0.0, 0.5, 2.0]), right=True,
                                                    out_int32=True), grads=False),
]


@pytest.mark.parametrize("case", SEARCH, ids=str)
def test_search(case):
    assert_parity(case)


UNIQUE = [
    od("unique_scalar", lambda x: torch.unique(x.sum(), return_inverse=True, return_counts=True), grads=False),
    od("unique_method", lambda x: x.sum().unique() * 2, grads=False),
    od("unique_dim_one_slice", lambda x: torch.unique(x[:, :, :1], dim=2, return_counts=True), grads=False),
    od("unique_consecutive_scalar", lambda x: torch.unique_consecutive(x.sum(), return_inverse=True), grads=False),
    od("unique_consecutive_method", lambda x: x[:, :, 2:3].unique_consecutive(dim=-1, return_counts=True),
       grads=False),
]


@pytest.mark.parametrize("case", UNIQUE, ids=str)
def test_unique_static(case):
    assert_parity(case)


@pytest.mark.parametrize("fn, why", [
    (lambda x: torch.unique(x), "depends on the data"),
    (lambda x: x.unique_consecutive(dim=1), "depends on the data"),
    (lambda x: torch.searchsorted(x.transpose(1, 2), x[:, :2].transpose(1, 2), sorter=x.transpose(1, 2).argsort()),
     "padded dynamic axis"),
], ids=["unique", "unique_consecutive_time", "searchsorted_sorter_padded"])
def test_refused(fn, why):
    with pytest.raises(UnsupportedOpError, match=why):
        with returnn_capture(dynamic_shapes=({1: "time"},)):
            Fn(lambda m, x: fn(x))(torch.randn(3, 11, 8))
