import json
import os
import subprocess
import sys

from torchdispatch_returnn.support import support_markdown, support_rows


def test_support_table_lists_every_handler_with_location():
    rows = support_rows()
    names = {r[0] for r in rows}
    assert {"torch.nn.functional.linear", "torch.Tensor.__getitem__", "torch.arange"} <= names
    for _, _family, loc in rows:
        path, line = loc.rsplit(":", 1)
        assert os.path.exists(os.path.join(os.path.dirname(os.path.dirname(__file__)), path)) and int(line) > 0


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SWEEP = os.path.join(ROOT, "benchmarks", "results", "opdb_sweep.json")


def test_committed_supported_md_is_current():
    with open(SWEEP) as f:
        sweep = json.load(f)
    with open(os.path.join(ROOT, "SUPPORTED.md")) as f:
        assert f.read() == support_markdown(sweep), ("run: python -m torchdispatch_returnn support --out SUPPORTED.md "
                                                     "--sweep benchmarks/results/opdb_sweep.json")


def test_supported_md_shows_the_sweep_totals():
    with open(SWEEP) as f:
        sweep = json.load(f)
    text = support_markdown(sweep)
    assert f"**{sweep['totals']['pass']} pass**" in text and "| family | OpInfos |" in text


def test_cli_support_sweep_file_errors(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text("[1, 2]")
    for arg in (str(bad), str(tmp_path / "missing.json")):
        out = subprocess.run([sys.executable, "-m", "torchdispatch_returnn", "support", "--sweep", arg],
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 3 and "--sweep" in out.stderr and "Traceback" not in out.stderr


def test_cli_support_runs():
    out = subprocess.run([sys.executable, "-m", "torchdispatch_returnn", "support"], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and out.stdout.startswith("# Supported torch callables")
