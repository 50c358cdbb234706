"""Network inputs of a capture: ``dynamic_shapes`` checks, extern data from the outermost module
call (or ``net.input``), and forward arguments tied to a dim's lengths (``lengths=``)."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch

from ._backend import batch_dim, tf_dtype
from .builder import Builder, captured_by
from .errors import CaptureError, InputSpecError, user_location
from .tensor import Ref, ReturnnTensor, plain, result_items, wrap

_INPUT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.int64, torch.int32, torch.bool)


class Inputs:
    """The inputs of one capture: extern data (``extern_data``, ``order``), the values seen at
    capture time, and how the forward's arguments map to them (``forward_args``)."""

    def __init__(self, builder: Builder, dispatcher: Any, dynamic_shapes: Any, lengths: dict | None):
        self.builder = builder
        self.dims = builder.dims
        self.dispatcher = dispatcher
        self.spec = dynamic_shapes
        self.lengths_spec = dict(lengths or {})
        self.extern_data: dict[str, dict] = {}
        self.values: dict[str, np.ndarray] = {}  # extern data key -> value at capture time
        self.order: list[str] = []
        self.forward_args: list[tuple[str, Any]] = []  # ("input", key) / ("lengths", dim name), forward order
        self.call: tuple | None = None  # (module, positional args, positions of the forward_args) of the root call
        self.call_site = ""  # the user's file:line of the root call
        self.check_spec_form()

    def check_spec_form(self) -> None:
        spec = self.spec
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

    # -- defining inputs --------------------------------------------------------------------------
    def add(self, items: list) -> list:
        """Make extern data of ``(tensor, name, axes)`` items; returns the ReturnnTensors."""
        out = []
        for t, name, axes in items:
            if isinstance(t, ReturnnTensor):
                out.append(t)
                continue
            t, key, opts = self._input_spec(t, name, axes)
            layer = self.builder.define_input(key, opts)
            layer.dtype = t.dtype
            self.extern_data[key] = opts
            self.values[key] = t.detach().cpu().numpy().copy()
            self.order.append(key)
            out.append(wrap(t, Ref(layer, layer.dims, tuple(t.shape), t.dtype), self.dispatcher))
        return out

    def _input_spec(self, t: Any, name: str, axes: dict | None) -> tuple:
        if not isinstance(t, torch.Tensor):
            raise InputSpecError(f"input {name!r} must be a tensor, got {type(t).__name__}")
        t = plain(t)
        axes = {(a + t.ndim if a < 0 else a): _dim_name(n) for a, n in (axes or {}).items()}
        for a in axes:
            if not 0 <= a < t.ndim:
                raise InputSpecError(f"dynamic_shapes: axis {a} out of range for input {name!r} of shape "
                                     f"{tuple(t.shape)}")
        if t.dtype not in _INPUT_DTYPES:
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
        static = [a for a in range(t.ndim) if a != batch_axis and a not in axes]
        for a in range(t.ndim):
            if a == batch_axis:
                if self.dims.has_size(batch_dim) and self.dims.size(batch_dim) != t.shape[a]:
                    raise InputSpecError(f"input {name!r}: its batch axis {a} has size {t.shape[a]}, the inputs before "
                                         f"have batch size {self.dims.size(batch_dim)}; inputs share one batch dim "
                                         "(name another axis 'batch' in dynamic_shapes)")
                dims.append(batch_dim)
                self.dims.set_size(batch_dim, t.shape[a])
            elif a in axes:
                dn = axes[a]
                existing = self.dims.named.get(dn)
                if existing is None:
                    existing = self.dims.named[dn] = self.dims.dynamic(dn, t.shape[a])
                elif self.dims.size(existing) != t.shape[a]:
                    raise InputSpecError(f"dim {dn!r} has size {self.dims.size(existing)} in one input and "
                                         f"{t.shape[a]} in {name!r}")
                dims.append(existing)
            else:
                role = "feature" if static == [t.ndim - 1] else f"dim{a}"  # ([B, T, F]: data_feature)
                dims.append(self.dims.static(t.shape[a], f"{name}_{role}"))
        return t, name, {"dim_tags": dims, "dtype": tf_dtype(t.dtype), "available_for_inference": True}

    def mark(self, tensor: torch.Tensor, name: str, dynamic: dict | None) -> ReturnnTensor:
        """``net.input(tensor, name, dynamic)`` (for free functions)."""
        if name != "data" and "data" not in self.extern_data:
            raise InputSpecError("the first input must be named 'data'")
        if dynamic is not None and not isinstance(dynamic, dict):
            raise InputSpecError("dynamic must map axis -> dim name")
        return self.add([(tensor, name, dynamic)])[0]

    def define_from_call(self, module: torch.nn.Module, args: tuple) -> tuple:
        """The positional tensor arguments of the outermost module call become the inputs;
        returns the arguments to call forward with."""
        spec = self.spec
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
        for k, dim_name in self.lengths_spec.items():
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
        for i, t in zip(positions, self.add(items)):
            new_args[i] = t
        for i, dim_name in sorted(length_pos.items()):
            new_args[i] = self._length_input(args[i], dim_name)
        keys = iter(self.order)
        kinds = {i: "rel_lengths" if args[i].dtype.is_floating_point else "lengths" for i in length_pos}
        self.forward_args = [(kinds[i], length_pos[i]) if i in length_pos else ("input", next(keys))
                             for i in sorted(positions + list(length_pos))]
        self.call = (module, tuple(plain(a).detach().clone() if isinstance(a, torch.Tensor) else a for a in args),
                     sorted(positions + list(length_pos)))
        self.call_site = user_location()
        return tuple(new_args)

    def _length_input(self, t: torch.Tensor, dim_name: str) -> ReturnnTensor:
        """A forward argument holding the lengths of dim ``dim_name``: the dim's own lengths."""
        dim = self.dims.named.get(dim_name)
        if dim is None:
            raise InputSpecError(f"lengths refers to dim {dim_name!r}, which no input axis has in dynamic_shapes")
        t = plain(t)
        n_batch, size = self.dims.size(batch_dim), self.dims.size(dim)
        relative = t.dtype.is_floating_point  # SpeechBrain: lengths as fractions of the padded size
        if t.dim() != 1 or t.shape[0] != n_batch:
            raise InputSpecError(f"lengths of {dim_name!r} must be a tensor of shape ({n_batch},), got "
                                 f"{tuple(t.shape)} {t.dtype}")
        lengths = torch.round(t.double() * size).long() if relative else t
        if int(lengths.max()) > size or int(lengths.min()) < 0:
            raise InputSpecError(f"lengths of {dim_name!r} must lie in [0, {size}]" + (" (as fractions: [0, 1])"
                                                                                    if relative else ""))
        self.dims.set_given_lengths(dim, lengths.numpy().astype(np.int32))
        src = self.dims.layer_of(dim)
        if relative:
            ref = self.builder.add({"class": "length", "from": src, "axis": dim}, (batch_dim,), torch.int32,
                                   site=None, scope="", name=f"{dim_name}_lengths")
            d = {"class": "eval", "from": [ref], "eval": f"tf.cast(source(0), {tf_dtype(t.dtype)!r}) / "
                 f"tf.cast(tf.reduce_max(source(0)), {tf_dtype(t.dtype)!r})", "out_type": {"dtype": tf_dtype(t.dtype)}}
            ref = self.builder.add(d, (batch_dim,), t.dtype, site=None, scope="", name=f"{dim_name}_relative_lengths")
        else:
            ref = self.builder.add({"class": "length", "from": src, "axis": dim}, (batch_dim,), t.dtype,
                                   site=None, scope="", name=f"{dim_name}_lengths")
            self.dims.mark_lengths(ref.layer, dim)
        return wrap(t, ref, self.dispatcher)

    def require(self) -> None:
        if not self.extern_data:
            raise CaptureError("nothing was captured: call a module inside the block with its input tensors as "
                               "positional arguments (keyword arguments are not seen by the hooks), or mark inputs "
                               "with net.input()")

    def root_outputs(self, out: Any) -> list:
        """(``output``/``output_1``/..., Ref) of the tensors computed in the capture among the outermost
        call's result (a tensor, a tuple/list, or a dict's values)."""
        return [(f"output_{i}" if i else "output", t._rt_ref) for i, t in
                enumerate(t for t in result_items(out) if captured_by(t, self.dispatcher))]


def _dim_name(name: Any) -> Any:
    if isinstance(name, str):
        return name
    return getattr(name, "__name__", name)  # torch.export.Dim
