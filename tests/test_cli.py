"""The command line (``torchdispatch-returnn`` / ``python -m torchdispatch_returnn``) and
``convert_checkpoint`` (new torch weights for a converted network)."""

import inspect
import json
import os
import runpy
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn

import torchdispatch_returnn
from torchdispatch_returnn import ConfigNetwork, convert_checkpoint, register, returnn_capture, unregister
from torchdispatch_returnn.capture import Capture
from torchdispatch_returnn.checkpoint import CheckpointMismatchError, StateDictFileError
from torchdispatch_returnn.cli import main
from torchdispatch_returnn.handlers import lookup
from torchdispatch_returnn.parity import ParityReport

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Small(nn.Module):
    """Linear + LayerNorm + Conv1d + BatchNorm + BLSTM (B, T, 8) -> (B, T, 20)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 16)
        self.ln = nn.LayerNorm(16)
        self.conv = nn.Conv1d(16, 12, 3, padding=1)
        self.bn = nn.BatchNorm1d(12)
        self.lstm = nn.LSTM(12, 10, batch_first=True, bidirectional=True)

    def forward(self, x):
        x = self.ln(self.lin(x))
        x = self.bn(self.conv(x.transpose(1, 2))).transpose(1, 2)
        return self.lstm(x)[0]


def _new_weights(seed):
    torch.manual_seed(seed)
    m = Small().eval()
    with torch.no_grad():
        m.bn.running_mean.normal_()
        m.bn.running_var.uniform_(0.5, 2.0)
        m.ln.weight.normal_()
    return m


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    out = tmp_path_factory.mktemp("converted")
    with returnn_capture(dynamic_shapes=({1: "time"},), self_check=False) as net:
        _new_weights(0)(torch.randn(2, 7, 8))
    cfg = net.save_config(str(out / "returnn.config"))
    net.save_checkpoint(str(out / "model"))
    return out, cfg, dict(net.param_map)


def test_convert_checkpoint_new_weights_load_into_the_config(converted, tmp_path):
    out, cfg, param_map = converted
    m2 = _new_weights(1)
    x = torch.randn(3, 11, 8)
    with torch.no_grad():
        ref = m2(x).numpy()
    # a state_dict and the param_map.json path (shapes from the config beside it)
    ckpt = convert_checkpoint(m2.state_dict(), str(out / "param_map.json"), str(tmp_path / "a" / "model"))
    assert os.path.exists(ckpt + ".index")
    fresh = ConfigNetwork(cfg, ckpt)
    try:
        got = fresh.run(x)
    finally:
        fresh.close()
    np.testing.assert_allclose(got, ref, atol=1e-5)
    old = ConfigNetwork(cfg, str(out / "model"))  # the old checkpoint gives other outputs: the weights changed
    try:
        assert np.abs(old.run(x) - ref).max() > 1e-2
    finally:
        old.close()
    # a training checkpoint file {"state_dict": ..., "epoch": ...} and the param_map dict with an explicit config
    torch.save({"state_dict": m2.state_dict(), "epoch": 3}, tmp_path / "train.pt")
    ckpt2 = convert_checkpoint(str(tmp_path / "train.pt"), param_map, str(tmp_path / "b" / "model"), config=cfg)
    fresh = ConfigNetwork(cfg, ckpt2)
    try:
        np.testing.assert_allclose(fresh.run(x), ref, atol=1e-5)
    finally:
        fresh.close()


def test_convert_checkpoint_errors_list_the_keys(converted, tmp_path):
    out, cfg, param_map = converted
    pm = str(out / "param_map.json")
    sd = _new_weights(2).state_dict()
    bad = dict(sd)
    del bad["ln.bias"], bad["lstm.weight_hh_l0"]
    with pytest.raises(CheckpointMismatchError) as ei:
        convert_checkpoint(bad, pm, str(tmp_path / "m"))
    assert ei.value.missing == ["ln.bias", "lstm.weight_hh_l0"] and "ln.bias" in str(ei.value)
    assert isinstance(ei.value, ValueError)
    bad = dict(sd, **{"head.weight": torch.ones(3)})
    with pytest.raises(CheckpointMismatchError, match="head.weight") as ei:
        convert_checkpoint(bad, pm, str(tmp_path / "m"))
    assert ei.value.extra == ["head.weight"]
    convert_checkpoint(bad, pm, str(tmp_path / "m"), allow_extra=True)  # extra keys allowed on request
    bad = dict(sd, **{"lin.weight": torch.zeros(16, 9)})
    with pytest.raises(CheckpointMismatchError, match=r"lin.weight \(16, 9\) \(network: \(16, 8\)\)") as ei:
        convert_checkpoint(bad, pm, str(tmp_path / "m"))
    assert list(ei.value.mismatched) == ["lin.weight"]
    torch.save({"model": sd, "state_dict": sd}, tmp_path / "two.pt")
    with pytest.raises(StateDictFileError, match="ambiguous"):
        convert_checkpoint(str(tmp_path / "two.pt"), pm, str(tmp_path / "m2"))
    torch.save({"module." + k: v for k, v in sd.items()}, tmp_path / "dp.pt")  # DataParallel's prefix
    assert os.path.exists(convert_checkpoint(str(tmp_path / "dp.pt"), pm, str(tmp_path / "dp")) + ".index")
    with pytest.raises(StateDictFileError, match="cannot read the config"):
        convert_checkpoint(sd, param_map, str(tmp_path / "m3"), config=str(tmp_path / "absent.config"))
    with pytest.raises(StateDictFileError, match="no such file"):
        convert_checkpoint(str(tmp_path / "missing.pt"), pm, str(tmp_path / "m2"))
    assert not os.path.exists(tmp_path / "m2.index")


def test_convert_checkpoint_tied_weights_are_not_extra(tmp_path):
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 4)
            self.b = nn.Linear(4, 4)
            self.b.weight = self.a.weight

        def forward(self, x):
            return self.b(self.a(x))

    m = Tied()
    with returnn_capture(self_check=False) as net:
        m(torch.randn(2, 4))
    cfg = net.save_config(str(tmp_path / "c" / "returnn.config"))
    ckpt = convert_checkpoint(m.state_dict(), net.param_map, str(tmp_path / "model"), config=cfg)
    fresh = ConfigNetwork(cfg, ckpt)
    try:
        x = torch.randn(3, 4)
        np.testing.assert_allclose(fresh.run(x), m(x).detach().numpy(), atol=1e-5)
    finally:
        fresh.close()


# --------------------------------------------------------------------------------------- command line
MODEL_FILE = '''
import torch
import torch.nn as nn


class M(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 6)
        self.ln = nn.LayerNorm(6)

    def forward(self, x):
        return {body}


def build():
    return M()


def not_a_module():
    return 42
'''


def _model_file(tmp_path, body="self.ln(self.lin(x))", name="model.py"):
    path = tmp_path / name
    path.write_text(MODEL_FILE.format(body=body))
    return str(path)


def test_version_and_help(capsys):
    assert main(["--version"]) == 0
    assert torchdispatch_returnn.__version__ in capsys.readouterr().out
    for cmd in ([], ["convert"], ["convert-checkpoint"], ["demo"], ["support"]):
        assert main(cmd + ["--help"]) == 0
        text = capsys.readouterr().out
        assert text.startswith("usage:") and "| torch callable |" not in text, cmd
    assert main([]) == 3
    assert "COMMAND" in capsys.readouterr().err


def test_support_table_to_stdout_and_file(tmp_path, capsys):
    assert main(["support"]) == 0
    assert "| torch callable |" in capsys.readouterr().out
    for args in (["--out", str(tmp_path / "a.md")], [f"--out={tmp_path / 'b.md'}"]):
        assert main(["support"] + args) == 0
    capsys.readouterr()
    assert (tmp_path / "a.md").read_text() == (tmp_path / "b.md").read_text()
    assert "| torch callable |" in (tmp_path / "b.md").read_text()


@pytest.mark.parametrize("args, message", [
    (["convert", "{file}:nope", "--shape", "2,5,8"], "no attribute 'nope'"),
    (["convert", "{file}", "--shape", "2,5,8"], "FILE.py:FACTORY"),
    (["convert", "{dir}/absent.py:build", "--shape", "2,5,8"], "no such file"),
    (["convert", "no_such_pkg_xyz.mod:build", "--shape", "2,5,8"], "cannot import no_such_pkg_xyz.mod"),
    (["convert", "{file}:not_a_module", "--shape", "2,5,8"], "not a torch.nn.Module"),
    (["convert", "{file}:build"], "--shape"),
    (["convert", "{file}:build", "--shape", "2,x,8"], "bad --shape"),
    (["convert", "{file}:build", "--shape", "2,5,8", "--dynamic", "3=time"], "out of range"),
    (["convert", "{file}:build", "--shape", "2,5,8", "--dynamic", "time"], "AXIS=NAME"),
    (["convert", "{file}:build", "--shape", "2,5,8", "--dynamic", "1=a", "--dynamic", "-"], "at most one"),
    (["convert", "{file}:build", "--shape", "2,5,8", "--shape", "2"], "does not take them"),
    (["convert", "{file}:build", "--shape", "2,5,9"], "check --shape"),
    (["convert", "{file}:build", "--shape", "2,5,8", "--state-dict", "{dir}/absent.pt"], "no such file"),
    (["convert", "{file}:build", "--shape", "2,5,8", "--bogus"], "unrecognized arguments: --bogus"),
    (["frobnicate"], "invalid choice"),
    (["convert-checkpoint", "x.pt"], "--param-map"),
])
def test_bad_arguments_exit_3_with_one_line(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    file = _model_file(tmp_path)
    args = [a.format(file=file, dir=tmp_path) for a in args]
    assert main(args) == 3
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert "Traceback" not in err


def test_convert_writes_the_files_and_loads(tmp_path, capsys):
    file = _model_file(tmp_path)
    torch.manual_seed(7)
    weights = tmp_path / "w.pt"
    torch.save({"model": runpy.run_path(file)["M"]().state_dict()}, weights)
    out = tmp_path / "out"
    rc = main(["convert", f"{file}:build", "--shape", "2,5,8", "--dynamic", "1=time", "--state-dict", str(weights),
               "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "parity: OK" in text and "ops" in text and "layers" in text and str(out / "returnn.config") in text
    for f in ("returnn.config", "model.index", "param_map.json"):
        assert (out / f).exists(), f
    if hasattr(ParityReport, "to_html"):
        assert "<html" in (out / "parity.html").read_text().lower()
    assert sorted(json.loads((out / "param_map.json").read_text())) == ["lin.bias", "lin.weight", "ln.bias",
                                                                        "ln.weight"]
    sd = torch.load(weights, weights_only=True)["model"]
    fresh = ConfigNetwork(str(out / "returnn.config"), str(out / "model"))
    try:
        x = torch.randn(3, 9, 8)
        ref = nn.functional.layer_norm(x @ sd["lin.weight"].T + sd["lin.bias"], (6,), sd["ln.weight"], sd["ln.bias"])
        np.testing.assert_allclose(fresh.run(x), ref.numpy(), atol=1e-5)  # the --state-dict weights, time dynamic
    finally:
        fresh.close()
    # convert-checkpoint: other weights for the same network
    torch.save({"lin.weight": torch.ones(6, 8), "lin.bias": torch.zeros(6), "ln.weight": torch.ones(6),
                "ln.bias": torch.zeros(6)}, tmp_path / "w2.pt")
    rc = main(["convert-checkpoint", str(tmp_path / "w2.pt"), "--param-map", str(out / "param_map.json"),
               "--out", str(tmp_path / "ck" / "model")])
    assert rc == 0 and (tmp_path / "ck" / "model.index").exists()
    torch.save({"lin.weight": torch.ones(6, 8)}, tmp_path / "w3.pt")
    rc = main(["convert-checkpoint", str(tmp_path / "w3.pt"), "--param-map", str(out / "param_map.json"),
               "--out", str(tmp_path / "ck3" / "model")])
    err = capsys.readouterr().err
    assert rc == 3 and "missing key(s): lin.bias, ln.bias, ln.weight" in err


def test_unsupported_ops_exit_2_all_listed(tmp_path, capsys):
    candidates = {"airy_ai": (torch.special.airy_ai, "torch.special.airy_ai(y)"),
                  "histc": (torch.histc, "torch.histc(y).sum()"),
                  "matrix_rank": (torch.linalg.matrix_rank, "torch.linalg.matrix_rank(y).sum()"),
                  "lstsq": (torch.linalg.lstsq, "torch.linalg.lstsq(y, y).solution")}
    two = [n for n, (f, _) in candidates.items() if lookup(f) is None][:2]
    assert len(two) == 2, "pick two torch callables that still have no handler"
    call = {n: candidates[n][1] for n in two}
    file = _model_file(tmp_path, body=f"(lambda y: {call[two[0]]} + {call[two[1]]})(self.lin(x))")
    assert main(["convert", f"{file}:build", "--shape", "2,5,8", "--no-strict", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert all(n in err for n in two), err
    assert main(["convert", f"{file}:build", "--shape", "2,5,8", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert two[0] in err and two[1] not in err  # strict: the first one
    assert not (tmp_path / "o" / "returnn.config").exists()


def test_parity_failure_exit_1(tmp_path, capsys):
    def bad(ctx, x):  # a deliberately wrong handler: cos instead of sinc
        r = ctx.ref(x)
        return ctx.eval("tf.cos(source(0))", [r], r.dims)

    file = _model_file(tmp_path, body="torch.sinc(self.lin(x))")
    register(torch.sinc, bad, override=True)
    try:
        rc = main(["convert", f"{file}:build", "--shape", "2,5,8", "--out", str(tmp_path / "o")])
    finally:
        unregister(torch.sinc)
    cap = capsys.readouterr()
    assert rc == 1
    assert "parity: FAILED" in cap.out and "torch.sinc" in cap.err
    assert (tmp_path / "o" / "returnn.config").exists()  # the files are there to look at


def test_subnetwork_passes_through_or_says_it_cannot(tmp_path, capsys, monkeypatch):
    file = _model_file(tmp_path)
    args = ["convert", f"{file}:build", "--shape", "2,5,8", "--subnetwork", "enc", "--out", str(tmp_path / "o")]
    seen = {}
    original = Capture.save_config

    def with_subnetwork(self, path, subnetwork=None):
        seen["subnetwork"] = subnetwork
        return original(self, path)

    def without_subnetwork(self, path):
        return original(self, path)

    monkeypatch.setattr(Capture, "save_config", without_subnetwork)
    assert main(args) == 3
    assert "--subnetwork" in capsys.readouterr().err
    monkeypatch.setattr(Capture, "save_config", with_subnetwork)
    assert main(args) == 0
    assert seen == {"subnetwork": "enc"}
    monkeypatch.setattr(Capture, "save_config", original)
    if "subnetwork" in inspect.signature(original).parameters:  # the real subnetwork export
        assert main(args) == 0
        assert "'prefix': 'enc/'" in capsys.readouterr().out
        cfg = (tmp_path / "o" / "returnn.config").read_text()
        assert "'enc': {'class': 'subnetwork'" in cfg
        sd = {"lin.weight": torch.ones(6, 9), "lin.bias": torch.zeros(6), "ln.weight": torch.ones(6),
              "ln.bias": torch.zeros(6)}
        with pytest.raises(CheckpointMismatchError, match=r"lin.weight \(6, 9\)"):  # shapes from inside the subnetwork
            convert_checkpoint(sd, str(tmp_path / "o" / "param_map.json"), str(tmp_path / "ck"))


def test_subprocess_python_m_convert(tmp_path):
    file = _model_file(tmp_path)
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, "-m", "torchdispatch_returnn", "convert", f"{file}:build", "--shape", "2,5,8",
                        "--dynamic", "1=time", "--out", str(out)], capture_output=True, text=True, env=env,
                       cwd=str(tmp_path), timeout=600)
    assert p.returncode == 0, p.stderr
    assert "parity: OK" in p.stdout
    assert (out / "returnn.config").exists() and (out / "model.index").exists() and (out / "param_map.json").exists()
    p = subprocess.run([sys.executable, "-m", "torchdispatch_returnn", "convert", f"{file}:build", "--shape", "2,x"],
                       capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=600)
    assert p.returncode == 3 and "bad --shape" in p.stderr and "Traceback" not in p.stderr
