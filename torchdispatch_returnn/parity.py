"""Per-op parity: the record of every captured op's torch value, the fetch of the RETURNN values
and their comparison, and the report (``net.parity``)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ._backend import batch_dim
from .errors import CaptureError, OpSite, error_summary
from .kept import Kept, stale
from .numeric import differences, to_numpy
from .progress import Progress
from .report import capture_html, report_html
from .tensor import Ref, plain

logger = logging.getLogger(__name__)

_UNCHECKED = {torch.empty: "unchecked: torch.empty values are unspecified",
              torch.empty_like: "unchecked: torch.empty_like values are unspecified",
              torch.Tensor.new_empty: "unchecked: new_empty values are unspecified",
              torch.Tensor.new_empty_strided: "unchecked: new_empty_strided values are unspecified"}
#: the note of a record whose torch value was written to after its op by a write not seen as one
STALE = "unchecked: torch's value was changed in place after the op (by an op not seen to write)"
#: the note of a record whose layer is fed with torch's random values
FED = "fed: torch's random values fed into the network here (not compared; the network samples its own)"


@dataclass
class Feed:
    """A layer holding random values: the parity run feeds torch's ``value`` there (``layer``, ``perm``
    and ``dtype`` say where and how, filled by the parity run); ``sample(args, kwargs, out)`` gives the
    value to feed from another plain-torch run of the op keyed ``key`` (gradient parity)."""

    ref: Any
    value: Any  # torch.Tensor in the ref's torch axis order
    key: tuple  # (location, torch op, n), as the op's records
    sample: Callable
    layer: str = ""  # the layer's name in the network (and in the written config)
    perm: tuple = ()  # the layer's axis of each torch axis
    dtype: str = ""  # the layer's dtype


@dataclass
class ParityRecord:
    """One captured op: what torch computed and which RETURNN layer mirrors it."""

    torch_op: str
    module_path: str
    layer: str
    ref: Any
    value: Any  # torch.Tensor (recorded torch result)
    location: str
    max_abs_diff: float | None = None
    ok: bool | None = None
    note: str = ""
    check: bool = True  # False: torch's values are unspecified (torch.empty) or fed (random ops)
    key: tuple = ()  # (location, torch op, n): the n-th tensor result of that op at that line (self-check)
    max_rel_diff: float | None = None  # max |diff| / |torch| over the finite entries where torch is not 0
    seconds: float | None = None  # capture time of the op's handler (its conversion; torch's own run excluded)
    timings: dict = field(default_factory=dict, repr=False, compare=False)  # Layer -> construction seconds
    fed: bool = False  # a random op's result: torch's values are fed into the network here
    version: int | None = None  # torch's version counter of a value kept without a copy (:mod:`.kept`)

    @property
    def site(self) -> OpSite:
        return OpSite(self.torch_op, self.module_path, self.location)

    @property
    def build_seconds(self) -> float | None:
        """Time RETURNN took to construct this record's layer in the TFNetwork (None: not constructed alone)."""
        return self.timings.get(self.ref.layer) if self.ref is not None else None

    @property
    def status(self) -> str:
        """The status: ``ok``, ``failed``, ``unchecked`` or ``fed`` (torch's random values fed there)."""
        return "fed" if self.fed and self.ok is None else {True: "ok", False: "failed", None: "unchecked"}[self.ok]

    def line(self, w_op: int = 8, w_layer: int = 5) -> str:
        """The record as one row of the text table."""
        diff = "-" if self.max_abs_diff is None else f"{self.max_abs_diff:.3g}"
        rel = "-" if self.max_rel_diff is None else f"{self.max_rel_diff:.3g}"
        flag = "fed" if self.fed and self.ok is None else {True: "yes", False: "NO", None: "-"}[self.ok]
        return (f"  {self.torch_op:<{w_op}}  {self.layer:<{w_layer}}  {diff:>10}  {rel:>10}  {flag:<3}  "
                f"{self.module_path or '<root>'} {self.location}{'  ' + self.note if self.note else ''}")


class Recorder:
    """Collects the parity records of a capture (one per distinct layer and axis order)."""

    def __init__(self, train: bool, progress: bool | float | None = False):
        self.train = train
        self.progress = Progress(progress)  # the capture's progress display and timings
        self.records: list[ParityRecord] = []
        self._seen: set = set()
        self._counts: dict = {}  # (location, op) -> tensor results seen
        self.feeds: list[Feed] = []  # random values the network samples itself: torch's are fed in the parity run
        self._fed: set = set()  # ids of the fed layers
        self._by_layer: dict[int, list[ParityRecord]] = {}  # id(layer) -> its records
        self.kept = Kept()  # the records' torch values, copied only where needed

    def next_key(self, site: OpSite) -> tuple:
        """The key of the next tensor result of ``site``'s op at its line: (location, op, n)."""
        n = self._counts.get((site.location, site.op), 0)
        self._counts[(site.location, site.op)] = n + 1
        return site.location, site.op, n

    def feed(self, site: OpSite, ref: Ref, value: torch.Tensor, sample: Callable | None = None) -> None:
        """Feed torch's ``value`` into ``ref``'s layer in the parity run (see ``OpContext.feed``)."""
        key = (site.location, site.op, self._counts.get((site.location, site.op), 0))
        self.feeds.append(Feed(ref, plain(value).detach().clone(), key, sample or (lambda args, kwargs, out: out)))
        self._fed.add(id(ref.layer))

    def record(self, site: OpSite, func: Any, ref: Ref, value: torch.Tensor, note: str = "",
               unchecked: str | None = None, key: tuple = ()) -> None:
        """Check ``ref`` against torch's ``value`` (or list it as unchecked, with the reason)."""
        op_key = key
        key = (id(ref.layer), tuple(map(id, ref.dims)))
        name = ref.layer.name
        if key in self._seen or name is not None and (name == "data" or name.startswith("data:")):
            return
        self._seen.add(key)
        fed = id(ref.layer) in self._fed
        unchecked = unchecked or _UNCHECKED.get(func) or (FED if fed else None)
        rec = ParityRecord(torch_op=site.op, module_path=site.module_path, layer="", ref=ref, value=None,
                           location=site.location, check=not unchecked,
                           note="; ".join(filter(None, [unchecked or "", note])), key=op_key,
                           timings=self.progress.layer_seconds, fed=fed)
        if not unchecked:
            self.kept.keep(rec, value)
        self._by_layer.setdefault(id(ref.layer), []).append(rec)
        self.records.append(rec)

    def renamed(self, layer: Any) -> None:
        """``layer`` got a new name (a module's result): its records show it."""
        for rec in self._by_layer.get(id(layer), ()):
            rec.layer = layer.name

    def timed(self, since: int, seconds: float) -> None:
        """An op converted in ``seconds``: its records (made since index ``since``) keep the time."""
        for rec in self.records[since:]:
            rec.seconds = seconds
        self.progress.op()

    def add_note(self, since: int, note: str) -> None:
        """Append ``note`` to the records made since index ``since``."""
        for rec in self.records[since:]:
            rec.note = "; ".join(filter(None, [rec.note, note]))


@dataclass
class ParityReport:
    """All records of a capture; ``ok`` is True when every checked op agrees."""

    records: list = field(default_factory=list)
    atol: float = 1e-5
    rtol: float = 1e-5
    self_checks: list = field(default_factory=list)  # verify.SelfCheck: the network again at other lengths
    grads: list = field(default_factory=list)  # verify.GradCheck: gradients of the written config vs torch
    guards: dict = field(default_factory=dict)  # "file:line" -> a decision the user's code took on a dynamic size
    feeds: list = field(default_factory=list)  # Feed: layers where torch's random values were fed

    @property
    def ok(self) -> bool:
        return all(r.ok is not False for r in self.records) and all(c.ok is not False for c in self.self_checks) \
            and all(g.ok is not False for g in self.grads)

    @property
    def failures(self) -> list:
        return [r for r in self.records if r.ok is False]

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self):
        return iter(self.records)

    @property
    def unchecked(self) -> list:
        return [r for r in self.records if r.ok is None and not r.fed]

    @property
    def fed(self) -> list:
        """The records of random ops whose torch values were fed into the network (not compared)."""
        return [r for r in self.records if r.ok is None and r.fed]

    def summary(self) -> str:
        """The verdict in one line: ops agreeing, failed, unchecked, fed (random values), and the tolerances."""
        n_checked = sum(r.ok is not None for r in self.records)
        fed = f", {len(self.fed)} fed" if self.feeds else ""
        return (f"parity: {'OK' if self.ok else 'FAILED'} ({n_checked - len(self.failures)}/{n_checked} checked ops "
                f"agree, {len(self.unchecked)} unchecked{fed}, {len(self.records)} in all; atol={self.atol:g}, "
                f"rtol={self.rtol:g})")

    def check_lines(self) -> list[str]:
        """The self-checks, size decisions and gradient checks, one line each (failed gradients add lines)."""
        fed = ", ".join(f.layer for f in self.feeds)
        lines = [f"random values: torch's fed into {len(self.feeds)} layer(s) ({fed}): the ops after them are "
                 "compared exactly; the network and the written config sample their own"] if self.feeds else []
        for c in self.self_checks:
            state = {True: "OK", False: "FAILED", None: "skipped"}[c.ok]
            lines.append(f"self-check at {c.what}: {state} ({c.compared} ops){': ' + c.detail if c.detail else ''}")
        for site, text in self.guards.items():
            lines.append(f"size decision at {site}: {text}")
        if self.grads:
            bad = [g for g in self.grads if g.ok is False]
            done = [g for g in self.grads if g.ok is not None]
            lines.append(f"gradients: {'OK' if not bad else 'FAILED'} ({len(done) - len(bad)}/{len(done)})"
                         + "".join(f"\n  {g.name}: max abs diff {g.max_abs_diff:.3g} {g.detail}" for g in bad)
                         + "".join(f"\n  {g.name}: {g.detail}" for g in self.grads if g.ok is None))
        return lines

    def format(self, full: bool = False) -> str:
        """The report as text: the summary line, the failing and unchecked ops (every op with
        ``full=True``), then the self-checks, size decisions and gradient checks."""
        shown = self.records if full else [r for r in self.records if r.ok is not True]
        lines = [self.summary()]
        if shown:
            w_op = max([len(r.torch_op) for r in shown] + [8])
            w_layer = max([len(r.layer) for r in shown] + [13])
            lines.append(f"  {'torch op':<{w_op}}  {'RETURNN layer':<{w_layer}}  {'max|diff|':>10}  {'max rel':>10}  "
                         f"ok   module / source")
            lines += [r.line(w_op, w_layer) for r in shown]
        if len(shown) < len(self.records):
            lines.append(f"  ({len(self.records) - len(shown)} agreeing ops not shown: net.parity.table() lists all)")
        return "\n".join(lines + self.check_lines())

    def table(self) -> str:
        """The full report: every op with its layer, diffs, status, module and source line."""
        return self.format(full=True)

    def __str__(self) -> str:
        return self.format()

    def to_html(self, path: str | None = None, title: str = "torchdispatch_returnn parity report") -> str:
        """A self-contained HTML page of the report (summary, module tree, slowest ops); written to
        ``path`` if given. Returns the HTML."""
        text = report_html(self, title=title)
        if path is not None:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            logger.info("parity report written to %s", path)
        return text

    def _repr_html_(self) -> str:
        return report_html(self, compact=True)

    def _guard_hint(self) -> str:
        if not self.guards:
            return ""
        return (". Python decided on dynamic sizes at: " + "; ".join(f"{k} ({v})" for k, v in self.guards.items())
                + ": the network holds where these decisions come out the same")

    def failure_message(self) -> str:
        fails = self.failures
        bad_grads = [g for g in self.grads if g.ok is False]
        if not fails and bad_grads:
            g = bad_grads[0]
            return (f"{len(bad_grads)} gradient(s) of the network built from the written config differ from torch "
                    f"autograd; first: {g.name}: max abs diff {g.max_abs_diff:.3g} {g.detail}\n{self}")
        if not fails:  # a self-check at another length failed
            c = next(c for c in self.self_checks if c.ok is False)
            r = c.first
            if r is None:
                return (f"the network differs from torch at {c.what} (it agrees at the capture inputs): {c.detail}"
                        f"{self._guard_hint()}\n{self}")
            return (f"the network differs from torch at {c.what} (it agrees at the capture length): first at "
                    f"{r.torch_op} in module {r.module_path or '<root>'!r} (RETURNN layer {r.layer!r}) at "
                    f"{r.location}: {c.detail}. Something there is fixed to the capture length (a Python loop over "
                    f"a size, int() of a size used as a number, control flow on sizes); see docs/API.md"
                    f"{self._guard_hint()}\n{self}")
        first = fails[0]
        return (f"{len(fails)} op(s) disagree with PyTorch; first: {first.torch_op} in module "
                f"{first.module_path or '<root>'!r} (RETURNN layer {first.layer!r}) at {first.location}: "
                f"max abs diff {first.max_abs_diff:.3g}\n{self}")


def check(records: Sequence[ParityRecord], sinks: Any, run: Callable[[list], list], lengths: bool, atol: float,
          rtol: float, full: np.ndarray | None = None) -> None:
    """Compare every checked record's layer with the torch value, as TF computes it in one run (``sinks``: a
    :class:`~.sinks.Sinks` over the checked records; ``run(ops)``: a session run with the capture's feed).

    ``lengths``: the padding of dims with given lengths is not compared; ``full``: which sequences have
    their full length (only those are compared where some do: torch computed the others on padding, which
    a per-sequence network does not see). When the run fails, each op is run alone to name the one that fails."""
    for rec in records:
        rec.layer = rec.ref.name
    checked = [r for r in records if r.check]

    def visit(rec: ParityRecord, value: np.ndarray, lens: dict) -> None:
        if stale(rec):
            rec.ok, rec.check, rec.value = None, False, None
            rec.note = "; ".join(filter(None, [rec.note, STALE]))
            logger.warning("%s at %s: %s", rec.torch_op, rec.location, STALE)
            return
        compare(rec, value, atol, rtol, mask=valid_mask(rec.ref, lens, full) if lengths else None)
        if rec.ok is False and full is not None and not full.all():
            if not any(d.is_batch_dim() for d in rec.ref.dims):  # torch reduced over the padding of shorter sequences
                why = "no batch axis, and torch saw the padding of the shorter sequences"
            elif any(d.is_batch_dim() and d is not batch_dim for d in rec.ref.dims):  # flatten_batch packs
                why = "batch merged with a dynamic axis: packed frames of the shorter sequences, torch keeps padding"
            else:
                return
            rec.ok, rec.check = None, False
            rec.note = "; ".join(filter(None, [rec.note, f"unchecked: {why}"]))
        rec.value = None if rec.ok else rec.value  # keep memory low; failures keep the torch value

    failed = sinks.run(run, checked, visit)
    if failed is not None:
        first = sinks.first_failing(run, checked)
        if first is None:
            raise CaptureError(f"running the network for the parity check failed: {error_summary(failed)}") from failed
        rec, e = first
        raise CaptureError(f"running RETURNN layer {rec.layer!r} failed in TensorFlow: {error_summary(e)}"
                           ).at(rec.site) from failed


def valid_mask(ref: Ref, lens: dict, full: np.ndarray | None = None) -> np.ndarray | None:
    """Boolean mask (torch order) of the frames within each sequence's length (of the sequences in
    ``full``, if given and any), or None."""
    batch = [i for i, d in enumerate(ref.dims) if d.is_batch_dim()]
    if not batch:
        return None
    mask = np.ones(ref.shape, dtype=bool)
    if full is not None and full.any() and full.shape == (ref.shape[batch[0]],):
        bshape = [1] * len(ref.shape)
        bshape[batch[0]] = ref.shape[batch[0]]
        mask &= full.reshape(bshape)
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


def compare(record: ParityRecord, returnn_value: np.ndarray, atol: float, rtol: float, mask=None) -> None:
    """Fill ``max_abs_diff``, ``max_rel_diff`` and ``ok`` of ``record`` (only where ``mask`` is True, if given)."""
    expected = to_numpy(record.value)
    got = np.asarray(returnn_value)
    if got.shape != expected.shape:
        record.ok = False
        record.max_abs_diff = record.max_rel_diff = float("inf")
        record.note = f"shape {got.shape} != torch {expected.shape}"
        return
    if mask is not None and mask.shape == expected.shape:
        record.note = "; ".join(filter(None, [record.note, "valid frames"]))
    else:
        mask = None
    record.max_abs_diff, record.max_rel_diff, scale, why = differences(got, expected, mask)
    record.note = "; ".join(filter(None, [record.note, why]))
    record.ok = not why and record.max_abs_diff <= atol + rtol * scale


class NotebookView:
    """``_repr_html_`` of an object with a ``parity`` report (the capture, ``net``): a compact HTML
    report in notebooks."""

    def _repr_html_(self) -> str:
        return capture_html(self)
