"""New PyTorch weights for an already converted network: ``convert_checkpoint`` writes a TF checkpoint
from a ``state_dict`` and the ``param_map.json`` of the capture, without capturing again.

The checkpoint has the format ``network.save_params_to_file`` writes (a ``tf.compat.v1.train.Saver``
checkpoint: ``PREFIX.index`` + ``PREFIX.data-*``), so ``network.load_params_from_file``, RETURNN's
``load`` / ``preload_from_files`` and :class:`ConfigNetwork` read it into the written config.
"""

from __future__ import annotations

import glob
import io
import json
import logging
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ._backend import Config, ensure_returnn, quiet, tf
from .params import tf_layout

__all__ = ["convert_checkpoint", "load_state_dict", "unwrap_keys", "CheckpointMismatchError",
           "StateDictFileError"]

logger = logging.getLogger(__name__)

#: the prefix of every config written by this package (``export.config_code``)
CONFIG_HEADER = "#!rnn.py\n# RETURNN config written by torchdispatch_returnn"
#: the transform of a param_map entry whose TF variable holds the torch tensor as it is
NO_TRANSFORM = "none"
#: state_dict entries no converted network reads (BatchNorm's counter of training steps)
UNUSED_SUFFIXES = (".num_batches_tracked",)
#: keys under which full training checkpoints hold the model's state_dict
NESTED_KEYS = ("state_dict", "model", "model_state_dict", "module")


class CheckpointMismatchError(ValueError):
    """The state_dict does not fit the converted network: missing or extra keys, or other shapes.

    ``missing``, ``extra``: lists of state_dict keys; ``mismatched``: {key: (given shape, expected shape)}."""

    def __init__(self, missing: list, extra: list, mismatched: dict, hint: str = ""):
        self.missing, self.extra, self.mismatched = list(missing), list(extra), dict(mismatched)
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} missing key(s): {', '.join(self.missing)}")
        if self.extra:
            parts.append(f"{len(self.extra)} key(s) the network does not use: {', '.join(self.extra)}")
        if self.mismatched:
            parts.append(f"{len(self.mismatched)} shape mismatch(es): " + ", ".join(
                f"{k} {tuple(got)} (network: {tuple(want)})" for k, (got, want) in self.mismatched.items()))
        super().__init__("the state_dict does not fit the converted network: " + "; ".join(parts) + hint)


class StateDictFileError(ValueError):
    """A file that holds no state_dict (or several candidates for one), or a param map or config that
    cannot be read."""


def load_state_dict(obj: Any) -> dict:
    """A flat {key: tensor} state_dict from a path (``torch.load(weights_only=True)``), a module or a dict;
    a training checkpoint's dict is unwrapped when exactly one of ``NESTED_KEYS`` holds the tensors."""
    where = ""
    if isinstance(obj, (str, os.PathLike)):
        where = f" in {os.fspath(obj)}"
        try:
            obj = torch.load(os.fspath(obj), weights_only=True, map_location="cpu")
        except FileNotFoundError as e:
            raise StateDictFileError(f"no such file: {os.fspath(obj)}") from e
        except Exception as e:  # pickle / zip errors, or objects weights_only refuses
            first = (str(e).strip().splitlines() or [""])[0]
            raise StateDictFileError(f"cannot load {os.fspath(obj)} with torch.load(weights_only=True): "
                                     f"{type(e).__name__}: {first}") from e
    if isinstance(obj, torch.nn.Module):
        return dict(obj.state_dict())
    if not isinstance(obj, Mapping):
        raise StateDictFileError(f"expected a state_dict (a dict of tensors){where}, got {type(obj).__name__}")
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return dict(obj)
    nested = [k for k in NESTED_KEYS if isinstance(obj.get(k), Mapping) and obj[k]
              and all(isinstance(v, torch.Tensor) for v in obj[k].values())]
    if len(nested) == 1:
        logger.info("using the state_dict under %r%s", nested[0], where)
        return dict(obj[nested[0]])
    if len(nested) > 1:
        raise StateDictFileError(f"ambiguous checkpoint{where}: state_dicts under {nested}; pass one of them")
    tensors = [k for k, v in obj.items() if isinstance(v, torch.Tensor)]
    if tensors:  # tensors mixed with other entries (e.g. a module's _extra_state): keep the tensors
        return {k: obj[k] for k in tensors}
    raise StateDictFileError(f"no state_dict{where}: expected a dict of tensors or one under "
                             f"{'/'.join(NESTED_KEYS)}; found keys {sorted(map(str, obj))[:10]}")


def unwrap_keys(sd: dict, keys: Any) -> dict:
    """``sd`` without the ``module.`` prefix ``DataParallel``/``DistributedDataParallel`` adds to every key,
    where none of ``keys`` is found otherwise."""
    keys = set(keys)
    if sd and not keys & set(sd) and all(k.startswith("module.") for k in sd) \
            and keys & {k[len("module."):] for k in sd}:
        logger.info("state_dict keys start with 'module.' (DataParallel): prefix removed")
        return {k[len("module."):]: v for k, v in sd.items()}
    return sd


def _find_config(param_map_path: str) -> str | None:
    """The config ``save_config`` wrote beside ``param_map.json`` (the newest, if there are several)."""
    found = []
    for path in glob.glob(os.path.join(os.path.dirname(os.path.abspath(param_map_path)), "*")):
        if not os.path.isfile(path) or os.path.getsize(path) < len(CONFIG_HEADER):
            continue
        with open(path, "rb") as f:
            if f.read(len(CONFIG_HEADER)) == CONFIG_HEADER.encode():
                found.append(path)
    return max(found, key=os.path.getmtime) if found else None


def _variable_specs(config: str) -> dict:
    """{layer name: (shape, numpy dtype)} of the ``variable`` layers of a written config (path or code)."""
    ensure_returnn()
    is_path = os.path.exists(config) or "\n" not in config
    try:
        code = open(config).read() if is_path else config
        cfg = Config()
        with quiet():
            cfg.load_file(io.StringIO(code))
    except Exception as e:  # a missing file, or code that does not run
        first = (str(e).strip().splitlines() or [""])[0]
        raise StateDictFileError(f"cannot read the config {config if is_path else '(code)'}: "
                                 f"{type(e).__name__}: {first}") from e
    out: dict = {}
    _collect_variables(cfg.typed_value("network") or {}, out)
    return out


def _collect_variables(net: dict, out: dict) -> None:
    """The ``variable`` layers of ``net`` and of its subnetworks (``--subnetwork``) and rec units, outer first, by
    layer name; the params of layers holding them (``linear``'s W and b, ...) as ``layer/param``."""
    inner = []
    for name, d in net.items():
        if not isinstance(d, dict):
            continue
        if d.get("class") == "variable":
            shape = tuple(getattr(s, "dimension", s) for s in d.get("shape", ()))
            out.setdefault(name, (shape, np.dtype(d.get("dtype", "float32"))))
        for param, shape in _held_params(d).items():
            out.setdefault(f"{name}/{param}", (shape, np.dtype("float32")))
        inner += [d[k] for k in ("subnetwork", "unit") if isinstance(d.get(k), dict)]
    for sub in inner:
        _collect_variables(sub, out)


def _held_params(d: dict) -> dict[str, tuple]:
    """{param: shape of its TF variable} of a layer that holds its params."""
    if d.get("reuse_params"):
        return {}
    size = lambda dim: dim.dimension
    if d.get("class") == "linear":  # W: (in, out), torch's (out, in) transposed (or as torch's: an older config)
        w = (size(d["in_dim"]), size(d["out_dim"]))[::-1 if d.get("use_transposed_weights") else 1]
        b = (size(d["out_dim"]),)
        return {"W": w, "b": b} if d.get("with_bias", True) else {"W": w}
    if d.get("class") == "conv":  # W: filter sizes + (in / groups, out) (torch's (out, in / groups, k...) transposed)
        ks = [size(k) if hasattr(k, "dimension") else int(k) for k in d["filter_size"]]
        w = (*ks, size(d["in_dim"]) // int(d.get("groups", 1)), size(d["out_dim"]))
        return {"W": w, "bias": w[-1:]} if d.get("with_bias") else {"W": w}
    if d.get("class") == "batch_norm":  # (running statistics, scale, shift: torch's layout)
        names = ["v2_mean", "v2_variance"] + ["v2_gamma"] * d.get("use_std", True) + \
            ["v2_beta"] * d.get("use_shift", True)
        return {f"batch_norm/{n}": (size(d["in_dim"]),) for n in names}
    if d.get("class") == "layer_norm":
        return {"scale": (size(d["in_dim"]),), "bias": (size(d["in_dim"]),)}
    if d.get("class") == "norm":
        shape = tuple(size(x) for x in d.get("param_shape", ()))
        return {k: shape for k in ("scale", "bias") if d.get(k, True) and shape}
    return {}


def _param_map(param_map: Any) -> tuple[dict, str | None]:
    if isinstance(param_map, Mapping):
        return dict(param_map), None
    path = os.fspath(param_map)
    try:
        with open(path) as f:
            return json.load(f), path
    except (OSError, ValueError) as e:
        raise StateDictFileError(f"cannot read the param map {path}: {e}") from e


def convert_checkpoint(state_dict_or_path: Any, param_map: Any, out_prefix: str, *, config: str | None = None,
                       allow_extra: bool = False) -> str:
    """Write the weights of ``state_dict_or_path`` as a TF checkpoint at ``out_prefix`` that loads into the
    network of an earlier capture of the same architecture; returns the checkpoint's absolute prefix.

    ``state_dict_or_path``: a state_dict, a module, or a file ``torch.load(weights_only=True)`` reads (a
    training checkpoint with the state_dict under ``state_dict``/``model`` works too). ``param_map``: the
    capture's ``net.param_map`` or the path of the ``param_map.json`` written by ``net.save_config``.
    ``config``: the written config (path or code), for the expected shapes and dtypes; by default the config
    beside ``param_map.json``. A key of ``param_map`` missing from the state_dict, a key the network does not
    use (unless ``allow_extra``; tied parameters and ``num_batches_tracked`` are fine) or another shape
    raises :class:`CheckpointMismatchError` listing the keys."""
    pmap, pmap_path = _param_map(param_map)
    sd = unwrap_keys(load_state_dict(state_dict_or_path), pmap)
    if config is None and pmap_path is not None:
        config = _find_config(pmap_path)
    specs = _variable_specs(config) if config is not None else {}
    if config is None:
        logger.warning("convert_checkpoint: no config given or found beside the param map: shapes are not checked")
    spec_of = lambda e: specs.get(e["tf_vars"][0]) or specs.get(e.get("layer"))
    unknown = [k for k, e in pmap.items() if specs and spec_of(e) is None]
    if unknown:
        logger.warning("convert_checkpoint: %d param_map entries have no variable layer in the config (another "
                       "conversion's config?), their shapes are not checked: %s", len(unknown), ", ".join(unknown))
    missing = [k for k in pmap if k not in sd]
    storages = {(sd[k].data_ptr(), tuple(sd[k].shape)) for k in pmap if k in sd and sd[k].numel()}
    extra = [k for k in sd if k not in pmap and not k.endswith(UNUSED_SUFFIXES)
             and (sd[k].data_ptr(), tuple(sd[k].shape)) not in storages]  # (tied weights are the same tensor)
    mismatched, values = {}, {}
    for key, entry in pmap.items():
        if key not in sd:
            continue
        transform, perm = str(entry.get("transform", NO_TRANSFORM)), entry.get("perm")
        if not (transform.startswith(NO_TRANSFORM) or perm) or len(entry["tf_vars"]) != 1:
            raise ValueError(f"param_map entry {key!r} has transform {transform!r} and variables {entry['tf_vars']}: "
                             "this version converts tensors stored as they are or transposed (one variable)")
        t = tf_layout(sd[key].detach().cpu(), perm)
        shape, dtype = spec_of(entry) or (entry.get("shape"), None)
        if shape is not None and tuple(shape) != tuple(t.shape):  # (both told in torch's layout)
            net_shape = tuple(shape[i] for i in np.argsort(perm)) if perm else tuple(shape)
            mismatched[key] = (tuple(sd[key].shape), net_shape)
            continue
        arr = (t.float() if t.dtype == torch.bfloat16 else t).contiguous().numpy()
        values[entry["tf_vars"][0]] = arr.astype(dtype, copy=False) if dtype is not None else arr
    if missing or mismatched or (extra and not allow_extra):
        hint = ("\n(non-persistent buffers are not in a state_dict: add them, e.g. "
                "{**sd, **dict(model.named_buffers())})" if missing else "")
        raise CheckpointMismatchError(missing, extra if not allow_extra else [], mismatched, hint)
    return write_checkpoint(values, out_prefix)


def write_checkpoint(values: dict, out_prefix: str) -> str:
    """A ``tf.compat.v1.train.Saver`` checkpoint of {TF variable name: array} (plus RETURNN's ``global_step``)."""
    ensure_returnn()
    path = os.path.abspath(out_prefix)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    values = dict(values)
    values.setdefault("global_step", np.array(0, dtype=np.int64))
    graph = tf.Graph()
    with graph.as_default(), quiet():
        feeds, variables = {}, {}
        for i, (name, arr) in enumerate(values.items()):
            arr = np.asarray(arr)
            ph = tf.compat.v1.placeholder(tf.as_dtype(arr.dtype), arr.shape, name=f"value{i}")
            variables[name] = tf.compat.v1.Variable(ph, name=f"var{i}", trainable=False)
            feeds[ph] = arr  # (fed, not a constant: the weights stay out of the graph)
        saver = tf.compat.v1.train.Saver(var_list=variables, max_to_keep=None)
        with tf.compat.v1.Session(graph=graph) as session:
            session.run([v.initializer for v in variables.values()], feed_dict=feeds)
            saver.save(session, path, write_meta_graph=False)
    logger.info("wrote %d variables to the checkpoint %s", len(values), path)
    return path
