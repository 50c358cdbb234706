import pytest
import torch
from parity_helpers import Case, Fn, assert_padded, assert_parity

DYN = ({1: "time"},)
IDX = torch.tensor([0, 2, 2, 5])


def sc(name, fn, shapes=((3, 11, 6),), dyn=DYN, **kw):
    return Case(name, lambda: Fn(lambda m, *xs: fn(*xs)), list(shapes), dyn, **kw)


def st(name, fn, shapes=((3, 6),), **kw):
    """A case without a dynamic axis (ops over the flattened tensor)."""
    return sc(name, fn, shapes, None, **kw)


def _feat_idx(x):
    """Positions along the feature axis computed from the values (garbage in the padding frames)."""
    return (x.abs() * 3).long() % 4


def _inplace(fn):
    def g(x):
        y = x * 1
        fn(y)
        return y
    return g


def _tri_indices(x):
    n = x.shape[2]
    lower = torch.tril_indices(n, n)
    upper = torch.triu_indices(n, n, 1)
    cols = lower[1] + upper.sum() * 0
    return x[:, :, cols] * 2


PADDED = [  # index tensors with the time axis: padding frames must not reach valid ones
    # torch.scatter/scatter_add (handlers/index.py) once let the padding frames' updates through
    sc("scatter_add_time_idx", lambda x: torch.scatter_add(x, 1, (x.abs() * 3).long() % 4, x)),
    sc("scatter_src_time_idx", lambda x: x.scatter(1, (x.abs() * 3).long() % 4, x * 2)),
    sc("scatter_value_add", lambda x: torch.scatter(x, 2, _feat_idx(x), 1.5, reduce="add")),
    sc("scatter_multiply", lambda x: torch.scatter(x, 2, _feat_idx(x), x, reduce="multiply")),
    sc("scatter_reduce_amax_feat", lambda x: torch.scatter_reduce(x, 2, _feat_idx(x), x * 2, "amax")),
    sc("scatter_reduce_sum_noself", lambda x: x.scatter_reduce(2, _feat_idx(x), x, "sum", include_self=False)),
    sc("scatter_reduce_prod", lambda x: x.scatter_reduce(2, _feat_idx(x)[..., :3], x[..., 1:4], reduce="prod")),
    sc("scatter_reduce_mean", lambda x: x.scatter_reduce(2, _feat_idx(x), x * 3, "mean")),
    sc("scatter_reduce_amin_noself", lambda x: x.scatter_reduce(2, _feat_idx(x), -x, "amin", include_self=False)),
    sc("scatter_reduce_time_computed", lambda x: torch.scatter_reduce(x, 1, _feat_idx(x), x, "sum")),
    sc("scatter_reduce_unsort_time", lambda x: torch.zeros_like(x).scatter_reduce(1, x.argsort(1), x, "sum")),
    sc("scatter_reduce_inplace", _inplace(lambda y: y.scatter_reduce_(2, _feat_idx(y), y * 0 + 1, "sum"))),
    sc("take_along_dim_argmax", lambda x: torch.take_along_dim(x, x.argmax(2, keepdim=True), 2)),
    sc("take_along_dim_time", lambda x: x.take_along_dim(x.argsort(1), dim=1)),
    sc("cumprod_time", lambda x: torch.cumprod(x, 1)),
    sc("cumprod_inplace", _inplace(lambda y: y.cumprod_(2))),
    sc("logcumsumexp_time", lambda x: torch.logcumsumexp(x, dim=1)),
    sc("cummax_time", lambda x: torch.cummax(x, 1)),
    sc("cummin_feat", lambda x: x.cummin(-1)),
    sc("nansum_time", lambda x: torch.nansum(torch.where(x > 1, float("nan"), x), 1)),
    sc("nanmean_time", lambda x: torch.where(x > 1, float("nan"), x).nanmean(dim=1, keepdim=True)),
    sc("rot90_time", lambda x: torch.rot90(x, 2, (1, 2))),
    sc("rot90_k3", lambda x: x.rot90(3, [1, 2])),
    sc("rot90_k1", lambda x: x.rot90(1, [1, 2])),
]

CASES = PADDED + [
    sc("index_add_alpha", lambda x: torch.index_add(x, 2, IDX, x[..., :4] * 2, alpha=0.5)),
    sc("index_add_inplace", _inplace(lambda y: y.index_add_(2, IDX, y[..., 1:5]))),
    sc("index_copy", lambda x: x.index_copy(2, torch.tensor([1, 4, 0]), x[..., :3] * 2)),
    sc("index_fill", lambda x: torch.index_fill(x, 2, IDX, -1.5)),
    sc("index_reduce_amax", lambda x: x.index_reduce(2, IDX, x[..., :4] * 3, "amax", include_self=False)),
    sc("index_put_accumulate", lambda x: x.transpose(0, 2).index_put((IDX,), torch.tensor(2.0), accumulate=True)
       .transpose(0, 2)),
    sc("index_put_values", lambda x: x.transpose(0, 2).index_put((torch.tensor([3, 1]),), x.transpose(0, 2)[:2] * 2)
       .transpose(0, 2)),
    st("index_put_mask", lambda x: x.index_put((x > 0,), torch.tensor(0.5))),
    st("index_put_mask_values", lambda x: torch.index_put(x, (x[:, 0] > 0,), x[0] * 3, accumulate=True)),
    st("put_accumulate", lambda x: x.put(torch.tensor([0, 5, 5, -1]), torch.tensor([1.0, 2.0, 3.0, 4.0]), True)),
    st("put", lambda x: torch.put(x, torch.tensor([[1, 7], [8, 2]]), x[:2, :2] * 10)),
    st("take", lambda x: torch.take(x, torch.tensor([[0, 4], [17, -1]]))),
    st("masked_scatter", lambda x: x.masked_scatter(x > 0, x * 10)),
    st("take_along_dim_flat", lambda x: torch.take_along_dim(x, torch.tensor([3, 0, 7]))),
    # *_copy variants and in-place aliases, by the handler of the op they copy
    sc("permute_copy", lambda x: torch.permute_copy(x, (0, 2, 1)) * 2),
    sc("transpose_copy", lambda x: torch.transpose_copy(x, 1, 2) * 2),
    st("t_copy", lambda x: torch.t_copy(x) * 2),
    sc("unsqueeze_copy", lambda x: torch.unsqueeze_copy(x, 2)),
    sc("squeeze_copy", lambda x: torch.squeeze_copy(x[..., :1], -1)),
    sc("expand_copy", lambda x: torch.expand_copy(x[..., :1], (-1, -1, 4))),
    sc("view_copy", lambda x: torch.view_copy(x, (x.shape[0], x.shape[1], 2, 3))),
    sc("unfold_copy", lambda x: torch.unfold_copy(x, 2, 2, 2)),
    sc("detach_alias_copy", lambda x: torch.detach_copy(x) + torch.alias_copy(x)),
    sc("unbind_copy", lambda x: torch.unbind_copy(x, 2)[1]),
    sc("split_copy", lambda x: torch.split_copy(x, 4, 2)[1]),
    sc("split_with_sizes_copy", lambda x: torch.split_with_sizes_copy(x, [2, 4], -1)[0]),
    sc("narrow_copy", lambda x: torch.narrow_copy(x, 2, 1, 3) + x.narrow_copy(2, 0, 3)),
    sc("slice_copy_time", lambda x: torch.slice_copy(x, 1, 1, None)),
    sc("tril_triu_inplace", lambda x: (x[..., :5] * 1).tril_(1).triu_(-1)),
    sc("swapaxes_inplace", lambda x: (x * 1).swapaxes_(1, 2).swapdims_(0, 1)),
    sc("cumsum_inplace", _inplace(lambda y: y.cumsum_(1))),
    # stacking
    sc("hstack_time", lambda x: torch.hstack([x, x * 2])),
    st("hstack_vec", lambda x: torch.hstack([x[0], x[1] * 2]), ((3,),)),
    st("vstack_vec", lambda x: torch.vstack((x, x * 2)), ((6,),)),
    st("row_stack", lambda x: torch.row_stack([x, x * 2])),
    st("dstack", lambda x: torch.dstack([x, x * 2])),
    st("column_stack", lambda x: torch.column_stack([x, x[:, 0] * 2])),
    sc("atleast_3d", lambda x: torch.atleast_3d(x[..., 0]) + torch.atleast_2d(x[:, :, :1])),
    st("atleast_1d_tuple", lambda x: torch.atleast_1d(x, x * 2)[1]),
    st("block_diag", lambda x: torch.block_diag(x, x[0, :2], x[:2, :2] * 2)),
    st("cartesian_prod", lambda x: torch.cartesian_prod(x, x * 2), ((4,),)),
    sc("tril_indices", _tri_indices),
    # reductions
    sc("count_nonzero", lambda x: torch.count_nonzero((x > 0) * x, dim=(1, 2))),
    sc("count_nonzero_all", lambda x: (x > 0).count_nonzero()),
    sc("var_mean_time", lambda x: torch.var_mean(x, 1)),
    sc("std_mean", lambda x: torch.std_mean(x, dim=-1, keepdim=True, correction=0)),
    sc("aminmax_time", lambda x: torch.aminmax(x, dim=1)),
    sc("aminmax_all", lambda x: x.aminmax()),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_scatter(case):
    assert_parity(case)


@pytest.mark.parametrize("case", PADDED, ids=str)
def test_scatter_padded(case):
    assert_padded(case)


def test_cummax_ties():
    """torch keeps the last index of a tie."""
    assert_parity(st("cummax_ties", lambda x: torch.cummax(x.round(), 1), ((3, 9),), grads=False))
