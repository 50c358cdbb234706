import pytest
import torch
import torch.nn.functional as F
from parity_helpers import Case, Fn, assert_padded, assert_parity

from torchdispatch_returnn import UnsupportedOpError, returnn_capture

DYN = ({1: "time"},)
DYN2 = ({2: "time"},)


def se(name, fn, shapes=((3, 11, 6),), dyn=DYN, params=(), **kw):
    return Case(name, lambda: Fn(fn, *[torch.randn(*p) for p in params]), list(shapes), dyn, **kw)


def _meshgrid_ij(m, x):
    g1, g2 = torch.meshgrid(torch.arange(x.shape[1]).float(), m.p0, indexing="ij")
    return x * g1 + g2


def _meshgrid_xy(m, x):
    g1, g2 = torch.meshgrid(m.p0, x[0, 0, :4], indexing="xy")  # (4, 6)
    return x[:, :, :4] @ (g1 + g2)


def _meshgrid_vf(m, x):
    g1, g2 = torch._C._VariableFunctions.meshgrid([torch.arange(x.shape[1]).float(), m.p0], indexing="xy")
    return x * g1.T + g2.T


def _zero(m, x):
    y = x * 2
    torch.zero_(y)
    return y + x


def _empty_strided(m, x):
    e = x.new_empty_strided((6,), (1,))
    e.fill_(1.5)
    return x * e


CASES = [
    se("fliplr_time", lambda m, x: torch.fliplr(x)),
    se("fliplr_static", lambda m, x: x.transpose(1, 2).fliplr()),
    se("flipud_time_major", lambda m, x: torch.flipud(x.transpose(0, 1)).transpose(0, 1)),
    se("flipud_static", lambda m, x: torch.flipud(x.permute(2, 1, 0)).permute(2, 1, 0)),
    se("ravel_batch_feature", lambda m, x: torch.ravel(x.sum(1)) * 2),
    se("ravel_time", lambda m, x: x.ravel() * 2),
    se("ravel_static", lambda m, x: x.sum(1)[:, :4].T.ravel(), params=[]),
    se("H", lambda m, x: x[:, :, 0].H),
    se("mH", lambda m, x: x.mH * 2),
    se("mH_complex", lambda m, x: torch.complex(x[:, :, :2], x[:, :, 2:4] * 2).mH.imag + x[:, :, :2].cdouble().mH.real),
    se("tensor_split_sections", lambda m, x: torch.tensor_split(x, 4, dim=2)),
    se("tensor_split_indices", lambda m, x: x.tensor_split([1, 4], -1)),
    se("hsplit", lambda m, x: torch.hsplit(x.transpose(1, 2), [2, 5])),
    se("hsplit_time", lambda m, x: torch.hsplit(x, [1, 4])),
    se("tensor_split_time", lambda m, x: torch.tensor_split(x, torch.tensor([2, 3]), dim=1)),
    se("vsplit", lambda m, x: torch.vsplit(x.permute(2, 0, 1), 2)),
    se("dsplit", lambda m, x: torch.dsplit(x, [1, 4])),
    se("unsafe_split", lambda m, x: torch.unsafe_split(x, 4, dim=-1)),
    se("unsafe_chunk", lambda m, x: x.unsafe_chunk(3, 2)),
    se("select_time_last", lambda m, x: x.select(1, -1)),
    se("select_time_first", lambda m, x: torch.select(x, 1, 2)),
    se("select_time_size", lambda m, x: x.select(1, x.shape[1] - 2)),
    se("select_batch", lambda m, x: x.select(0, 1) * 2),
    se("select_static", lambda m, x: torch.select(x, 2, -2)),
    se("aten_slice_time", lambda m, x: torch.ops.aten.slice.Tensor(x, 1, 1, -2)),
    se("aten_slice_static_step", lambda m, x: torch.ops.aten.slice.Tensor(x, 2, 1, None, 2)),
    se("select_scatter_static", lambda m, x: torch.select_scatter(x, x[:, :, 0] * 2, 2, 3)),
    se("select_scatter_time_last", lambda m, x: torch.select_scatter(x, x[:, 0, :] * 2, 1, -1)),
    se("select_scatter_time_first", lambda m, x: x.select_scatter(x[:, 0, :] * 2, 1, 1)),
    se("slice_scatter_step", lambda m, x: torch.slice_scatter(x, x[:, :, :2] * 3, 2, 1, 5, 2)),
    se("slice_scatter_whole", lambda m, x: torch.slice_scatter(x, x * 2, 2)),
    se("slice_scatter_default", lambda m, x: x.slice_scatter(x[:, :, 4:] - 1, dim=2, start=4)),
    se("diagonal_scatter", lambda m, x: torch.diagonal_scatter(x, x[..., 0, :4] * 2, 1, 2, 3),
       shapes=[(3, 11, 5, 5)]),
    se("diagonal_scatter_same_dim", lambda m, x: torch.diagonal_scatter(x, x[..., :, 0] * 2, 0, 2, 3),
       shapes=[(3, 11, 5, 5)]),
    se("diagonal_scatter_negative", lambda m, x: x.diagonal_scatter(x[..., 0, :3] * 2, -2, -1, -2),
       shapes=[(3, 11, 5, 5)]),
    se("meshgrid_ij", _meshgrid_ij, params=[(6,)]),
    se("meshgrid_xy", _meshgrid_xy, params=[(6,)]),
    se("meshgrid_same", lambda m, x: sum(torch.meshgrid(torch.arange(x.shape[1]), torch.arange(x.shape[1]),
                                                         indexing="ij")) * x[0, 0, 0]),
    se("meshgrid_vf_list", _meshgrid_vf, params=[(6,)]),
    se("broadcast_tensors", lambda m, x: sum(torch.broadcast_tensors(x[:, :, :1], x.sum(1, keepdim=True), m.p0)),
       params=[(6,)]),
    se("sum_to_size_keep", lambda m, x: x.sum_to_size(x.shape[0], 1, 6)),
    se("sum_to_size_feature", lambda m, x: x.sum_to_size(x.shape[0], x.shape[1], 1)),
    se("sum_to_size_lead", lambda m, x: x.sum(1).sum_to_size(1, 6)),
    se("constant_pad_nd", lambda m, x: torch.constant_pad_nd(x, (1, 2, 0, 3), 0.5)),
    se("constant_pad_nd_crop", lambda m, x: torch.constant_pad_nd(x, (-1, 2))),
    se("pixel_shuffle", lambda m, x: F.pixel_shuffle(x, 2), shapes=[(3, 8, 11, 5)], dyn=DYN2),
    se("pixel_unshuffle", lambda m, x: F.pixel_unshuffle(x, 2), shapes=[(3, 2, 12, 6)], dyn=DYN2,
       other_sizes=(8, 14), seq_lens=(10, 4, 6)),
    se("channel_shuffle", lambda m, x: F.channel_shuffle(x, 3), shapes=[(3, 6, 11)], dyn=DYN2),
    se("diagflat", lambda m, x: x[:, :, :3] @ torch.diagflat(m.p0, 1)[:3], params=[(2,)]),
    se("diagflat_2d", lambda m, x: x[:, :, :4] @ m.p0.diagflat(), params=[(2, 2)]),
    se("combinations", lambda m, x: x @ torch.combinations(m.p0, 2), params=[(4,)]),
    se("combinations_replacement", lambda m, x: x[:, :, :2] @ torch.combinations(m.p0, 2, with_replacement=True).T,
       params=[(2,)]),
    se("linspace_tensor_bounds", lambda m, x: x * torch.linspace(m.p0[0], m.p0[1], 6), params=[(2,)]),
    se("linspace_dynamic_steps", lambda m, x: x * torch.linspace(-1, 2, x.shape[1])[:, None]),
    se("logspace_dynamic_steps", lambda m, x: x * torch.logspace(m.p0[0], 1, x.size(1), 3.0)[:, None], params=[(1,)]),
    se("linspace_const", lambda m, x: x * torch.linspace(-1, 2, 6)),
    se("linspace_odd_steps", lambda m, x: x[:, :, :5] * torch.linspace(m.p0[0], 3.0, 5), params=[(1,)]),
    se("logspace_tensor_bounds", lambda m, x: x * torch.logspace(m.p0[0], m.p0[1], 6, base=2.0), params=[(2,)]),
    se("fill_number", lambda m, x: torch.fill(x, 2.5) * x),
    se("fill_tensor", lambda m, x: torch.fill(x, m.p0[0]) + x, params=[(1,)]),
    se("zero_", _zero),
    se("cfloat", lambda m, x: torch.view_as_real(x.cfloat())),
    se("cdouble", lambda m, x: torch.view_as_real(x.cdouble() * 2)),
    se("new_empty_strided", _empty_strided),
    se("as_strided", lambda m, x: x[:, :, :3] @ torch.as_strided(m.p0, (3, 2), (1, 2)), params=[(8,)]),
    se("as_strided_offset", lambda m, x: x[:, :, :2] @ m.p0.as_strided((2, 2), (2, 1), 3), params=[(8,)]),
    se("as_strided_copy", lambda m, x: x[:, :, :2] @ torch.as_strided_copy(m.p0, (2, 3), (3, 1)), params=[(6,)]),
    se("as_strided_scatter", lambda m, x: x[:, :, :3] @ torch.as_strided_scatter(m.p0, m.p1, (2, 2), (1, 3)),
       params=[(3, 3), (2, 2)], grads=False),  # torch's gradient for the input is that of the scattered entries
    se("as_strided_batch", lambda m, x: torch.as_strided(x, (2, 3), (4, 1), 2), shapes=[(3, 4)], dyn=None),
]

PADDED = ["select_time_size", "hsplit_time", "fliplr_time", "flipud_time_major", "select_time_last", "select_time_first", "aten_slice_time",
          "select_scatter_time_last", "constant_pad_nd", "pixel_shuffle", "pixel_unshuffle", "sum_to_size_keep"]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_shape_extra(case):
    assert_parity(case)


@pytest.mark.parametrize("case", [c for c in CASES if c.name in PADDED], ids=str)
def test_shape_extra_padded(case):
    assert_padded(case)


@pytest.mark.parametrize("fn, why", [
    (lambda x: torch.tensor_split(x, 2, dim=1), "dynamic axis"),
    (lambda x: torch.vsplit(x, [1]), "batch axis"),
    (lambda x: torch.slice_scatter(x, x[:, :2], 1, 0, 2), "slice_scatter along a dynamic"),
    (lambda x: x.chalf(), "complex32"),
    (lambda x: x.bfloat16(), "bfloat16"),
    (lambda x: torch.diagflat(x[:, 0]), "diagflat of a tensor with a dynamic or batch axis"),
    (lambda x: torch.as_strided(x, (2, 2), (1, 1)), "dynamic axis"),
])
def test_shape_extra_refused(fn, why):
    x = torch.randn(3, 11, 6)
    with pytest.raises(UnsupportedOpError, match=why):
        with returnn_capture(dynamic_shapes=DYN):
            fn(Fn(lambda m, t: t)(x))
