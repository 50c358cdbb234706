"""``ReturnnTensor``: a real torch tensor that also knows its RETURNN layer and dims.

Sizes read from it (``x.shape``, ``x.size(1)``) are :class:`DimInt` values: plain ints for
torch, which also carry the RETURNN ``Dim`` of a dynamic axis, so that code like
``x.view(x.shape[0], x.shape[1], 4, -1)`` or ``torch.arange(x.size(1))`` stays dynamic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from ._backend import Dim

if TYPE_CHECKING:
    from .capture import Capture


@dataclass(frozen=True)
class Ref:
    """A RETURNN layer standing for one torch tensor: layer name, dims in torch axis order,
    the capture-time sizes and the torch dtype."""

    name: str
    dims: tuple[Dim, ...]
    shape: tuple[int, ...]
    dtype: torch.dtype

    @property
    def ndim(self) -> int:
        return len(self.dims)

    def with_dims(self, dims) -> "Ref":
        return Ref(self.name, tuple(dims), self.shape, self.dtype)


@dataclass(frozen=True)
class PackedRef(Ref):
    """``PackedSequence.data`` of a captured padded tensor: no layer of its own; ``padded`` is the
    padded tensor (dims in torch order, batch-first or time-major as packed), ``lengths`` its lengths."""

    padded: Ref | None = None
    batch_first: bool = True


@dataclass(frozen=True)
class UnsortedRef(Ref):
    """A tensor torch holds in length-sorted batch order while the network keeps the original order
    (``pack_padded_sequence(enforce_sorted=False)``); the later un-sort is the identity."""


class DimInt(int):
    """A size of a dynamic axis: an ``int`` for torch that also carries its RETURNN ``Dim``."""

    dim: Dim
    capture: "Capture"

    def __new__(cls, value: int, dim: Dim, capture: "Capture"):
        obj = super().__new__(cls, int(value))
        obj.dim = dim
        obj.capture = capture
        return obj

    def __repr__(self) -> str:
        return f"{int(self)}"

    def _derive(self, kind: str, a, b) -> "DimInt | int":
        da = a.dim if isinstance(a, DimInt) else int(a)
        db = b.dim if isinstance(b, DimInt) else int(b)
        with self.capture.graph.as_default():  # RETURNN may build length tensors for the new dim
            dim = self.capture.dims.derive(kind, da, db)
        return DimInt(self.capture.dims.size(dim), dim, self.capture) if isinstance(dim, Dim) else dim

    def __add__(self, other):
        return self._derive("add", self, other) if isinstance(other, int) else int(self) + other

    def __radd__(self, other):
        return self._derive("add", other, self) if isinstance(other, int) else other + int(self)

    def __sub__(self, other):
        return self._derive("sub", self, other) if isinstance(other, int) else int(self) - other

    def __mul__(self, other):
        return self._derive("mul", self, other) if isinstance(other, int) else int(self) * other

    def __rmul__(self, other):
        return self._derive("mul", other, self) if isinstance(other, int) else other * int(self)

    def __floordiv__(self, other):
        return self._derive("floordiv", self, other) if isinstance(other, int) else int(self) // other


class SymShape(tuple):
    """``x.shape`` of a captured tensor: a tuple of ints (``DimInt`` for dynamic axes)
    that compares equal to ``torch.Size``."""

    def numel(self) -> int:
        n = 1
        for s in self:
            n *= int(s)
        return n

    def __getitem__(self, item):
        res = tuple.__getitem__(self, item)
        return SymShape(res) if isinstance(item, slice) else res

    def __add__(self, other):
        return SymShape(tuple(self) + tuple(other))

    def __radd__(self, other):
        return SymShape(tuple(other) + tuple(self))


class ReturnnTensor(torch.Tensor):
    """A torch tensor produced inside a capture; ops on it are mirrored as RETURNN layers."""

    _rt_ref: Ref
    _rt_capture: "Capture"

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        capture = _find_capture(args, kwargs)
        if capture is None:
            with torch._C.DisableTorchFunctionSubclass():
                return _to_plain(func(*args, **kwargs))
        return capture.dispatch(func, args, kwargs)

    def __repr__(self, *, tensor_contents=None):  # noqa: D105
        with torch._C.DisableTorchFunctionSubclass():
            return torch.Tensor.__repr__(self.as_subclass(torch.Tensor))


def _find_capture(args, kwargs) -> "Capture | None":
    for a in _iter_args(args, kwargs):
        if isinstance(a, ReturnnTensor):
            cap = getattr(a, "_rt_capture", None)
            if cap is not None and cap.active:
                return cap
    return None


def _iter_args(args, kwargs):
    for a in list(args) + list(kwargs.values()):
        if isinstance(a, (list, tuple)):
            yield from a
        else:
            yield a


def _to_plain(value: Any) -> Any:
    """Turn ReturnnTensors in a result into plain tensors (used outside an active capture)."""
    if isinstance(value, ReturnnTensor):
        with torch._C.DisableTorchFunctionSubclass():
            return value.as_subclass(torch.Tensor)
    if isinstance(value, (list, tuple)) and any(isinstance(v, ReturnnTensor) for v in value):
        items = [_to_plain(v) for v in value]
        return type(value)(items) if not hasattr(value, "_fields") else type(value)(*items)
    return value


def wrap(value: torch.Tensor, ref: Ref, capture: "Capture") -> ReturnnTensor:
    """A ReturnnTensor sharing ``value``'s storage, bound to ``ref``."""
    with torch._C.DisableTorchFunctionSubclass():
        t = value.as_subclass(ReturnnTensor)
    t._rt_ref = ref
    t._rt_capture = capture
    return t


def plain(value: torch.Tensor) -> torch.Tensor:
    """The same tensor as a plain ``torch.Tensor``."""
    with torch._C.DisableTorchFunctionSubclass():
        return value.as_subclass(torch.Tensor) if isinstance(value, ReturnnTensor) else value
