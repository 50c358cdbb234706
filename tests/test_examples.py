"""The bundled examples run and agree with torch."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("script", ["convert_encoder.py", "padded_blstm.py"])
def test_example_runs(script, tmp_path):
    args = [sys.executable, os.path.join(ROOT, "examples", script)]
    if script == "convert_encoder.py":
        args += ["--out", str(tmp_path)]
    out = subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=str(tmp_path))
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "max abs diff" in out.stdout
