"""RETURNN ``Dim`` bookkeeping for one capture: every dim, length and batch-merge question.

Every ``Dim`` a capture puts into the network is created here, either as a base dim
(``Dim(None, name="time")``, ``Dim(80, name="data_f")``) or by arithmetic on other dims
(``time - 1``, ``ceildiv(time, 2)``). Each one gets a Python variable name and the code that
recreates it, so :meth:`DimRegistry.declarations` can write the dims of a config as code.
Handlers never create ``Dim`` objects themselves: they ask the registry.

The registry also knows, per dynamic dim, a layer that has it (to read its lengths or positions
from), which layers hold a dim's lengths or their maximum (``lengths.max()`` is the dim's size),
the lengths given at capture time, and which batch dims were made by merging the batch with
another axis.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Any

import numpy as np

from ._backend import Dim, batch_dim
from .guards import SizeGuards
from .naming.dimnames import DimNames, var_name, written
from .shared_dims import SharedDims
from .sizes import DimInt, Lin
from .tensor import Layer, MergedDim, expand_dims

logger = logging.getLogger(__name__)
_PKG_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep

DimOrInt = Dim | int

_OPS = {
    # kind: (RETURNN Dim method, code template)
    "add": (lambda a, b: a + b, "{a} + {b}"),
    "sub": (lambda a, b: a.sub_right(b), "{a}.sub_right({b})"),
    "sub_left": (lambda a, b: a.sub_left(b), "{a}.sub_left({b})"),
    "mul": (lambda a, b: a * b, "{a} * {b}"),
    "floordiv": (lambda a, b: a // b, "{a} // {b}"),
    "ceildiv": (lambda a, b: a.ceildiv_right(b), "{a}.ceildiv_right({b})"),
}


class DimRegistry:
    """Creates, names and remembers the dims of one capture."""

    def __init__(self, graph: Any = None) -> None:
        self.graph = graph  # RETURNN may build length tensors of derived dims: in the capture's graph
        self._entries: dict[int, tuple[Dim, str, str]] = {}  # id(dim) -> (dim, var name, code)
        self._order: list[int] = []
        self._var_names: set[str] = set()
        self._sizes: dict[int, int] = {}  # id(dim) -> size at capture time
        self._layers: dict[int, Layer] = {}  # id(dynamic dim) -> a layer that has it
        self._length_of: dict[int, Dim] = {}  # id(layer) holding the lengths of a dim -> that dim
        self._size_tensors: dict[int, Any] = {}  # id(layer) holding a size (or tuple of sizes) -> Lin(s)
        self._kinds: dict[int, str] = {}  # id(dynamic dim) -> "input", "derived" or "twin"
        self._escaped: dict[int, dict[str, Lin]] = {}  # int value -> sizes the user's code turned into it
        self._lins: dict[int, Lin] = {}  # id(derived dim) -> its linear expression over base dims
        self._twin_of: dict[int, Dim] = {}  # id(twin dim) -> the dim whose lengths it has
        self._plain: set[int] = set()  # ids of static dims a parameter may take (see mark_plain)
        self._by_lin: dict[tuple, Dim] = {}  # canonical linear expression -> the dim made for it
        self._given_lengths: dict[int, np.ndarray] = {}  # id(dim) -> lengths given at capture time
        self._flat_batches: dict[int, tuple[Dim, ...]] = {}  # id(merged batch dim) -> the dims merged
        self.named: dict[str, Dim] = {}  # dynamic dim name (dynamic_shapes) -> Dim
        self.guards = SizeGuards()  # decisions the user's code took on dynamic sizes
        self._recipes: dict[int, tuple] = {}  # id(derived dim) -> (kind, a, b)
        self.batch_fixed: list[str] = []  # where plain tensors line up with the batch axis (see Builder.on_batch)
        self.shared = SharedDims(self)  # dims several layers share (model dims, splits)
        self.names = DimNames()  # module paths and roles of the dims ops made: their config names

    # -- layers that carry a dim ------------------------------------------------------------------
    def note_layer(self, layer: Layer, dims) -> None:
        """Remember ``layer`` as one that has each of the dynamic ``dims`` (the first one wins)."""
        for x in expand_dims(dims):
            if isinstance(x, Dim) and x.is_dynamic():
                self._layers.setdefault(id(x), layer)

    def layer_of(self, dim: Dim) -> Layer | None:
        """A layer that has the dynamic ``dim`` (to read its lengths or positions from)."""
        return self._layers.get(id(dim))

    def mark_lengths(self, layer: Layer, dim: Dim) -> None:
        """``layer`` holds the per-sequence lengths of ``dim``."""
        self._length_of[id(layer)] = dim

    def lengths_dim(self, layer: Layer) -> Dim | None:
        return self._length_of.get(id(layer))

    def mark_size_tensor(self, layer: Layer, lin: Lin) -> None:
        """The 0-d ``layer`` holds a size: ``max(lengths)`` of a dim is its padded size, and
        arithmetic on such tensors gives other sizes (``lengths.max() + 1``)."""
        self._size_tensors[id(layer)] = lin

    def size_tensor(self, layer: Layer) -> Lin | None:
        """The size a 0-d layer holds (see :meth:`mark_size_tensor`), or None."""
        found = self._size_tensors.get(id(layer))
        return found if isinstance(found, Lin) else None

    def mark_size_vector(self, layer: Layer, lins: list) -> None:
        """The 1-d ``layer`` holds sizes (``torch.tensor(x.shape)``)."""
        self._size_tensors[id(layer)] = tuple(lins)

    def size_vector(self, layer: Layer) -> tuple | None:
        found = self._size_tensors.get(id(layer))
        return found if isinstance(found, tuple) else None

    def set_given_lengths(self, dim: Dim, lengths: np.ndarray) -> None:
        """The lengths of ``dim`` given at capture time (a forward argument tied to the dim)."""
        self._given_lengths[id(dim)] = lengths

    def given_lengths(self) -> dict[int, np.ndarray]:
        """id(dim) -> lengths given at capture time."""
        return dict(self._given_lengths)

    def full_sequences(self) -> np.ndarray | None:
        """Which sequences have their full (padded) length along every dim with given lengths."""
        full = None
        for i, lens in self._given_lengths.items():
            f = np.asarray(lens) == self._sizes[i]
            full = f if full is None else full & f
        return full

    def mark_flat_batch(self, new_batch: Dim, merged: tuple) -> None:
        """``new_batch`` was made by merging the dims ``merged`` (batch and one other axis)."""
        self._flat_batches[id(new_batch)] = tuple(merged)

    def flat_batch_parts(self, dim: Dim) -> tuple | None:
        return self._flat_batches.get(id(dim))

    def size(self, dim: Dim) -> int:
        """The size of ``dim`` at capture time (static size, or the traced length)."""
        if isinstance(dim, MergedDim):
            n = 1
            for p in dim.parts:
                n *= self.size(p)
            return n
        if dim.dimension is not None:
            return dim.dimension
        return self._sizes[id(dim)]

    def has_size(self, dim: Dim) -> bool:
        return dim.dimension is not None or id(dim) in self._sizes

    def set_size(self, dim: Dim, size: int) -> None:
        self._sizes[id(dim)] = int(size)

    def _add(self, dim: Dim, name: str, code: str) -> Dim:
        if id(dim) not in self._entries and dim is not batch_dim:
            self._entries[id(dim)] = (dim, var_name(name, self._var_names), code)
            self._order.append(id(dim))
            self.names.created(dim, name)
        return dim

    def dynamic(self, name: str, size: int, *, kind: str = "input") -> Dim:
        """A new dynamic (spatial) dim, e.g. the time axis of an input; ``size``: its traced length."""
        dim = Dim(None, name=name, kind=Dim.Types.Spatial)
        self.set_size(dim, size)
        self._kinds[id(dim)] = kind
        return self._add(dim, name, f"Dim(None, name={name!r}, kind=Dim.Types.Spatial)")

    def static(self, size: int, name: str) -> Dim:
        """A new static dim of the given size."""
        size = int(size)
        dim = Dim(size, name=name, kind=Dim.Types.Feature)
        return self._add(dim, name, f"Dim({size}, name={name!r}, kind=Dim.Types.Feature)")

    def same_length_as(self, dim: Dim, name: str) -> Dim:
        """A new dim, distinct from ``dim`` but of the same size (static) or lengths (dynamic)."""
        if dim.is_static():
            return self.static(dim.dimension, name)
        twin = self.dynamic(name, self.size(dim), kind="twin")
        self._twin_of[id(twin)] = self._twin_of.get(id(dim), dim)
        return twin

    def mark_plain(self, *dims: Dim) -> None:
        """Static dims of inputs and parameters: no layer declares them the same as a derived dim, so a
        parameter may take them as its shape."""
        self._plain.update(id(d) for d in dims)

    def is_plain(self, dim: Dim) -> bool:
        return id(dim) in self._plain

    def twin_origin(self, dim: Dim) -> Dim:
        """The dim a twin was made from (same lengths), or ``dim`` itself."""
        return self._twin_of.get(id(dim), dim)

    def derive(self, kind: str, a: DimOrInt, b: DimOrInt) -> DimOrInt:
        """``a <kind> b`` where at least one side is a Dim; the result is a (cached) RETURNN dim."""
        if not isinstance(a, Dim) and not isinstance(b, Dim):
            return _STATIC_OPS[kind](int(a), int(b))
        if isinstance(a, Dim) and isinstance(b, int) and b == 0 and kind in ("add", "sub", "sub_left"):
            return a
        if isinstance(a, Dim) and isinstance(b, int) and b == 1 and kind in ("mul", "floordiv", "ceildiv"):
            return a
        if isinstance(a, int) and kind == "add":
            a, b = b, a
        if isinstance(a, Dim) and isinstance(b, int) and b < 0 and kind in ("add", "sub"):
            kind, b = ("sub" if kind == "add" else "add"), -b
        if (not isinstance(a, Dim) or a.is_static()) and (not isinstance(b, Dim) or b.is_static()):
            return self.derive(kind, _int(a), _int(b))  # static arithmetic: a plain size
        fn, template = _OPS[kind]
        if isinstance(a, int) and kind != "mul":
            a = self.static_value_dim(a)
        with self.graph.as_default() if self.graph is not None else contextlib.nullcontext():
            dim = fn(a, b)  # int * Dim works directly (Dim.__rmul__)
        self.set_size(dim, self.derive(kind, self.size(a) if isinstance(a, Dim) else a,
                                       self.size(b) if isinstance(b, Dim) else b))
        code = template.format(a=self.code(a) if isinstance(a, Dim) else repr(a),
                               b=self.code(b) if isinstance(b, Dim) else repr(b))
        self._kinds.setdefault(id(dim), "derived")
        self._recipes.setdefault(id(dim), (kind, a, b))
        lin = self._derived_lin(kind, a, b)
        if lin is not None and id(dim) not in self._lins and dim is not a:
            self._lins[id(dim)] = lin
            self._by_lin.setdefault(_key(lin), dim)
        return self._add(dim, dim.description or "derived", code)

    def _derived_lin(self, kind: str, a: DimOrInt, b: DimOrInt) -> Lin | None:
        la = self.lin_of(a) if isinstance(a, Dim) else Lin((), a)
        lb = self.lin_of(b) if isinstance(b, Dim) else Lin((), b)
        if kind == "add":
            return la + lb
        if kind in ("sub", "sub_left"):
            return la - lb
        if kind == "mul" and (la.is_const or lb.is_const):
            return la.scale(lb.const) if lb.is_const else lb.scale(la.const)
        return None  # floordiv, ceildiv, dim * dim: a dim of its own

    def lin_of(self, dim: Dim) -> Lin:
        """``dim`` as a linear expression over base dims (``T + 1`` for the dim made as T + 1)."""
        if isinstance(dim, MergedDim):  # B * K: the dynamic part times the static ones
            dyn = [p for p in dim.parts if p.is_dynamic()]
            static = self.size(dim) // max(1, self.size(dyn[0])) if len(dyn) == 1 else None
            if static is None:
                raise NotImplementedError(f"the size of the merged axis {dim}")
            return self.lin_of(dyn[0]).scale(static)
        lin = self._lins.get(id(dim))
        return lin if lin is not None else Lin(((dim, 1),))

    def dim_of(self, lin: Lin) -> Dim | None:
        """The dim a size expression is (``2 * T - 1``), or None if RETURNN has no dim for it
        (a negative coefficient, or no dim at all)."""
        if len(lin.terms) == 1 and lin.terms[0][1] == 1 and not lin.const:
            return lin.terms[0][0]
        if not lin.terms or any(k <= 0 or d.is_batch_dim() for d, k in lin.terms):
            return None  # (a product with the batch size is a merged axis, no dim)
        known = self._by_lin.get(_key(lin))
        if known is not None:
            return known
        out: Any = None
        for d, k in lin.terms:
            t = d if k == 1 else self.derive("mul", d, k)
            out = t if out is None else self.derive("add", out, t)
        if lin.const:
            out = self.derive("add", out, lin.const)
        return out if isinstance(out, Dim) and out.is_dynamic() else None

    def value(self, lin: Lin) -> int:
        """The capture-time value of a size expression."""
        return sum(k * self.size(d) for d, k in lin.terms) + lin.const

    def note_escape(self, value: DimInt, *, checked: bool = False) -> None:
        """The user's code turned the size ``value`` into a plain int (``int(x.size(1))``, ``len(x)``).
        Conversions by this package do not count (unless ``checked``: the caller knows)."""
        if checked or not sys._getframe(2).f_code.co_filename.startswith(_PKG_DIR):
            self._escaped.setdefault(int.__int__(value), {})[repr(value.lin)] = value.lin

    def note_guard(self, value: DimInt, op: str, other: Any, result: Any) -> None:
        """The user's code compared the dynamic size ``value``: see :class:`~.guards.SizeGuards`."""
        frame = sys._getframe(3)
        if not frame.f_code.co_filename.startswith(_PKG_DIR) and value.lin.terms:
            self.guards.note(f"{frame.f_code.co_filename}:{frame.f_lineno}", value.lin, int.__int__(value), op,
                             other, result)

    def size_at(self, lin: Lin, sizes: dict[str, int]) -> int | None:
        """The value of ``lin`` with the input dims at ``sizes`` (by name; others at their capture
        size), or None where a dim's size cannot be derived here."""
        total = lin.const
        for d, k in lin.terms:
            v = self._eval_dim(d, sizes)
            if v is None:
                return None
            total += k * v
        return total

    def _eval_dim(self, d: Any, sizes: dict[str, int]) -> int | None:
        if not isinstance(d, Dim):
            return int(d)
        if not d.is_dynamic():
            return d.dimension
        if self.named.get(d.description) is d:
            return sizes.get(d.description, self.size(d))
        if d.is_batch_dim():
            return self.size(d)
        if id(d) in self._recipes:
            kind, a, b = self._recipes[id(d)]
            va, vb = self._eval_dim(a, sizes), self._eval_dim(b, sizes)
            return None if va is None or vb is None else _STATIC_OPS[kind](va, vb)
        if id(d) in self._lins:
            return self.size_at(self._lins[id(d)], sizes)
        return None

    def is_escaped(self, value: int) -> bool:
        """The user's code made a plain int of this value from a dynamic size."""
        return int(value) in self._escaped

    def recover(self, value: int, avoid: Any = ()) -> DimInt | None:
        """The size a plain int used as a size stands for: a dynamic size of this value that the
        user's code turned into an int (``int(x.size(1))``, ``len(lengths)``), if there is exactly
        one, and no static size in ``avoid`` (the op's other sizes) equals it. Else None (logged)."""
        value = int(value)
        found = list(self._escaped.get(value, {}).values())
        if not found:
            return None
        if len(found) > 1 or value in {int(a) for a in avoid}:
            logger.warning("the size %d is ambiguous at capture time (%s%s): it stays static; capture with example "
                           "sizes that differ from each other and from static sizes", value,
                           " or ".join(map(repr, found)), ", also a static size" if value in avoid else "")
            return None
        lin = found[0]
        return DimInt(value, None, self, lin)

    def static_derived(self, kind: str, a: Dim, b: int) -> Dim:
        """RETURNN's own derived dim of static arithmetic (e.g. ``in_dim // groups``, as a conv computes it)."""
        fn, template = _OPS[kind]
        dim = fn(a, b)
        if id(dim) not in self._entries:
            self._add(dim, dim.description or "derived", template.format(a=self.code(a), b=repr(b)))
        return dim

    def static_value_dim(self, value: int) -> Dim:
        """A static dim used as an operand of dim arithmetic."""
        return self.static(value, f"c{value}")

    def code(self, dim: Dim) -> str:
        """The Python expression (a variable name) that stands for ``dim`` in a config."""
        if dim is batch_dim or dim == batch_dim and dim.is_batch_dim():
            return "batch_dim"
        entry = self._entries.get(id(dim))
        if entry is None:
            raise KeyError(f"dim {dim} was not created by this capture")
        return entry[1]

    def apply_names(self, net_dict: dict, kinds: dict[str, str]) -> None:
        """Give the dims ops made their config names (module path and role, see :mod:`.naming.dimnames`)."""
        self._entries = self.names.renamed(self._entries, self._order, net_dict, kinds)
        self._var_names = {e[1] for e in self._entries.values()}

    def declarations(self, *written_in: dict) -> list[str]:
        """``var = code`` lines for the dims, in creation order (dependencies first); with ``written_in`` (a net
        dict, extern data): only the dims these hold and those they are made of."""
        order = written(self._entries, self._order, *written_in) if written_in else self._order
        return [f"{self._entries[i][1]} = {self._entries[i][2]}" for i in order]


def _key(lin: Lin) -> tuple:
    return lin.key()


_STATIC_OPS = {
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "sub_left": lambda a, b: a - b, "mul": lambda a, b: a * b,
    "floordiv": lambda a, b: a // b, "ceildiv": lambda a, b: -(-a // b),
}


def _int(x: DimOrInt) -> int:
    return x.dimension if isinstance(x, Dim) else int(x)


def dim_size(dim: Dim, fallback: int) -> int:
    """The static size of ``dim``, or the capture-time size for a dynamic dim."""
    return dim.dimension if dim.dimension is not None else fallback


def find_axis(dims, dim: Dim) -> int:
    """Position of ``dim`` in ``dims``: identity first, then RETURNN dim equality."""
    for i, d in enumerate(dims):
        if d is dim:
            return i
    for i, d in enumerate(dims):
        if d == dim:
            return i
    raise ValueError(f"{dim} not in {dims}")
