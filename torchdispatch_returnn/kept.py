"""Torch's values kept for the parity check, without a copy where their memory is held anyway.

A record keeps torch's result itself (no copy) when it is the whole of its storage, or a view of a
storage another record keeps (``x.view``, ``transpose``, slices: most of a model's records): the
values of a capture then take about the memory of the distinct results, not one more copy of each.
Before an op that writes to a tensor (a name ending in ``_``, ``x += y``, ``x[i] = y``, ``out=``,
``inplace=True``), the records sharing its storage are copied, so each keeps the value of its own op.
A write not seen as one shows at the comparison as a changed version counter: that record is then
left unchecked, saying so, never compared with a changed value.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from .tensor import iter_args, plain

#: dunder methods starting with ``__i`` that do not write to the tensor
_NOT_WRITES = frozenset({"__index__", "__int__", "__invert__", "__iter__", "__init__", "__init_subclass__"})


class Kept:
    """The kept values of one capture's records (objects with ``value`` and ``version``), by storage."""

    def __init__(self):
        self._by_storage: dict[int, list] = {}  # storage address -> records keeping a tensor on it
        self._inplace_arg: dict[Any, int | None] = {}  # callable -> position of its ``inplace`` parameter

    def keep(self, rec: Any, value: torch.Tensor) -> None:
        """Set ``rec.value`` to torch's ``value`` (copied only if it is a small part of a storage no record
        keeps, or has no version counter) and ``rec.version`` to its version counter (None: a copy)."""
        t = plain(value).detach()
        ptr = _storage(t)
        if ptr is not None and (ptr in self._by_storage or 2 * t.numel() * t.element_size()
                                >= t.untyped_storage().nbytes()):
            rec.value, rec.version = t, t._version
            self._by_storage.setdefault(ptr, []).append(rec)
        else:
            rec.value, rec.version = t.clone(), None

    def before(self, func: Any, args: tuple, kwargs: dict) -> None:
        """``func(*args, **kwargs)`` is about to run: if it writes to a tensor (its first argument, or
        ``out``), the records sharing that tensor's storage get a copy of their values first."""
        if not self._by_storage:
            return
        out = kwargs.get("out")
        written = ([] if out is None else [out]) + (list(args[:1]) if self._in_place(func, args, kwargs) else [])
        for t in iter_args(written, {}):
            if isinstance(t, torch.Tensor):
                for rec in self._by_storage.pop(_storage(plain(t)), ()):
                    if rec.value is not None and rec.version is not None:
                        rec.value, rec.version = rec.value.clone(), None

    def _in_place(self, func: Any, args: tuple, kwargs: dict) -> bool:
        """Whether ``func`` writes to its first argument: a name ending in ``_``, ``__setitem__``, ``x += y``,
        ``inplace=True`` (by keyword or position), or an aten overload whose schema is mutable."""
        name = getattr(func, "__name__", "")
        if (name.endswith("_") and not name.endswith("__") or name == "__setitem__"
                or name.startswith("__i") and name not in _NOT_WRITES):
            return True
        if kwargs.get("inplace"):
            return True
        schema = getattr(func, "_schema", None)  # (torch.ops.aten overloads: add_.Tensor)
        if schema is not None:
            return bool(schema.is_mutable)
        if func not in self._inplace_arg:
            try:
                params = list(inspect.signature(func).parameters)
            except (TypeError, ValueError):  # (builtins without a signature)
                params = []
            self._inplace_arg[func] = params.index("inplace") if "inplace" in params else None
        pos = self._inplace_arg[func]
        return pos is not None and len(args) > pos and bool(args[pos])


def stale(rec: Any) -> bool:
    """Whether a record's kept value was written to after its op (by a write not seen as one)."""
    return rec.version is not None and rec.value is not None and rec.value._version != rec.version


def _storage(t: torch.Tensor) -> int | None:
    """The address of ``t``'s storage (None: no storage to share, e.g. sparse, or an inference tensor)."""
    if t.is_inference() or t.layout != torch.strided:
        return None
    try:
        ptr = t.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):
        return None
    return ptr or None
