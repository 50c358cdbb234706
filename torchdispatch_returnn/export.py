"""The artifacts of a capture: the RETURNN config as code, the TF checkpoint and ``param_map.json``.

``ConfigNetwork`` (a fresh network from a written config) lives in :mod:`.runtime` and is
re-exported here.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._backend import BEHAVIOR_VERSION, Dim, building, quiet
from .dims import DimRegistry
from .runtime import FORWARD_ARGS_KEY, OUTPUTS_KEY, ArgSpec, ConfigNetwork

__all__ = ["config_code", "write_text", "write_param_map", "ConfigNetwork"]


def py_source(obj: Any, dims: DimRegistry) -> str:
    """Python source for a net-dict value (dims by their variable names)."""
    if isinstance(obj, Dim):
        return dims.code(obj)
    if isinstance(obj, bool) or obj is None:
        return repr(obj)
    if isinstance(obj, int):
        return repr(int(obj))
    if isinstance(obj, float):
        if math.isnan(obj):
            return "float('nan')"
        if math.isinf(obj):
            return "float('inf')" if obj > 0 else "float('-inf')"
        return repr(obj)
    if isinstance(obj, str):
        return repr(obj)
    if isinstance(obj, dict):
        return "{" + ", ".join(f"{py_source(k, dims)}: {py_source(v, dims)}" for k, v in obj.items()) + "}"
    if isinstance(obj, list):
        return "[" + ", ".join(py_source(v, dims) for v in obj) + "]"
    if isinstance(obj, tuple):
        return "(" + ", ".join(py_source(v, dims) for v in obj) + ("," if len(obj) == 1 else "") + ")"
    if isinstance(obj, np.ndarray):
        if obj.size == 0:  # (tolist() loses the shape of an empty array)
            return f"numpy.zeros({obj.shape!r}, dtype={str(obj.dtype)!r})"
        return f"numpy.array({py_source(obj.tolist(), dims)}, dtype={str(obj.dtype)!r})"
    if isinstance(obj, np.generic):
        return py_source(obj.item(), dims)
    raise TypeError(f"cannot write {type(obj).__name__} {obj!r} into a config")


#: layer count from which a config raises Python's recursion limit for RETURNN's construction
DEEP_NET = 100


def as_subnetwork(net_dict: dict, name: str, input_order: Sequence[str], outputs: Sequence[str]) -> dict:
    """The network as one ``subnetwork`` layer ``name`` (its input: the first extern data) plus copies of
    its outputs: ``{name: {"class": "subnetwork", ...}, "output": {"class": "copy", "from": name}}``.
    Inside, references to extern data go to the parent (``base:data:x``); variables are named
    relative to the subnetwork (``name/lin/weight``)."""
    first = "data" if input_order[0] == "data" else f"data:{input_order[0]}"

    def ref(v: Any, key: str = "", depth: int = 0) -> Any:
        """``v`` one network deeper; ``depth``: how deep in subnetworks / rec units ``v`` is."""
        if isinstance(v, str) and key not in ("eval", "class"):
            rest = v[5 * depth:] if v.startswith("base:" * depth) else ""
            if rest == first:
                return v  # (the wrapping subnetwork's input)
            if rest.startswith("data:") or rest == "data":  # other extern data: in the new top network
                return "base:" * (depth + 1) + rest
        if isinstance(v, list):
            return [ref(x, key, depth) for x in v]
        if isinstance(v, tuple):
            return tuple(ref(x, key, depth) for x in v)
        if isinstance(v, dict):
            return {k: ref(x, k, depth + (k in ("subnetwork", "unit") and isinstance(x, dict))) for k, x in v.items()}
        return v

    inner = {k: ref(d) for k, d in net_dict.items()}
    for out in outputs:  # the subnetwork builds "output" and the layers marked as outputs
        if out != "output":
            inner[out] = dict(inner[out], is_output_layer=True)
    top = {name: {"class": "subnetwork", "from": first, "subnetwork": inner}}
    for out in outputs:
        top[out] = {"class": "copy", "from": name if out == "output" else f"{name}/{out}"}
        if out != "output":
            top[out]["is_output_layer"] = True
    return top


def config_code(dims: DimRegistry, extern_data: dict, input_order: Sequence[str], net_dict: dict,
                forward_args: Sequence[ArgSpec], outputs: Sequence[str] = ("output",), subnetwork: str | None = None
                ) -> str:
    """A complete RETURNN config (Python) for a captured network (as one ``subnetwork`` layer of that
    name, see :func:`as_subnetwork`)."""
    if subnetwork:
        if not isinstance(subnetwork, str) or "/" in subnetwork or subnetwork in outputs:
            raise ValueError(f"subnetwork must be a layer name without '/' other than {list(outputs)}, "
                             f"got {subnetwork!r}")
        net_dict = as_subnetwork(net_dict, subnetwork, input_order, outputs)
    lines = [
        "#!rnn.py",
        "# RETURNN config written by torchdispatch_returnn",
        "import os",
        "import numpy",
        "from returnn.tensor import Dim, batch_dim",
        "",
        "# TF's oneDNN kernels (2-3x faster matmuls on CPU; read when TF is imported, after this config)",
        'os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")',
        "use_tensorflow = True",
        f"behavior_version = {BEHAVIOR_VERSION}",
        "",
    ]
    n_layers = _layer_count(net_dict)
    if n_layers > DEEP_NET:  # RETURNN builds layers recursively from the outputs back (through subnetworks too)
        lines.insert(4, "import sys")
        lines[-1:-1] = [f"sys.setrecursionlimit(max(sys.getrecursionlimit(), {20 * n_layers + 1000}))"]
    lines += dims.declarations(net_dict, {key: extern_data[key] for key in input_order})
    lines.append("")
    lines.append("extern_data = {")
    for key in input_order:
        lines.append(f"    {key!r}: {py_source(extern_data[key], dims)},")
    lines.append("}")
    if any(a.kind != "input" for a in forward_args):
        lines.append("# the torch forward's tensor arguments: extern data, or the lengths of a dim")
        lines.append(f"{FORWARD_ARGS_KEY} = {[(a.kind, a.key) for a in forward_args]!r}")
    if list(outputs) != ["output"]:
        lines.append("# the layers holding the torch forward's outputs, in order")
        lines.append(f"{OUTPUTS_KEY} = {list(outputs)!r}")
    lines.append("")
    lines.append("network = {")
    lines += _net_lines(net_dict, dims, "    ")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _layer_count(net_dict: dict) -> int:
    """The layers of a net dict, those of its subnetworks included."""
    return sum(1 + (_layer_count(d["subnetwork"]) if d.get("class") == "subnetwork" and isinstance(
        d.get("subnetwork"), dict) else 0) for d in net_dict.values())


def _net_lines(net_dict: dict, dims: DimRegistry, indent: str) -> list[str]:
    """One line per layer; the layers of a ``subnetwork`` indented below it."""
    lines = []
    for name, d in net_dict.items():
        sub = d.get("subnetwork") if d.get("class") == "subnetwork" else None
        if not isinstance(sub, dict):
            lines.append(f"{indent}{name!r}: {py_source(d, dims)},")
            continue
        head = ", ".join(f"{k!r}: {py_source(v, dims)}" for k, v in d.items() if k != "subnetwork")
        lines += [f"{indent}{name!r}: {{{head}, 'subnetwork': {{", *_net_lines(sub, dims, indent + "    "),
                  f"{indent}}}}},"]
    return lines


def write_text(path: str, text: str) -> str:
    """Write ``text`` to ``path`` (directories made as needed); returns the absolute path."""
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return path


def save_checkpoint(network: Any, session: Any, path: str) -> str:
    """The network's parameters as a TF checkpoint at ``path`` (directories made as needed)."""
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with building(session.graph), quiet():
        network.save_params_to_file(path, session)
    return path


def write_param_map(path: str, param_map: dict) -> str:
    """``param_map.json``: torch state_dict key -> TF variable names, layer and transform."""
    return write_text(path, json.dumps(param_map, indent=1, sort_keys=True) + "\n")
