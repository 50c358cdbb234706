"""Network inputs of a capture: ``dynamic_shapes`` checks, extern data from the outermost module
call (or ``net.input``), and forward arguments tied to a dim's lengths (``lengths=``)."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch

from ._backend import Config, TFNetwork, batch_dim
from .context import tf_dtype
from .errors import CaptureError, InputSpecError
from .tensor import Ref, ReturnnTensor, plain, wrap


class InputsMixin:
    """The input side of :class:`~torchdispatch_returnn.capture.Capture`."""

    def _check_spec_form(self) -> None:
        spec = self._dynamic_shapes
        if spec is None:
            return
        entries = spec.values() if isinstance(spec, dict) else spec if isinstance(spec, (list, tuple)) else None
        if entries is None:
            raise InputSpecError(
                f"dynamic_shapes must be a tuple (by positional argument) or a dict (by argument name), "
                f"got {type(spec).__name__}")
        for e in entries:
            if e is None:
                continue
            if not isinstance(e, dict):
                raise InputSpecError(f"each dynamic_shapes entry maps axis -> dim name, got {e!r}")
            for ax, name in e.items():
                if not isinstance(ax, int) or isinstance(ax, bool):
                    raise InputSpecError(f"dynamic_shapes axis must be an int, got {ax!r}")
                if not isinstance(_dim_name(name), str):
                    raise InputSpecError(f"dynamic_shapes dim name must be a str, got {name!r}")

    def _add_inputs(self, items: list) -> list:
        """Make extern data of ``(tensor, name, axes)`` items; returns the ReturnnTensors."""
        specs = []
        for t, name, axes in items:
            if isinstance(t, ReturnnTensor):
                specs.append(None)
                continue
            specs.append(self._input_spec(t, name, axes))
        new = {key: opts for spec in specs if spec for key, opts in [spec[1:3]]}
        if new:
            from returnn.tensor import Tensor

            with self.graph.as_default():
                if self.network is None:
                    self.network = TFNetwork(config=Config({"extern_data": new}), train_flag=self.train, name="root")
                else:
                    for key, opts in new.items():
                        self.network.extern_data.register_data(
                            Tensor(name=key, auto_create_placeholders=True, **opts))
        out = []
        for (t, name, axes), spec in zip(items, specs):
            if spec is None:
                out.append(t)
                continue
            t, key, opts = spec
            dims = tuple(opts["dim_tags"])
            self.extern_data[key] = opts
            layer = "data" if key == "data" else f"data:{key}"
            self.namer.reserve(layer)
            self._inputs[key] = (t.detach().cpu().numpy().copy(), dims)
            self._input_order.append(key)
            for x in dims:
                if x.is_dynamic():
                    self._dim_layers.setdefault(id(x), layer)
            out.append(wrap(t, Ref(layer, dims, tuple(t.shape), t.dtype), self))
        return out

    def _input_spec(self, t, name: str, axes: dict | None):
        if not isinstance(t, torch.Tensor):
            raise InputSpecError(f"input {name!r} must be a tensor, got {type(t).__name__}")
        t = plain(t)
        axes = {(a + t.ndim if a < 0 else a): _dim_name(n) for a, n in (axes or {}).items()}
        for a in axes:
            if not 0 <= a < t.ndim:
                raise InputSpecError(f"dynamic_shapes: axis {a} out of range for input {name!r} of shape "
                                     f"{tuple(t.shape)}")
        if t.dtype not in (torch.float32, torch.float64, torch.float16, torch.int64, torch.int32, torch.bool):
            raise InputSpecError(f"input {name!r} has unsupported dtype {t.dtype}")
        batch_axes = [a for a, n in axes.items() if n == "batch"]
        if len(batch_axes) > 1:
            raise InputSpecError(f"input {name!r}: more than one axis named 'batch'")
        batch_axis = batch_axes[0] if batch_axes else (0 if t.ndim else None)
        if not batch_axes and 0 in axes:
            raise InputSpecError(f"input {name!r}: axis 0 is named {axes[0]!r}, but without an axis named 'batch' "
                                 "axis 0 is the batch axis; name the batch axis explicitly (e.g. {1: 'batch'})")
        if name in self.extern_data:
            raise InputSpecError(f"input name {name!r} used twice")
        dims = []
        for a in range(t.ndim):
            if a == batch_axis:
                dims.append(batch_dim)
                self.dims.set_size(batch_dim, t.shape[a])
            elif a in axes:
                dn = axes[a]
                existing = self._named_dims.get(dn)
                if existing is None:
                    existing = self._named_dims[dn] = self.dims.dynamic(dn, t.shape[a])
                elif self.dims.size(existing) != t.shape[a]:
                    raise InputSpecError(f"dim {dn!r} has size {self.dims.size(existing)} in one input and "
                                         f"{t.shape[a]} in {name!r}")
                dims.append(existing)
            else:
                dims.append(self.dims.static(t.shape[a], f"{name}_dim{a}"))
        return t, name, {"dim_tags": dims, "dtype": tf_dtype(t.dtype), "available_for_inference": True}

    def input(self, tensor: torch.Tensor, name: str = "data", dynamic: dict | None = None) -> ReturnnTensor:
        """Mark ``tensor`` as a network input (for free functions); returns the tensor to use."""
        if not self.active:
            raise CaptureError("net.input() can only be used inside the capture block")
        if name != "data" and "data" not in self.extern_data:
            raise InputSpecError("the first input must be named 'data'")
        if dynamic is not None and not isinstance(dynamic, dict):
            raise InputSpecError("dynamic must map axis -> dim name")
        return self._add_inputs([(tensor, name, dynamic)])[0]

    def _define_inputs(self, module, args) -> tuple:
        spec = self._dynamic_shapes
        try:
            params = [p for p in inspect.signature(module.forward).parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        except (TypeError, ValueError):
            params = []
        names = [p.name for p in params]
        if isinstance(spec, dict):
            for k in spec:
                if k not in names[:len(args)]:
                    raise InputSpecError(
                        f"dynamic_shapes names argument {k!r}, but {type(module).__name__}.forward was called with "
                        f"positional arguments {names[:len(args)]} (pass tensors positionally)")
            specs = [spec.get(n) for n in names[:len(args)]] + [None] * max(0, len(args) - len(names))
        elif spec is not None:
            if len(spec) > len(args):
                raise InputSpecError(f"dynamic_shapes has {len(spec)} entries but the module got {len(args)} "
                                     "positional arguments")
            specs = list(spec) + [None] * (len(args) - len(spec))
        else:
            specs = [None] * len(args)
        length_pos = {}
        for k, dim_name in self._lengths_spec.items():
            i = k if isinstance(k, int) else (names.index(k) if k in names[:len(args)] else None)
            if i is None or i >= len(args) or not isinstance(args[i], torch.Tensor):
                raise InputSpecError(f"lengths names argument {k!r}, which is not a positional tensor argument of "
                                     f"{type(module).__name__}.forward (arguments: {names[:len(args)]})")
            length_pos[i] = dim_name
        items, positions = [], []
        for i, a in enumerate(args):
            if i in length_pos:
                continue
            if isinstance(a, torch.Tensor) and not isinstance(a, torch.nn.Parameter):
                name = "data" if not items else (names[i] if i < len(names) else f"input{i}")
                items.append((a, name, specs[i]))
                positions.append(i)
            elif specs[i] is not None:
                raise InputSpecError(f"dynamic_shapes entry {i} given for a non-tensor argument")
        new_args = list(args)
        for i, t in zip(positions, self._add_inputs(items)):
            new_args[i] = t
        for i, dim_name in sorted(length_pos.items()):
            new_args[i] = self._length_input(args[i], dim_name)
        self._forward_args = [("lengths", length_pos[i]) if i in length_pos else ("input", None)
                              for i in sorted(positions + list(length_pos))]
        return tuple(new_args)

    def _length_input(self, t: torch.Tensor, dim_name: str) -> ReturnnTensor:
        """A forward argument holding the lengths of dim ``dim_name``: the dim's own lengths."""
        dim = self._named_dims.get(dim_name)
        if dim is None:
            raise InputSpecError(f"lengths refers to dim {dim_name!r}, which no input axis has in dynamic_shapes")
        t = plain(t)
        n_batch = self.dims.size(batch_dim)
        if t.dim() != 1 or t.shape[0] != n_batch or t.dtype.is_floating_point:
            raise InputSpecError(f"lengths of {dim_name!r} must be an integer tensor of shape ({n_batch},), got "
                                 f"{tuple(t.shape)} {t.dtype}")
        if int(t.max()) > self.dims.size(dim) or int(t.min()) < 0:
            raise InputSpecError(f"lengths of {dim_name!r} must lie in [0, {self.dims.size(dim)}]")
        self._length_values[id(dim)] = t.numpy().astype(np.int32)
        with self.graph.as_default():
            ref = self.build(f"{dim_name}_lengths", {"class": "length", "from": self._dim_layers[id(dim)],
                                                     "axis": dim}, (batch_dim,), t.dtype)
        self._length_of[ref.name] = dim
        return wrap(t, ref, self)


def _dim_name(name) -> Any:
    if isinstance(name, str):
        return name
    return getattr(name, "__name__", name)  # torch.export.Dim


def _tensor_names(module: torch.nn.Module) -> dict[int, str]:
    names = {}
    for n, p in module.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), n)
    for n, b in module.named_buffers(remove_duplicate=False):
        names.setdefault(id(b), n)
    return names
