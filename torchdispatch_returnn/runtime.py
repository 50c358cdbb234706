"""Running a converted network: validated feeds, fetches in torch axis order, the live network
(``net.run``) and a fresh one built from a written config (:class:`ConfigNetwork`).

Both take the same arguments: the forward's own tensor arguments (inputs, and lengths arguments
tied to a dim with ``returnn_capture(lengths=...)``), plus ``seq_lens={dim name: lengths}``.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ._backend import Config, TFNetwork, building, ensure_returnn, new_session, quiet, tf
from .dims import find_axis
from .errors import CaptureError, InputSpecError, error_summary
from .numeric import to_numpy
from .tensor import MergedDim, Ref, expand_dims

#: config variable holding the forward's argument kinds, so a fresh network takes the same arguments
FORWARD_ARGS_KEY = "torch_forward_args"
#: config variable naming the output layers when there are several
OUTPUTS_KEY = "torch_outputs"


@dataclass(frozen=True)
class ArgSpec:
    """One argument of ``run``: an extern data input (``key``), or the lengths of dim ``key``."""

    kind: str  # "input", "lengths", or "rel_lengths" (lengths as fractions of the padded size)
    key: str


class Feeder:
    """Builds the feed dict of a network from run arguments, checking them against ``extern_data``."""

    def __init__(self, network: TFNetwork, input_keys: Sequence[str], forward_args: Sequence[ArgSpec]):
        self.network = network
        self.input_keys = list(input_keys)
        self.forward_args = list(forward_args) or [ArgSpec("input", k) for k in self.input_keys]
        self.dyn_names = sorted({d.description for k in self.input_keys
                                 for d in network.extern_data.data[k].dims if d.is_dynamic() and not d.is_batch_dim()})

    def feed(self, inputs: Sequence[Any], seq_lens: Any = None, known_lengths: dict | None = None) -> dict:
        """``inputs``: the forward's tensor arguments in order (or only the extern data inputs);
        ``seq_lens``: {dim name: lengths}; ``known_lengths``: {id(dim): lengths} (capture time: the
        inputs are fed as they are; otherwise dynamic axes are cut to the longest sequence)."""
        if seq_lens is not None and not isinstance(seq_lens, dict):
            raise InputSpecError(f"seq_lens must be a dict {{dim name: lengths}}, got {type(seq_lens).__name__}; "
                                 f"dynamic dims: {self.dyn_names}")
        seq_lens = dict(seq_lens or {})
        unknown = [k for k in seq_lens if k not in self.dyn_names]
        if unknown:
            raise InputSpecError(f"seq_lens names unknown dim(s) {unknown}; the dynamic dims are {self.dyn_names}")
        inputs = list(inputs)
        n_len = sum(a.kind != "input" for a in self.forward_args)
        if len(inputs) == len(self.forward_args):
            args = self.forward_args
        elif n_len and len(inputs) == len(self.input_keys):
            args = [ArgSpec("input", k) for k in self.input_keys]
        else:
            want = ", ".join(f"{a.key}" if a.kind == "input" else f"lengths of {a.key!r}" for a in self.forward_args)
            raise InputSpecError(f"expected {len(self.forward_args)} argument(s) ({want}), got {len(inputs)}")
        arrays = {a.key: np_value(x) for a, x in zip(args, inputs) if a.kind == "input"}
        for a, x in zip(args, inputs):
            if a.kind == "input":
                continue
            if a.key in seq_lens:
                raise InputSpecError(f"lengths of {a.key!r} given twice (argument and seq_lens)")
            seq_lens[a.key] = x if a.kind == "lengths" else self._from_relative(x, a.key, arrays)
        feed: dict = {}
        for key in self.input_keys:
            self._feed_input(feed, key, arrays[key], seq_lens, known_lengths)
        batch = getattr(self.network.extern_data.get_batch_info(allow_none=True), "dim", None)
        if getattr(getattr(batch, "op", None), "type", None) == "Placeholder" and batch not in feed:
            # RETURNN's own batch size placeholder (made when the first input has no batch axis)
            feed[batch] = next((arrays[k].shape[i] for k in self.input_keys
                                for i, d in enumerate(self.network.extern_data.data[k].dims) if d.is_batch_dim()), 1)
        return feed

    def _from_relative(self, rel: Any, name: str, arrays: dict) -> np.ndarray:
        """Lengths given as fractions of the padded size (SpeechBrain's relative lengths)."""
        rel = np_value(rel)
        if rel.dtype.kind != "f" or rel.ndim != 1 or (rel.size and (rel.min() < 0 or rel.max() > 1)):
            raise InputSpecError(f"relative lengths of dim {name!r} must be floats in [0, 1] of shape (batch,)")
        for key, arr in arrays.items():
            for ax, d in enumerate(self.network.extern_data.data[key].dims):
                if d.description == name and not d.is_batch_dim():
                    return np.round(rel.astype(np.float64) * arr.shape[ax]).astype(np.int32)
        raise InputSpecError(f"no input has the dim {name!r} of the relative lengths")

    def _feed_input(self, feed: dict, key: str, arr: np.ndarray, seq_lens: dict, known: dict | None) -> None:
        data = self.network.extern_data.data[key]
        dims = data.dims
        if arr.ndim != len(dims):
            raise InputSpecError(f"input {key!r} must have {len(dims)} axes, got shape {arr.shape}")
        for ax, d in enumerate(dims):
            if d.is_static() and arr.shape[ax] != d.dimension:
                raise InputSpecError(f"input {key!r} axis {ax} is static with size {d.dimension}, got {arr.shape[ax]}")
        want = np.dtype(data.dtype)
        if arr.dtype.kind != want.kind and not (arr.dtype.kind in "iu" and want.kind in "iu"):
            raise InputSpecError(f"input {key!r} must be {data.dtype}, got {arr.dtype}")
        batch_ax = [i for i, d in enumerate(dims) if d.is_batch_dim()]
        n_batch = arr.shape[batch_ax[0]] if batch_ax else 1
        crop = [slice(None)] * arr.ndim
        for ax, d in enumerate(dims):
            if not d.is_dynamic() or d.is_batch_dim():
                continue
            ph = d.dyn_size_ext.placeholder
            lens = seq_lens.get(d.description)
            if lens is None and known:
                lens = known.get(id(d))
            if lens is None:
                lens = feed[ph] if ph in feed else np.full([n_batch], arr.shape[ax], dtype=np.int32)
            lens = _lengths(lens, d.description, n_batch, arr.shape[ax])
            if ph in feed and not np.array_equal(feed[ph], lens):
                raise InputSpecError(f"inputs disagree on the lengths of dim {d.description!r}")
            feed[ph] = lens
            if known is None:
                crop[ax] = slice(0, int(lens.max(initial=0)))  # padded size = longest sequence
        feed[data.placeholder] = arr[tuple(crop)].astype(data.dtype, copy=False)


def _lengths(lens: Any, name: str, n_batch: int, size: int) -> np.ndarray:
    arr = np_value(lens)
    if arr.dtype.kind not in "iu":
        raise InputSpecError(f"lengths of dim {name!r} must be integers, got {arr.dtype}")
    if arr.shape != (n_batch,):
        raise InputSpecError(f"lengths of dim {name!r} must have shape ({n_batch},) (one per sequence), "
                             f"got {arr.shape}")
    if n_batch and (arr.min() < 0 or arr.max() > size):
        raise InputSpecError(f"lengths of dim {name!r} must lie in [0, {size}] (the padded size), got {arr.tolist()}")
    return arr.astype(np.int32)


class Fetcher:
    """TF tensors of refs in torch axis order (cached per layer and order)."""

    def __init__(self, network: TFNetwork, graph: Any, refs: Sequence[Ref] = ()):
        self.network = network
        self.graph = graph
        self._cache: dict = {}
        self.prepare(refs)

    def __call__(self, ref: Ref) -> Any:
        t, perm, groups = self.layout(ref)
        key = (ref.name, tuple(perm), groups)
        if key not in self._cache:
            with self.graph.as_default():
                t = tf.transpose(t, perm) if perm != sorted(perm) else t
                if len(groups) != len(perm):  # the torch view merges some axes
                    shape, k = tf.shape(t), 0
                    new = []
                    for n in groups:
                        new.append(tf.reduce_prod(shape[k:k + n]))
                        k += n
                    t = tf.reshape(t, tf.stack(new))
                self._cache[key] = t
        return self._cache[key]

    def layout(self, ref: Ref) -> tuple[Any, list, tuple]:
        """The TF tensor of ``ref``'s layer as it is, the layer axis of each torch axis (merged axes expanded), and
        how many of those each torch axis merges: :func:`torch_order` of its value is the value in torch's order."""
        out = self.network.get_layer(ref.name).output
        perm = [find_axis(out.dims, d) for d in expand_dims(ref.dims)]
        return out.placeholder, perm, tuple(len(expand_dims([d])) for d in ref.dims)

    def prepare(self, refs: Sequence[Ref]) -> None:
        """Make the tensors of ``refs`` now, before the first run: each run after the graph has grown
        places the whole graph again."""
        for ref in refs:
            self(ref)

    def feed(self, feed: Any) -> tuple[Any, np.ndarray]:
        """The TF tensor of a :class:`~.parity.Feed`'s layer and torch's value in its axis order (sets the
        feed's ``layer``, ``perm`` and ``dtype``, so the same layer of a network built from the config
        can be fed: :func:`layer_feed`)."""
        if any(isinstance(d, MergedDim) for d in feed.ref.dims):
            raise CaptureError(f"random values of layer {feed.ref.name!r} on merged axes cannot be fed")
        out = self.network.get_layer(feed.ref.name).output
        feed.layer, feed.dtype = feed.ref.name, out.dtype
        feed.perm = tuple(find_axis(out.dims, d) for d in feed.ref.dims)
        return out.placeholder, layer_feed(feed, np_value(feed.value))

    def lengths(self, ref: Ref) -> dict:
        """{id(dim): TF lengths} of the dynamic dims of ``ref``."""
        return {id(d): d.dyn_size_ext.placeholder for d in ref.dims
                if d.is_dynamic() and not d.is_batch_dim() and d.dyn_size_ext is not None}


def torch_order(value: np.ndarray, perm: list, groups: tuple) -> np.ndarray:
    """A layer's value in torch's axis order (see :meth:`Fetcher.layout`): a transposed view, reshaped where torch's
    view merges axes."""
    value = np.transpose(value, perm) if perm != sorted(perm) else value
    if len(groups) == len(perm):
        return value
    shape, k = [], 0
    for n in groups:
        shape.append(int(np.prod(value.shape[k:k + n], dtype=np.int64)))
        k += n
    return value.reshape(shape)


class ReusedRuns:
    """The capture's session for its checks. TF makes an executor for each distinct set of feeds and
    fetches, at a cost that grows with the whole graph (a third of capturing a 32-block encoder went
    there); a run whose fetches earlier runs with the same feeds fetched (each of them in one) runs those
    earlier fetch lists again instead, and keeps what it asked for. If that fails, the fetches run alone."""

    def __init__(self, session: Any):
        self.session = session
        self.graph = session.graph
        self._lists: list = []  # (feed tensors, fetch list, ids of its fetches)

    def run(self, fetches: Any, feed_dict: dict | None = None) -> Any:
        if not isinstance(fetches, list) or not feed_dict:
            return self.session.run(fetches, feed_dict=feed_dict)
        keys, ids = frozenset(feed_dict), [id(t) for t in fetches]
        want = set(ids)
        plan, todo = [], set(want)
        for k, lst, members in self._lists:
            if k == keys and todo & members:
                plan.append(lst)
                todo -= members
        if todo or not plan:
            self._lists.append((keys, list(fetches), want))
            return self.session.run(fetches, feed_dict=feed_dict)
        got = {}
        try:
            for lst in plan:
                got.update((id(t), v) for t, v in zip(lst, self.session.run(lst, feed_dict=feed_dict)) if id(t) in want)
        except tf.errors.OpError:  # an op the earlier list has beside these fails here
            return self.session.run(fetches, feed_dict=feed_dict)
        return [got[i] for i in ids]


def layer_feed(feed: Any, value: np.ndarray) -> np.ndarray:
    """``value`` (torch order) of a fed layer in the layer's axis order and dtype."""
    return np.transpose(np.asarray(value), np.argsort(feed.perm)).astype(feed.dtype) if feed.perm else \
        np.asarray(value).astype(feed.dtype)


def run_outputs(session: Any, feed: dict, fetches: list) -> Any:
    """The values of ``fetches`` (one, or a tuple); a TF failure is a ``CaptureError``."""
    try:
        values = session.run(fetches, feed_dict=feed)
    except tf.errors.OpError as e:
        raise CaptureError(f"running the network failed in TensorFlow: {error_summary(e)}") from e
    return values[0] if len(values) == 1 else tuple(values)


def np_value(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        with torch._C.DisableTorchFunctionSubclass():
            return to_numpy(x)
    return np.asarray(x)


class ConfigNetwork:
    """A fresh TFNetwork built from a written config (and optionally a checkpoint): what a RETURNN
    user gets. ``run(*args, seq_lens=None)`` takes the same arguments as ``net.run``. ``train``: RETURNN's
    train flag (dropout active), as in a training run."""

    def __init__(self, config: str, checkpoint: str | None = None, train: bool = False):
        ensure_returnn()
        code = open(config).read() if os.path.exists(config) else config
        cfg = Config()
        cfg.load_file(io.StringIO(code))
        self.config = cfg
        self.graph = tf.Graph()
        self.session = new_session(self.graph)
        with building(self.graph), quiet():
            self.network = TFNetwork(config=cfg, train_flag=train, name="root")
            self.network.construct_from_dict(cfg.typed_value("network"))
            self.network.initialize_params(self.session)
            if checkpoint:
                self.network.load_params_from_file(checkpoint, self.session)
        self.input_keys = list(cfg.typed_value("extern_data").keys())
        args = [ArgSpec(kind, key) for kind, key in (cfg.typed_value(FORWARD_ARGS_KEY) or [])]
        self.feeder = Feeder(self.network, self.input_keys, args)
        self.output_names = list(cfg.typed_value(OUTPUTS_KEY) or ["output"])

    def run(self, *inputs: Any, seq_lens: dict | None = None) -> Any:
        """Numpy outputs (``output``, ``output_1``, ...) for the forward's arguments."""
        feed = self.feeder.feed(inputs, seq_lens)
        outs = [self.network.get_layer(n).output.placeholder for n in self.output_names]
        return run_outputs(self.session, feed, outs)

    def gradients(self, *inputs: Any, weights: Sequence[np.ndarray], wrt: Sequence[str] = (),
                  seq_lens: dict | None = None, layer_values: dict | None = None) -> tuple[dict, dict]:
        """The gradients of ``sum(output_i * weights_i)`` over each sequence's valid frames, w.r.t. every
        trainable variable ({name: array}) and the float extern data ``wrt`` ({key: array});
        ``layer_values``: {layer name: value in its axis order} fed there (random values)."""
        feed = self.feeder.feed(inputs, seq_lens)
        for name, value in (layer_values or {}).items():
            feed[self.network.get_layer(name).output.placeholder] = value
        with self.graph.as_default():
            loss = 0.0
            for name, w in zip(self.output_names, weights):
                data = self.network.get_layer(name).output
                term = tf.cast(data.placeholder, tf.float64) * tf.constant(np.asarray(w, dtype=np.float64))
                for ax, d in enumerate(data.dims):  # (without a batch axis: every frame counts)
                    if d.is_dynamic() and not d.is_batch_dim() and data.have_batch_axis():
                        mask = data.get_sequence_mask_broadcast(axis=ax)
                        term = term * tf.cast(mask, tf.float64)
                loss += tf.reduce_sum(term)
            params = self.network.get_trainable_params()
            keys = [k for k in wrt]
            targets = params + [self.network.extern_data.data[k].placeholder for k in keys]
            grads = tf.gradients(loss, targets)
        fetch = {i: g for i, g in enumerate(grads) if g is not None}
        values = self.session.run(fetch, feed_dict=feed) if fetch else {}
        by_var = {p.op.name: values.get(i) for i, p in enumerate(params)}
        by_input = {k: values.get(len(params) + j) for j, k in enumerate(keys)}
        return by_var, by_input

    def close(self) -> None:
        self.session.close()
