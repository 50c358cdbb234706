"""The public test helpers: ``testing.assert_converts`` (passes, and fails where it must, pointing at
the op) and the ``returnn_parity`` pytest fixture (options, markers, HTML reports)."""

import os

import pytest
import torch
from torch import nn

from torchdispatch_returnn import ParityError, register, unregister
from torchdispatch_returnn.testing import assert_converts

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIME = ({1: "time"},)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(6, 6)

    def forward(self, x):
        return torch.tanh(self.lin(x)).cumsum(1)


def test_passes_and_returns_the_capture():
    torch.manual_seed(0)
    net = assert_converts(Block(), torch.randn(3, 10, 6), dynamic_shapes=TIME, other_lengths=[4, 17], grads=True)
    assert net.parity.ok and len(net.parity) >= 3
    assert net.parity.grads and all(g.ok for g in net.parity.grads)


def test_grads_off_by_default():
    torch.manual_seed(0)
    net = assert_converts(Block(), torch.randn(2, 5, 6), dynamic_shapes=TIME)
    assert not net.parity.grads


def test_wrong_handler_fails_at_the_op():
    """A (user) handler that computes the wrong thing: the failure names the op, module and line."""
    def bad_tanh(ctx, x):
        r = ctx.ref(x)
        return ctx.eval("tf.math.sigmoid(source(0))", [r], r.dims)

    register(torch.tanh, bad_tanh, override=True)
    try:
        with pytest.raises(ParityError) as ei:
            assert_converts(Block(), torch.randn(2, 5, 6), dynamic_shapes=TIME)
    finally:
        unregister(torch.tanh)
    msg = str(ei.value)
    assert "first: torch.tanh" in msg and "test_testing.py" in msg and "NO" in msg  # + the op table
    assert "tanh" in ei.value.op and ei.value.report is not None and not ei.value.report.ok


class LongOnly(nn.Module):
    """Python decides on the length: only inputs longer than 12 frames are doubled."""

    def forward(self, x):
        if x.shape[1] > 12:
            x = x * 2
        return x.sin()


def test_fails_at_a_length_the_capture_did_not_see():
    with pytest.raises(AssertionError) as ei:
        assert_converts(LongOnly(), torch.randn(2, 10, 3), dynamic_shapes=TIME, other_lengths=[6, 20])
    msg = str(ei.value)
    assert "sizes {'time': 20}" in msg  # the run that differs
    assert "per-op parity check at capture passed" in msg and "sin" in msg  # then the op table
    assert "x.shape[1] > 12" in msg or "decided" in msg or "size decision" in msg.lower()


def test_grows_inputs_within_the_example_range():
    """Longer inputs for other lengths keep the example's domain (log of positive values)."""
    class Log(nn.Module):
        def forward(self, x):
            return x.log()

    x = torch.rand(2, 6, 4) + 0.5
    assert_converts(Log(), x, dynamic_shapes=TIME, other_lengths=[30])


PLUGIN_TESTS = '''
import pytest, torch
from torch import nn


class Lin(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 5)

    def forward(self, x):
        return torch.relu(self.lin(x))


def test_good(returnn_parity):
    torch.manual_seed(0)
    net = returnn_parity(Lin(), torch.randn(2, 7, 4), dynamic_shapes=({1: "time"},))
    assert net.parity.grads  # --returnn-grads on the command line


@pytest.mark.returnn_parity(atol=0.0, rtol=0.0, other_lengths=[3])
def test_marker_options(returnn_parity):
    class Loop(nn.Module):
        def forward(self, x):
            return x * x.shape[1]  # a size as a number: fine, it keeps its dim
    returnn_parity(Loop(), torch.randn(2, 5, 3), dynamic_shapes=({1: "time"},))


def test_bad(returnn_parity):
    class Shift(nn.Module):
        def forward(self, x):
            return x[:, :5] * 2 if x.shape[1] > 6 else x * 2
    returnn_parity(Shift(), torch.randn(2, 8, 3), dynamic_shapes=({1: "time"},))
'''


def test_pytest_fixture(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    pytester.makepyfile(test_user=PLUGIN_TESTS)
    reports = pytester.path / "reports"
    result = pytester.runpytest_subprocess("-p", "torchdispatch_returnn.pytest_plugin", "-p", "no:cacheprovider",
                                           "--returnn-grads", f"--returnn-report-dir={reports}", "-q")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*FAILED test_user.py::test_bad*ParityError*"])
    written = sorted(p.name for p in reports.iterdir())
    assert "test_good.html" in written and "test_marker_options.html" in written
    html = (reports / "test_good.html").read_text()
    assert "relu" in html and "<html" in html.lower()
