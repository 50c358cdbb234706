"""PyTorch's operator database through the public API (slow): ``benchmarks/opdb_sweep.py`` over every
float32 OpInfo. No sample may disagree with torch silently or crash inside the package, and at least
as many OpInfos pass as the committed summary (benchmarks/results/opdb_sweep.json, whose totals
SUPPORTED.md shows)."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_opdb_sweep(tmp_path):
    pytest.importorskip("expecttest")  # op_db needs it (the test extra installs it)
    out_json = tmp_path / "sweep.json"
    run = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "opdb_sweep.py"), "--samples", "4",
                          "--json", str(out_json)], capture_output=True, text=True, timeout=40 * 60, cwd=str(tmp_path))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    got = json.loads(out_json.read_text())
    with open(os.path.join(ROOT, "benchmarks", "results", "opdb_sweep.json")) as f:
        committed = json.load(f)
    report = run.stdout[run.stdout.find("OpInfos considered"):]
    bad = {cls: [f"{p['name']}#{s['index']}: {s.get('reason', '')[:160]}" for p in got["ops"] for s in p["samples"]
                 if s["cls"] == cls] for cls in ("silent_mismatch", "crash")}
    assert not bad["silent_mismatch"], "\n".join(bad["silent_mismatch"])
    assert not bad["crash"], "\n".join(bad["crash"])
    assert got["totals"].get("pass", 0) >= committed["totals"]["pass"], report[:4000]
