"""Dims that several layers share, so a written config declares about as many dims as a person would:
one per size origin instead of one per op.

- **Model dims**: one static dim per size, the first known one: an input's static axis, else the
  first ``linear`` output of that size. A ``Linear(256, 256)`` after an input of 256 features gives
  its output that input's dim, so the residual add after it needs no rename, and every block's
  feed-forward hidden axis is one dim.
- **Splits**: a static axis split the same way again gets the same parts (the heads and head size
  of q, k and v are one pair of dims), and merging exactly those parts gives the axis back (parts not split
  from one axis merge into one dim made the first time).
- **Others of a size**: where the model's dim of a size cannot be used (a ``Linear(256, 256)`` or a
  depthwise conv on it), one other dim of that size, shared by all such layers.
- **Pieces**: a static axis sliced the same way again gets the same dim, and chunked or split the same way
  again the same pieces, one dim per piece size (q, k and v chunked from one projection line up with no
  renames); concatenating pieces of one axis that add up to its size gives the axis back (``rotate_half``'s
  ``cat((-x2, x1))`` has the head size's dim), other parts concatenated again the dim made the first time.
- **Twins**: a second axis of a dim's lengths (the key axis of attention scores) is the same dim
  wherever the tensors involved do not have it already.
- **Parameter axes**: an axis of a parameter that no op names (a weight-norm ``weight_v`` used by an
  ``eval`` before its conv, an embedding table) takes one dim per size shared by all parameters, not one
  dim of its own; never the model's dims (an op aligning it with a tensor renames it, as before).

Owned by the capture's :class:`~torchdispatch_returnn.dims.DimRegistry` (``dims.shared``).
"""

from __future__ import annotations

from typing import Any

from ._backend import Dim


class SharedDims:
    """The shared dims of one capture (see the module docstring)."""

    def __init__(self, registry: Any) -> None:
        self._registry = registry
        self._features: dict[int, Dim] = {}  # size -> the model's dim of that size
        self._splits: dict[tuple, tuple[Dim, list[Dim]]] = {}  # (id(axis), sizes) -> (axis, parts)
        self._merged: dict[tuple, Dim] = {}  # ids of parts -> the axis they were split from
        self._twins: dict[int, list[Dim]] = {}  # id(dim) -> dims made for a second axis of its lengths
        self._others: dict[int, list[Dim]] = {}  # size -> dims of that size made where the model's was avoided
        self._made_merges: dict[tuple, Dim] = {}  # ids of parts -> the dim made when they were first merged
        self._params: dict[int, list[Dim]] = {}  # size -> the parameter axes' dims of that size
        self._pieces: dict[tuple, tuple[Dim, list[Dim]]] = {}  # (id(axis), how it was cut) -> (axis, dims)
        self._piece_of: dict[int, tuple[Dim, Dim]] = {}  # id(dim of a piece) -> (that dim, the axis cut)
        self._made_cats: dict[tuple, Dim] = {}  # ids of parts -> the dim made when they were first concatenated

    def feature(self, size: int, name: str, avoid: Any = (), dim: Dim | None = None) -> Dim:
        """The model's dim of ``size`` (``dim``, an input's axis, if none is known yet); where that one is in
        ``avoid`` (the tensor's other axes), the other dim of that size (see the module docstring)."""
        d = self._features.get(size)
        if d is None:
            d = self._features[size] = self._plain(dim or self._registry.static(size, name))
        elif any(d is a for a in avoid):  # (a Linear(256, 256) on the model dim)
            d = _first_free(self._others.setdefault(size, []), lambda: self._plain(self._registry.static(size, name)),
                            avoid)
        return d

    def param(self, size: int, name: str, avoid: Any = ()) -> Dim:
        """The dim of a parameter axis of ``size`` (see the module docstring); ``avoid``: its other axes."""
        return _first_free(self._params.setdefault(size, []), lambda: self._plain(self._registry.static(size, name)),
                           avoid)

    def _plain(self, d: Dim) -> Dim:
        self._registry.mark_plain(d)
        return d

    def split(self, axis: Dim, sizes: list[int], name: str, avoid: Any = ()) -> list[Dim]:
        """The parts of the static ``axis`` split into ``sizes``: the same dims as the last time it was split
        so, unless one of them is in ``avoid`` (the tensor's other axes)."""
        key = (id(axis), tuple(int(s) for s in sizes))
        known = self._splits.get(key)
        if known is not None and known[0] is axis and not any(p is a for p in known[1] for a in avoid):
            return list(known[1])
        parts = [self._registry.static(s, f"{name}{k}") for k, s in enumerate(sizes)]
        if known is None:
            self._splits[key] = (axis, parts)
            self._merged[tuple(map(id, parts))] = axis
        return parts

    def split_parts(self, dim: Dim) -> list[Dim]:
        """The parts of the split that made ``dim`` (none: no split made it)."""
        return next((parts for _, parts in self._splits.values() if any(p is dim for p in parts)), [])

    def merged(self, parts: list[Dim], avoid: Any = ()) -> Dim | None:
        """The axis ``parts`` were split from (merging them gives it back), unless it is in ``avoid``."""
        axis = self._merged.get(tuple(map(id, parts)))
        return None if axis is None or any(axis is a for a in avoid) else axis

    def merge(self, parts: list[Dim], make: Any, avoid: Any = ()) -> Dim:
        """The dim of ``parts`` merged: the axis they were split from, else the dim made (by ``make()``) when
        these parts were first merged (the heads of every attention block merge into one dim), unless it is in
        ``avoid``."""
        axis = self.merged(parts, avoid)
        return axis if axis is not None else _made_for(self._made_merges, parts, make, avoid)

    def pieces(self, axis: Dim, cut: tuple, sizes: list[int], make: Any, avoid: Any = ()) -> list[Dim]:
        """The dims of the pieces of the static ``axis`` cut as ``cut`` says (a slice's (start, stop, step), a
        split's sizes) into ``sizes``, one per size (``make(size)``): the same as the last time it was cut so,
        unless one of them is in ``avoid`` (the tensor's other axes)."""
        key = (id(axis), cut)
        known = self._pieces.get(key)
        if known is not None and known[0] is axis and not any(p is a for p in known[1] for a in avoid):
            return list(known[1])
        made: dict[int, Dim] = {}
        dims = [made[s] if s in made else made.setdefault(s, make(s)) for s in sizes]
        for d in dims:
            self._piece_of[id(d)] = (d, axis)
        if known is None:
            self._pieces[key] = (axis, dims)
        return dims

    def concat(self, parts: list[Dim], total: int, make: Any, avoid: Any = ()) -> Dim:
        """The dim of static ``parts`` concatenated (``total``: their sizes' sum): the axis they were all cut from
        where they add up to its size, else the dim made (``make()``) the first time these parts were
        concatenated; never one in ``avoid`` (the tensor's other axes)."""
        cut = [self._piece_of.get(id(p)) for p in parts]
        axis = None
        if all(c is not None and c[0] is p for c, p in zip(cut, parts)) and len({id(c[1]) for c in cut}) == 1:
            axis = cut[0][1]
        if axis is not None and axis.dimension == total and not any(axis is a for a in avoid):
            return axis
        return _made_for(self._made_cats, parts, make, avoid)

    def twin(self, dim: Dim, make: Any, avoid: Any) -> Dim:
        """A dim of ``dim``'s lengths for a second axis: one made before (by ``make()``) that is not in ``avoid``."""
        return _first_free(self._twins.setdefault(id(dim), []), make, avoid)


def _made_for(store: dict, parts: list[Dim], make: Any, avoid: Any) -> Dim:
    """The dim made (``make()``) the first time ``parts`` were put together (``store``: ids of parts -> that dim),
    or a new one where that one is in ``avoid``."""
    key = tuple(map(id, parts))
    made = store.get(key)
    if made is None or any(made is a for a in avoid):
        made = make()
        store.setdefault(key, made)
    return made


def _first_free(pool: list[Dim], make: Any, avoid: Any) -> Dim:
    """The first dim of ``pool`` not in ``avoid``, else a new one (``make()``) added to the pool."""
    found = next((d for d in pool if not any(d is a for a in avoid)), None)
    if found is None:
        found = make()
        pool.append(found)
    return found
