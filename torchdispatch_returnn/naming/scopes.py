"""Unique, RETURNN-safe layer names from module paths and op names."""

from __future__ import annotations

import re

import torch

_RESERVED = {"data", "output"}


def _clean(name: str) -> str:
    name = re.sub(r"[^0-9A-Za-z_.\-]+", "_", name).strip("_.") or "op"
    if name[0] in "_-#":
        name = "x" + name
    return name


def op_short_name(func) -> str:
    """``torch.Tensor.__add__`` -> ``add``; ``torch.nn.functional.linear`` -> ``linear``."""
    name = getattr(func, "__name__", None)
    if name in (None, "__get__", "__set__"):
        try:
            name = torch.overrides.resolve_name(func) or repr(func)
        except Exception:  # pragma: no cover - exotic callables
            name = repr(func)
        name = name.split(".")[-2] if name.endswith(("__get__", "__set__")) else name.split(".")[-1]
    name = name.strip("_")
    if name.startswith("r") and name[1:] in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul"):
        name = name[1:]
    if name.startswith("i") and name[1:] in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow"):
        name = name[1:]
    return _clean(name or "op")


class Namer:
    """Hands out unique layer names within one network."""

    def __init__(self) -> None:
        self._taken: set[str] = set(_RESERVED)
        self._counters: dict[str, int] = {}

    def reserve(self, name: str) -> str:
        """Take exactly ``name`` (e.g. an extern data key); error if it is taken."""
        if name in self._taken and name not in _RESERVED:
            raise ValueError(f"layer name {name!r} already taken")
        self._taken.add(name)
        return name

    def unique(self, base: str) -> str:
        """``base`` if free, else ``base_1``, ``base_2``, ..."""
        base = ".".join(_clean(part) for part in base.split(".") if part) or "op"
        if base not in self._taken:
            self._taken.add(base)
            return base
        n = self._counters.get(base, 0)
        while True:
            n += 1
            cand = f"{base}_{n}"
            if cand not in self._taken:
                self._counters[base] = n
                self._taken.add(cand)
                return cand

    @staticmethod
    def join(scope: str, name: str) -> str:
        return f"{scope}.{name}" if scope else name
