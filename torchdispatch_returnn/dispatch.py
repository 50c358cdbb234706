"""Op dispatch: every torch op on a captured tensor (``ReturnnTensor.__torch_function__``) and every
factory or parameter op (:class:`FunctionMode`) runs for real in torch, then its handler converts it.

This is where the error contract is enforced: whatever a handler raises leaves as a
:class:`~.errors.CaptureError` naming the torch callable, the module path and the user's
``file:line`` (a handler's ``NotImplementedError`` becomes an :class:`~.errors.UnsupportedOpError`
with the handler's reason). Results are wrapped as ``ReturnnTensor``s bound to the handler's
``Ref``s and recorded for the parity check; in-place ops rebind the tensor they modified.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from .builder import Builder, captured_by
from .context import MissingValue, OpContext
from .errors import CaptureError, HandlerError, OpSite, UnsupportedOpError, user_location
from .handlers import meta
from .handlers.registry import Handler, lookup, target_name
from .naming import ModuleScopes, Namer, op_short_name
from .parity import Recorder
from .sizes import DimInt
from .tensor import PackedRef, Ref, ReturnnTensor, UnsortedRef, iter_args, plain, wrap

logger = logging.getLogger(__name__)


#: layer classes whose name matters beyond the net dict (their own parameters, inputs, constants)
_OWN_NAMES = frozenset({"data", "variable", "constant", "rec", "subnetwork", "random", "dropout"})


class Dispatcher:
    """Converts the ops of one capture; ``active`` only inside the ``with`` block."""

    def __init__(self, builder: Builder, recorder: Recorder, scopes: ModuleScopes, strict: bool = True):
        self.builder = builder
        self.recorder = recorder
        self.scopes = scopes
        self.strict = strict
        self.unsupported: list[tuple[OpSite, str]] = []  # (op, why) of every op without conversion (strict=False)
        self.active = False
        self.suspended = 0  # > 0 while a handler or leaf module runs: ops run in plain torch
        self.ops_seen: set = set()  # torch callables dispatched to a handler

    def site(self, func: Any) -> OpSite:
        return OpSite(target_name(func), self.scopes.current, user_location())

    def module_result(self, ref: Ref, path: str) -> Ref:
        """A module's result named by its path: its last op's layer renamed where that layer was made
        in this module call (a layer holding parameters too: their TF names follow it); else (an identity
        module such as Dropout in eval mode, a layer named already, or one that other ops compute again, see
        ``Builder.same``) the ref as it is: no ``copy`` layer."""
        layer = ref.layer
        if (layer.name is not None and not layer.built and layer.parent is None and layer.alias is None
                and not layer.unsupported and layer.desc is not None and id(layer) not in self.builder.shared
                and layer.desc.get("class") not in _OWN_NAMES and (layer.scope + ".").startswith(path + ".")):
            layer.name = self.builder.namer.claim(path)
            self.recorder.renamed(layer)
        return ref

    # -- ops --------------------------------------------------------------------------------------
    def dispatch(self, func: Any, args: tuple, kwargs: dict) -> Any:
        """Run one torch op for real and mirror it with its handler's layers."""
        self.recorder.kept.before(func, args, kwargs)
        if self.suspended:
            with torch._C.DisableTorchFunctionSubclass():
                return func(*args, **kwargs)
        dims = self.builder.dims
        if func in meta.AS_INT and args and captured_by(args[0], self):
            lin = dims.size_tensor(args[0]._rt_ref.layer)
            if lin is not None and lin.terms:  # lengths.max().item(): the dim's size
                size = DimInt(dims.value(lin), None, dims, lin)
                if func is not torch.Tensor.item:  # int(t): Python makes the result a plain int
                    dims.note_escape(size, checked=True)
                return size
        if func is torch.Tensor.__len__ and captured_by(args[0], self):  # len(x): Python makes it a plain int
            size = meta.sym_shape(dims, args[0]._rt_ref)[0] if args[0].dim() else None
            if isinstance(size, DimInt):
                dims.note_escape(size, checked=True)
        if func in meta.PLAIN:
            with torch._C.DisableTorchFunctionSubclass():
                return func(*args, **kwargs)
        if func in meta.SHAPE and captured_by(args[0], self):
            return meta.SHAPE[func](dims, args[0]._rt_ref, *args[1:], **kwargs)
        h = lookup(func)
        if h is None:
            if self.strict:
                raise UnsupportedOpError("no handler for this torch callable",
                                         hint="Add one with torchdispatch_returnn.register() (see docs/API.md)."
                                         ).at(self.site(func))
            with torch._C.DisableTorchFunctionSubclass():
                out = func(*args, **kwargs)
            return self._unsupported(self.site(func), "no handler", out, args)
        self.ops_seen.add(func)
        with torch._C.DisableTorchFunctionSubclass():
            out = func(*args, **kwargs)
        scope = self.scopes.current
        return self._convert(h, func, self.site(func), scope, op_short_name(func), (*args,), kwargs, out, args)

    def run_module(self, module: torch.nn.Module, path: str, args: tuple, kwargs: dict, output: Any) -> Any:
        """A leaf module (its ops ran in plain torch): its handler converts the whole call; its
        layers are named after the module path."""
        cls = type(module)
        h = lookup(cls)
        self.ops_seen.add(cls)
        site = OpSite(target_name(cls), path, user_location())
        return self._convert(h, cls, site, "", path or cls.__name__.lower(), (module, args, kwargs, output), {},
                             output, ())

    def _convert(self, h: Handler, func: Any, site: OpSite, scope: str, base: str, call_args: tuple,
                 call_kwargs: dict, out: Any, op_args: tuple) -> Any:
        ctx = OpContext(self.builder, self.recorder, self, func, out, Namer.join(scope, base), site, scope)
        self.builder.begin_op(base)
        n_rec = len(self.recorder.records)
        self.suspended += 1
        t0 = time.perf_counter()
        try:
            with self.builder.graph.as_default():
                res = h.fn(ctx, *call_args, **call_kwargs)
            results: list = []
            result = self._wrap(func, out, res, op_args, site, results)
        except MissingValue as e:  # the op's results are missing too (an error only if an output needs them)
            cause = e.layer
            self.suspended -= 1
            try:
                return _map_tensors(out, lambda t: wrap(t, self.builder.missing(
                    t, [], site, self.scopes.current, cause.missing, cause=cause), self))
            finally:
                self.suspended += 1
        except CaptureError as e:
            raise e.at(site) from e.__cause__
        except NotImplementedError as e:
            if not self.strict and not isinstance(func, type):
                self.suspended -= 1
                try:
                    return self._unsupported(site, str(e) or "not supported by its handler", out, op_args)
                finally:
                    self.suspended += 1
            raise UnsupportedOpError(str(e) or "not supported by its handler").at(site) from e
        except Exception as e:
            raise HandlerError(f"the handler {h.fn.__module__}.{h.fn.__qualname__} failed: "
                               f"{type(e).__name__}: {e}").at(site) from e
        finally:
            self.suspended -= 1
        self.builder.end_op(results)
        self.recorder.timed(n_rec, time.perf_counter() - t0)  # the handler's time on its records; progress
        if ctx.notes:
            self.recorder.add_note(n_rec, "; ".join(ctx.notes))
        return result

    def missing_ops(self) -> list[dict]:
        """The ops without conversion (``strict=False``), grouped by torch callable: ``op``, ``count``,
        ``module_paths``, ``location`` (the first), ``reasons``; most frequent first."""
        groups: dict[str, dict] = {}
        for site, why in self.unsupported:
            g = groups.setdefault(site.op, {"op": site.op, "count": 0, "module_paths": [], "location": site.location,
                                            "reasons": []})
            g["count"] += 1
            for key, value in (("module_paths", site.module_path or "<root>"), ("reasons", why)):
                if value not in g[key]:
                    g[key].append(value)
        return sorted(groups.values(), key=lambda g: (-g["count"], g["op"]))

    def missing_error(self) -> UnsupportedOpError | None:
        """One error listing every op without conversion, or None."""
        groups = self.missing_ops()
        if not groups:
            return None
        lines = [f"{len(groups)} torch callable(s) have no conversion ({len(self.unsupported)} uses):"]
        for g in groups:
            where = ", ".join(g["module_paths"])
            lines.append(f"  {g['op']}  x{g['count']}  first at {g['location']}  (module {where}): "
                         f"{'; '.join(g['reasons'])}")
        first = groups[0]
        return UnsupportedOpError("\n".join(lines), op=first["op"], location=first["location"],
                                  module_path=first["module_paths"][0] if first["module_paths"][0] != "<root>" else "",
                                  hint="Add handlers with torchdispatch_returnn.register() (see docs/API.md).")

    def _unsupported(self, site: OpSite, why: str, out: Any, args: tuple) -> Any:
        """strict=False: note the op and go on with torch's values (placeholders the network lacks)."""
        self.unsupported.append((site, why))
        like = [a._rt_ref for a in iter_args(args, {}) if captured_by(a, self)]
        return _map_tensors(out, lambda t: wrap(t, self.builder.missing(t, like, site, self.scopes.current, why), self))

    def _wrap(self, func: Any, out: Any, res: Any, args: tuple, site: OpSite, results: list) -> Any:
        if isinstance(out, torch.Tensor):
            key = self.recorder.next_key(site)
            if res is None:  # a tensor the network does not compute (e.g. PackedSequence.batch_sizes)
                why = f"{site.op} gives no layer for this result"
                ref = self.builder.missing(out, [], site, self.scopes.current, why)
                return wrap(out, ref, self)
            if not isinstance(res, Ref):
                raise HandlerError(f"the handler returned {res!r}, expected a Ref")
            results.append(res.layer)
            if isinstance(res, (PackedRef, UnsortedRef)):  # no layer of its own / torch's batch order differs
                why = ("packed sequence data (the network keeps the padded tensor)" if isinstance(res, PackedRef)
                       else "torch's length-sorted batch order (the network keeps the original order)")
                self.recorder.record(site, func, res, out, unchecked=f"unchecked: {why}", key=key)
                return wrap(out, res, self)
            if tuple(res.shape) != tuple(out.shape):
                raise HandlerError(f"the handler produced shape {res.shape}, torch {tuple(out.shape)}")
            self.recorder.record(site, func, res, out, key=key)
            if isinstance(out, ReturnnTensor) and any(out is a for a in args):
                # in-place op: the same tensor object now stands for the new layer
                out._rt_ref = res
                out._rt_capture = self
                return out
            return wrap(out, res, self)
        if isinstance(out, (tuple, list)) and isinstance(res, (tuple, list)):
            items = [self._wrap(func, o, r, args, site, results) for o, r in zip(out, res)]
            if hasattr(out, "_fields"):
                return type(out)(*items)
            try:
                return type(out)(items)
            except TypeError:
                return tuple(items)
        if out is None and isinstance(res, Ref) and args and isinstance(args[0], ReturnnTensor):
            args[0]._rt_ref = res  # __setitem__ and friends
            results.append(res.layer)
            self.recorder.record(site, func, res, args[0], key=self.recorder.next_key(site))
            return None
        return out


#: random factories: the network samples them itself, whatever their sizes (never torch's values as a constant)
_RANDOM = frozenset({torch.randn, torch.rand, torch.randint, torch.normal, torch.randn_like, torch.rand_like,
                     torch.randint_like, torch.bernoulli, torch.poisson, torch.multinomial, torch.randperm})


class FunctionMode(TorchFunctionMode):
    """Routes the ops without a captured tensor argument that still belong to the network:
    factories with dynamic sizes (``torch.arange(x.shape[1])``), ops on parameters or buffers
    (``self.pe[:x.size(1)]``), factories reading a captured 0-d tensor (``arange(lengths.max())``),
    and random factories."""

    def __init__(self, dispatcher: Dispatcher):
        super().__init__()
        self.dispatcher = dispatcher

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        d = self.dispatcher
        if d.active and not d.suspended and d.builder.network is not None:
            h = lookup(func)
            if h is not None:
                flat = list(iter_args(args, kwargs))
                if any(isinstance(t, ReturnnTensor) for t in flat):
                    if h.factory:
                        return d.dispatch(func, args, kwargs)
                elif func in _RANDOM or not _is_inplace(func) and (
                        any(isinstance(t, torch.Tensor) and d.builder.is_param(t) for t in flat)
                        or _mentions_size(flat, d.builder.dims)):
                    return d.dispatch(func, args, kwargs)
        if d.active:
            d.recorder.kept.before(func, args, kwargs)
        return func(*args, **kwargs)


def _mentions_size(items: list, dims: Any, depth: int = 0) -> bool:
    """A size of a dynamic axis among the arguments: a DimInt, or a plain int the user's code made
    from one (``int(x.size(1))``); also inside slices and nested sequences."""
    for t in items:
        if isinstance(t, int) and not isinstance(t, bool):
            if isinstance(t, DimInt) and t.owner is dims or dims.is_escaped(t):
                return True
        elif isinstance(t, slice):
            if _mentions_size([t.start, t.stop, t.step], dims, depth):
                return True
        elif isinstance(t, (list, tuple)) and depth < 2 and _mentions_size(list(t), dims, depth + 1):
            return True
    return False


def _map_tensors(value: Any, fn) -> Any:
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, (list, tuple)):
        items = [_map_tensors(v, fn) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    return value


def _is_inplace(func) -> bool:
    """In-place ops on parameters/buffers (running-stat updates) stay plain torch."""
    name = getattr(func, "__name__", "")
    return name.endswith("_") and not name.endswith("__") or name.startswith("__i")


__all__ = ["Dispatcher", "FunctionMode", "plain"]
