"""What a captured torch tensor carries: its RETURNN layer (:class:`Layer`), dims and sizes (:class:`Ref`).

``ReturnnTensor`` is a real torch tensor that also knows its ``Ref``. Sizes read from it are
``DimInt`` values (see ``sizes.py``).

A :class:`Layer` is created when a handler asks for it and constructed in the TF graph later
(see ``builder.py``); its name is given by the namer, never by a handler.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from ._backend import Dim
from .errors import OpSite


class Layer:
    """One RETURNN layer of a capture: its net-dict entry (``desc``, whose values may hold
    :class:`Ref`/:class:`Layer` objects until construction), the dims it must have, and its name."""

    __slots__ = ("name", "desc", "dims", "dtype", "site", "role", "scope", "alias", "parent", "built", "shape",
                 "unsupported", "missing", "call")

    def __init__(self, desc: dict | None, dims: tuple, dtype: torch.dtype, *, site: OpSite | None = None,
                 role: str | None = None, scope: str = "", name: str | None = None, parent: Layer | None = None,
                 built: bool = False, shape: tuple | None = None):
        self.name = name  # assigned by the namer (None until then)
        self.desc = desc
        self.dims = dims  # the dims the constructed layer must have (any order)
        self.dtype = dtype
        self.site = site
        self.role = role  # short suffix for an intermediate layer of an op (None: the op's result)
        self.scope = scope
        self.alias: Layer | None = None  # a cast layer standing for this one (dtype fix at construction)
        self.parent = parent  # sub-layer of a rec/subnetwork layer
        self.built = built
        self.shape = shape  # capture-time sizes of a layer that makes a new batch dim
        self.unsupported = False  # stands for an op without handler (strict=False): never constructed
        self.missing: str | None = None  # why the network has no value here (the layer is never constructed)
        self.call: Any = None  # the module call (naming.scopes.Call) that made it (None: outside every module)

    def final(self) -> Layer:
        """The layer consumers read: this one, or the cast standing for it."""
        layer = self
        while layer.alias is not None:
            layer = layer.alias
        return layer

    @property
    def path(self) -> str:
        """The name consumers use in a net dict (``rec/c`` for a sub-layer)."""
        layer = self.final()
        if layer.parent is not None:
            return f"{layer.parent.path}/{layer.name}"
        return layer.name or f"<unnamed {layer.role or 'layer'}>"

    def sub(self, name: str, dims: tuple, dtype: torch.dtype) -> Layer:
        """The sub-layer ``name`` of this (rec) layer."""
        return Layer(None, dims, dtype, name=name, parent=self, built=True)

    def __repr__(self) -> str:
        return f"Layer({self.path})"


class MergedDim:
    """One torch axis made of several RETURNN dims in row-major order (``x.view(B * K, ...)`` of a
    (B, K, ...) tensor): the layers keep the dims apart, only the torch view merges them."""

    def __init__(self, parts: tuple):
        self.parts = tuple(parts)
        self.description = "*".join(getattr(p, "description", "?") or "?" for p in self.parts)
        sizes = [p.dimension for p in self.parts]
        self.dimension = None if any(s is None for s in sizes) else _prod(sizes)

    def is_dynamic(self) -> bool:
        return any(p.is_dynamic() for p in self.parts)

    def is_static(self) -> bool:
        return not self.is_dynamic()

    def is_batch_dim(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"Merged({self.description})"


def expand_dims(dims) -> list:
    """``dims`` with each merged axis replaced by its parts (the dims the layer really has)."""
    out = []
    for d in dims:
        out.extend(d.parts if isinstance(d, MergedDim) else [d])
    return out


def _prod(sizes) -> int:
    n = 1
    for s in sizes:
        n *= s
    return n


class _NewBatch:
    """Placeholder in a layer's dims for the new batch dim the layer itself creates."""

    def is_dynamic(self) -> bool:
        return False

    def is_batch_dim(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "NEW_BATCH"


NEW_BATCH = _NewBatch()


@dataclass(frozen=True)
class Ref:
    """A RETURNN layer standing for one torch tensor: the layer, dims in torch axis order,
    the capture-time sizes and the torch dtype."""

    layer: Layer
    dims: tuple[Dim, ...]
    shape: tuple[int, ...]
    dtype: torch.dtype

    @property
    def name(self) -> str:
        return self.layer.path

    @property
    def ndim(self) -> int:
        return len(self.dims)

    def with_dims(self, dims) -> Ref:
        return Ref(self.layer, tuple(dims), self.shape, self.dtype)


@dataclass(frozen=True)
class PackedRef(Ref):
    """``PackedSequence.data`` of a captured padded tensor: no layer of its own; ``padded`` is the
    padded tensor (dims in torch order, batch-first or time-major as packed)."""

    padded: Ref | None = None
    batch_first: bool = True


@dataclass(frozen=True)
class UnsortedRef(Ref):
    """A tensor torch holds in length-sorted batch order while the network keeps the original order
    (``pack_padded_sequence(enforce_sorted=False)``); the later un-sort is the identity."""


class ReturnnTensor(torch.Tensor):
    """A torch tensor produced inside a capture; ops on it are mirrored as RETURNN layers.

    ``_rt_capture`` is the capture's dispatcher (``.active``, ``.dispatch(func, args, kwargs)``)."""

    _rt_ref: Ref
    _rt_capture: Any

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        dispatcher = _find_dispatcher(args, kwargs)
        if dispatcher is None:
            with torch._C.DisableTorchFunctionSubclass():
                return _to_plain(func(*args, **kwargs))
        return dispatcher.dispatch(func, args, kwargs)

    def __repr__(self, *, tensor_contents=None):
        with torch._C.DisableTorchFunctionSubclass():
            return torch.Tensor.__repr__(self.as_subclass(torch.Tensor))


def _find_dispatcher(args, kwargs) -> Any:
    for a in iter_args(args, kwargs):
        if isinstance(a, ReturnnTensor):
            d = getattr(a, "_rt_capture", None)
            if d is not None and d.active:
                return d
    return None


def iter_args(args, kwargs) -> Iterator[Any]:
    """The arguments of a call, with lists and tuples flattened one level."""
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


def wrap(value: torch.Tensor, ref: Ref, dispatcher: Any) -> ReturnnTensor:
    """A ReturnnTensor sharing ``value``'s storage, bound to ``ref``."""
    with torch._C.DisableTorchFunctionSubclass():
        t = value.as_subclass(ReturnnTensor)
    t._rt_ref = ref
    t._rt_capture = dispatcher
    return t


def plain(value: torch.Tensor) -> torch.Tensor:
    """The same tensor as a plain ``torch.Tensor``."""
    with torch._C.DisableTorchFunctionSubclass():
        return value.as_subclass(torch.Tensor) if isinstance(value, ReturnnTensor) else value


def result_items(out: Any) -> list:
    """The items of a call's result: a tuple's or list's items, a dict's values, else the result itself."""
    return list(out.values()) if isinstance(out, dict) else list(out) if isinstance(out, (list, tuple)) else [out]
