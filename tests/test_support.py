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


def test_committed_supported_md_is_current():
    root = os.path.dirname(os.path.dirname(__file__))
    with open(os.path.join(root, "SUPPORTED.md")) as f:
        assert f.read() == support_markdown(), "run: python -m torchdispatch_returnn support --out SUPPORTED.md"


def test_cli_support_runs():
    out = subprocess.run([sys.executable, "-m", "torchdispatch_returnn", "support"], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and out.stdout.startswith("# Supported torch callables")
