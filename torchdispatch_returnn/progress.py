"""The progress display of a long capture (``returnn_capture(progress=...)``) and its timings.

One ``tqdm`` line on stderr counts the ops captured, then the layers built, then shows the parity
check (the fetch of every op's value, the self-checks and gradient checks). It appears only once the
capture has run for ``delay`` seconds (2 by default: quick captures stay quiet) and is removed when
the capture ends (``leave=False``). ``progress=False`` switches it off; a number is the delay.

The same object keeps the timings the parity report shows: the construction time of each layer.
It exists per capture; its display is closed when the capture ends, whatever happens.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any

from tqdm import tqdm

logger = logging.getLogger(__name__)

#: seconds a capture runs before its progress display appears
DEFAULT_DELAY = 2.0


class _Bar(tqdm):
    """tqdm without its monitor thread and with a thread lock of its own (no multiprocessing lock)."""

    monitor_interval = 0
    _lock = threading.RLock()


class Progress:
    """Counts of one capture (``ops``, ``layers``), its stage, and the display of them.

    ``setting``: True (display after :data:`DEFAULT_DELAY` s), False/None (no display), or a number
    (the delay in seconds; 0 shows it at once). The clock starts when the object is made."""

    def __init__(self, setting: bool | float | None = True):
        self.enabled = setting is not None and setting is not False
        self.delay = DEFAULT_DELAY if isinstance(setting, bool) or setting is None else max(0.0, float(setting))
        self.started = time.perf_counter()
        self.ops = 0
        self.layers = 0
        self.stage_name = "capturing"
        self.layer_seconds: dict = {}  # Layer -> seconds its construction in the TFNetwork took
        self.bar: tqdm | None = None
        self.closed = False

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def _display(self) -> tqdm | None:
        """The tqdm display (made on first use, with the delay left), or None when switched off."""
        if not self.enabled or self.closed:
            return None
        if self.bar is None:
            self.bar = _Bar(desc=f"returnn_capture: {self.stage_name}", unit=self._unit(), total=None, leave=False,
                            delay=max(0.0, self.delay - self.elapsed), file=sys.stderr, dynamic_ncols=True)
        return self.bar

    def _unit(self) -> str:
        return {"capturing": "op", "building layers": "layer"}.get(self.stage_name, "it")

    def op(self) -> None:
        """One op captured (converted by its handler)."""
        self.ops += 1
        if self.stage_name == "capturing" and (bar := self._display()) is not None:
            bar.update(1)

    def built(self, layer: Any, seconds: float) -> None:
        """One layer constructed in the TFNetwork, taking ``seconds``."""
        self.layer_seconds[layer] = seconds
        self.layers += 1
        if self.stage_name == "building layers" and (bar := self._display()) is not None:
            bar.update(1)

    def stage(self, name: str) -> None:
        """The capture moves on to stage ``name`` (the count starts again)."""
        logger.debug("capture stage %r after %.2f s (%d ops, %d layers)", name, self.elapsed, self.ops, self.layers)
        self.stage_name = name
        bar = self._display()
        if bar is None:
            return
        counted = name in ("capturing", "building layers")
        counts = "" if counted else f" ({self.ops} ops, {self.layers} layers)"
        bar.set_description_str(f"returnn_capture: {name}{counts}", refresh=False)
        bar.unit = self._unit()
        bar.bar_format = None if counted else "{desc} [{elapsed}]"
        if self.elapsed >= self.delay:  # already shown: show the new stage at once, its time counted anew
            bar.delay = 0
            bar.reset()
        else:
            bar.n = bar.last_print_n = 0

    def close(self) -> None:
        """Remove the display (the counts and timings stay)."""
        self.closed = True
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> Progress:
        """The capture's finishing part: the layers are built next; closes the display on exit."""
        self.stage("building layers")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
