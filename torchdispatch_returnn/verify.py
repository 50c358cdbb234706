"""The checks run when a capture ends: every op's value against torch at the capture inputs, and the
second-length self-check (torch and the network again at another length, op by op).

The capture calls these with explicit objects (session, fetcher, feeder, records, dims); they only
read them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from .dims import DimRegistry
from .errors import error_summary, user_location
from .handlers.registry import lookup, target_name
from .inputs import Inputs
from .parity import ParityReport, Recorder, check
from .runtime import Feeder, Fetcher


def parity_run(recorder: Recorder, session: Any, fetch: Fetcher, feeder: Feeder, inputs: Inputs, dims: DimRegistry,
               atol: float, rtol: float) -> ParityReport:
    """Run the network on the capture's inputs and compare every recorded op with torch's value
    (only valid frames where lengths were given, of the full-length sequences where there are some)."""
    report = ParityReport(records=recorder.records, atol=atol, rtol=rtol)
    given = dims.given_lengths()
    feed = feeder.feed([inputs.values[k] for k in inputs.order], known_lengths=given)
    check(recorder.records, fetch, lambda fetches: session.run(fetches, feed_dict=feed),
          fetch.lengths if given else None, atol, rtol, dims.full_sequences())
    return report


# -- the second-length self-check ---------------------------------------------------------------------
class _Replay(TorchFunctionMode):
    """Runs the model in plain torch and keeps every op's tensor results by (line, op, n), as the
    capture keys its records (plus the outputs of leaf modules such as nn.LSTM)."""

    def __init__(self):
        super().__init__()
        self.values: dict = {}
        self._counts: dict = {}

    def keep(self, op: str, out: Any) -> None:
        loc = user_location()
        for t in _tensors(out):
            n = self._counts.get((loc, op), 0)
            self._counts[(loc, op)] = n + 1
            self.values[(loc, op, n)] = t.detach().clone()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        written = out is None and args and isinstance(args[0], torch.Tensor)  # x[idx] = v: the updated x
        self.keep(target_name(func), args[0] if written else out)
        return out


def _tensors(out: Any) -> list:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (list, tuple)):
        return [t for v in out for t in _tensors(v)]
    return []


def replay(module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[Any, dict]:
    """``module(*args, **kwargs)`` in plain torch: its outputs and every op's results by key."""
    mode = _Replay()

    def post(m, a, out):
        h = lookup(type(m))
        if h is not None and h.module:
            mode.keep(target_name(type(m)), out)

    hook = torch.nn.modules.module.register_module_forward_hook(post)
    try:
        with torch.no_grad(), mode:
            out = module(*args, **kwargs)
    finally:
        hook.remove()
    return out, mode.values


@dataclass
class SelfCheck:
    """One run of the network at another length (or on a padded batch) against torch."""

    what: str
    ok: bool | None  # None: skipped
    first: Any = None  # the first record whose value differs
    detail: str = ""
    compared: int = 0


def self_check(inputs: Inputs, kwargs: dict, records: list, fetch: Fetcher, feeder: Feeder, session: Any,
               dims: DimRegistry, sizes: bool | dict, atol: float, rtol: float) -> list[SelfCheck]:
    """Run torch and the network at another length along every dynamic dim (the inputs cut to it), and on
    a padded batch with NaN in the padding (each sequence against torch run on it alone), comparing
    op by op; what a network fixed to the capture length gets wrong shows here."""
    module, args, positions = inputs.call
    base = _dyn_sizes(inputs, dims)
    if not base:
        return []
    out = []
    tried = sizes if isinstance(sizes, dict) else {n: [max(1, (2 * s) // 3), max(1, s - 1)] for n, s in base.items()}
    tried = {n: [v] if isinstance(v, int) else list(v) for n, v in tried.items() if n in base}
    for k in range(max(len(v) for v in tried.values())):
        new = {n: v[min(k, len(v) - 1)] for n, v in tried.items()}
        if all(new[n] == base[n] for n in new):
            continue
        xs = _cut(inputs, args, positions, dims, new)
        feed = feeder.feed([xs[i] for i in positions])
        try:
            _, values = replay(module, tuple(x.clone() if isinstance(x, torch.Tensor) else x for x in xs), kwargs)
        except Exception as e:  # torch itself refuses this length: try the next one
            out.append(SelfCheck(f"sizes {new}", None, detail=f"skipped: torch fails ({type(e).__name__}: {e})"))
            continue
        out.append(_compare_all(f"sizes {new}", records, values, fetch, session, feed, None, atol, rtol))
        break
    return out


def _dyn_sizes(inputs: Inputs, dims: DimRegistry) -> dict:
    sizes = {}
    for key in inputs.order:
        for d in inputs.extern_data[key]["dim_tags"]:
            if d.is_dynamic() and not d.is_batch_dim():
                sizes[d.description] = dims.size(d)
    return sizes


def _cut(inputs: Inputs, args: tuple, positions: list, dims: DimRegistry, new: dict) -> tuple:
    """The root call's arguments with the inputs cut to ``new`` sizes along their dynamic axes (and
    lengths arguments set to them)."""
    xs = list(args)
    for (kind, key), i in zip(inputs.forward_args, positions):
        if kind == "input":
            t = xs[i]
            for ax, d in enumerate(inputs.extern_data[key]["dim_tags"]):
                if d.description in new and d.is_dynamic() and not d.is_batch_dim():
                    t = t.narrow(ax, 0, min(new[d.description], t.shape[ax]))
            xs[i] = t
        else:  # lengths arguments: every sequence full (shorter ones are the padded check's)
            xs[i] = torch.full_like(xs[i], new[key] if kind == "lengths" else 1.0)
    return tuple(xs)


def _compare_all(what: str, records: list, values: dict, fetch: Fetcher, session: Any, feed: dict, pick,
                 atol: float, rtol: float) -> SelfCheck:
    todo = [r for r in records if r.check and r.key in values]
    if not todo:
        return SelfCheck(what, None, detail="skipped: no op of the capture ran again")
    fetches = [fetch(r.ref) for r in todo]
    try:
        got = session.run(fetches, feed_dict=feed)
    except Exception as e:  # the network cannot run at this length: the first op that fails
        for rec, t in zip(todo, fetches):
            try:
                session.run(t, feed_dict=feed)
            except Exception as e1:
                return SelfCheck(what, False, rec, f"fails in TensorFlow: {error_summary(e1)}", len(todo))
        return SelfCheck(what, False, todo[-1], f"fails in TensorFlow: {error_summary(e)}", len(todo))
    for rec, val in zip(todo, got):
        want = values[rec.key].cpu().numpy()
        val = np.asarray(val)
        if val.shape != want.shape:
            return SelfCheck(what, False, rec, f"shape {val.shape}, torch {want.shape}", len(todo))
        if not _close(val, want, atol, rtol):
            diff = np.nanmax(np.abs(val.astype(np.float64) - want.astype(np.float64))) if want.size else 0.0
            return SelfCheck(what, False, rec, f"max abs diff {diff:.3g}", len(todo))
    return SelfCheck(what, True, compared=len(todo))


def _close(got: np.ndarray, want: np.ndarray, atol: float, rtol: float) -> bool:
    if want.dtype == np.bool_ or np.issubdtype(want.dtype, np.integer):
        return bool(np.array_equal(got, want))
    g, w = got.astype(np.float64), want.astype(np.float64)
    fin = np.isfinite(w)
    if not np.array_equal(np.isfinite(g), fin) or not np.array_equal(g[~fin], w[~fin], equal_nan=True):
        return False
    if not fin.any():
        return True
    return float(np.abs(g - w)[fin].max()) <= atol + rtol * float(np.abs(w[fin]).max())
