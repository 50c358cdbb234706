"""Gradient parity: the network built from the written config + checkpoint, trained in RETURNN,
must get torch autograd's gradients.

The loss is ``sum(output * R)`` over every float output with batch axis (``R`` random, fixed),
over each sequence's valid frames. Two batches are checked:

- ``batch``: the capture's inputs with every sequence full, torch on the whole batch;
- ``padded``: shorter sequences (full, 3/4, 1/2, ... of the capture size) with garbage (5.0) in
  the padding, against torch run on each sequence alone and the gradients summed. Skipped, with
  the reason, where torch refuses those lengths or where the network's outputs on the padded batch
  are not each sequence's own (ops over the batch axis, padding-dependent ops).

A parameter's (or float input's) gradient must match torch's; a missing gradient is only right
where torch's is zero or absent too. Random ops: torch's values of its run on the batch are fed into
the network's random layers (the padded batch is skipped: torch samples each sequence alone).
Training mode: the network has RETURNN's train flag set; the module's buffers (running statistics)
and torch's random state are restored afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from .dims import DimRegistry
from .errors import error_summary, user_location
from .handlers.registry import target_name
from .inputs import Inputs
from .numeric import close, to_numpy
from .params import torch_layout
from .runtime import layer_feed


@dataclass
class GradCheck:
    """One parameter's (or input's) gradient in the network built from the written config vs torch's."""

    name: str  # state_dict key, or "input <key>", with the batch it was checked on
    ok: bool | None  # None: skipped (detail says why)
    max_abs_diff: float = 0.0
    detail: str = ""


def gradient_check(inputs: Inputs, kwargs: dict, fresh: Any, param_map: dict, dims: DimRegistry, out_dims: list,
                   atol: float, rtol: float, seed: int = 0, feeds: list = ()) -> list[GradCheck]:
    """Gradient parity on the full batch and on a padded batch (see the module docstring); ``feeds``:
    the random layers (:class:`~.parity.Feed`) where torch's values are fed."""
    module, args, positions = inputs.call
    buffers = [(b, b.detach().clone()) for b in module.buffers()] if any(m.training for m in module.modules()) else []
    with torch.random.fork_rng(devices=[]):
        try:
            full = PaddedBatch(inputs, dims, args, positions, padded=False)
            out = _check(full, "batch", module, kwargs, fresh, param_map, out_dims, atol, rtol, seed, feeds)
            padded = PaddedBatch(inputs, dims, args, positions, padded=True)
            if padded.lens != full.lens and feeds:
                out.append(GradCheck("(padded batch)", None, detail="skipped: random ops (torch samples each "
                                     "sequence alone; its values cannot be fed into one padded batch)"))
            elif padded.lens != full.lens:
                out += _check(padded, "padded batch", module, kwargs, fresh, param_map, out_dims, atol, rtol, seed)
        finally:
            with torch.no_grad():
                for b, value in buffers:
                    b.copy_(value)
    return out


class _Samples(TorchFunctionMode):
    """A plain-torch run that keeps the values to feed into the random layers ({layer name: value}); ops
    of a torch module called as the root are keyed at ``root_site``, the line that called it in the capture."""

    def __init__(self, feeds: list, root_site: str = ""):
        super().__init__()
        self._sites = {user_location(): root_site} if root_site else {}
        self.by_key = {f.key: f for f in feeds}
        self.ops = {f.key[1] for f in feeds}
        self.values: dict = {}
        self._counts: dict = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        op = target_name(func)
        if op in self.ops:
            loc = user_location()
            loc = self._sites.get(loc, loc)
            n = self._counts.get((loc, op), 0)
            self._counts[(loc, op)] = n + len(flat_tensors(out))
            f = self.by_key.get((loc, op, n))
            if f is not None:
                self.values[f.layer] = layer_feed(f, to_numpy(f.sample(args, kwargs or {}, out)))
        return out


def _check(batch: PaddedBatch, what: str, module: torch.nn.Module, kwargs: dict, fresh: Any, param_map: dict,
           out_dims: list, atol: float, rtol: float, seed: int, feeds: list = ()) -> list[GradCheck]:
    inputs = batch.inputs
    seq_lens = {n: np.asarray(v) for n, v in batch.lens.items()
                if not any(kind != "input" and key == n for kind, key in inputs.forward_args)}
    try:
        outs = fresh.run(*batch.forward_args(), seq_lens=seq_lens)
    except Exception as e:  # (the network fails on this batch: reported, not raised)
        return [GradCheck(f"({what})", False, float("inf"), f"the network fails: {error_summary(e)}")]
    outs = list(outs) if isinstance(outs, tuple) else [outs]
    rng = np.random.default_rng(seed)
    weights = [rng.standard_normal(o.shape) for o in outs]
    floats = [k for k in inputs.order if inputs.values[k].dtype.kind == "f"]
    params = dict(module.named_parameters(remove_duplicate=False))
    saved = {id(p): p.grad for p in params.values()}  # the user's own .grad, restored below
    try:
        for p in params.values():
            p.grad = None
        try:
            samples = _Samples(feeds, inputs.call_site)
            input_grads, skip = _torch_grads(batch, module, kwargs, outs, weights, out_dims, floats, samples)
            if len(samples.values) < len(feeds):
                skip = skip or f"torch ran {len(samples.values)} of the {len(feeds)} random ops of the capture"
        except Exception as e:  # (torch refuses these lengths, or has no gradient)
            return [GradCheck(f"({what})", None, detail=f"skipped: torch fails ({type(e).__name__}: {e})")]
        if skip:
            return [GradCheck(f"({what})", None, detail=f"skipped: {skip}")]
        want = {k: (p.grad.double().numpy() if p.grad is not None else np.zeros(tuple(p.shape)))
                for k, p in params.items() if k in param_map and p.requires_grad}
    finally:
        for p in params.values():
            p.grad = saved[id(p)]
    try:
        tf_vars, tf_inputs = fresh.gradients(*batch.forward_args(), weights=weights, wrt=floats, seq_lens=seq_lens,
                                             layer_values=samples.values)
    except Exception as e:  # (e.g. an op without gradient in TF: reported as a failure)
        return [GradCheck(f"({what})", False, float("inf"), f"no gradient in TensorFlow: {error_summary(e)}")]
    out = [_result(f"{key} ({what})", torch_layout(tf_vars.get(param_map[key]["tf_vars"][0]),
                                                   param_map[key].get("perm")), w, atol, rtol)
           for key, w in want.items()]
    out += [_result(f"input {k} ({what})", tf_inputs.get(k), input_grads[k], atol, rtol, batch.valid(k))
            for k in floats]
    return out


def _torch_grads(batch: PaddedBatch, module, kwargs, outs, weights, out_dims, floats, samples) -> tuple[dict, str]:
    """Torch autograd of the loss into the parameters' ``.grad`` (the values of random ops kept by the
    mode ``samples``); returns the float inputs' gradients and a reason to skip (or "")."""
    input_grads = {k: np.zeros(batch.xs[batch.pos[k]].shape) for k in floats}
    runs = range(batch.n) if batch.padded else [None]
    with torch.enable_grad():  # (the capture may run under no_grad)
        for b in runs:
            call, leaves = batch.call(b, floats)
            loss = 0.0
            with samples:
                results = flat_tensors(module(*call, **kwargs))
            for t, net_out, w, od in zip(results, outs, weights, out_dims):
                if not t.is_floating_point():
                    continue
                bax = next((a for a, d in enumerate(od) if d.is_batch_dim()), None)
                if b is None:
                    if tuple(t.shape) != net_out.shape:
                        return input_grads, f"output shape {tuple(net_out.shape)}, torch {tuple(t.shape)}"
                    loss = loss + (t.double() * torch.from_numpy(w)).sum()
                    continue
                if bax is None:
                    return input_grads, "an output without a batch axis mixes the sequences of the batch"
                sl = [slice(0, s) for s in t.shape]
                sl[bax] = slice(b, b + 1)
                mine = np.asarray(net_out)[tuple(sl)]
                if mine.shape != tuple(t.shape) or not close(mine, to_numpy(t), 1e-4, 1e-4, per_entry=True):
                    return input_grads, ("the network's outputs on a padded batch are not each sequence's own "
                                         "(ops over the batch axis or depending on the padding)")
                loss = loss + (t.double() * torch.from_numpy(w[tuple(sl)])).sum()
            if isinstance(loss, torch.Tensor) and loss.requires_grad:
                loss.backward()
            for k, leaf in leaves.items():
                if leaf.grad is not None:
                    batch.paste(input_grads[k], leaf.grad.numpy(), k, b)
    return input_grads, ""


def flat_tensors(out: Any) -> list:
    """The tensors of a (nested) tuple/list output, in order."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (list, tuple)):
        return [t for v in out for t in flat_tensors(v)]
    return []


class PaddedBatch:
    """A batch from the capture's inputs: every sequence full, or (``padded``) lengths full, 3/4,
    1/2, ... of the capture size along every dynamic dim with garbage in the padding (``fill`` for
    floats, 5.0 by default: a leak of it shows, and NaN or huge values would make gradients NaN
    through a masked loss (0 * inf), also in RETURNN's training; the largest value for ints)."""

    def __init__(self, inputs: Inputs, dims: DimRegistry, args: tuple, positions: list, padded: bool,
                 fill: float = 5.0):
        self.inputs, self.positions, self.padded = inputs, positions, padded
        self.pos = {k: i for (kind, k), i in zip(inputs.forward_args, positions) if kind == "input"}
        first = inputs.values[inputs.order[0]]
        self.n = first.shape[_batch_axis(inputs, inputs.order[0])] if first.ndim else 1
        fracs = ([1.0, 0.75, 0.5, 0.9, 0.6, 0.8] * self.n)[:self.n] if padded else [1.0] * self.n
        sizes = {}
        for key in inputs.order:
            for d in inputs.extern_data[key]["dim_tags"]:
                if d.is_dynamic() and not d.is_batch_dim():
                    sizes[d.description] = dims.size(d)
        self.lens = {n: [max(1, int(np.ceil(s * f))) for f in fracs] for n, s in sizes.items()}
        self.xs = list(args)
        for k, i in self.pos.items():
            t = torch.as_tensor(inputs.values[k]).clone()
            for b in range(self.n):
                for ax, d in self._dyn_axes(k):
                    idx = [slice(None)] * t.dim()
                    idx[_batch_axis(inputs, k)], idx[ax] = b, slice(self.lens[d][b], None)
                    t[tuple(idx)] = fill if t.is_floating_point() else t.max()
            self.xs[i] = t
        for (kind, key), i in zip(inputs.forward_args, positions):
            if kind != "input":
                v = torch.tensor(self.lens[key], dtype=args[i].dtype)
                self.xs[i] = v / float(max(self.lens[key])) if kind == "rel_lengths" else v

    def _dyn_axes(self, key: str) -> list:
        return [(ax, d.description) for ax, d in enumerate(self.inputs.extern_data[key]["dim_tags"])
                if d.is_dynamic() and not d.is_batch_dim()]

    def forward_args(self) -> list:
        return [self.xs[i] for i in self.positions]

    def call(self, b: int | None, floats: list) -> tuple[list, dict]:
        """The root call's arguments for sequence ``b`` alone (None: the whole batch), float inputs
        as autograd leaves (cloned, so in-place ops on them work)."""
        call, leaves = list(self.xs), {}
        for (kind, key), i in zip(self.inputs.forward_args, self.positions):
            if b is None:
                if key in floats and kind == "input":
                    leaves[key] = self.xs[i].detach().clone().requires_grad_(True)
                    call[i] = leaves[key].clone()
                continue
            if kind != "input":
                call[i] = torch.tensor([self.lens[key][b]], dtype=self.xs[i].dtype) if kind == "lengths" else \
                    torch.ones(1, dtype=self.xs[i].dtype)
                continue
            idx = [slice(None)] * self.xs[i].dim()
            idx[_batch_axis(self.inputs, key)] = slice(b, b + 1)
            for ax, d in self._dyn_axes(key):
                idx[ax] = slice(0, self.lens[d][b])
            call[i] = self.xs[i][tuple(idx)].clone()
            if key in floats:
                leaves[key] = call[i].detach().clone().requires_grad_(True)
                call[i] = leaves[key].clone()
        return call, leaves

    def paste(self, dst: np.ndarray, grad: np.ndarray, key: str, b: int | None) -> None:
        if b is None:
            dst[...] = grad
            return
        idx = [slice(0, s) for s in grad.shape]
        idx[_batch_axis(self.inputs, key)] = slice(b, b + 1)
        dst[tuple(idx)] = grad

    def valid(self, key: str) -> np.ndarray:
        mask = np.ones(self.xs[self.pos[key]].shape, dtype=bool)
        for b in range(self.n):
            for ax, d in self._dyn_axes(key):
                idx = [slice(None)] * mask.ndim
                idx[_batch_axis(self.inputs, key)], idx[ax] = b, slice(self.lens[d][b], None)
                mask[tuple(idx)] = False
        return mask


def _batch_axis(inputs: Inputs, key: str) -> int:
    return next((a for a, d in enumerate(inputs.extern_data[key]["dim_tags"]) if d.is_batch_dim()), 0)


def _result(name: str, got: Any, want: np.ndarray, atol: float, rtol: float, valid=None) -> GradCheck:
    if got is None:
        ok = not np.any(want)
        return GradCheck(name, ok, float(np.abs(want).max(initial=0.0)), "" if ok else "no gradient in the network")
    got = np.asarray(got, dtype=np.float64)
    if got.shape != want.shape:
        return GradCheck(name, False, float("inf"), f"shape {got.shape}, torch {want.shape}")
    if valid is not None:
        got, want = got[valid], want[valid]
    fin = np.isfinite(want)  # NaN/inf where torch has them too is parity
    if not np.array_equal(np.isfinite(got), fin) or not np.array_equal(got[~fin], want[~fin], equal_nan=True):
        return GradCheck(name, False, float("inf"), "NaN/inf at other places than torch's")
    diff = float(np.abs(got - want)[fin].max(initial=0.0))
    scale = float(np.abs(want[fin]).max(initial=0.0))
    return GradCheck(name, diff <= atol + rtol * scale, diff)
