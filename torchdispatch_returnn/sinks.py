"""The checks' values of the network, handed to Python as TensorFlow computes them.

A check compares every recorded op's layer with torch. Fetching all those values in one session run
holds all of them at once (as much memory again as torch's records); fetching them in several runs
costs TF an executor over the graph for each run. A :class:`Sinks` instead adds a few ``numpy_function``
ops to the graph, each taking the values of consecutive records (at most ``SINK_BYTES`` together) and
calling the current check's ``visit`` on each (the layer's value as TF computed it, in torch's axis order as a
numpy view: no transposed copies in TF): one run visits every record, and TF frees a value once its sink has
seen it. The sinks of a record list are made once (before the first run: a run after the
graph has grown places the whole graph again), so every check over the same records reuses one executor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ._backend import tf
from .runtime import torch_order

#: bytes of values (about: 4 per element) one sink takes; TF holds a sink's values until it has all of them
SINK_BYTES = 16 << 20


class Sinks:
    """Sink ops over records (:class:`~.parity.ParityRecord`: their ``ref``), made on first use per record list.

    ``fetch``: the capture's :class:`~.runtime.Fetcher` (a ref's TF tensor in torch axis order);
    ``lengths``: hand each record's dynamic lengths to ``visit`` too ({id(dim): lengths})."""

    def __init__(self, fetch: Any, records: Sequence[Any], lengths: bool = False):
        self.fetch = fetch
        self._lengths = lengths
        self._made: dict[tuple, list] = {}  # ids of the records -> their sink ops
        self._visit: Callable | None = None
        self._error: BaseException | None = None
        self.ops(records)

    def ops(self, records: Sequence[Any]) -> list:
        """The sink ops of ``records`` (made now if these records have none yet)."""
        key = tuple(map(id, records))
        if key not in self._made:
            groups, size = [[]], 0
            for rec in records:
                n = 4 * int(np.prod(rec.ref.shape, dtype=np.int64))
                if groups[-1] and size + n > SINK_BYTES:
                    groups.append([])
                    size = 0
                groups[-1].append(rec)
                size += n
            with self.fetch.graph.as_default():
                self._made[key] = [self._sink(group) for group in groups if group]
        return self._made[key]

    def _sink(self, group: list) -> Any:
        tensors, index = [], {}  # the layers' own outputs (no transposes in TF: views in numpy), id -> index
        places = []  # per record: (its tensor's index, perm, merged axes)
        for rec in group:
            t, perm, groups = self.fetch.layout(rec.ref)
            if id(t) not in index:
                index[id(t)] = len(tensors)
                tensors.append(t)
            places.append((index[id(t)], perm, groups))
        lens: dict = {}
        if self._lengths:
            for rec in group:
                lens.update(self.fetch.lengths(rec.ref))
        ids = list(lens)
        return tf.numpy_function(lambda *values: self._call(group, places, ids, values),
                                 tensors + list(lens.values()), [], stateful=True, name="parity_sink")

    def _call(self, group: list, places: list, ids: list, values: tuple) -> None:
        lens = dict(zip(ids, values[len(values) - len(ids):]))
        for rec, (i, perm, groups) in zip(group, places):
            if self._visit is None or self._error is not None:
                return
            try:
                self._visit(rec, torch_order(values[i], perm, groups), lens)
            except BaseException as e:  # (a bug of the check: raised again after the run)
                self._error = e

    def run(self, run: Callable[[list], Any], records: Sequence[Any], visit: Callable[[Any, np.ndarray, dict], None]
            ) -> Exception | None:
        """Call ``visit(record, value, lengths)`` on each of ``records`` with the network's value (torch axis
        order) in one ``run(ops)`` (a session run with the check's feed). Returns what ``run`` raised (TF
        failing to compute a value: the caller names the op), None if it ran; raises what ``visit`` raised."""
        self._visit, self._error = visit, None
        failed = None
        try:
            run(self.ops(records))
        except Exception as e:
            failed = e
        finally:
            self._visit = None
        if self._error is not None:
            raise self._error
        return failed

    def first_failing(self, run: Callable[[list], Any], records: Sequence[Any]) -> tuple[Any, Exception] | None:
        """The first of ``records`` whose layer TF fails to compute alone in ``run([tensor])``, and the error
        (after a run that failed: which op it was); None if each computes."""
        for rec in records:
            try:
                run([self.fetch.layout(rec.ref)[0]])  # (the layer's own output: no new ops in the graph)
            except Exception as e:
                return rec, e
        return None
