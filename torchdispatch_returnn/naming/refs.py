"""References between layers in a net dict: the :class:`Layer`/:class:`Ref`/:class:`Base` objects a
layer's description holds until construction, and their names."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..tensor import Layer, MergedDim, Ref, expand_dims


@dataclass(frozen=True)
class Base:
    """A reference from inside a rec unit / subnetwork to a layer of the outer network (``base:x``)."""

    ref: Any


def _path(layer: Layer) -> str:
    return layer.path


def to_names(obj: Any, name_of: Callable[[Layer], str] = _path) -> Any:
    """A net-dict value with layers (Ref, Layer, Base) replaced by their names (``name_of(layer)``;
    default: the layer's path in the flat network)."""
    if isinstance(obj, Ref):
        return name_of(obj.layer)
    if isinstance(obj, Layer):
        return name_of(obj)
    if isinstance(obj, Base):
        return "base:" + to_names(obj.ref, name_of)
    if isinstance(obj, dict):
        return {k: to_names(v, name_of) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_names(v, name_of) for v in expand_dims(obj)] if any(isinstance(v, MergedDim) for v in obj) else \
            [to_names(v, name_of) for v in obj]
    if isinstance(obj, tuple):
        return tuple(to_names(v, name_of) for v in obj)
    return obj


def has_merged(obj: Any) -> bool:
    """A merged axis where RETURNN would need a real dim (lists of dims are expanded first)."""
    if isinstance(obj, MergedDim):
        return True
    if isinstance(obj, dict):
        return any(has_merged(k) or has_merged(v) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return any(has_merged(v) for v in obj)
    return False


def referenced(obj: Any) -> Iterator[Layer]:
    """The layers a net-dict value refers to."""
    if isinstance(obj, Ref):
        yield obj.layer
    elif isinstance(obj, Layer):
        yield obj
    elif isinstance(obj, Base):
        yield from referenced(obj.ref)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from referenced(k)
            yield from referenced(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from referenced(v)


def needed(roots: list[Layer]) -> set[int]:
    """ids of ``roots`` and of every layer they need: the layers their descriptions read, the casts standing
    for those, the rec layers of sub-layers."""
    keep: set[int] = set()
    stack = list(roots)
    while stack:
        x = stack.pop()
        if id(x) not in keep:
            keep.add(id(x))
            stack += [y for y in (x.alias, x.parent) if y is not None] + list(referenced(x.desc))
    return keep


#: layer classes without parameters, state or randomness: a second layer of the same description is the first
PURE_CLASSES = frozenset({
    "activation", "cast", "combine", "concat", "constant", "cumsum", "dot", "eval", "expand_dims", "gather", "gating",
    "length", "merge_dims", "pad", "pool", "range", "range_from_length", "range_in_axis", "reduce", "reinterpret_data",
    "repeat", "seq_len_mask", "slice", "softmax_over_spatial", "split_dims", "squeeze", "transpose", "window"})


class _Same:
    """An object compared by identity (a Dim's ``==`` in RETURNN is not identity; layers are not values)."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any):
        self.obj = obj

    def __hash__(self) -> int:
        return id(self.obj)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Same) and other.obj is self.obj


def _key(obj: Any) -> Any:
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return type(obj), obj  # (1, 1.0 and True differ)
    if isinstance(obj, Ref):
        return Ref, _Same(obj.layer), _key(list(obj.dims)), str(obj.dtype)
    if isinstance(obj, Base):
        return Base, _key(obj.ref)
    if isinstance(obj, dict):
        return dict, tuple((_key(k), _key(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj), tuple(_key(v) for v in obj)
    return _Same(obj)  # Dims, layers, arrays, ...: the same object


def pure_key(desc: dict, dims: tuple, dtype: Any) -> tuple | None:
    """A key equal for layers that compute the same thing (the same parameter-free, non-random description of
    the same inputs, dims and dtype); None for a layer that must stay its own."""
    if desc.get("class") not in PURE_CLASSES or "random" in str(desc.get("eval", "")):
        return None
    return _key(desc), _key(list(dims)), dtype
