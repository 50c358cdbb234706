"""Unique, RETURNN-safe layer names from module paths and op names, and the module-path stack."""

from __future__ import annotations

import re

import torch

from ..inits import owners

_RESERVED = {"data", "output"}

#: name suffix of an intermediate layer of an op, by layer class (default: the class itself)
_ROLES = {
    "reinterpret_data": "rename", "expand_dims": "unsqueeze", "length": "len", "range_in_axis": "range",
    "seq_len_mask": "masked", "split_dims": "split", "merge_dims": "merge", "constant": "const",
    "softmax_over_spatial": "softmax", "transposed_conv": "full", "variable": "var",
}


def role_of(desc: dict) -> str:
    """The name suffix of an intermediate layer (``linear_dot``, ``add_rename``)."""
    cls = desc.get("class", "layer")
    return _ROLES.get(cls, cls)


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
        self._claimed: set[str] = set()  # reserved names given out
        self._counters: dict[str, int] = {}

    def reserve(self, name: str) -> str:
        """Take exactly ``name`` (e.g. an extern data key or ``output``); error if it is taken."""
        if name in self._taken and not (name in _RESERVED and name not in self._claimed):
            raise ValueError(f"layer name {name!r} already taken")
        self._taken.add(name)
        self._claimed.add(name)
        return name

    def claim(self, name: str) -> str:
        """``name`` itself if it is free (or a reserved name not yet claimed), else a unique variant."""
        if name not in self._taken or name in _RESERVED and name not in self._claimed:
            return self.reserve(name)
        return self.unique(name)

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


class Call:
    """One call of a module: its path, the call it ran in (None: the outermost call) and its result
    layer (set when the call returns a tensor computed in it; ``nested=True`` writes a call as a subnetwork)."""

    __slots__ = ("path", "parent", "result")

    def __init__(self, path: str, parent: Call | None):
        self.path, self.parent, self.result = path, parent, None

    def chain(self) -> list[Call]:
        """The calls from the outermost one to this one."""
        out, c = [], self
        while c is not None:
            out.append(c)
            c = c.parent
        return out[::-1]


class ModuleScopes:
    """The stack of module paths of the running module calls (and their :class:`Call` objects), and the
    ``state_dict`` keys of the modules' parameters and buffers (by tensor identity)."""

    def __init__(self) -> None:
        self._stack: list[str] = []
        self._calls: list[Call] = []
        self.finished: Call | None = None  # the call that ended last (set by pop)
        self._paths: dict[int, str] = {}  # id(module) -> attribute path
        self.kinds: dict[str, str] = {}  # attribute path -> the module's class name
        self.param_names: dict[int, str] = {}  # id(parameter or buffer) -> state_dict key
        self.param_owners: dict[int, torch.nn.Module] = {}  # id(parameter or buffer) -> the module holding it

    def add_root(self, module: torch.nn.Module) -> None:
        """Learn the paths and parameter names of an outermost module (first one wins)."""
        for n, m in module.named_modules(remove_duplicate=False):
            self._paths.setdefault(id(m), n)
            self.kinds.setdefault(n, type(m).__qualname__)
        for n, p in module.named_parameters(remove_duplicate=False):
            self.param_names.setdefault(id(p), n)
        for n, b in module.named_buffers(remove_duplicate=False):
            self.param_names.setdefault(id(b), n)
        for k, m in owners(module).items():
            self.param_owners.setdefault(k, m)

    def push(self, module: torch.nn.Module) -> str:
        """Enter a module call; returns its path."""
        path = self._paths.get(id(module))
        if path is None:  # a module created inside forward
            path = Namer.join(self.current, type(module).__name__.lower())
        self._stack.append(path)
        self._calls.append(Call(path, self.call))
        return path

    def pop(self) -> str | None:
        """Leave the innermost module call (it becomes ``finished``); returns its path."""
        self.finished = self._calls.pop() if self._calls else None
        return self._stack.pop() if self._stack else None

    def clear(self) -> None:
        self._stack.clear()
        self._calls.clear()

    @property
    def call(self) -> Call | None:
        """The innermost running module call (None outside every module)."""
        return self._calls[-1] if self._calls else None

    @property
    def current(self) -> str:
        """The path of the innermost running module ("" for the outermost one)."""
        return self._stack[-1] if self._stack else ""

    @property
    def depth(self) -> int:
        return len(self._stack)
