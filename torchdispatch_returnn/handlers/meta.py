"""Metadata queries: they run in plain torch and build no layer.

``shape``/``size`` return :class:`SymShape`/:class:`DimInt` so that sizes of dynamic axes
keep their RETURNN dims when they flow into later ops.
"""

from __future__ import annotations

import torch

from ..sizes import DimInt, DimOwner, SymShape
from ..tensor import Ref

T = torch.Tensor

_PLAIN_NAMES = [
    "dim", "ndimension", "element_size", "is_contiguous", "is_floating_point",
    "is_complex", "is_signed", "data_ptr", "storage_offset", "stride", "get_device", "__len__", "__repr__",
    "__format__", "__str__", "__hash__", "__bool__", "__int__", "__float__", "__index__", "item", "tolist",
    "numpy", "__array__", "__reduce_ex__", "__deepcopy__", "_is_view", "is_set_to", "has_names", "__dir__",
    "__sizeof__", "is_inference", "untyped_storage", "storage", "is_nonzero", "__contains__",
]
_PLAIN_PROPS = [
    "ndim", "dtype", "device", "requires_grad", "is_leaf", "grad_fn", "grad", "layout", "is_cuda", "is_cpu",
    "is_sparse", "is_quantized", "is_meta", "is_mps", "is_nested", "names", "_version", "itemsize", "nbytes",
    "output_nr", "_base", "is_mkldnn", "is_xla", "is_xpu", "is_ipu", "is_vulkan", "is_mtia", "is_maia",
]

PLAIN: set = set()
for _n in _PLAIN_NAMES:
    if hasattr(T, _n):
        PLAIN.add(getattr(T, _n))
for _n in _PLAIN_PROPS:
    _p = T.__dict__.get(_n) or getattr(torch._C.TensorBase, _n, None)
    if _p is not None and hasattr(_p, "__get__"):
        PLAIN.add(_p.__get__)
PLAIN.update({torch.is_tensor, torch.is_floating_point, torch.is_complex, torch.Tensor.__setstate__})
PLAIN.discard(None)


def sym_shape(dims: DimOwner, ref: Ref) -> SymShape:
    """The shape of ``ref`` with DimInt entries for dynamic axes (and the batch axis)."""
    sizes = []
    for d, s in zip(ref.dims, ref.shape):
        sizes.append(DimInt(s, d, dims) if d.dimension is None else int(s))
    return SymShape(sizes)


def _shape(dims, ref):
    return sym_shape(dims, ref)


def _size(dims, ref, dim=None):
    shape = sym_shape(dims, ref)
    if dim is None:
        return shape
    if not isinstance(dim, int):
        raise TypeError(f"size() dim must be an int, got {dim!r}")
    return shape[dim]


def _numel(dims, ref):
    n = 1
    for s in sym_shape(dims, ref):  # a product over dynamic sizes keeps its dim (B * T)
        n = s * n
    return n


#: shape queries: fn(dims, ref of the tensor, *args) -> SymShape or DimInt
SHAPE = {T.shape.__get__: _shape, T.size: _size, T.numel: _numel, T.nelement: _numel, torch.numel: _numel}

#: reading a 0-d tensor as a Python int: ``lengths.max().item()`` gives the dim's size (DimInt)
AS_INT = {T.item, T.__int__, T.__index__}
