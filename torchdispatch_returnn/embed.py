"""A PyTorch module as one layer of a RETURNN config: ``as_returnn_layer_dict(model, extern_data["data"])``.

The module is captured (with parity and the self-checks) on example inputs made from the data's
dims; the config code of the captured network is then evaluated with the config's own ``Dim``
objects standing for the input axes, so every dim derived from them (``time // 2``, ...) is the
config's too. The layer dict is a ``subnetwork`` that carries the torch weights: the ``init`` of its ``variable``
layers, and for layers holding their params (``linear``, ``layer_norm``) a ``reuse_params`` getter that
creates them with the torch values. The config needs nothing else.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

import torch

from ._backend import BEHAVIOR_VERSION, tf
from .capture import returnn_capture
from .errors import InputSpecError
from .export import as_subnetwork
from .runtime import OUTPUTS_KEY

_EXAMPLE_DYNAMIC = (11, 7, 9)  # example lengths of dynamic axes (batch: 3 sequences)


def as_returnn_layer_dict(module: torch.nn.Module, data: dict, *, source: str = "data", sizes: dict | None = None,
                          **capture_options: Any) -> dict:
    """A ``subnetwork`` layer dict computing ``module`` on the layer ``source`` described by ``data``
    (an ``extern_data`` entry with ``dim_tags``, e.g. ``extern_data["data"]``). ``sizes``: example
    sizes of its dynamic dims by name (default 11); further keywords go to :func:`returnn_capture`."""
    declared = sys._getframe(1).f_globals.get("behavior_version")  # the config calling us, being loaded
    if declared is not None and declared != BEHAVIOR_VERSION:
        raise InputSpecError(f"this config declares behavior_version = {declared!r}; a config that embeds a torch "
                             f"module needs behavior_version = {BEHAVIOR_VERSION} (the newest, which the converted "
                             "layers are built for; RETURNN sets it once per process)")
    tags = data.get("dim_tags") if isinstance(data, dict) else None
    if not tags:
        raise InputSpecError("data must be an extern_data entry with 'dim_tags' (e.g. extern_data['data'])")
    dtype = getattr(torch, str(data.get("dtype", "float32")))
    shape, dyn = [], {}
    for i, d in enumerate(tags):
        if d.is_batch_dim():
            shape.append(3)
            dyn[i] = "batch"
        elif d.dimension is None:
            shape.append(int((sizes or {}).get(d.description, _EXAMPLE_DYNAMIC[0])))
            dyn[i] = d.description
        else:
            shape.append(int(d.dimension))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g).to(dtype) if dtype.is_floating_point else \
        torch.randint(0, 2, shape, generator=g).to(dtype)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad(), returnn_capture(dynamic_shapes=(dyn,), **capture_options) as net:
            module(x)
    finally:
        module.train(was_training)
    return _with_config_dims(net, tags, source)


def _with_config_dims(net: Any, tags: list, source: str) -> dict:
    """The captured network as a subnetwork layer dict whose dims are built on ``tags``."""
    key = net.inputs.order[0]
    ours = net.inputs.extern_data[key]["dim_tags"]
    namespace: dict = {}
    bound = {}
    for mine, theirs in zip(ours, tags):
        if not mine.is_batch_dim():
            bound[net.dims.code(mine)] = theirs
    code = net.config_code()
    lines = []
    for line in code.splitlines():
        name = line.split(" = ", 1)[0] if " = " in line else None
        if name in bound:  # the config's own dim instead of the capture's declaration
            continue
        lines.append(line)
    namespace.update(bound)
    exec(compile("\n".join(lines), "<torchdispatch_returnn config>", "exec"), namespace)  # our own generated code
    network = namespace["network"]
    values = net.network.get_param_values_dict(net.session)
    for name, d in network.items():
        if not values.get(name) or "reuse_params" in d:  # (a layer reusing another's params: that one's values)
            continue
        if d.get("class") == "variable":
            d["init"] = values[name][d["param_name"]]
        else:  # a layer holding its params (linear's W and b): created with the torch values
            d["reuse_params"] = {"custom": functools.partial(_created_with, values[name])}
    top = as_subnetwork(network, "net", [key], list(namespace.get(OUTPUTS_KEY, ["output"])))
    layer = top["net"]
    layer["from"] = source
    return layer


def _created_with(values: dict, *, getter: Any, full_name: str, name: str, shape: Any, dtype: Any, **kwargs: Any):
    """RETURNN's ``reuse_params`` custom getter: the layer's param ``name`` created with its torch value."""
    kwargs.pop("base_layer", None)
    kwargs.pop("reuse_layer", None)
    kwargs["initializer"] = tf.constant_initializer(values[name])
    return getter(name=full_name, shape=shape, dtype=dtype, **kwargs)
