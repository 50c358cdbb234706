"""Names of the dims a written config declares: module path plus role, like a person would write them.

A dim an op makes is first named ``<op name>_<role>`` (``blocks.0.view_split0``, ``blocks.0.ff1.linear_out``).
When the capture has finished, :meth:`DimNames.renamed` gives each such dim its config name from

- its **module path**, without the index of a repeated module where modules of that class at other indices
  use it too: the head size made in ``blocks.0`` and used by every block is ``blocks.head_dim``;
- its **role**: what the op that made it called it (``linear_out``, ``conv1d_out``), or what a later op
  showed it to be: the two parts of a split that a batched product keeps and sums over are the ``heads``
  and the ``head_dim``, and the second axis of time's lengths in such scores is ``time_kv``. A handler may
  give a role outright (``multi_head_attention_forward``: ``qkv``, ``heads``, ``head_dim``).

Dims of inputs and parameters (``time``, ``data_feature``) keep their names. Owned by the capture's
:class:`~torchdispatch_returnn.dims.DimRegistry` (``dims.names``); it only renames what the config writes
(the live network's dims keep their first names).
"""

from __future__ import annotations

import keyword
import re
from typing import Any

from .._backend import Dim

#: roles a later op may rename (what a split or a generic new axis got called when it was made)
_GENERIC = re.compile(r"(.*_)?(split\d*|dim\d*|twin)$")


def var_name(name: str, taken: set[str]) -> str:
    """A Python variable for the dim named ``name`` (``blocks.heads`` -> ``blocks_heads_dim``), not in
    ``taken`` (added to it)."""
    base = re.sub(r"\W+", "_", name).strip("_").lower() or "dim"
    if base[0].isdigit() or keyword.iskeyword(base):
        base = "d_" + base
    base += "" if base.endswith("_dim") else "_dim"
    var, n = base, 1
    while var in taken:
        var, n = f"{base}{n}", n + 1
    taken.add(var)
    return var


class DimNames:
    """Where each dim made by an op came from (module path, role), and its config name."""

    def __init__(self) -> None:
        self._op = ("", "")  # (module path, op name) of the op being converted
        self._origin: dict[int, list] = {}  # id(dim) -> [module path, role, name when made, renamable, op name]

    def at_op(self, module_path: str, op_name: str) -> None:
        """The op converted now (dims made until the next one are its)."""
        self._op = (module_path, op_name)

    def created(self, dim: Any, name: str) -> None:
        """``dim`` was made under ``name``; an op's own dims (``<op name>_<role>``) get an origin."""
        path, op = self._op
        if op and name.startswith(op + "_"):  # role: the op's short name and suffix (a leaf module's: the suffix)
            role = name[len(path) + 1:] if path and name.startswith(path + ".") else \
                name[len(op) + 1:] if path == op else name
            self._origin[id(dim)] = [path, role, name, bool(_GENERIC.match(role)), op]

    def role(self, dim: Any, role: str, *, weak: bool = False) -> None:
        """Name ``dim`` by ``role`` (within its module path) if the op converted now made it; ``weak``: instead,
        if its role is a generic one and no other op named it before (the first op that shows what it is)."""
        origin = self._origin.get(id(dim))
        if origin is not None and (origin[3] if weak else origin[4] == self._op[1]):
            origin[1], origin[3] = role, False

    def twin(self, dim: Any, of: str, op_name: str) -> None:
        """``dim``: a second axis of the lengths of the dim described ``of``, made by ``op_name``."""
        role = re.sub(r"\W+", "_", f"{of}_{op_name.rsplit('.', 1)[-1]}").strip("_")
        self._origin.setdefault(id(dim), [self._op[0], role, None, True, self._op[1]])

    def is_twin_role(self, dim: Any) -> bool:
        origin = self._origin.get(id(dim))
        return origin is not None and origin[3] and origin[2] is None

    def renamed(self, entries: dict[int, tuple], order: list[int], net_dict: dict, kinds: dict[str, str]
                ) -> dict[int, tuple]:
        """``entries`` (id(dim) -> (dim, var name, code)) with the dims ops made renamed for the config
        (see the module docstring); ``net_dict``: the written network (which modules use a dim); ``kinds``:
        module path -> class name (which modules are instances of one kind)."""
        users = _users(net_dict)
        new_names = {i: self._config_name(i, users.get(i, []), kinds) for i in order if i in self._origin}
        taken = {entries[i][1] for i in order if i not in new_names}  # (the variables that stay)
        subst: dict[str, str] = {}
        out = dict(entries)
        for i in order:
            if i not in new_names:
                continue
            dim, var, code = entries[i]
            new_var = var_name(new_names[i], taken)
            subst[var] = new_var
            old = self._origin[i][2] or getattr(dim, "name", None)
            if old is not None:
                code = code.replace(f"name={old!r}", f"name={new_names[i]!r}", 1)
            out[i] = (dim, new_var, code)
        if subst:
            pattern = re.compile(r"\b(" + "|".join(map(re.escape, subst)) + r")\b")
            out = {i: (d, v, pattern.sub(lambda m: subst[m.group(1)], c)) for i, (d, v, c) in out.items()}
        return out

    def _config_name(self, key: int, users: list[list[str]], kinds: dict[str, str]) -> str:
        path, role = self._origin[key][0], self._origin[key][1]
        parts = path.split(".") if path else []
        kept = [p for k, p in enumerate(parts) if not (p.isdigit() and _shared(parts, k, users, kinds))]
        return ".".join(kept + [role])


def _shared(parts: list[str], k: int, users: list[list[str]], kinds: dict[str, str]) -> bool:
    """Whether layers in another module of the same kind at index ``parts[k]`` use the dim made in module
    ``parts`` (``blocks.1`` too, for a dim made in ``blocks.0``)."""
    kind = kinds.get(".".join(parts[:k + 1]))
    return kind is not None and any(len(u) > k and u[:k] == parts[:k] and u[k] != parts[k]
                                    and kinds.get(".".join(u[:k + 1])) == kind for u in users)


def written(entries: dict[int, tuple], order: list[int], *values: dict) -> list[int]:
    """The ids (in ``order``) of the dims of ``entries`` (id -> (dim, var name, code)) that a config made of
    ``values`` (its net dict, extern data) declares: the dims they hold and those the code of these is made of
    (``a * b``); not those of layers the config leaves out."""
    need = {i for v in values for i in _users(v) if i in entries}
    by_var = {entries[i][1]: i for i in order}
    todo = list(need)
    while todo:
        for name in re.findall(r"[A-Za-z_]\w*", entries[todo.pop()][2]):
            i = by_var.get(name)
            if i is not None and i not in need:
                need.add(i)
                todo.append(i)
    return [i for i in order if i in need]


def _users(net_dict: dict, prefix: tuple = ()) -> dict[int, list[list[str]]]:
    """id(dim) -> the (dotted, split) names of the layers whose dicts hold it (subnetworks included)."""
    out: dict[int, list[list[str]]] = {}

    def walk(v: Any, name: list[str]) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                walk(k, name)
                if k in ("subnetwork", "unit") and isinstance(x, dict):
                    for sub, d in x.items():
                        walk(d, name + sub.split("."))
                else:
                    walk(x, name)
        elif isinstance(v, (list, tuple)):
            for x in v:
                walk(x, name)
        elif isinstance(v, Dim):
            out.setdefault(id(v), []).append(name)

    for layer, desc in net_dict.items():
        walk(desc, list(prefix) + layer.split("."))
    return out
