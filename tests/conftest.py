import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("DISABLE_CUDA", "1")

import sys

sys.path.insert(0, os.path.dirname(__file__))

import tempfile

import pytest

#: the public returnn_parity fixture (the project's tests use what users use) and pytest's pytester
pytest_plugins = ["torchdispatch_returnn.pytest_plugin", "pytester"]


@pytest.fixture(autouse=True)
def _temp_in_tmp_path(tmp_path, monkeypatch):
    """Anything a test (or a library it calls) writes to the temp directory lands in its tmp_path."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    yield
