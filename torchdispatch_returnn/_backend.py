"""Quiet import of TensorFlow and RETURNN, and the process-wide RETURNN behaviour version."""

from __future__ import annotations

import contextlib
import io
import logging
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.get_logger().setLevel("ERROR")

from returnn.config import Config  # noqa: E402
from returnn.log import log as _returnn_log  # noqa: E402
from returnn.tensor import Dim, batch_dim  # noqa: E402
from returnn.tf.network import TFNetwork  # noqa: E402
from returnn.util.basic import BehaviorVersion  # noqa: E402

from .errors import CaptureError  # noqa: E402

logger = logging.getLogger("torchdispatch_returnn")

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
    from returnn.tf.util import basic as tf_util

    with contextlib.redirect_stdout(io.StringIO()):
        tf_util.setup_tf_thread_pools(num_threads=int(os.environ.get("TDR_TF_THREADS", "0")) or None)
        tf_util.get_tf_list_local_devices()
    _returnn_ready = True


__all__ = ["tf", "np", "Dim", "batch_dim", "Config", "TFNetwork", "BEHAVIOR_VERSION", "ensure_returnn", "logger"]
