"""examples/quickstart.ipynb runs from top to bottom (nbclient, a fresh kernel) and shows what it says."""

import os

import nbclient
import nbformat

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _text(cell) -> str:
    out = []
    for o in cell.get("outputs", []):
        out.append(o.get("text", ""))
        out.extend(str(v) for k, v in o.get("data", {}).items() if k in ("text/plain", "text/html"))
    return "\n".join(out)


def test_quickstart_notebook_runs():
    nb = nbformat.read(os.path.join(ROOT, "examples", "quickstart.ipynb"), as_version=4)
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit the notebook without outputs"
    # run in the repository root, so the kernel imports this checkout's package
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": ROOT}}).execute()
    texts = [_text(c) for c in nb.cells if c.cell_type == "code"]
    assert not any(o.get("output_type") == "error" for c in nb.cells for o in c.get("outputs", []))
    shown = "\n".join(texts)
    assert "parity: OK" in shown  # print(net.parity)
    assert "<details" in shown or "<table" in shown  # the report's HTML view
    assert "behavior_version" in shown and "extern_data" in shown  # the config
    assert shown.count("max abs diff") >= 4  # the fresh run and three sequences of the padded batch
