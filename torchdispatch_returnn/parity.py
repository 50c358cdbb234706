"""The per-op parity report: RETURNN output vs. recorded PyTorch value, op by op."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


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
    check: bool = True  # False: torch's values are unspecified (torch.empty) or random (dropout)


@dataclass
class ParityReport:
    """All records of a capture; ``ok`` is True when every checked op agrees."""

    records: list = field(default_factory=list)
    atol: float = 1e-5
    rtol: float = 1e-5

    @property
    def ok(self) -> bool:
        return all(r.ok is not False for r in self.records)

    @property
    def failures(self) -> list:
        return [r for r in self.records if r.ok is False]

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self):
        return iter(self.records)

    def __str__(self) -> str:
        lines = [f"parity: {'OK' if self.ok else 'FAILED'} ({len(self.records) - len(self.failures)}/"
                 f"{len(self.records)} ops agree; atol={self.atol:g}, rtol={self.rtol:g})"]
        w_op = max([len(r.torch_op) for r in self.records] + [8])
        w_layer = max([len(r.layer) for r in self.records] + [5])
        lines.append(f"  {'torch op':<{w_op}}  {'RETURNN layer':<{w_layer}}  {'max|diff|':>10}  ok   module / source")
        for r in self.records:
            diff = "-" if r.max_abs_diff is None else f"{r.max_abs_diff:.3g}"
            flag = {True: "yes", False: "NO", None: "-"}[r.ok]
            lines.append(f"  {r.torch_op:<{w_op}}  {r.layer:<{w_layer}}  {diff:>10}  {flag:<3}  "
                         f"{r.module_path or '<root>'} {r.location}{'  ' + r.note if r.note else ''}")
        return "\n".join(lines)

    def failure_message(self) -> str:
        fails = self.failures
        first = fails[0]
        return (f"{len(fails)} op(s) disagree with PyTorch; first: {first.torch_op} in module "
                f"{first.module_path or '<root>'!r} (RETURNN layer {first.layer!r}) at {first.location}: "
                f"max abs diff {first.max_abs_diff:.3g}\n{self}")


def compare(record: ParityRecord, returnn_value: np.ndarray, atol: float, rtol: float, mask=None) -> None:
    """Fill ``max_abs_diff`` and ``ok`` of ``record`` (only where ``mask`` is True, if given)."""
    expected = record.value.detach().cpu().numpy()
    got = np.asarray(returnn_value)
    if got.shape != expected.shape:
        record.ok = False
        record.max_abs_diff = float("inf")
        record.note = f"shape {got.shape} != torch {expected.shape}"
        return
    if mask is not None and mask.shape == expected.shape:
        expected, got = expected[mask], got[mask]
        record.note = "; ".join(filter(None, [record.note, "valid frames"]))
    if expected.size == 0:
        record.ok, record.max_abs_diff = True, 0.0
        return
    if expected.dtype == np.bool_ or np.issubdtype(expected.dtype, np.integer):
        diff = np.abs(got.astype(np.int64) - expected.astype(np.int64))
        record.max_abs_diff = float(diff.max())
        record.ok = record.max_abs_diff == 0
        return
    e = expected.astype(np.float64)
    g = got.astype(np.float64)
    finite = np.isfinite(e)
    if not np.array_equal(np.isfinite(g), finite) or not np.array_equal(e[~finite], g[~finite]):
        record.ok, record.max_abs_diff = False, float("inf")
        record.note = "inf/nan differ"
        return
    diff = np.abs(g - e)[finite] if finite.any() else np.zeros(1)
    scale = float(np.abs(e[finite]).max()) if finite.any() else 0.0
    record.max_abs_diff = float(diff.max())
    record.ok = record.max_abs_diff <= atol + rtol * scale
