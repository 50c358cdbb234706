"""pytest plugin: the ``returnn_parity`` fixture, :func:`~torchdispatch_returnn.testing.assert_converts`
for a project's own tests.

Opt in from a ``conftest.py`` (so pytest runs without it do not import TensorFlow)::

    pytest_plugins = ["torchdispatch_returnn.pytest_plugin"]

or per run with ``pytest -p torchdispatch_returnn.pytest_plugin``. Then::

    def test_encoder(returnn_parity):
        net = returnn_parity(MyEncoder(), torch.randn(3, 50, 80), dynamic_shapes=({1: "time"},))

Options come, last wins, from the command line (``--returnn-grads``, ``--returnn-atol``,
``--returnn-rtol``), a ``@pytest.mark.returnn_parity(**options)`` marker on the test, and the call.
``--returnn-report-dir DIR`` writes each call's HTML parity report to ``DIR/<test>[-<n>].html``;
a failing call's report is written there too when the capture got that far.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

import pytest

from .capture import Capture
from .errors import ParityError
from .testing import assert_converts


def pytest_addoption(parser: Any) -> None:
    group = parser.getgroup("torchdispatch_returnn", "torchdispatch_returnn parity checks")
    group.addoption("--returnn-grads", action="store_true", default=False,
                    help="returnn_parity: also check gradients (grads=True) in every call")
    group.addoption("--returnn-atol", type=float, default=None, help="returnn_parity: default atol")
    group.addoption("--returnn-rtol", type=float, default=None, help="returnn_parity: default rtol")
    group.addoption("--returnn-report-dir", default=None, metavar="DIR",
                    help="returnn_parity: write each call's HTML parity report to DIR")


def pytest_configure(config: Any) -> None:
    config.addinivalue_line("markers", "returnn_parity(**options): default assert_converts options for the "
                                       "returnn_parity fixture in this test (e.g. atol=1e-4, grads=True)")


@pytest.fixture
def returnn_parity(request: Any) -> Callable[..., Capture]:
    """``check(model, *inputs, **options)``: :func:`assert_converts` with this test's defaults; returns
    the capture (``net.parity``, ``net.save_config(...)``, ...)."""
    opt = request.config.getoption
    defaults: dict = {}
    if opt("--returnn-grads"):
        defaults["grads"] = True
    for name in ("atol", "rtol"):
        if opt(f"--returnn-{name}") is not None:
            defaults[name] = opt(f"--returnn-{name}")
    for marker in reversed(list(request.node.iter_markers("returnn_parity"))):  # the closest marker wins
        defaults.update(marker.kwargs)
    report_dir = opt("--returnn-report-dir")
    calls = []

    def check(model: Any, *inputs: Any, **options: Any) -> Capture:
        calls.append(None)
        path = _report_path(report_dir, request.node.name, len(calls)) if report_dir else None
        try:
            net = assert_converts(model, *inputs, **{**defaults, **options})
        except ParityError as e:
            if path and e.report is not None:
                e.report.to_html(path)
            raise
        if path:
            net.parity.to_html(path)
        return net

    return check


def _report_path(report_dir: str, test_name: str, n: int) -> str:
    os.makedirs(report_dir, exist_ok=True)
    stem = re.sub(r"[^\w.-]+", "_", test_name).strip("_") or "test"
    return os.path.join(report_dir, f"{stem}{'' if n == 1 else f'-{n}'}.html")
