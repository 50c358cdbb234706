"""Where each torch parameter lives in the network: which layer holds it, under which TF variable name,
in which layout, and with which initializer.

A parameter is either a ``variable`` layer of its own (named by its ``state_dict`` key, TF variable
``<module path>/<name>``), or held by the layer that computes with it: RETURNN's ``linear`` (``W`` stored
as (in, out), ``b``), ``layer_norm``/``norm`` (``scale``, ``bias``) and ``conv`` (``W`` stored as
(k..., in / groups, out), ``bias``): torch's layout transposed by a ``perm`` that ``param_map``
records. The TF variable of a held parameter is ``<layer name>/<name>``, so it follows the
layer's final name (a module's result is renamed to the module path). A module called again reuses
its layer's params (``reuse_params``); another op using a held parameter gets a ``variable`` layer
sharing the layer's TF variable.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .inits import torch_init
from .tensor import Layer, plain


class HeldParams:
    """The parameters of one capture and the layers holding them."""

    def __init__(self, param_names: dict[int, str], param_owners: dict[int, Any]):
        self.param_names = param_names  # id(parameter/buffer) -> state_dict key
        self.param_owners = param_owners  # id(parameter/buffer) -> the module holding it
        self._entries: dict[str, tuple] = {}  # state_dict key -> (layer, TF scope or "", name, perm or None)
        self._held: dict[int, tuple] = {}  # id(param) -> (param, holding layer, name, perm or None)

    def variable(self, key: str, layer: Layer) -> None:
        """The parameter ``key`` is the ``variable`` layer ``layer`` (TF variable ``<module path>/<name>``)."""
        self._entries[key] = (layer, scope_of(key), key.rsplit(".", 1)[-1], None)

    def layers(self) -> list[Layer]:
        """The layers holding parameters (their own ``variable`` layers or the layers computing with them)."""
        return [layer for layer, _, _, _ in self._entries.values()]

    def variable_layers(self) -> dict[int, str]:
        """{id(layer): state_dict key} of the parameters that are ``variable`` layers of their own."""
        return {id(layer): key for key, (layer, scope, _, _) in self._entries.items() if scope}

    def param_map(self) -> dict[str, dict]:
        """state_dict key -> {"tf_vars": [TF variable name], "layer": the layer holding it, "transform"}."""
        return {key: {"tf_vars": [f"{scope or layer.path}/{name}"], "layer": layer.path, **_transform(perm)}
                for key, (layer, scope, name, perm) in self._entries.items()}

    def init(self, t: torch.Tensor) -> float | str | None:
        """The initializer torch's module would give the parameter ``t`` (see :mod:`.inits`)."""
        key = self.param_names.get(id(t))
        return None if key is None else torch_init(self.param_owners.get(id(t)), key.rsplit(".", 1)[-1],
                                                   tuple(t.shape))

    def holder(self, t: torch.Tensor) -> tuple | None:
        """(layer, name, perm) of the layer holding ``t``, or None."""
        held = self._held.get(id(t))
        return held[1:] if held is not None and held[0] is t else None

    def owner(self, params: dict[str, torch.Tensor | None], used: dict, buffers: bool = False) -> Layer | bool | None:
        """Whether one layer may hold ``params`` ({RETURNN param name: torch parameter or None}) as its own
        variables: True if each is a float32 parameter of a captured module that no layer uses yet (``used``:
        id(tensor) -> its layer); the layer that already holds all of them under these names (a module called
        again: its layer's params are reused); else None (the op uses them as ``variable`` layers). ``buffers``:
        buffers may be held too (batch norm's running statistics)."""
        ts = {k: t for k, t in params.items() if t is not None}
        if not ts or any(not (buffers or isinstance(t, torch.nn.Parameter)) or t.dtype != torch.float32
                         or id(t) not in self.param_names for t in ts.values()):
            return None
        if all(id(t) not in self._held and id(t) not in used for t in ts.values()):
            return True
        held = {k: self._held.get(id(t)) for k, t in ts.items()}
        layers = {id(h[1]) for h in held.values() if h is not None}
        if len(layers) == 1 and all(h is not None and h[0] is ts[k] and h[2] == k for k, h in held.items()):
            return next(iter(held.values()))[1]
        return None

    def own(self, layer: Layer, params: dict[str, torch.Tensor | None],
            perms: dict[str, list] | None = None) -> list[tuple[Layer, str, np.ndarray]]:
        """``layer`` holds ``params`` (see :meth:`owner`) as its variables of these names; ``perms``: {name:
        perm} for a variable stored transposed (TF axis i is torch axis perm[i], conv's W). Returns the
        values to load: (layer, name, value in the variable's layout)."""
        values = []
        for name, t in params.items():
            if t is None:
                continue
            perm = (perms or {}).get(name)
            self._held[id(t)] = (t, layer, name, perm)
            self._entries[self.param_names[id(t)]] = (layer, "", name, perm)
            value = plain(t).detach().cpu().numpy()
            values.append((layer, name, tf_layout(value, perm)))
        return values


#: bytes of torch values set per session run: a value stored transposed is copied to feed it, and a reference
#: variable copies what it is fed, so a run's transient copies stay within this, not the model's size
LOAD_BYTES = 64 << 20


def load_values(network: Any, session: Any, values: list[tuple]) -> None:
    """Set the variables of ``network`` to the torch values (``values``: (layer, param name or None for the layer's
    one variable, value in the variable's layout)), fed in place of their initial values, in runs of at most
    ``LOAD_BYTES`` of values; the variables without a value get their initializer (and RETURNN's post-init hooks,
    as in its ``initialize_params``)."""
    runs: list[list[tuple]] = [[]]  # (variable, value) per session run
    size = 0
    for layer, name, value in values:
        params = network.get_layer(layer.path).params
        for var in (params.values() if name is None else [params[name]]):
            if size and size + value.nbytes > LOAD_BYTES:
                runs.append([])
                size = 0
            runs[-1].append((var, value))
            size += value.nbytes
    fed = {id(var) for run in runs for var, _ in run}
    every = {id(v): v for layer in network.get_all_layers_deep() for _, v in sorted(layer.params.items())}
    # (as RETURNN's get_params_list, without its `param in list` test per variable: quadratic in their number)
    rest = [v for v in [*every.values(), *network.get_auxiliary_params()] if id(v) not in fed]
    runs[0] += [(v, None) for v in rest]  # (their initializers, in the first run)
    for run in runs:
        if run:
            given = [(var, v) for var, v in run if v is not None]
            feed = dict(zip([var.initializer.inputs[1] for var, _ in given], _aligned([v for _, v in given])))
            session.run([var.initializer for var, _ in run], feed_dict=feed)
    for var in rest:
        if getattr(var, "custom_post_init", None):
            var.custom_post_init(session=session)


#: alignment of a fed array that TF takes without a copy of its own
ALIGN = 64


def _aligned(values: list) -> list[np.ndarray]:
    """``values`` as C-contiguous arrays at ``ALIGN``-byte addresses, which TF feeds without copying: the others
    (values stored transposed) copied into one buffer for the run, given back to the system after it."""
    arrays = [np.asarray(v) for v in values]
    todo = [i for i, a in enumerate(arrays) if not a.flags.c_contiguous or a.ctypes.data % ALIGN]
    sizes = [-(-arrays[i].nbytes // ALIGN) * ALIGN for i in todo]
    buf = np.empty(sum(sizes) + ALIGN, np.uint8)
    off = -buf.ctypes.data % ALIGN
    for i, size in zip(todo, sizes):
        a = arrays[i]
        arrays[i] = buf[off:off + a.nbytes].view(a.dtype).reshape(a.shape)
        _copy(arrays[i], a)
        off += size
    return arrays


def _copy(dst: np.ndarray, src: np.ndarray) -> None:
    """``dst[...] = src``; a transposed ``src`` by torch's blocked copy (2.5-4x numpy's strided one here)."""
    if src.flags.writeable and all(s >= 0 for s in src.strides):
        try:
            torch.from_numpy(dst).copy_(torch.from_numpy(src))
            return
        except TypeError:  # (a dtype torch has not)
            pass
    np.copyto(dst, src)


def tf_layout(value: Any, perm: list | None) -> Any:
    """A torch-layout value (numpy array or torch tensor) in the layout of a variable stored transposed
    (TF axis i is torch axis ``perm[i]``; no ``perm``: as it is)."""
    if not perm:
        return value
    return value.permute(*perm) if isinstance(value, torch.Tensor) else np.transpose(value, perm)


def torch_layout(value: np.ndarray | None, perm: list | None) -> np.ndarray | None:
    """The inverse of :func:`tf_layout`: a variable's value (or gradient) in torch's layout."""
    return value if value is None or not perm else np.transpose(value, np.argsort(perm))


def _transform(perm: list | None) -> dict:
    """The ``transform`` of a ``param_map`` entry (and its ``perm``: TF axis i is torch axis perm[i])."""
    if not perm:
        return {"transform": "none (same layout as torch)"}
    return {"transform": f"transpose {list(perm)} (TF axis i is torch axis perm[i])", "perm": list(perm)}


def scope_of(key: str) -> str:
    """The TF name scope of the ``variable`` layer of the parameter ``key`` (its module path)."""
    return key.rsplit(".", 1)[0] if "." in key else "params"


def live_desc(d: dict) -> dict:
    """The live network's copy of layer dict ``d``: an initializer written for training from scratch becomes
    0, as the capture loads the torch values over it (a random initializer would only cost graph ops)."""
    if not any(k in _INIT_OPTIONS and not _is_zero(v) for k, v in d.items()):
        return d
    return {k: (0 if k in _INIT_OPTIONS else v) for k, v in d.items()}


def live_net(net_dict: dict) -> dict:
    """:func:`live_desc` of every layer of ``net_dict``, into its subnetworks."""
    return {name: live_desc(dict(d, subnetwork=live_net(d["subnetwork"])) if d.get("class") == "subnetwork" else d)
            for name, d in net_dict.items()}


_INIT_OPTIONS = ("init", "forward_weights_init", "bias_init")


def _is_zero(v: Any) -> bool:
    return isinstance(v, (int, float)) and v == 0
