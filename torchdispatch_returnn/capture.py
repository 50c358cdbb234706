"""``returnn_capture``: run PyTorch code once and mirror every op as a RETURNN layer.

On entry the capture creates its own ``tf.Graph``/``Session``, installs global module
forward hooks (module-name stack, inputs and outputs of the outermost call) and a
``TorchFunctionMode`` (factory functions). On exit, always, it removes them; then, if the
block succeeded, it loads the weights, adds the ``output`` layers and checks parity.
"""

from __future__ import annotations

import inspect
import logging
import os
import sys

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from . import handlers as _handlers  # noqa: F401  (fills the registry)
from ._backend import Dim, TFNetwork, ensure_returnn, tf
from .context import OpContext, tf_dtype
from .dims import DimRegistry
from .errors import CaptureError, ParityError, UnsupportedOpError
from .handlers import meta
from .handlers.registry import lookup, target_name
from .inputs import InputsMixin, _tensor_names
from .naming import Namer, op_short_name
from .parity import ParityRecord, ParityReport
from .tensor import DimInt, PackedRef, Ref, ReturnnTensor, UnsortedRef, _iter_args, plain, wrap

logger = logging.getLogger("torchdispatch_returnn")

class _NewBatch:
    """Placeholder in a layer's dims for the new batch dim the layer itself creates."""

    def is_dynamic(self):
        return False

    def __repr__(self):
        return "NEW_BATCH"


NEW_BATCH = _NewBatch()

_PKG_DIR = os.path.dirname(os.path.abspath(__file__))
_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__))
_SKIP_DIRS = (_PKG_DIR, _TORCH_DIR, os.path.dirname(os.path.abspath(inspect.__file__)))

#: numel up to which a plain tensor becomes a ``constant`` layer; larger ones are variables
CONST_MAX_NUMEL = 64


def user_location() -> str:
    """``file:line`` of the innermost frame outside torch, the stdlib and this package."""
    f = sys._getframe(1)
    while f is not None:
        fn = f.f_code.co_filename
        if not fn.startswith(_SKIP_DIRS) and not fn.startswith("<frozen"):
            return f"{fn}:{f.f_lineno}"
        f = f.f_back
    return "<unknown>"


class _FactoryMode(TorchFunctionMode):
    """Routes factory functions (no tensor argument) of an active capture to it."""

    def __init__(self, capture: "Capture"):
        super().__init__()
        self.capture = capture

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        cap = self.capture
        if cap.active and not cap._suspended and cap.network is not None:
            flat = list(_iter_args(args, kwargs))
            h = lookup(func)
            if h is not None and h.factory and any(isinstance(t, ReturnnTensor) for t in flat):
                # torch.arange(lengths.max()): torch reads the 0-d tensor as a number, no dispatch
                return cap.dispatch(func, args, kwargs)
            if not any(isinstance(t, ReturnnTensor) for t in flat) and not _is_inplace(func):
                # factories with dynamic sizes (``torch.arange(x.shape[1])``), ops on parameters/buffers or
                # with dynamic sizes (``self.pe[:x.size(1)]``); static factories stay plain torch and
                # become constants where they meet captured tensors
                if h is not None and any(
                        isinstance(t, DimInt) and t.capture is cap or isinstance(t, torch.Tensor) and cap.is_param(t)
                        for t in flat):
                    return cap.dispatch(func, args, kwargs)
        return func(*args, **kwargs)


def _is_inplace(func) -> bool:
    """In-place ops on parameters/buffers (running-stat updates) stay plain torch."""
    name = getattr(func, "__name__", "")
    return name.endswith("_") and not name.endswith("__") or name.startswith("__i")


class Capture(InputsMixin):
    """The object bound by ``with returnn_capture(...) as net``; see API.md."""

    def __init__(self, dynamic_shapes=None, *, train: bool = False, check: bool = True,
                 atol: float = 1e-5, rtol: float = 1e-5, lengths: dict | None = None):
        self._dynamic_shapes = dynamic_shapes
        self._lengths_spec = dict(lengths or {})
        self.train = bool(train)
        self.check = check
        self.atol, self.rtol = atol, rtol
        self.active = False
        self._suspended = 0
        self.network: TFNetwork | None = None
        self.session = None
        self.graph = None
        self.dims = DimRegistry()
        self.namer = Namer()
        self.extern_data: dict[str, dict] = {}
        self._inputs: dict[str, tuple[np.ndarray, tuple[Dim, ...]]] = {}
        self._input_order: list[str] = []
        self._outputs: list[tuple[str, Ref]] = []
        self._explicit_outputs = False
        self._root_outputs: list = []
        self._module_stack: list[str] = []
        self._module_paths: dict[int, str] = {}
        self._module_calls: dict[str, int] = {}
        self._param_names: dict[int, str] = {}
        self._tensor_refs: dict[int, tuple[torch.Tensor, Ref]] = {}
        self._var_values: list[tuple[str, np.ndarray]] = []  # layer name -> value to load
        self._records: list[ParityRecord] = []
        self._recorded_layers: set[str] = set()
        self._hooks: list = []
        self.ops_seen: set = set()  # torch callables dispatched to a handler
        self._dim_layers: dict[int, str] = {}  # id(dynamic dim) -> a layer that has it
        self._named_dims: dict[str, Dim] = {}  # dynamic dim name (dynamic_shapes) -> Dim
        self._length_of: dict[str, Dim] = {}  # layer holding the lengths of a dim -> that dim
        self._max_length_of: dict[str, Dim] = {}  # layer holding max(lengths) of a dim -> that dim
        self._leaf_stack: list = []  # (module, args, stack depth) of leaf modules being run
        self._length_args: dict = {}  # forward arg name/position -> dim name (returnn_capture(lengths=...))
        self._length_values: dict[int, np.ndarray] = {}  # id(dim) -> lengths given at capture time
        self._forward_args: list = []  # ("input", key) / ("lengths", dim) in forward order
        self._mode: _FactoryMode | None = None
        self.parity: ParityReport | None = None
        self.param_map: dict[str, dict] = {}

    # ------------------------------------------------------------------ context management
    def __enter__(self) -> "Capture":
        if self.active or self.graph is not None:
            raise CaptureError("a returnn_capture object can be entered only once")
        ensure_returnn()
        self._check_spec_form()
        self.graph = tf.Graph()
        self.session = tf.compat.v1.Session(graph=self.graph)
        mm = torch.nn.modules.module
        self._hooks = [
            mm.register_module_forward_pre_hook(self._pre_hook),
            mm.register_module_forward_hook(self._post_hook, always_call=True, with_kwargs=True),
        ]
        self._mode = _FactoryMode(self)
        try:
            self._mode.__enter__()
        except BaseException:
            self._remove_hooks()
            raise
        self.active = True
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.active = False
        try:
            if self._mode is not None:
                self._mode.__exit__(None, None, None)
        finally:
            self._mode = None
            self._remove_hooks()
        if exc_type is not None:
            self._module_stack.clear()
            return None
        self._finish()
        return None

    def _remove_hooks(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []

    # ------------------------------------------------------------------ inputs / outputs
    def output(self, tensor: torch.Tensor, name: str | None = None) -> None:
        """Mark ``tensor`` as a network output (``output``, ``output_1``, ...)."""
        if not isinstance(tensor, ReturnnTensor) or tensor._rt_capture is not self:
            raise CaptureError("net.output() needs a tensor computed inside this capture from its inputs")
        if not self._explicit_outputs:
            self._explicit_outputs = True
            self._outputs = []
        name = name or ("output" if not self._outputs else f"output_{len(self._outputs)}")
        self._outputs.append((name, tensor._rt_ref))

    # ------------------------------------------------------------------ module hooks
    def _pre_hook(self, module, args):
        if not self.active:
            return None
        result = None
        if not self._module_stack:
            if not self._module_paths:
                self._module_paths = {id(m): n for n, m in module.named_modules(remove_duplicate=False)}
                self._param_names.update(_tensor_names(module))
            else:
                for n, m in module.named_modules(remove_duplicate=False):
                    self._module_paths.setdefault(id(m), n)
                for i, n in _tensor_names(module).items():
                    self._param_names.setdefault(i, n)
            if not self.extern_data:
                result = self._define_inputs(module, args)
        path = self._module_paths.get(id(module))
        if path is None:
            parent = self._module_stack[-1] if self._module_stack else ""
            path = Namer.join(parent, type(module).__name__.lower())
        self._module_stack.append(path)
        h = lookup(type(module)) if not self._suspended else None
        if h is not None and h.module:
            self._leaf_stack.append((module, result if result is not None else args, len(self._module_stack)))
            self._suspended += 1  # the module's own ops run in plain torch
        return result

    def _post_hook(self, module, args, *rest):
        output = rest[-1] if rest else None
        kwargs = rest[0] if len(rest) == 2 else {}
        leaf = None
        if self._leaf_stack and self._leaf_stack[-1][0] is module and \
                self._leaf_stack[-1][2] == len(self._module_stack):
            leaf = self._leaf_stack.pop()
            self._suspended -= 1
        if self._module_stack:
            path = self._module_stack.pop()
        else:
            return None
        if not self.active or output is None:
            return None
        if leaf is not None:
            output = self._run_module_handler(module, path, leaf[1], kwargs, output)
            if not self._module_stack and not self._explicit_outputs:
                self._root_outputs = output
            return output
        if not self._module_stack:
            if not self._explicit_outputs:
                self._root_outputs = output
            return None
        if path and isinstance(output, ReturnnTensor) and output._rt_capture is self:
            ref = self._named_copy(path, output._rt_ref)
            return wrap(plain(output), ref, self)
        return None

    def _run_module_handler(self, module, path, args, kwargs, output):
        h = lookup(type(module))
        self.ops_seen.add(type(module))
        ctx = OpContext(self, type(module), output, path or type(module).__name__.lower())
        self._suspended += 1
        try:
            with self.graph.as_default():
                res = h.fn(ctx, module, args, kwargs, output)
        except (CaptureError, NotImplementedError):
            raise
        except Exception as e:
            raise CaptureError(f"module handler for {target_name(type(module))} ({path or '<root>'!r}) failed at "
                               f"{user_location()}: {type(e).__name__}: {e}") from e
        finally:
            self._suspended -= 1
        return self._wrap(type(module), output, res, ())

    def _named_copy(self, path: str, ref: Ref) -> Ref:
        """A ``copy`` layer named by a module path, so the net dict mirrors the module tree."""
        return self.build(path, {"class": "copy", "from": ref}, ref.dims, ref.dtype, exact_name=True)

    @property
    def scope(self) -> str:
        return self._module_stack[-1] if self._module_stack else ""

    # ------------------------------------------------------------------ op dispatch
    def dispatch(self, func, args, kwargs):
        """Run one torch op for real and mirror it with its handler's layers."""
        if self._suspended:
            with torch._C.DisableTorchFunctionSubclass():
                return func(*args, **kwargs)
        if func in meta.AS_INT and args and isinstance(args[0], ReturnnTensor) and \
                args[0]._rt_ref.name in self._max_length_of:  # lengths.max().item(): the dim's size
            dim = self._max_length_of[args[0]._rt_ref.name]
            return DimInt(self.dims.size(dim), dim, self)
        if func in meta.PLAIN:
            with torch._C.DisableTorchFunctionSubclass():
                return func(*args, **kwargs)
        if func in meta.SHAPE:
            return meta.SHAPE[func](self, *args, **kwargs)
        h = lookup(func)
        if h is None:
            raise UnsupportedOpError(
                f"no handler for {target_name(func)} (module path {self.scope or '<root>'!r}, "
                f"called at {user_location()}); register one with torchdispatch_returnn.register()")
        self.ops_seen.add(func)
        with torch._C.DisableTorchFunctionSubclass():
            out = func(*args, **kwargs)
        ctx = OpContext(self, func, out, Namer.join(self.scope, op_short_name(func)))
        self._suspended += 1
        try:
            with self.graph.as_default():
                res = h.fn(ctx, *args, **kwargs)
        except (CaptureError, NotImplementedError):
            raise
        except Exception as e:
            raise CaptureError(
                f"handler for {target_name(func)} failed at {user_location()} (module path "
                f"{self.scope or '<root>'!r}): {type(e).__name__}: {e}") from e
        finally:
            self._suspended -= 1
        n_rec = len(self._records)
        result = self._wrap(func, out, res, args)
        for rec in self._records[n_rec:]:
            if ctx.notes:
                rec.note = "; ".join(filter(None, [rec.note] + ctx.notes))
        return result

    def _wrap(self, func, out, res, args):
        if isinstance(out, torch.Tensor):
            if res is None:  # a tensor the network does not need (e.g. PackedSequence.batch_sizes)
                return out
            if isinstance(res, (PackedRef, UnsortedRef)):  # no layer of its own / torch's batch order differs
                return wrap(out, res, self)
            if not isinstance(res, Ref):
                raise CaptureError(f"handler for {target_name(func)} returned {res!r}, expected a Ref")
            if tuple(res.shape) != tuple(out.shape):
                raise CaptureError(f"handler for {target_name(func)} produced shape {res.shape}, torch {tuple(out.shape)}")
            self._record(func, res, out)
            if isinstance(out, ReturnnTensor) and any(out is a for a in args):
                # in-place op: the same tensor object now stands for the new layer
                out._rt_ref = res
                out._rt_capture = self
                return out
            return wrap(out, res, self)
        if isinstance(out, (tuple, list)) and isinstance(res, (tuple, list)):
            items = [self._wrap(func, o, r, args) for o, r in zip(out, res)]
            if hasattr(out, "_fields"):
                return type(out)(*items)
            try:
                return type(out)(items)
            except TypeError:
                return tuple(items)
        if out is None and isinstance(res, Ref) and args and isinstance(args[0], ReturnnTensor):
            args[0]._rt_ref = res  # __setitem__ and friends
            self._record(func, res, args[0])
            return None
        return out

    def _record(self, func, ref: Ref, value: torch.Tensor) -> None:
        if ref.name in self._recorded_layers or ref.name.startswith("data"):
            return
        self._recorded_layers.add(ref.name)
        unchecked = _UNCHECKED.get(func) or (_UNCHECKED_TRAIN.get(func) if self.train else None)
        self._records.append(ParityRecord(
            torch_op=target_name(func), module_path=self.scope, layer=ref.name, ref=ref,
            value=None if unchecked else plain(value).detach().clone(), location=user_location(),
            check=not unchecked, note=unchecked or ""))

    # ------------------------------------------------------------------ layers
    def build(self, name: str, d: dict, dims: tuple, dtype: torch.dtype, *, exact_name: bool = False,
              shape: tuple | None = None) -> Ref:
        """Name, add and construct one layer; check its dims; cast to the torch dtype.
        ``dims`` may hold ``NEW_BATCH`` for a batch dim the layer creates (``shape`` gives its size)."""
        name = self.namer.reserve(name) if exact_name and name not in self.namer._taken else self.namer.unique(name)
        d = _refs_to_names(d)
        self.network.layers_desc[name] = d
        try:
            with self.graph.as_default():
                for x in dims:
                    if x.is_dynamic() and not x.is_batch_dim() and (
                            x.dyn_size_ext is None or x.dyn_size_ext.raw_tensor is None):
                        x.complete_dyn_size()
                with _quiet():
                    layer = self.network.construct_layer(self.network.layers_desc, name)
        except Exception as e:
            del self.network.layers_desc[name]
            raise CaptureError(f"RETURNN could not build layer {name!r} {d!r}: {type(e).__name__}: {e}") from e
        out_dims = layer.output.dims
        if any(x is NEW_BATCH for x in dims):  # a layer that makes its own batch dim (flatten_batch)
            new_b = [x for x in out_dims if x.is_batch_dim()]
            dims = tuple(new_b[0] if x is NEW_BATCH else x for x in dims)
            self.dims.set_size(new_b[0], int(np.prod([s for x, s in zip(dims, shape or ()) if x is new_b[0]] or [0])))
        if len(out_dims) != len(dims) or any(_count(out_dims, x) != _count(dims, x) for x in dims):
            raise CaptureError(f"layer {name!r} ({d.get('class')}) has dims {out_dims}, expected {dims}")
        ref = Ref(name, tuple(dims), tuple(self.dims.size(x) for x in dims), dtype)
        for x in dims:
            if x.is_dynamic():
                self._dim_layers.setdefault(id(x), name)
        if layer.output.dtype != tf_dtype(dtype):
            ref = self.build(name + "_cast", {"class": "cast", "from": name, "dtype": tf_dtype(dtype)}, dims, dtype)
        return ref

    def first_input_layer(self) -> str:
        key = self._input_order[0]
        return "data" if key == "data" else f"data:{key}"

    def is_param(self, t: torch.Tensor) -> bool:
        return id(t) in self._param_names or id(t) in self._tensor_refs

    def tensor_ref(self, t: torch.Tensor, dims=None, prefer=None) -> Ref:
        """A parameter/buffer (variable named by its state_dict key) or plain tensor (constant).
        ``prefer``: dims (or None) a new parameter variable should take where the sizes fit, so that
        the first op using it needs no renames."""
        cached = self._tensor_refs.get(id(t))
        if cached is not None and cached[0] is t and (dims is None or tuple(dims) == cached[1].dims):
            return cached[1]
        key = self._param_names.get(id(t))
        if key is None:
            ref = self.constant_ref(plain(t).detach().clone(), tuple(dims) if dims is not None else None)
        else:
            ref = self._variable(key, plain(t).detach().clone(), trainable=isinstance(t, torch.nn.Parameter),
                                 prefer=prefer)
            self.param_map[key] = {"tf_vars": [f"{_scope_of(key)}/{key.rsplit('.', 1)[-1]}"], "layer": ref.name,
                                   "transform": "none (same layout as torch)"}
        self._tensor_refs[id(t)] = (t, ref)
        return ref

    def _variable(self, key: str, value: torch.Tensor, trainable: bool, prefer=None) -> Ref:
        dims = []
        for i, s in enumerate(value.shape):
            p = prefer[i] if prefer is not None and i < len(prefer) else None
            ok = p is not None and p.is_static() and p.dimension == s and not any(p is d for d in dims)
            dims.append(p if ok else self.dims.static(s, f"{key}:{i}"))
        dims = tuple(dims)
        d = {"class": "variable", "shape": list(dims), "init": 0, "trainable": trainable,
             "name_scope": "/" + _scope_of(key), "param_name": key.rsplit(".", 1)[-1], "dtype": tf_dtype(value.dtype)}
        ref = self.build(key, d, dims, value.dtype, exact_name=True)
        self._var_values.append((ref.name, value.cpu().numpy()))
        return ref

    def constant_ref(self, value: torch.Tensor, dims=None) -> Ref:
        """A plain tensor as a ``constant`` layer (small) or non-trainable ``variable`` (large)."""
        if dims is None:
            dims = tuple(self.dims.static(s, f"const{i}") for i, s in enumerate(value.shape))
        if value.numel() <= CONST_MAX_NUMEL and all(not x.is_dynamic() for x in dims):
            arr = value.cpu().numpy()
            v = arr.item() if arr.ndim == 0 else arr
            d = {"class": "constant", "value": v, "shape": list(dims), "dtype": tf_dtype(value.dtype)}
            return self.build(Namer.join(self.scope, "const"), d, tuple(dims), value.dtype)
        if any(x.is_dynamic() for x in dims):
            logger.warning("a plain tensor of shape %s is used along a dynamic axis; the network only works at "
                           "this length", tuple(value.shape))
            raise CaptureError("a plain (non-parameter) tensor is combined along a dynamic axis "
                               f"(shape {tuple(value.shape)}) at {user_location()}; compute it from the input sizes "
                               "instead (e.g. slice it with x.shape[1])")
        name = self.namer.unique(Namer.join(self.scope, "const"))
        d = {"class": "variable", "shape": list(dims), "init": 0, "trainable": False, "param_name": "value",
             "dtype": tf_dtype(value.dtype)}
        ref = self.build(name, d, tuple(dims), value.dtype, exact_name=True)
        self._var_values.append((ref.name, value.cpu().numpy()))
        return ref

    # ------------------------------------------------------------------ finishing
    def _finish(self) -> None:
        from .export import finish_capture

        finish_capture(self)
        if self.check and not self.parity.ok:
            raise ParityError(self.parity.failure_message())

    # convenience API (implemented in export.py) --------------------------------------------
    @property
    def net_dict(self) -> dict:
        return self.network.layers_desc if self.network is not None else {}

    def config_code(self) -> str:
        from .export import config_code

        return config_code(self)

    def save_config(self, path: str) -> str:
        from .export import save_config

        return save_config(self, path)

    def save_checkpoint(self, path: str) -> str:
        from .export import save_checkpoint

        return save_checkpoint(self, path)

    def run(self, *inputs, seq_lens: dict | None = None):
        from .export import run

        return run(self, *inputs, seq_lens=seq_lens)


def returnn_capture(dynamic_shapes=None, *, train: bool = False, check: bool = True,
                    atol: float = 1e-5, rtol: float = 1e-5, lengths: dict | None = None) -> Capture:
    """Capture the PyTorch code run in the ``with`` block as a RETURNN network (see API.md).

    ``lengths``: forward arguments (by name or position) that hold the sequence lengths of a dynamic
    dim, e.g. ``{"lengths": "time"}``: that argument becomes the dim's lengths in the network."""
    return Capture(dynamic_shapes, train=train, check=check, atol=atol, rtol=rtol, lengths=lengths)


_UNCHECKED = {torch.empty: "unchecked: torch.empty values are unspecified",
              torch.empty_like: "unchecked: torch.empty_like values are unspecified",
              torch.Tensor.new_empty: "unchecked: new_empty values are unspecified"}
_UNCHECKED_TRAIN = {f: "unchecked: random in training mode" for f in (
    torch.nn.functional.dropout, torch.nn.functional.dropout1d, torch.nn.functional.dropout2d,
    torch.nn.functional.alpha_dropout, torch.nn.functional.feature_alpha_dropout, torch.dropout)}


class _quiet:
    """RETURNN prints some notices to stdout; library output goes to logging (debug) instead."""

    def __enter__(self):
        import contextlib
        import io

        self._buf = io.StringIO()
        self._cm = contextlib.redirect_stdout(self._buf)
        self._cm.__enter__()

    def __exit__(self, *exc):
        self._cm.__exit__(*exc)
        text = self._buf.getvalue().strip()
        if text:
            logger.debug("RETURNN: %s", text)
        return False


def _scope_of(key: str) -> str:
    return key.rsplit(".", 1)[0] if "." in key else "params"


def _count(dims, x) -> int:
    return sum(1 for d in dims if d is x or d == x)


def _refs_to_names(obj):
    if isinstance(obj, Ref):
        return obj.name
    if isinstance(obj, dict):
        return {k: _refs_to_names(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_refs_to_names(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_refs_to_names(v) for v in obj)
    return obj
