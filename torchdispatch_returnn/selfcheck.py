"""The self-checks run when a capture ends, what a network fixed to the capture's inputs gets wrong:

- at another length along every dynamic dim (the inputs cut to it): torch and the network again, op
  by op, keyed by the line and op that made each record (torch's values of random ops fed into the
  network's random layers, as in the parity run);
- on a padded batch (sequences of full, 3/4, 1/2, ... the capture length, NaN in the padding): each
  sequence's outputs against torch run on that sequence alone; where they differ, the first op
  whose valid frames differ is named.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from .dims import DimRegistry
from .errors import error_summary, user_location
from .gradcheck import PaddedBatch, flat_tensors
from .handlers.registry import lookup, target_name
from .inputs import Inputs
from .numeric import close, to_numpy
from .runtime import Feeder, layer_feed
from .sinks import Sinks


class _Replay(TorchFunctionMode):
    """Runs the model in plain torch and keeps every op's tensor results by (line, op, n), as the
    capture keys its records (plus the outputs of leaf modules such as nn.LSTM); ``feeds``: the random
    layers, whose values to feed go to ``fed`` ({layer name: value in its axis order})."""

    def __init__(self, root_site: str = "", feeds=(), fed: dict | None = None):
        super().__init__()
        self.feeds = {f.key: f for f in feeds}
        self.fed = fed if fed is not None else {}
        self.values: dict = {}
        self._counts: dict = {}
        self._sites = {user_location(): root_site} if root_site else {}  # ops of the root call: its site

    def keep(self, op: str, out: Any) -> tuple:
        loc = user_location()
        loc = self._sites.get(loc, loc)
        keys = []
        for t in flat_tensors(out):
            n = self._counts.get((loc, op), 0)
            self._counts[(loc, op)] = n + 1
            keys.append((loc, op, n))
            self.values[keys[-1]] = t.detach().clone()
        return keys[0] if keys else ()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        written = out is None and args and isinstance(args[0], torch.Tensor)  # x[idx] = v: the updated x
        f = self.feeds.get(self.keep(target_name(func), args[0] if written else out))
        if f is not None:
            self.fed[f.layer] = layer_feed(f, to_numpy(f.sample(args, kwargs or {}, out)))
        return out


def replay(module: torch.nn.Module, args: tuple, kwargs: dict, root_site: str = "", feeds=(),
           fed: dict | None = None, *, values: bool = True) -> tuple[Any, dict]:
    """``module(*args, **kwargs)`` in plain torch: its outputs and every op's results by key (the ops
    of a leaf root module keyed at ``root_site``, the line that called it in the capture); the values
    to feed into the random layers ``feeds`` go to ``fed``. ``values=False``: the outputs only (no op
    is intercepted)."""
    if not values:
        with torch.no_grad():
            return module(*args, **kwargs), {}
    mode = _Replay(root_site, feeds, fed)

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


def self_check(inputs: Inputs, kwargs: dict, records: list, sinks: Sinks, feeder: Feeder, session: Any,
               dims: DimRegistry, sizes: bool | dict, atol: float, rtol: float, feeds=()) -> list[SelfCheck]:
    """Run torch and the network at another length along every dynamic dim (the inputs cut to it), and on
    a padded batch with NaN in the padding (each sequence against torch run on it alone), comparing
    op by op; what a network fixed to the capture length gets wrong shows here."""
    module, args, positions = inputs.call
    base = _dyn_sizes(inputs, dims)
    if not base:
        return []
    out = []
    tried = sizes if isinstance(sizes, dict) else {n: [max(1, (2 * s) // 3), max(1, s - 1)] for n, s in base.items()}
    tried = {n: [x for x in ([v] if isinstance(v, int) else v) if x < base[n]] or [base[n]]  # inputs are cut
             for n, v in tried.items() if n in base}
    if not tried:
        return []
    for k in range(max(len(v) for v in tried.values())):
        new = {n: v[min(k, len(v) - 1)] for n, v in tried.items()}
        if all(new[n] == base[n] for n in new):
            continue
        xs = _cut(inputs, args, positions, dims, new)
        feed, fed = feeder.feed([xs[i] for i in positions]), {}
        try:
            _, values = replay(module, tuple(x.clone() if isinstance(x, torch.Tensor) else x for x in xs), kwargs,
                               inputs.call_site, feeds, fed)
        except Exception as e:  # torch itself refuses this length: try the next one
            out.append(_torch_fails(f"sizes {new}", e))
            continue
        if len(fed) < len(feeds):
            out.append(SelfCheck(f"sizes {new}", None, detail=f"skipped: torch ran {len(fed)} of the {len(feeds)} "
                                 "random ops of the capture here (their values cannot be fed)"))
            break
        feed.update((sinks.fetch.network.get_layer(name).output.placeholder, v) for name, v in fed.items())
        flipped = dims.guards.flipped(lambda lin, at=new: dims.size_at(lin, at))
        out.append(_compare_all(f"sizes {new}", records, values, sinks, session, feed, flipped, atol, rtol))
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


def _compare_all(what: str, records: list, values: dict, sinks: Sinks, session: Any, feed: dict,
                 flipped: list | None, atol: float, rtol: float) -> SelfCheck:
    """Every op of the capture that torch ran again, network against torch. Ops that torch does not
    run at these sizes fail the check where a decision of the user's code on sizes comes out otherwise
    here (``flipped``: their sites, None: unknown): the network, one graph, holds the capture's branch.
    Else they are left out (a branch on values, e.g. on a mask of all ones)."""
    todo = [r for r in records if r.check and r.key in values]
    missing = [r for r in records if r.check and r.key not in values]
    if missing and (flipped is None or flipped):
        at = f" (decided otherwise at {', '.join(flipped)})" if flipped else ""
        return SelfCheck(what, False, missing[0], f"torch takes another path at these sizes{at}: {len(missing)} "
                         "op(s) of the capture do not run, the first is this one", len(todo))

    def differs(rec: Any, val: np.ndarray, _) -> str:
        want = to_numpy(values[rec.key])
        val = np.asarray(val)
        if val.shape != want.shape:
            return f"shape {val.shape}, torch {want.shape}"
        if not close(val, want, atol, rtol):
            diff = np.nanmax(np.abs(val.astype(np.float64) - want.astype(np.float64))) if want.size else 0.0
            return f"max abs diff {diff:.3g}"
        return ""

    failed = _first_failure(what, todo, sinks, session, feed, differs)
    if failed is not None:
        return failed
    return SelfCheck(what, True, compared=len(todo),
                     detail=f"{len(missing)} op(s) of the capture not run by torch here (a branch on values)"
                     if missing else "")


def _first_failure(what: str, todo: list, sinks: Sinks, session: Any, feed: dict, differs) -> SelfCheck | None:
    """The failed check of the first record of ``todo`` (in capture order) whose network value ``differs(record,
    value, lengths)`` from torch's (a non-empty reason), or that TF fails to compute; None if none does."""
    found: dict = {}
    order = {id(r): i for i, r in enumerate(todo)}

    def visit(rec: Any, val: np.ndarray, lens: dict) -> None:
        why = differs(rec, val, lens)
        if why:
            found[order[id(rec)]] = (rec, why)

    run = lambda fetches: session.run(fetches, feed_dict=feed)
    failed = sinks.run(run, todo, visit)
    if failed is not None:  # the network cannot run here: the first op that fails
        rec, e = sinks.first_failing(run, todo) or (todo[-1], failed)
        return SelfCheck(what, False, rec, f"fails in TensorFlow: {error_summary(e)}", len(todo))
    if not found:
        return None
    rec, why = found[min(found)]
    return SelfCheck(what, False, rec, why, len(todo))


# -- the padded batch ------------------------------------------------------------------------------------
def padded_check(inputs: Inputs, kwargs: dict, records: list, sinks: Sinks, feeder: Feeder, session: Any,
                 dims: DimRegistry, outputs: list, atol: float, rtol: float) -> list[SelfCheck]:
    """The network on a padded batch with NaN in the padding against torch on each sequence alone."""
    module, args, positions = inputs.call
    batch = PaddedBatch(inputs, dims, args, positions, padded=True, fill=float("nan"))
    if batch.n < 2 or not batch.lens or all(v == [max(v)] * len(v) for v in batch.lens.values()):
        return []
    what = f"padded batch {batch.lens}"
    axes = [_batch_axis_of(r) for r in outputs]
    if any(a is None for a in axes):
        return [SelfCheck(what, None, detail="skipped: an output has no batch axis")]
    try:
        runs = [flat_tensors(replay(module, tuple(batch.call(b, [])[0]), kwargs, values=False)[0])
                for b in range(batch.n)]
    except Exception as e:  # torch refuses a batch of one, or these lengths
        return [_torch_fails(what, e)]
    seq_lens = {n: np.asarray(v) for n, v in batch.lens.items()
                if not any(kind != "input" and key == n for kind, key in inputs.forward_args)}
    feed = feeder.feed(batch.forward_args(), seq_lens=seq_lens)
    got = session.run([sinks.fetch(r) for r in outputs], feed_dict=feed)
    bad = next((b for b in range(batch.n) for v, (t, ax) in zip(got, zip(runs[b], axes))
                if not close(_row(np.asarray(v), ax, b, t.shape), to_numpy(t), atol, rtol)), None)
    if bad is None:
        return [SelfCheck(what, True, compared=len(outputs) * batch.n)]
    # a sequence differs: is torch itself per sequence here (no op over the batch, nothing from the padding)?
    full = PaddedBatch(inputs, dims, args, positions, padded=False)
    try:
        alone = [flat_tensors(replay(module, tuple(full.call(b, [])[0]), kwargs, values=False)[0])
                 for b in range(batch.n)]
    except Exception as e:
        return [_torch_fails(what, e)]
    whole = flat_tensors(replay(module, tuple(full.call(None, [])[0]), kwargs, values=False)[0])
    for b in range(batch.n):  # each sequence alone gives its row of the whole batch: no op mixes the batch
        for t, a, ax in zip(whole, alone[b], axes):
            if not close(to_numpy(t.narrow(ax, b, 1)), to_numpy(a), atol, rtol):
                return [SelfCheck(what, None, detail="skipped: torch's outputs on a batch are not each sequence's "
                                  "own (an op over the batch axis)")]
    zeros = PaddedBatch(inputs, dims, args, positions, padded=True, fill=0.0)
    own = flat_tensors(replay(module, tuple(zeros.call(None, [])[0]), kwargs, values=False)[0])
    if any(not close(_row(to_numpy(t), ax, b, a.shape), to_numpy(a), atol, rtol)
           for b in range(batch.n) for t, a, ax in zip(own, runs[b], axes)):
        return [SelfCheck(what, None, detail="skipped: torch's own outputs on a padded batch depend on the padding "
                          "(they differ from torch on each sequence alone)")]
    values = replay(module, tuple(batch.call(bad, [])[0]), kwargs, inputs.call_site)[1]  # every op's, this time
    return [_first_padded_diff(what, records, values, bad, sinks, session, feed, atol, rtol)]


def _torch_fails(what: str, e: Exception) -> SelfCheck:
    return SelfCheck(what, None, detail=f"skipped: torch fails ({type(e).__name__}: {e})")


def _first_padded_diff(what: str, records: list, values: dict, b: int, sinks: Sinks, session: Any, feed: dict,
                       atol: float, rtol: float) -> SelfCheck:
    """The first op whose valid frames of sequence ``b`` differ from torch on that sequence alone."""
    todo = [r for r in records if r.check and r.key in values and _batch_axis_of(r.ref) is not None]

    def differs(rec: Any, val: np.ndarray, _) -> str:
        want = to_numpy(values[rec.key])
        mine = _row(np.asarray(val), _batch_axis_of(rec.ref), b, want.shape)
        if mine.shape == want.shape and close(mine, want, atol, rtol):
            return ""
        return (f"sequence {b} differs from torch run on it alone"
                f"{'' if mine.shape == want.shape else f' (shape {mine.shape}, torch {want.shape})'}")

    failed = _first_failure(what, todo, sinks, session, feed, differs)
    if failed is not None:
        return failed
    missing = [r for r in records if r.check and r.key not in values]
    if missing:  # (the record, not the last op: torch took another branch for this sequence)
        return SelfCheck(what, False, missing[0], f"torch takes another path for sequence {b} alone: "
                         f"{len(missing)} op(s) of the capture do not run, the first is this one", len(todo))
    return SelfCheck(what, False, todo[-1] if todo else None, f"an output of sequence {b} differs from torch run on "
                     "it alone", len(todo))


def _batch_axis_of(ref: Any) -> int | None:
    return next((a for a, d in enumerate(ref.dims) if d.is_batch_dim()), None)


def _row(value: np.ndarray, ax: int, b: int, shape: tuple) -> np.ndarray:
    """Row ``b`` along ``ax`` of a padded-batch value, cut to the size of torch's value on it alone."""
    if value.ndim != len(shape):
        return value
    idx = [slice(0, s) for s in shape]
    idx[ax] = slice(b, b + 1)
    return value[tuple(idx)]
