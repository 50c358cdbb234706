"""Finishing a capture (outputs, weights, parity) and its artifacts: config code, checkpoint, run."""

from __future__ import annotations

import io
import math
import os
from typing import TYPE_CHECKING

import numpy as np
import torch

from ._backend import BEHAVIOR_VERSION, Config, Dim, TFNetwork, ensure_returnn, tf
from .dims import find_axis
from .errors import CaptureError, InputSpecError
from .parity import ParityReport, compare
from .tensor import Ref, ReturnnTensor

if TYPE_CHECKING:
    from .capture import Capture


def finish_capture(cap: "Capture") -> None:
    """Add output layers, load the torch weights, run the parity check."""
    if cap.network is None or not cap.extern_data:
        raise CaptureError("nothing was captured: call a module inside the block with its input tensors as "
                           "positional arguments (keyword arguments are not seen by the hooks), or mark inputs "
                           "with net.input()")
    outs = cap._outputs if cap._explicit_outputs else _root_output_refs(cap)
    if not outs:
        raise CaptureError("the captured code returned no tensor computed from its inputs; use net.output()")
    cap._outputs = []
    for name, ref in outs:
        d = {"class": "transpose", "from": ref.name, "perm": list(ref.dims)}
        if name != "output":
            d["is_output_layer"] = True
        cap.namer.reserve(name)
        cap.network.layers_desc[name] = d
        with cap.graph.as_default():
            cap.network.construct_layer(cap.network.layers_desc, name)
        cap._outputs.append((name, ref))
    _load_weights(cap)
    cap.parity = ParityReport(records=cap._records, atol=cap.atol, rtol=cap.rtol)
    checked = [r for r in cap._records if r.check]
    if checked:
        feed = _feed(cap, [cap._inputs[k][0] for k in cap._input_order], use_capture_lengths=True)
        fetches = [_fetch(cap, r.layer, r.ref) for r in checked]
        masked = bool(cap._length_values)  # lengths given at capture: compare the valid frames only
        dyn = {}
        if masked:
            for r in checked:
                for d in r.ref.dims:
                    if d.is_dynamic() and not d.is_batch_dim() and d.dyn_size_ext is not None:
                        dyn[id(d)] = d.dyn_size_ext.placeholder
        values = cap.session.run(fetches + list(dyn.values()), feed_dict=feed)
        lens = dict(zip(dyn, values[len(fetches):]))
        for rec, val in zip(checked, values[:len(fetches)]):
            mask = _valid_mask(rec.ref, lens) if masked else None
            compare(rec, val, cap.atol, cap.rtol, mask=mask)
            rec.value = None if rec.ok else rec.value  # keep memory low; failures keep the torch value


def _valid_mask(ref: Ref, lens: dict):
    """Boolean mask (torch order) of the frames within each sequence's length, or None."""
    batch = [i for i, d in enumerate(ref.dims) if d.is_batch_dim()]
    if not batch:
        return None
    mask = np.ones(ref.shape, dtype=bool)
    for ax, d in enumerate(ref.dims):
        lengths = lens.get(id(d))
        if lengths is None or np.ndim(lengths) != 1:
            continue
        pos = np.arange(ref.shape[ax])
        shape = [1] * len(ref.shape)
        shape[ax] = ref.shape[ax]
        bshape = [1] * len(ref.shape)
        bshape[batch[0]] = ref.shape[batch[0]]
        mask &= pos.reshape(shape) < np.asarray(lengths).reshape(bshape)
    return mask


def _root_output_refs(cap) -> list[tuple[str, Ref]]:
    out = cap._root_outputs
    items = list(out.values()) if isinstance(out, dict) else list(out) if isinstance(out, (list, tuple)) else [out]
    refs = [t._rt_ref for t in items if isinstance(t, ReturnnTensor) and t._rt_capture is cap]
    return [("output" if i == 0 else f"output_{i}", r) for i, r in enumerate(refs)]


def _load_weights(cap) -> None:
    with cap.graph.as_default():
        cap.network.initialize_params(cap.session)
        ops, feed = [], {}
        for name, value in cap._var_values:
            for var in cap.network.get_layer(name).params.values():
                ops.append(var.initializer)
                feed[var.initializer.inputs[1]] = value
        if ops:
            cap.session.run(ops, feed_dict=feed)


def _fetch(cap, layer_name: str, ref: Ref):
    out = cap.network.get_layer(layer_name).output
    perm = [find_axis(out.dims, d) for d in ref.dims]
    key = (layer_name, tuple(perm))
    cache = cap.__dict__.setdefault("_fetch_cache", {})
    if key not in cache:
        with cap.graph.as_default():
            cache[key] = tf.transpose(out.placeholder, perm) if perm != list(range(len(perm))) else out.placeholder
    return cache[key]


def _feed(cap, arrays: list, seq_lens: dict | None = None, use_capture_lengths: bool = False) -> dict:
    if len(arrays) != len(cap._input_order):
        raise InputSpecError(f"expected {len(cap._input_order)} input(s) ({cap._input_order}), got {len(arrays)}")
    feed = {}
    for key, arr in zip(cap._input_order, arrays):
        _feed_input(feed, cap.network.extern_data.data[key], cap._inputs[key][1], key, arr, seq_lens,
                    cap._length_values if use_capture_lengths else None)
    return feed


def _feed_input(feed: dict, data, dims, key: str, arr, seq_lens: dict | None, known_lengths: dict | None) -> None:
    """Feed one extern input and the lengths of its dynamic dims: ``seq_lens`` by dim name, else
    ``known_lengths`` (by dim id), else the full padded size."""
    arr = _np(arr)
    if arr.ndim != len(dims):
        raise InputSpecError(f"input {key!r} must have {len(dims)} axes, got shape {arr.shape}")
    for ax, d in enumerate(dims):
        if d.is_static() and arr.shape[ax] != d.dimension:
            raise InputSpecError(f"input {key!r} axis {ax} is static with size {d.dimension}, got {arr.shape[ax]}")
    feed[data.placeholder] = arr.astype(data.dtype, copy=False)
    batch_ax = [i for i, d in enumerate(dims) if d.is_batch_dim()]
    n_batch = arr.shape[batch_ax[0]] if batch_ax else 1
    for ax, d in enumerate(dims):
        if not d.is_dynamic() or d.is_batch_dim() or d.dyn_size_ext.placeholder in feed:
            continue
        lens = (seq_lens or {}).get(d.description)
        if lens is None and known_lengths:
            lens = known_lengths.get(id(d))
        if lens is None:
            lens = np.full([n_batch], arr.shape[ax], dtype=np.int32)
        lens = np.asarray(_np(lens), dtype=np.int32)
        if lens.shape != (n_batch,) or lens.max(initial=0) > arr.shape[ax] or lens.min(initial=1) < 0:
            raise InputSpecError(f"seq_lens[{d.description!r}] must be {n_batch} lengths <= {arr.shape[ax]}")
        feed[d.dyn_size_ext.placeholder] = lens


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        with torch._C.DisableTorchFunctionSubclass():
            return x.detach().cpu().numpy()
    return np.asarray(x)


def run(cap, *inputs, seq_lens: dict | None = None):
    """Run the live network; returns numpy arrays in torch axis order (one, or a tuple).

    ``inputs``: the extern data in order, or all tensor arguments of the forward call in order when
    some of them are lengths (``returnn_capture(lengths=...)``); ``seq_lens``: {dim name: lengths}."""
    if cap.parity is None:
        raise CaptureError("run() is available after the capture block has finished")
    inputs = list(inputs)
    lengths_args = [kind for kind in cap._forward_args if kind[0] == "lengths"]
    if lengths_args and len(inputs) == len(cap._forward_args):
        seq_lens = dict(seq_lens or {})
        data = []
        for (kind, dim_name), x in zip(cap._forward_args, inputs):
            if kind == "lengths":
                seq_lens[dim_name] = _np(x)
            else:
                data.append(x)
        inputs = data
    feed = _feed(cap, inputs, seq_lens)
    fetches = [_fetch(cap, name, ref) for name, ref in cap._outputs]
    values = cap.session.run(fetches, feed_dict=feed)
    return values[0] if len(values) == 1 else tuple(values)


# ---------------------------------------------------------------------------------------------- config
def _py(obj, cap) -> str:
    """Python source for a net-dict value."""
    if isinstance(obj, Dim):
        return cap.dims.code(obj)
    if isinstance(obj, bool) or obj is None:
        return repr(obj)
    if isinstance(obj, int):
        return repr(int(obj))
    if isinstance(obj, float):
        if math.isnan(obj):
            return "float('nan')"
        if math.isinf(obj):
            return "float('inf')" if obj > 0 else "float('-inf')"
        return repr(obj)
    if isinstance(obj, str):
        return repr(obj)
    if isinstance(obj, dict):
        return "{" + ", ".join(f"{_py(k, cap)}: {_py(v, cap)}" for k, v in obj.items()) + "}"
    if isinstance(obj, list):
        return "[" + ", ".join(_py(v, cap) for v in obj) + "]"
    if isinstance(obj, tuple):
        return "(" + ", ".join(_py(v, cap) for v in obj) + ("," if len(obj) == 1 else "") + ")"
    if isinstance(obj, np.ndarray):
        return f"numpy.array({_py(obj.tolist(), cap)}, dtype={str(obj.dtype)!r})"
    if isinstance(obj, np.generic):
        return _py(obj.item(), cap)
    raise TypeError(f"cannot write {type(obj).__name__} {obj!r} into a config")


def config_code(cap) -> str:
    """A complete RETURNN config (Python) for the captured network."""
    if cap.parity is None:
        raise CaptureError("config_code() is available after the capture block has finished")
    lines = [
        "#!rnn.py",
        "# RETURNN config written by torchdispatch_returnn",
        "import numpy",
        "from returnn.tensor import Dim, batch_dim",
        "",
        "use_tensorflow = True",
        f"behavior_version = {BEHAVIOR_VERSION}",
        "",
    ]
    lines += cap.dims.declarations()
    lines.append("")
    lines.append("extern_data = {")
    for key in cap._input_order:
        lines.append(f"    {key!r}: {_py(cap.extern_data[key], cap)},")
    lines.append("}")
    lines.append("")
    lines.append("network = {")
    for name, d in cap.network.layers_desc.items():
        lines.append(f"    {name!r}: {_py(d, cap)},")
    lines.append("}")
    return "\n".join(lines) + "\n"


def save_config(cap, path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(config_code(cap))
    return os.path.abspath(path)


def save_checkpoint(cap, path: str) -> str:
    if cap.parity is None:
        raise CaptureError("save_checkpoint() is available after the capture block has finished")
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with cap.graph.as_default():
        cap.network.save_params_to_file(path, cap.session)
    return path


class ConfigNetwork:
    """A fresh TFNetwork built from a written config (and optionally a checkpoint): what a RETURNN
    user gets. ``run(*inputs, seq_lens=None)`` feeds the extern data in config order and returns the
    ``output`` layers' values."""

    def __init__(self, config: str, checkpoint: str | None = None):
        ensure_returnn()
        code = open(config).read() if os.path.exists(config) else config
        cfg = Config()
        cfg.load_file(io.StringIO(code))
        self.config = cfg
        self.graph = tf.Graph()
        self.session = tf.compat.v1.Session(graph=self.graph)
        from .capture import _quiet

        with self.graph.as_default(), _quiet():
            self.network = TFNetwork(config=cfg, train_flag=False, name="root")
            self.network.construct_from_dict(cfg.typed_value("network"))
            self.network.initialize_params(self.session)
            if checkpoint:
                self.network.load_params_from_file(checkpoint, self.session)
        self.input_keys = list(cfg.typed_value("extern_data").keys())
        self.output_names = sorted([n for n in self.network.layers if n == "output" or n.startswith("output_")],
                                   key=lambda n: (n != "output", len(n), n))

    def run(self, *inputs, seq_lens: dict | None = None):
        feed = {}
        for key, arr in zip(self.input_keys, inputs):
            data = self.network.extern_data.data[key]
            _feed_input(feed, data, data.dims, key, arr, seq_lens, None)
        outs = self.session.run([self.network.get_layer(n).output.placeholder for n in self.output_names], feed)
        return outs[0] if len(outs) == 1 else tuple(outs)

    def close(self) -> None:
        self.session.close()
