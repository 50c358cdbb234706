"""The parity report's views: the HTML page (``net.parity.to_html``), the notebook views
(``_repr_html_``), the short ``str()`` against the full table, the relative diff, and the progress
display of long captures."""

import math
import re

import numpy as np
import pytest
import torch
from torch import nn

from torchdispatch_returnn import ParityError, register, returnn_capture, unregister
from torchdispatch_returnn.parity import ParityRecord, compare
from torchdispatch_returnn.progress import DEFAULT_DELAY, Progress
from torchdispatch_returnn.report import esc, module_tree, report_html


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        return torch.sinc(self.lin(x)) * 2


_NS: dict = {"torch": torch}
exec(compile("def act(x):\n    return torch.tanh(x)\n", "<cell&1>", "exec"), _NS)  # a file name to escape


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = Block()
        self.out = nn.Linear(4, 3)

    def forward(self, x):
        return self.out(_NS["act"](self.block(x)))


def _bad_sinc(ctx, x):  # a deliberately wrong conversion: cos instead of sinc
    r = ctx.ref(x)
    return ctx.eval("tf.cos(source(0))", [r], r.dims)


@pytest.fixture
def failing_sinc():
    register(torch.sinc, _bad_sinc, override=True)
    yield
    unregister(torch.sinc)


def _capture(check=False, **kw):
    torch.manual_seed(0)
    with returnn_capture(dynamic_shapes=({1: "time"},), check=check, **kw) as net:
        Net().eval()(torch.randn(2, 6, 4))
    return net


@pytest.fixture(scope="module")
def good_net():
    return _capture(check=True, progress=False)


def test_html_page(tmp_path, failing_sinc):
    net = _capture(progress=False)
    assert not net.parity.ok
    path = tmp_path / "report.html"
    text = net.parity.to_html(str(path))
    assert path.read_text(encoding="utf-8") == text
    assert text.startswith("<!DOCTYPE html>") and "<style>" in text and "<script>" in text
    assert not re.search(r"\b(href|src)=|https?://|@import", text)  # self-contained
    summary = text[text.index('class="tdr-summary'):text.index("</p>", text.index('class="tdr-summary'))]
    assert "parity FAILED" in summary and "atol=1e-05" in summary and "rtol=1e-05" in summary
    assert re.search(r"5 ops: 1 ok, .*4 failed.*, 0 unchecked", summary)  # sinc and the ops after it
    assert "self-check(s)" in summary and "gradient check(s)" in summary and "size decision(s)" in summary
    # the failing ops: coloured rows with torch op, layer and the user's line
    failed = re.findall(r'<tr class="tdr-failed">(.*?)</tr>', text[:text.index("<h2>Slowest ops</h2>")])
    sinc = [row for row in failed if "torch.sinc" in row]
    assert len(failed) == 4 and len(sinc) == 1 and f"{esc(__file__)}:" in sinc[0] and ">block.sinc</td>" in sinc[0]
    assert re.search(r'<td class="tdr-num">[0-9.e+-]+</td><td class="tdr-num">[0-9.e+-]+</td>', sinc[0])  # diffs
    assert "tr.tdr-failed td" in text  # the colour
    # the module tree: <details> by module path, the odd name escaped everywhere
    assert text.count("<details") >= 4  # <root>, block, block.lin, out
    assert "&lt;cell&amp;1&gt;:2" in text and "<cell&1>" not in text  # the user's file:line, escaped
    block = text[:text.index('title="block"')]
    assert block.endswith('<details open><summary><span class="tdr-mod" ')  # a module with a failure is open
    lin = text[:text.index('title="block.lin"')]
    assert lin.endswith('<details><summary><span class="tdr-mod" ')  # the others are collapsed
    # the slowest ops: what is measured, and the rows
    slow = text[text.index("<h2>Slowest ops</h2>"):]
    assert "handler" in slow and "layer construction" in slow and "parity fetch" in slow
    assert "linear" in slow and slow.count("<tr") >= 3


def test_html_has_diffs_and_checks(good_net):
    text = good_net.parity.to_html()
    assert "parity OK" in text and "max rel diff" in text
    assert "self-check at sizes" in text and "tdr-v-ok" in text
    rec = good_net.parity.records[0]
    assert f"{rec.max_abs_diff:.3g}" in text and f"{rec.max_rel_diff:.3g}" in text


def test_html_escapes_op_and_notes():
    rec = ParityRecord(torch_op="torch.<lambda>", module_path="a.b<c>", layer="x&y", ref=None, value=None,
                       location="f.py:1", ok=False, max_abs_diff=1.0, max_rel_diff=0.5, note='"quoted" <note>')
    report = type("R", (), {"records": [rec], "atol": 1e-5, "rtol": 1e-5, "ok": False, "self_checks": [],
                            "grads": [], "guards": {"f.py:2": "`time < 5` was True (time = 3)"}})()
    text = report_html(report)
    for raw in ("<lambda>", "b<c>", "x&y", '"quoted" <note>', "`time < 5`"):
        assert raw not in text
    assert "torch.&lt;lambda&gt;" in text and "x&amp;y" in text and "&quot;quoted&quot; &lt;note&gt;" in text
    assert "size decision (guard) at" in text and "`time &lt; 5` was True" in text
    root = module_tree([rec])
    assert list(root.children) == ["a"] and list(root.children["a"].children) == ["b<c>"]


def test_repr_html_of_report_and_capture(failing_sinc):
    net = _capture(progress=False)
    for view in (net.parity._repr_html_(), net._repr_html_()):
        assert view.startswith('<div class="tdr">') and "<html" not in view and "<script" not in view
        assert "parity FAILED" in view and "Failing and unchecked ops" in view and "tdr-failed" in view
        assert "<details>" in view and "&lt;cell&amp;1&gt;" in view
    assert "RETURNN layers" in net._repr_html_()
    assert "not finished" in returnn_capture()._repr_html_()


def test_str_is_short_and_table_is_full(good_net):
    report = good_net.parity
    short, full = str(report), report.table()
    assert short.startswith("parity: OK") and full.startswith("parity: OK")
    assert short.splitlines()[0] == full.splitlines()[0] == report.summary()
    assert report.format(full=True) == full
    assert "agreeing ops not shown: net.parity.table()" in short
    layers = [r.layer for r in report]
    assert all(f"  {name} " in full for name in layers) and not any(f"  {name} " in short for name in layers)
    assert "self-check at sizes" in short and "self-check at sizes" in full  # the check lines stay


def test_str_lists_failing_and_unchecked_ops(failing_sinc):
    class Drop(nn.Module):
        def forward(self, x):
            return torch.sinc(x), torch.empty_like(x * 3), torch.nn.functional.dropout(x * 2, 0.5, training=True)

    with returnn_capture(dynamic_shapes=({1: "time"},), check=False, train=True, progress=False) as net:
        Drop()(torch.randn(2, 5, 3))
    short = str(net.parity)
    lines = short.splitlines()
    assert lines[0].startswith("parity: FAILED") and "1 unchecked" in lines[0]
    assert any("torch.sinc" in line and " NO " in line for line in lines)
    assert any("empty_like" in line and "unchecked: torch.empty_like values are unspecified" in line for line in lines)
    assert any(line.startswith("random values: torch's fed into 1 layer(s)") for line in lines)
    assert "3 agreeing ops not shown" in short and "torch.Tensor.mul" not in short
    assert "torch.Tensor.mul" in net.parity.table()


def test_parity_error_keeps_the_failing_op_lines(failing_sinc):
    with pytest.raises(ParityError) as ei:
        _capture(check=True, progress=False)
    msg = str(ei.value)
    assert "4 op(s) disagree" in msg and "parity: FAILED" in msg  # sinc and the ops after it
    assert re.search(r"torch\.sinc .* NO ", msg) and __file__ in msg


def test_rel_diff_is_nan_aware_and_skips_zeros():
    rec = ParityRecord("op", "", "l", None, torch.tensor([1.0, 2.0, 0.0, float("nan"), float("inf")]), "f:1")
    compare(rec, np.array([1.1, 2.0, 1e-9, np.nan, np.inf], dtype=np.float32), 1e-5, 1e-5)
    assert rec.ok is False and math.isclose(rec.max_abs_diff, 0.1, rel_tol=1e-5)
    assert math.isclose(rec.max_rel_diff, 0.1, rel_tol=1e-5)  # the 0 and the non-finite entries left out
    rec = ParityRecord("op", "", "l", None, torch.tensor([4, 0, -2]), "f:1")
    compare(rec, np.array([4, 0, -3]), 1e-5, 1e-5)
    assert rec.max_abs_diff == 1 and rec.max_rel_diff == 0.5 and rec.ok is False
    rec = ParityRecord("op", "", "l", None, torch.tensor([1.0, float("nan")]), "f:1")
    compare(rec, np.array([1.0, 1.0], dtype=np.float32), 1e-5, 1e-5)
    assert rec.ok is False and rec.max_rel_diff == math.inf


def test_records_carry_timings(good_net):
    recs = good_net.parity.records
    assert all(r.seconds is not None and r.seconds >= 0 for r in recs)
    assert all(r.build_seconds is not None for r in recs if r.layer.endswith("linear"))


def _bar_text(err: str) -> bool:
    return "returnn_capture: " in err


def test_progress_shows_after_the_delay(capsys):
    net = _capture(check=True, progress=0.0)
    err = capsys.readouterr().err
    assert _bar_text(err) and "capturing" in err and "building layers" in err and "checking parity" in err
    progress = net.recorder.progress
    assert progress.closed and progress.bar is None  # removed at the end
    assert progress.ops == len(net.ops_seen) or progress.ops >= len(net.parity)
    assert progress.layers >= len(net.parity)


def test_progress_quiet_before_the_delay_and_off(capsys):
    net = _capture(check=True, progress=60.0)
    assert not _bar_text(capsys.readouterr().err)
    assert net.recorder.progress.ops > 0 and net.recorder.progress.closed
    net = _capture(check=True, progress=False)
    assert not _bar_text(capsys.readouterr().err)
    assert net.recorder.progress.bar is None and not net.recorder.progress.enabled
    assert Progress(True).delay == DEFAULT_DELAY == 2.0 and Progress(True).enabled
    assert not Progress(False).enabled and Progress(0.5).delay == 0.5


def test_progress_closed_when_the_block_raises(capsys):
    cap = returnn_capture(dynamic_shapes=({1: "time"},), progress=0.0)
    with pytest.raises(RuntimeError, match="boom"):
        with cap:
            torch.tanh(Block()(torch.randn(2, 6, 4)))
            raise RuntimeError("boom")
    assert cap.recorder.progress.closed and cap.recorder.progress.bar is None
    assert _bar_text(capsys.readouterr().err)  # it was shown (delay 0) and is gone


def test_progress_display_made_with_delay_and_leave_false(monkeypatch):
    made = []
    orig_init = Progress._display

    def spy(self):
        bar = orig_init(self)
        if bar is not None and bar not in made:
            made.append(bar)
        return bar

    monkeypatch.setattr(Progress, "_display", spy)
    p = Progress(True)
    p.op()
    assert len(made) == 1 and 0 < made[0].delay <= DEFAULT_DELAY and made[0].leave is False
    assert made[0].fp is not None and made[0].n == 1
    p.close()
    assert p.bar is None
    q = Progress(False)
    q.op()
    q.stage("building layers")
    q.built("layer", 0.1)
    assert len(made) == 1 and q.bar is None and q.ops == 1 and q.layer_seconds == {"layer": 0.1}
