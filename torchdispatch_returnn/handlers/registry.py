"""The handler registry: real torch callables (and ``nn.Module`` classes) -> handler.

A handler is a small builder with torch's own signature after a leading ``ctx``
(:class:`torchdispatch_returnn.context.OpContext`); it returns the :class:`Ref` of the
layer that stands for the op's result (a tuple of them for tuple results). It never names
layers or touches the network itself: ``ctx.layer`` does that.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

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


_HANDLERS: dict = {}


def target_name(target) -> str:
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


def handles_module(*classes):
    """Register a leaf-module handler for exact ``nn.Module`` classes (a subclass is traced through).

    The module's forward runs in plain torch (ops inside are not captured); the handler gets
    ``(ctx, module, args, kwargs, output)`` and returns Refs in the structure of ``output``.
    """
    return handles(*classes, module=True)


def handles(*targets, factory: bool = False, module: bool = False):
    """Register the decorated function as the handler of ``targets``.

    ``factory=True`` marks functions that create tensors without a tensor argument
    (``torch.arange``, ``torch.zeros``); the capture's TorchFunctionMode routes those.
    Registering a target twice is an error.
    """
    if not targets:
        raise ValueError("handles() needs at least one target")

    def deco(fn):
        code = fn.__code__
        h = Handler(fn, tuple(targets), factory, inspect.getsourcefile(fn) or code.co_filename, code.co_firstlineno,
                    module)
        for t in targets:
            if t in _HANDLERS:
                old = _HANDLERS[t]
                raise ValueError(
                    f"{target_name(t)} already has a handler ({old.fn.__qualname__} at {old.file}:{old.line})")
        for t in targets:
            _HANDLERS[t] = h
        return fn

    return deco


def register(target, fn: Callable | None = None, *, factory: bool = False):
    """Public: add a handler for a torch callable from user code.

    ``register(torch.special.zeta, my_handler)`` or as a decorator ``@register(torch.special.zeta)``.
    """
    if fn is None:
        return handles(target, factory=factory)
    handles(target, factory=factory)(fn)
    return fn


def unregister(target) -> None:
    """Remove the handler of ``target`` (for user handlers added with :func:`register`)."""
    _HANDLERS.pop(target, None)


def lookup(target) -> Handler | None:
    return _HANDLERS.get(target)


def all_handlers() -> dict:
    """target -> Handler, for support tables and meta-tests."""
    return dict(_HANDLERS)
