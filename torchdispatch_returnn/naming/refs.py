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
