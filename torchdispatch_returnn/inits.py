"""Initializers of the written variables: the ones the torch module would use (``reset_parameters``),
so that a RETURNN user who trains the converted architecture from scratch, without the
checkpoint, starts as torch would. The checkpoint (or ``init`` values in an embedded config)
overrides them.

Returned as RETURNN ``init`` options: a float (0 and 1: zeros/ones) or a string that RETURNN
evaluates with TF's initializers. ``None``: RETURNN's default for a variable (glorot uniform).
"""

from __future__ import annotations

import math

import torch
from torch import nn

_NORMS = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._NormBase, nn.RMSNorm)
_RNNS = (nn.RNNBase, nn.RNNCellBase)
_KAIMING = (nn.Linear, nn.Bilinear, nn.modules.conv._ConvNd)


def uniform(bound: float) -> str:
    return f"random_uniform_initializer(minval={-bound!r}, maxval={bound!r})"


def torch_init(module: nn.Module | None, name: str, shape: tuple) -> float | str | None:
    """The RETURNN ``init`` for parameter or buffer ``name`` (last part of its state_dict key) of
    ``module`` with ``shape``."""
    if module is None:
        return None
    if isinstance(module, nn.MultiheadAttention):  # xavier-uniform projections, zero biases
        if name in ("in_proj_bias",):
            return 0.0
        fan_in, fan_out = _fans(shape)
        if name in ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight"):
            return uniform(math.sqrt(6.0 / (fan_in + fan_out)))
        if name in ("bias_k", "bias_v"):
            return f"random_normal_initializer(stddev={math.sqrt(2.0 / (fan_in + fan_out))!r})"
    if isinstance(module, nn.modules.linear.NonDynamicallyQuantizableLinear) and name == "bias":
        return 0.0  # the out_proj of nn.MultiheadAttention
    if isinstance(module, _NORMS):
        return {"weight": 1.0, "bias": 0.0, "running_mean": 0.0, "running_var": 1.0,
                "num_batches_tracked": 0.0}.get(name)
    if isinstance(module, nn.Embedding) and name == "weight":
        return "random_normal_initializer(stddev=1.0)"
    if isinstance(module, _RNNS):  # every weight and bias uniform(+-1/sqrt(hidden))
        return uniform(1.0 / math.sqrt(module.hidden_size)) if module.hidden_size else None
    if isinstance(module, _KAIMING) and name in ("weight", "bias"):
        weight = module.weight
        fan_in = weight.shape[1] * math.prod(weight.shape[2:]) if weight.dim() > 1 else weight.shape[0]
        if isinstance(module, nn.Bilinear):
            fan_in = weight.shape[1]
        # kaiming_uniform(a=sqrt(5)) for the weight and its bias bound: both 1/sqrt(fan_in)
        return uniform(1.0 / math.sqrt(fan_in)) if fan_in else 0.0
    return None


def _fans(shape: tuple) -> tuple[int, int]:
    """torch's fan_in and fan_out of a weight of ``shape``."""
    field = math.prod(shape[2:])
    return (shape[1] * field, shape[0] * field) if len(shape) > 1 else (shape[0], shape[0])


def owners(module: nn.Module) -> dict[int, nn.Module]:
    """id(parameter or buffer) -> the module that holds it directly."""
    out: dict[int, nn.Module] = {}
    for m in module.modules():
        for t in list(m._parameters.values()) + list(m._buffers.values()):
            if isinstance(t, torch.Tensor):
                out.setdefault(id(t), m)
    return out
