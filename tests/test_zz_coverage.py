"""Meta-test: every handler was exercised by a parity case (through one of its targets) in this
session; lists the targets that no case called directly.

Runs last (file name). Run alone it has nothing to check and says so.
"""

import pytest
from parity_helpers import COVERED, GRAD_COVERED

import torchdispatch_returnn.handlers as handlers
from torchdispatch_returnn.handlers.registry import target_name


def test_every_handler_has_a_parity_case():
    if len(COVERED) < 50:
        pytest.skip("run the whole suite: coverage is collected from the other test files")
    by_handler = {}
    for target, h in handlers.all_handlers().items():
        by_handler.setdefault(h.fn, []).append(target)
    untested = sorted(f"{fn.__module__}.{fn.__qualname__} ({', '.join(target_name(t) for t in ts)})"
                      for fn, ts in by_handler.items() if not any(t in COVERED for t in ts))
    assert not untested, f"{len(untested)} handlers without a parity case: {untested}"


def test_every_handler_family_has_a_gradient_case():
    if len(GRAD_COVERED) < 50:
        pytest.skip("run the whole suite: coverage is collected from the other test files")
    families = {}
    for target, h in handlers.all_handlers().items():
        families.setdefault(h.fn.__module__, set()).add(target)
    missing = sorted(m for m, ts in families.items() if not ts & GRAD_COVERED)
    assert not missing, f"handler families without a gradient case: {missing}"
