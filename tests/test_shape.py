import pytest
import torch
from parity_helpers import Case, Fn, assert_parity

DYN = ({1: "time"},)


def sh(name, fn, shapes=[(3, 11, 8)], dyn=DYN, **kw):
    return Case(name, lambda: Fn(lambda m, *xs: fn(*xs)), shapes, dyn, **kw)


CASES = [
    sh("diff_time", lambda x: torch.diff(x, dim=1)),
    sh("diff_prepend_twice", lambda x: x.diff(n=2, dim=-1, prepend=x[..., :1] * 0)),
    sh("diff_time_prepend", lambda x: torch.diff(x, dim=1, prepend=x[:, :1] - 1)),
    sh("transpose", lambda x: x.transpose(1, 2) + 1),
    sh("permute", lambda x: x.permute(2, 0, 1) * 3),
    sh("movedim", lambda x: torch.movedim(x, 2, 0) - 1),
    sh("t_matrix", lambda x: x.sum(1).t() + 0),
    sh("mT", lambda x: x.mT.exp()),
    sh("contiguous", lambda x: x.transpose(1, 2).contiguous() + 1),
    sh("unsqueeze", lambda x: x.unsqueeze(1) * 2),
    sh("unsqueeze_neg", lambda x: x.unsqueeze(-1) + x.unsqueeze(-1)),
    sh("squeeze", lambda x: x.unsqueeze(2).squeeze(2) + 1),
    sh("squeeze_all", lambda x: x[:, :, :1].squeeze() * 1),
    sh("squeeze_keepdim_sum", lambda x: x.sum(-1, keepdim=True).squeeze(-1)),
    sh("expand", lambda x: x[:, :, :1].expand(-1, -1, 5) + 0),
    sh("expand_new_axis", lambda x: x.sum(-1).unsqueeze(1).expand(x.shape[0], 4, x.shape[1]) * 1),
    sh("expand_dyn", lambda x: x.mean(1, keepdim=True).expand(-1, x.shape[1], -1) - x),
    sh("expand_as", lambda x: x.mean(1, keepdim=True).expand_as(x) + x),
    sh("chunk", lambda x: torch.stack(x.chunk(2, dim=-1), 0).sum(0)),
    sh("chunk_tuple", lambda x: x.chunk(3, dim=2)),
    sh("split_sizes", lambda x: x.split([3, 5], dim=-1)[1] * 2),
    sh("split_int", lambda x: torch.split(x, 3, dim=2)[2] + 1),
    sh("cat_static", lambda x: torch.cat([x, x * 2], dim=-1)),
    sh("cat_neg_dim", lambda x: torch.cat((x[:, :, :2], x[:, :, 5:]), -1) * 1),
    sh("stack", lambda x: torch.stack([x, x + 1, x * 2], dim=1)),
    sh("stack_last", lambda x: torch.stack([x, -x], dim=-1)),
    sh("flip", lambda x: x.flip(-1) + 0),
    sh("flip_two", lambda x: torch.flip(x.unsqueeze(1).expand(-1, 3, -1, -1), [1, 3]) * 1),
    sh("unbind", lambda x: sum(x.unbind(-1)[:3])),
    sh("getitem_int", lambda x: x[:, :, 2] * 1),
    sh("getitem_neg_int_static", lambda x: x[..., -1] + 0),
    sh("getitem_slice_static", lambda x: x[:, :, 1:5] + 0),
    sh("getitem_slice_step", lambda x: x[:, :, ::2] * 2),
    sh("getitem_slice_neg", lambda x: x[:, :, -3:] - 1),
    sh("getitem_none_ellipsis", lambda x: x[:, None, ..., None] * 1),
    sh("getitem_time_trim", lambda x: x[:, 1:-1] * 1),
    sh("getitem_time_step", lambda x: x[:, ::2] + 0),
    sh("getitem_time_drop_first", lambda x: x[:, 2:] + 0),
    sh("getitem_time_drop_last", lambda x: x[:, :-2] + 0),
    sh("getitem_time_last_frame", lambda x: x[:, -1] + 0),
    sh("getitem_time_first_frame", lambda x: x[:, 0] + 0),
    sh("getitem_index_tensor", lambda x: x[:, :, torch.tensor([0, 3, 3, 7])] * 1),
    sh("getitem_batch_int", lambda x: x[0] + 0),
    sh("triu_dynamic_mask", lambda x: x.sum(-1)[:, :, None] * torch.triu(torch.ones(x.shape[1], x.shape[1]), 1)),
    sh("tril_diag", lambda x: torch.tril(x[:, :, :6].reshape(x.shape[0], x.shape[1], 2, 3), diagonal=-1) * 1),
    sh("repeat_static", lambda x: x[:, :, :2].repeat(1, 1, 3) * 1),
    sh("repeat_new_axis", lambda x: x.sum(1).repeat(2, 1, 1) + 0),
    sh("tile", lambda x: torch.tile(x[:, :, :3], (2,)) * 1),
    sh("roll", lambda x: torch.roll(x, 3, dims=2) * 1),
    sh("roll_two", lambda x: x.unsqueeze(1).expand(-1, 3, -1, -1).roll((1, -2), (1, 3)) * 1),
    sh("index_select", lambda x: torch.index_select(x, 2, torch.tensor([1, 0, 5])) + 0),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_shape(case):
    assert_parity(case)
