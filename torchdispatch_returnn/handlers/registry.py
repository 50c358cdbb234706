"""The handler registry: real torch callables (and ``nn.Module`` classes) -> handler.

A handler is a small builder with torch's own signature after a leading ``ctx``
(:class:`torchdispatch_returnn.context.OpContext`); it returns the :class:`Ref` of the
layer that stands for the op's result (a tuple of them for tuple results). It never names
layers or touches the network itself: ``ctx`` and the builder do that.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Handler:
    """One registered handler and where it is defined."""

    fn: Callable
    targets: tuple
    factory: bool
    file: str
    line: int
    module: bool = False  # a leaf-module handler: fn(ctx, module, args, kwargs, output)
    builtin: bool = True  # registered by this package (not with register())


_HANDLERS: dict = {}
_REPLACED: dict = {}  # target -> the handler an override replaced (restored by unregister)


def target_name(target: Any) -> str:
    """A printable name for a torch callable or module class (``torch.Tensor.__add__``)."""
    if isinstance(target, type):
        return f"{target.__module__}.{target.__qualname__}"
    try:
        name = torch.overrides.resolve_name(target)
    except Exception:  # pragma: no cover
        name = None
    if name:
        return name
    mod = getattr(target, "__module__", None) or ""
    qual = getattr(target, "__qualname__", None) or getattr(target, "__name__", None) or repr(target)
    return f"{mod}.{qual}" if mod else qual


def handles_module(*classes: type) -> Callable:
    """Register a leaf-module handler for exact ``nn.Module`` classes (a subclass is traced through).

    The module's forward runs in plain torch (ops inside are not captured); the handler gets
    ``(ctx, module, args, kwargs, output)`` and returns Refs in the structure of ``output``.
    """
    return handles(*classes, module=True)


def handles(*targets: Any, factory: bool = False, module: bool = False, builtin: bool = True,
            override: bool = False) -> Callable:
    """Register the decorated function as the handler of ``targets``.

    ``factory=True`` marks functions that create tensors without a tensor argument
    (``torch.arange``, ``torch.zeros``); the capture's TorchFunctionMode routes those.
    Registering a target twice is an error unless ``override=True``.
    """
    if not targets:
        raise ValueError("handles() needs at least one target")

    def deco(fn: Callable) -> Callable:
        code = fn.__code__
        h = Handler(fn, tuple(targets), factory, inspect.getsourcefile(fn) or code.co_filename, code.co_firstlineno,
                    module, builtin)
        for t in targets:
            old = _HANDLERS.get(t)
            if old is not None and not override:
                how = ("it is built in: call torchdispatch_returnn.unregister(target) first, or register(target, fn, "
                       "override=True) to replace it") if old.builtin else "unregister it first, or pass override=True"
                raise ValueError(f"{target_name(t)} already has a handler ({old.fn.__qualname__} at "
                                 f"{old.file}:{old.line}); {how}")
        for t in targets:
            if t in _HANDLERS:
                _REPLACED.setdefault(t, _HANDLERS[t])
            _HANDLERS[t] = h
        return fn

    return deco


def register(target: Any, fn: Callable | None = None, *, factory: bool = False, override: bool = False) -> Callable:
    """Public: add a handler for a torch callable (or a leaf ``nn.Module`` class) from user code.

    ``register(torch.special.zeta, my_handler)`` or as a decorator ``@register(torch.special.zeta)``.
    A class target registers a leaf-module handler ``fn(ctx, module, args, kwargs, output)``.
    ``override=True`` replaces an existing handler (also a built-in one).
    """
    deco = handles(target, factory=factory, module=isinstance(target, type), builtin=False, override=override)
    if fn is None:
        return deco
    deco(fn)
    return fn


def unregister(target: Any) -> None:
    """Remove the handler of ``target``; a built-in handler that ``override=True`` replaced comes back."""
    _HANDLERS.pop(target, None)
    if target in _REPLACED:
        _HANDLERS[target] = _REPLACED.pop(target)


def lookup(target: Any) -> Handler | None:
    return _HANDLERS.get(target)


def all_handlers() -> dict:
    """target -> Handler, for support tables and meta-tests."""
    return dict(_HANDLERS)
