"""Size guards: decisions the user's code takes in Python on dynamic sizes (``if T % 8 == 0``,
``if T > 50``). The network is one graph and holds the branch taken at the capture; the self-check
evaluates each decision again at its sizes to tell a changed branch from a branch on values."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .sizes import Lin

_COMPARE = {"==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
            "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}


class SizeGuards:
    """The size decisions of one capture, by the user's ``file:line`` (the first one at each line)."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[Lin, int, str, Any, bool]] = {}

    def note(self, site: str, lin: Lin, value: int, op: str, other: Any, result: Any) -> None:
        self._entries.setdefault(site, (lin, value, op, other, bool(result)))

    def described(self) -> dict[str, str]:
        """``{"file:line": "`time > 50` was False (time = 40)"}``."""
        return {site: f"`{lin!r} {op} {other!r}` was {result} ({lin!r} = {value})"
                for site, (lin, value, op, other, result) in self._entries.items()}

    def flipped(self, size_at: Callable[[Lin], int | None]) -> list[str] | None:
        """The sites whose decision comes out otherwise where ``size_at`` gives each expression's value;
        None where one cannot be evaluated."""
        out = []
        for site, (lin, _, op, other, result) in self._entries.items():
            value = size_at(lin)
            if value is None:
                return None
            if _COMPARE[op](value, other) != result:
                out.append(site)
        return out

    def __bool__(self) -> bool:
        return bool(self._entries)
