"""Quiet import of TensorFlow and RETURNN, and the process-wide RETURNN behaviour version."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# TF's oneDNN kernels (its default only on CPUs with AVX512 features): matmuls 2-3x faster on CPU, so the
# converted RNNs and encoders keep up with torch. A user's own setting (also "0") is kept.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


@contextlib.contextmanager
def _native_stderr_into(out: list) -> Iterator[None]:
    """What native code writes to stderr (fd 2) goes into ``out``: TF's C++ notice at import that oneDNN is on
    ignores TF_CPP_MIN_LOG_LEVEL."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no fd 2 (or a closed stream): nothing to keep quiet
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            out.append(tmp.read().decode(errors="replace").strip())


_import_notices: list[str] = []
with _native_stderr_into(_import_notices):
    import tensorflow as tf

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tensorflow.core.protobuf import rewriter_config_pb2  # noqa: E402

tf.get_logger().setLevel("ERROR")

from returnn.config import Config  # noqa: E402
from returnn.log import log as _returnn_log  # noqa: E402
from returnn.tensor import Dim, Tensor, batch_dim  # noqa: E402
from returnn.tf.network import TFNetwork  # noqa: E402
from returnn.tf.util import basic as tf_util  # noqa: E402
from returnn.util.basic import BehaviorVersion  # noqa: E402

from .errors import CaptureError  # noqa: E402

logger = logging.getLogger(__name__)
if any(_import_notices):
    logger.debug("TensorFlow at import: %s", " ".join(_import_notices))

#: The newest behaviour version the installed RETURNN accepts; configs are written with it.
BEHAVIOR_VERSION = BehaviorVersion._latest_behavior_version

_returnn_ready = False


def ensure_returnn() -> None:
    """Set up RETURNN once per process: quiet log, thread pools, behaviour version."""
    global _returnn_ready
    current = BehaviorVersion.get_if_set()
    if current is not None and current != BEHAVIOR_VERSION:
        raise CaptureError(
            f"RETURNN's behavior_version is already set to {current} in this process, but "
            f"torchdispatch_returnn needs {BEHAVIOR_VERSION} (the newest this RETURNN accepts). "
            "BehaviorVersion is process-global and can be set only once: run the conversion in a "
            "process that does not set another behavior_version."
        )
    if _returnn_ready:
        return
    if not _returnn_log.initialized:
        _returnn_log.initialize(verbosity=[0])
    if current is None:
        BehaviorVersion.set(BEHAVIOR_VERSION)
    with contextlib.redirect_stdout(io.StringIO()):
        tf_util.setup_tf_thread_pools(num_threads=int(os.environ.get("TDR_TF_THREADS", "0")) or None)
        tf_util.get_tf_list_local_devices()
    _returnn_ready = True



def new_session(graph: Any, optimize: bool = True) -> Any:
    """A TF session for ``graph`` without grappler's remapper: with oneDNN it fuses ops (``x * sigmoid(x)`` into
    one Swish op) and drops the fused nodes, whose values the parity and gradient checks fetch or feed.
    ``optimize=False``: no grappler and no classic graph optimizer (common subexpressions, constant folding)
    at all, for the capture's checks; each of them runs the graph a few times (a pass over the whole graph
    for each new set of fetches costs more than it saves and grows faster than the graph)."""
    cfg = tf.compat.v1.ConfigProto()
    cfg.graph_options.rewrite_options.remapping = rewriter_config_pb2.RewriterConfig.OFF
    cfg.graph_options.rewrite_options.disable_meta_optimizer = not optimize
    if not optimize:
        cfg.graph_options.optimizer_options.opt_level = tf.compat.v1.OptimizerOptions.L0
    return tf.compat.v1.Session(graph=graph, config=cfg)


@contextlib.contextmanager
def building(graph: Any, reference_variables: bool = False) -> Iterator[None]:
    """``graph`` as TF's default graph, with TF's tensor equality off while RETURNN builds layers or lists
    variables. In a graph (not eager, not a tf.function) ``==`` on variables is identity either way, but
    with equality on each comparison first asks TF's context stack whether it runs eagerly, and RETURNN's
    ``param in list`` checks (every ``add_param``, ``get_params_list``) make that quadratic in the number of
    variables: a fifth of building a 32-block encoder. The setting is restored on exit.

    ``reference_variables`` (the capture's live network): variables made here are TF1 reference variables
    (``use_resource=False`` in the variable scope the layers are built in): creating a resource variable costs
    ~1.4 ms of Python in TF (handle, is-initialized, assign and read ops under several scopes), a sixth of an
    8-block encoder's capture, and a reference variable a quarter less. They load, save (same names) and take
    gradients alike; a written config is built with RETURNN's own default (resource variables)."""
    was = getattr(tf.Tensor, "_USE_EQUALITY", True)  # (TF has no public getter for it)
    tf.compat.v1.disable_tensor_equality()
    try:
        with graph.as_default(), (tf.compat.v1.variable_scope(tf.compat.v1.get_variable_scope(), use_resource=False)
                                  if reference_variables else contextlib.nullcontext()):
            yield
    finally:
        if was:
            tf.compat.v1.enable_tensor_equality()


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """RETURNN prints some notices to stdout; they go to this module's logger (debug) instead."""
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            yield
    finally:
        text = buf.getvalue().strip()
        if text:
            logger.debug("RETURNN: %s", text)


_TF_DTYPES = {
    torch.float32: "float32", torch.float64: "float64", torch.float16: "float16", torch.bfloat16: "bfloat16",
    torch.int64: "int64", torch.int32: "int32", torch.int16: "int16", torch.int8: "int8", torch.uint8: "uint8",
    torch.bool: "bool", torch.complex64: "complex64", torch.complex128: "complex128",
}


def tf_dtype(dtype: torch.dtype) -> str:
    """The RETURNN/TF dtype name of a torch dtype."""
    try:
        return _TF_DTYPES[dtype]
    except KeyError:
        raise TypeError(f"dtype {dtype} has no RETURNN equivalent") from None


__all__ = ["tf", "np", "Dim", "Tensor", "batch_dim", "Config", "TFNetwork", "BEHAVIOR_VERSION", "ensure_returnn",
           "quiet", "tf_dtype"]
