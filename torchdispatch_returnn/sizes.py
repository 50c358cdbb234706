"""Symbolic sizes: ``x.shape`` / ``x.size()`` of a captured tensor and arithmetic on them.

A size of a dynamic axis is a :class:`DimInt`: a plain ``int`` for torch and Python (its value is
the size at capture time) that also knows what it stands for, as a linear expression over RETURNN
dims (:class:`Lin`): ``T``, ``2 * T - 1``, ``c - T + 1``. Where the expression is a dim RETURNN
can represent (``T - 1``, ``2 * T``, ``T // 2``, ``T1 + T2``), ``DimInt.dim`` is that dim, so sizes
read in Python and passed to ``view``, ``arange``, ``expand``, ... keep the network dynamic. Other
expressions (``c - T``) still serve as slice bounds and pads. Python forces some sizes back to
plain ints (``int()``, ``len()``, ``range()``); where such an int is used as a size, the capture
recovers its dim by value where that is unambiguous (:meth:`~.dims.DimRegistry.recover`).
"""

from __future__ import annotations

from typing import Any, Protocol

from ._backend import Dim


class Lin:
    """``sum(coef * dim) + const`` over dims (compared by identity)."""

    __slots__ = ("terms", "const")

    def __init__(self, terms: tuple = (), const: int = 0):
        self.terms = tuple((d, k) for d, k in terms if k)  # ((dim, int coefficient), ...)
        self.const = int(const)

    @staticmethod
    def of(x: Any) -> Lin:
        return x.lin if isinstance(x, DimInt) else Lin((), int(x))

    def __add__(self, other: Lin) -> Lin:
        terms = list(self.terms)
        for d, k in other.terms:
            for i, (e, j) in enumerate(terms):
                if e is d:
                    terms[i] = (e, j + k)
                    break
            else:
                terms.append((d, k))
        return Lin(tuple(terms), self.const + other.const)

    def scale(self, k: int) -> Lin:
        return Lin(tuple((d, c * k) for d, c in self.terms), self.const * k)

    def __neg__(self) -> Lin:
        return self.scale(-1)

    def __sub__(self, other: Lin) -> Lin:
        return self + (-other)

    @property
    def is_const(self) -> bool:
        return not self.terms

    def key(self) -> tuple:
        return tuple(sorted((id(d), k) for d, k in self.terms)), self.const

    def __eq__(self, other) -> bool:
        return isinstance(other, Lin) and self.key() == other.key()

    def __hash__(self) -> int:
        return hash(self.key())

    def __repr__(self) -> str:
        text = ""
        for d, k in self.terms + ((None, self.const),):
            if not k:
                continue
            name = d.description if d is not None else ""
            mag = abs(k) if d is None or abs(k) != 1 else ""
            term = f"{mag}*{name}" if mag != "" and name else f"{mag}{name}"
            text += (" - " if k < 0 else " + ") + term if text else ("-" if k < 0 else "") + term
        return text or "0"


class DimOwner(Protocol):
    """What a :class:`DimInt` needs of the dim registry that made it."""

    def derive(self, kind: str, a: Any, b: Any) -> Any: ...

    def size(self, dim: Dim) -> int: ...

    def dim_of(self, lin: Lin) -> Dim | None: ...

    def lin_of(self, dim: Dim) -> Lin: ...

    def note_escape(self, value: DimInt) -> None: ...

    def note_guard(self, value: DimInt, op: str, other: Any, result: bool) -> None: ...


class DimInt(int):
    """A size that depends on a dynamic axis: an ``int`` for torch that also carries its expression
    (``lin``) and, where the expression is a RETURNN dim, that ``dim``."""

    lin: Lin
    owner: DimOwner

    def __new__(cls, value: int, dim: Dim | None, owner: DimOwner, lin: Lin | None = None):
        obj = super().__new__(cls, int(value))
        obj.owner = owner
        obj.lin = lin if lin is not None else owner.lin_of(dim)
        obj._dim = dim
        return obj

    @property
    def dim(self) -> Dim | None:
        """The RETURNN dim this size is, or None for an expression that is no dim (``c - T``)."""
        if self._dim is None and self.lin.terms:
            self._dim = self.owner.dim_of(self.lin)
        return self._dim

    def __repr__(self) -> str:
        return f"{int(self)}"

    def _new(self, value: int, lin: Lin) -> DimInt | int:
        return DimInt(value, None, self.owner, lin) if lin.terms else int(value)

    # -- linear arithmetic: keeps the expression ------------------------------------------------------
    def __add__(self, other):
        if not isinstance(other, int):
            return int(self) + other
        return self._new(int(self) + int(other), self.lin + Lin.of(other))

    __radd__ = __add__

    def __sub__(self, other):
        if not isinstance(other, int):
            return int(self) - other
        return self._new(int(self) - int(other), self.lin - Lin.of(other))

    def __rsub__(self, other):
        if not isinstance(other, int):
            return other - int(self)
        return self._new(int(other) - int(self), Lin.of(other) - self.lin)

    def __mul__(self, other):
        if isinstance(other, DimInt) and self.dim is not None and other.dim is not None:  # T1 * T2: a product dim
            return self._derived("mul", self.dim, other.dim, int(self) * int(other))
        if not isinstance(other, int) or isinstance(other, DimInt):
            return int(self) * other
        return self._new(int(self) * int(other), self.lin.scale(int(other)))

    __rmul__ = __mul__

    def __neg__(self):
        return self._new(-int(self), -self.lin)

    def __pos__(self):
        return self

    def __abs__(self):
        return self if int(self) >= 0 else -self

    # -- division: a new dim where the dividend is one --------------------------------------------------
    def __floordiv__(self, other):
        if isinstance(other, int) and not isinstance(other, DimInt) and other > 0:
            k = int(other)
            if all(c % k == 0 for _, c in self.lin.terms):  # (2T - 1) // 2 = T - 1: exact for integer T
                return self._new(int(self) // k, Lin(tuple((d, c // k) for d, c in self.lin.terms),
                                                      self.lin.const // k))
            if self.dim is not None:
                return self._derived("floordiv", self.dim, k, int(self) // k)
        return int(self) // other

    def __rfloordiv__(self, other):
        return other // int(self)

    def __truediv__(self, other):
        if isinstance(other, int) and not isinstance(other, DimInt) and other > 0 and self.dim is not None:
            return DimQuotient(int(self) / int(other), self, int(other))
        return int(self) / other

    def __rtruediv__(self, other):
        return other / int(self)

    def _derived(self, kind: str, a: Any, b: Any, value: int) -> DimInt | int:
        dim = self.owner.derive(kind, a, b)
        return DimInt(value, dim, self.owner) if isinstance(dim, Dim) else dim

    # -- rounding keeps the size; conversions Python forces to plain ints are noted ------------------------
    def __ceil__(self):
        return self

    def __floor__(self):
        return self

    def __trunc__(self):
        return self

    def __round__(self, ndigits=None):
        return self if ndigits is None else int(self)

    def __int__(self):  # Python makes the result a plain int; the capture may recover it by value
        self.owner.note_escape(self)
        return int.__int__(self)

    # -- comparisons: Python decides on the capture-time value; the decision is noted (a size guard) ------
    def _compare(self, op: str, other, result):
        if isinstance(other, (int, float)) and not isinstance(result, type(NotImplemented)):
            self.owner.note_guard(self, op, other, result)
        return result

    def __eq__(self, other):
        return self._compare("==", other, int.__eq__(self, other))

    def __ne__(self, other):
        return self._compare("!=", other, int.__ne__(self, other))

    def __lt__(self, other):
        return self._compare("<", other, int.__lt__(self, other))

    def __le__(self, other):
        return self._compare("<=", other, int.__le__(self, other))

    def __gt__(self, other):
        return self._compare(">", other, int.__gt__(self, other))

    def __ge__(self, other):
        return self._compare(">=", other, int.__ge__(self, other))

    __hash__ = int.__hash__



class DimQuotient(float):
    """``T / k`` of a size: a float for Python that rounds back to a dim (``math.ceil(T / 2)``)."""

    def __new__(cls, value: float, num: DimInt, den: int):
        obj = super().__new__(cls, value)
        obj.num = num
        obj.den = den
        return obj

    def __ceil__(self):
        n = self.num
        return n._derived("ceildiv", n.dim, self.den, -(-int(n) // self.den))

    def __floor__(self):
        n = self.num
        return n._derived("floordiv", n.dim, self.den, int(n) // self.den)

    __trunc__ = __floor__  # sizes are non-negative

    def __int__(self):
        return int(self.__floor__())


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
