"""Comparing the network's values with torch's: one conversion of torch values to numpy and one
NaN-aware closeness rule, used by the parity check, the self-checks and the gradient check."""

from __future__ import annotations

import numpy as np
import torch


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """A torch value as numpy (conjugate and negative views resolved: numpy takes neither)."""
    return t.detach().resolve_conj().resolve_neg().cpu().numpy()


def as_real_pairs(a: np.ndarray) -> np.ndarray:
    """A complex array as (real, imaginary) pairs along a new last axis; a real one as (value, 0)."""
    a = np.asarray(a)
    return np.stack([a.real, a.imag if np.iscomplexobj(a) else np.zeros_like(a)], -1).astype(np.float64)


def rel_diff(diff: np.ndarray, expected: np.ndarray, mag: np.ndarray | None = None) -> float:
    """max ``diff / |expected|`` over the entries where ``expected`` is not 0 (0.0 if there are none;
    an entry where torch is 0 shows in the abs diff only). ``mag``: ``|expected|``, if already made."""
    mag = np.abs(expected) if mag is None else mag
    nonzero = mag != 0
    if not nonzero.any():
        return 0.0
    with np.errstate(over="ignore"):  # (float32: a tiny |expected| makes it inf)
        if nonzero.all():  # (no copies of the selected entries)
            return float((diff / mag).max())
        return float((diff[nonzero] / mag[nonzero]).max())


#: entries compared at a time (the float64 copies of a block stay small for large activations)
BLOCK = 1 << 18


def differences(got: np.ndarray, want: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, float, float, str]:
    """(max abs diff, max rel diff, the scale: max |want| over finite entries, why they differ outright) of
    same-shaped arrays (only the entries where ``mask`` is True, if given): complex values as real pairs,
    ints and bools exactly, NaN/inf where torch has them. Large arrays are compared block by block."""
    if np.iscomplexobj(got) or np.iscomplexobj(want):
        got, want = as_real_pairs(got), as_real_pairs(want)
        mask = None if mask is None else np.broadcast_to(mask[..., None], want.shape)
    if want.size > BLOCK:  # (blocks of leading-axis rows: views, also of a transposed value, never a flat copy)
        got, want = np.asarray(got), np.asarray(want)
        while want.ndim > 1 and want.shape[0] == 1:
            got, want, mask = got[0], want[0], None if mask is None else mask[0]
        rows = max(1, BLOCK // max(1, want.size // want.shape[0])) if want.ndim > 1 else BLOCK
        parts = [differences(got[i:i + rows], want[i:i + rows], None if mask is None else mask[i:i + rows])
                 for i in range(0, want.shape[0], rows)]
        why = next((p[3] for p in parts if p[3]), "")
        if why:
            return float("inf"), float("inf"), 0.0, why
        return tuple(max(p[k] for p in parts) for k in range(3)) + ("",)
    if mask is not None:
        got, want = np.asarray(got)[mask], np.asarray(want)[mask]
    if want.size == 0:
        return 0.0, 0.0, 0.0, ""
    if want.dtype == np.bool_ or np.issubdtype(want.dtype, np.integer):
        e, g = want.astype(np.int64), np.asarray(got).astype(np.int64)
        diff = np.abs(g - e)
        return float(diff.max()), rel_diff(diff, e), 0.0, ""
    got = np.asarray(got)
    if want.dtype == got.dtype == np.float32:  # the usual case: no float64 copies
        with np.errstate(over="ignore", invalid="ignore"):
            diff = np.abs(got - want)
            top = diff.max()
        if np.isfinite(top):  # (a NaN or inf entry of either makes the max NaN or inf; so does an overflow)
            mag = np.abs(want)
            return float(top), rel_diff(diff, want, mag), float(mag.max()), ""
    e, g = want.astype(np.float64), got.astype(np.float64)
    fin = np.isfinite(e)
    all_finite = bool(fin.all())  # (the usual case: compared without copies of the finite entries)
    if not np.array_equal(np.isfinite(g), fin) or \
            (not all_finite and not np.array_equal(e[~fin], g[~fin], equal_nan=True)):
        return float("inf"), float("inf"), 0.0, "NaN/inf at other places than torch's"
    if not all_finite:
        if not fin.any():
            return 0.0, 0.0, 0.0, ""
        e, g = e[fin], g[fin]
    diff = np.abs(g - e)
    return float(diff.max()), rel_diff(diff, e), float(np.abs(e).max()), ""


def close(got: np.ndarray, want: np.ndarray, atol: float, rtol: float, per_entry: bool = False) -> bool:
    """``got`` agrees with torch's ``want``: max abs diff <= atol + rtol * max |want| (finite entries), the
    same NaN/inf places, ints and bools within atol (no relative part). ``per_entry``: each finite entry
    within atol + rtol * its own |want| (stricter for small entries next to large ones)."""
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        return False
    abs_diff, _, scale, why = differences(got, want)
    if why or not per_entry or want.dtype == np.bool_ or not np.issubdtype(want.dtype, np.inexact):
        return not why and abs_diff <= atol + rtol * scale
    g, e = (as_real_pairs(got), as_real_pairs(want)) if np.iscomplexobj(want) else (got, want)
    fin = np.isfinite(e)
    return bool(np.all(np.abs(g[fin].astype(np.float64) - e[fin]) <= atol + rtol * np.abs(e[fin].astype(np.float64))))
