"""The errors of the public API (all derive from :class:`CaptureError`) and where they point to.

Every error that leaves a capture names the torch callable, the module path and the user's
``file:line`` of the op it is about (:class:`OpSite`). The dispatcher fills these in for errors
raised while an op is handled, so handlers and builders raise with the reason only.
"""

from __future__ import annotations

import inspect
import os
import sys
from dataclasses import dataclass
from typing import Any

import torch

_SKIP_DIRS = (os.path.dirname(os.path.abspath(__file__)) + os.sep,
              os.path.dirname(os.path.abspath(torch.__file__)) + os.sep)
_STDLIB = os.path.dirname(os.path.abspath(inspect.__file__)) + os.sep


def _is_user_file(fn: str) -> bool:
    if fn.startswith(_SKIP_DIRS) or fn.startswith("<frozen"):
        return False
    return not fn.startswith(_STDLIB) or "site-packages" in fn


def user_location() -> str:
    """``file:line`` of the innermost frame outside torch, the standard library and this package."""
    f = sys._getframe(1)
    while f is not None:
        if _is_user_file(f.f_code.co_filename):
            return f"{f.f_code.co_filename}:{f.f_lineno}"
        f = f.f_back
    return "<unknown>"


@dataclass(frozen=True)
class OpSite:
    """Which op an error, a layer or a parity record belongs to."""

    op: str  # printable torch callable, e.g. torch.Tensor.__add__
    module_path: str  # "" for the outermost module
    location: str  # the user's file:line


class CaptureError(Exception):
    """Base class of every error raised by a capture.

    ``reason`` says what went wrong; ``op``, ``module_path`` and ``location`` say where (filled in
    by the capture for errors raised while handling an op)."""

    def __init__(self, reason: str, *, op: str | None = None, module_path: str | None = None,
                 location: str | None = None, hint: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.op = op
        self.module_path = module_path
        self.location = location
        self.hint = hint

    def at(self, site: OpSite | None) -> CaptureError:
        """Fill in the op, module path and location where they are still missing; returns self."""
        if site is not None:
            self.op = self.op or site.op
            self.module_path = self.module_path if self.module_path is not None else site.module_path
            self.location = self.location or site.location
        return self

    def __str__(self) -> str:
        where = []
        if self.module_path is not None:
            where.append(f"module path {self.module_path or '<root>'!r}")
        if self.location:
            where.append(f"at {self.location}")
        text = f"{self.op}: {self.reason}" if self.op else self.reason
        if where:
            text += f" ({', '.join(where)})"
        if self.hint:
            text += f"\n{self.hint}"
        return text


def error_summary(e: BaseException) -> str:
    """``Type: message`` of an exception in one line: for TensorFlow's long messages, the line that
    says what went wrong (not the node traceback)."""
    lines = [ln.strip() for ln in str(getattr(e, "message", None) or e).splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith(("File ", "[[", "Detected at node", "Node:"))
             and ln != "Graph execution error:" and not ln.endswith("(most recent call last):")]
    return f"{type(e).__name__}: {lines[-1] if lines else ''}".rstrip(": ")


class UnsupportedOpError(CaptureError, NotImplementedError):
    """An op or module without a handler, or a case its handler cannot convert."""


class ParityError(CaptureError, AssertionError):
    """RETURNN and PyTorch disagree beyond tolerance; ``report``: the capture's ``ParityReport``."""

    def __init__(self, reason: str, *, report: Any = None, **kw: Any):
        first = _first_bad(report) if report is not None else None
        if first is not None:  # the first op that differs names the error
            kw = {"op": first.torch_op, "module_path": first.module_path, "location": first.location, **kw}
        super().__init__(reason, **kw)
        self.report = report


def _first_bad(report: Any) -> Any:
    """The first record that differs: at the capture inputs, else in a self-check."""
    fails = report.failures
    if fails:
        return fails[0]
    return next((c.first for c in report.self_checks if c.ok is False and c.first is not None), None)


class InputSpecError(CaptureError, ValueError):
    """Bad ``dynamic_shapes``, bad run inputs, or inputs the capture cannot use."""


class LayerBuildError(CaptureError):
    """RETURNN or TensorFlow could not build a layer a handler asked for."""


class HandlerError(CaptureError):
    """A handler failed with an unexpected exception (a bug in the handler)."""
