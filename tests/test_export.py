"""Exported artifacts, checked with plain RETURNN: config exec, fresh network, checkpoint, other lengths."""

import io
import os
import subprocess
import sys

import numpy as np
import torch
import torch.nn as nn

from torchdispatch_returnn import returnn_capture
from torchdispatch_returnn.demo import Encoder


def _fresh_returnn_network(config_code: str, checkpoint: str):
    import tensorflow as tf
    from returnn.config import Config
    from returnn.tf.network import TFNetwork

    cfg = Config()
    cfg.load_file(io.StringIO(config_code))
    graph = tf.Graph()
    sess = tf.compat.v1.Session(graph=graph)
    with graph.as_default():
        net = TFNetwork(config=cfg, train_flag=False)
        net.construct_from_dict(cfg.typed_value("network"))
        net.load_params_from_file(checkpoint, sess)
    return net, sess


def test_config_is_plain_python_with_returnn_and_numpy_only(tmp_path):
    torch.manual_seed(0)
    model = Encoder(num_blocks=1).eval()
    with returnn_capture(dynamic_shapes=({1: "time"},)) as net:
        model(torch.randn(2, 20, 40))
    path = net.save_config(str(tmp_path / "enc.config"))
    code = open(path).read()
    assert code.startswith("#!rnn.py")
    assert "import torch" not in code and "from torch" not in code
    # exec in a clean interpreter that cannot import torch
    script = ("import sys; sys.modules['torch'] = None\n"
              f"ns = {{}}; exec(open({path!r}).read(), ns)\n"
              "print(sorted(k for k in ('network', 'extern_data', 'behavior_version', 'use_tensorflow') if k in ns))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip() == "['behavior_version', 'extern_data', 'network', 'use_tensorflow']", out.stderr


def test_config_turns_on_onednn_unless_the_environment_sets_it(tmp_path):
    """TF reads TF_ENABLE_ONEDNN_OPTS at import, which `python -m returnn` does after the config."""
    with returnn_capture() as net:
        nn.Linear(3, 2)(torch.randn(2, 3))
    path = net.save_config(str(tmp_path / "lin.config"))
    script = (f"exec(open({path!r}).read(), {{}})\n"
              "import tensorflow\nfrom tensorflow.python.util import _pywrap_util_port as p\nprint(p.IsMklEnabled())")
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    results = []
    for setting in (None, "0"):
        run_env = dict(env, **({"TF_ENABLE_ONEDNN_OPTS": setting} if setting else {}))
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=run_env)
        results.append(out.stdout.strip().splitlines()[-1] if out.stdout.strip() else out.stderr[-500:])
    assert results == ["True", "False"]


def test_fresh_network_from_config_and_checkpoint_any_length(tmp_path):
    torch.manual_seed(0)
    model = Encoder(num_blocks=2).eval()
    with returnn_capture(dynamic_shapes=({1: "time"},)) as net:
        model(torch.randn(3, 30, 40))
    ckpt = net.save_checkpoint(str(tmp_path / "model"))
    fresh, sess = _fresh_returnn_network(net.config_code(), ckpt)
    data = fresh.extern_data.get_default_input_data()
    out = fresh.get_layer("output").output
    for t in (30, 11, 64):
        x = torch.randn(3, t, 40)
        got = sess.run(out.placeholder, {data.placeholder: x.numpy(), data.get_sequence_lengths(): [t] * 3})
        want = model(x).detach().numpy()
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert [d.description for d in out.dims][0] == "batch" or out.dims[0].is_batch_dim()


def test_output_layer_in_torch_axis_order(tmp_path):
    class M(nn.Module):
        def forward(self, x):  # (B, T, F) -> (F, B, T)
            return (x * 2).permute(2, 0, 1)

    with returnn_capture(dynamic_shapes=({1: "time"},)) as net:
        M()(torch.randn(2, 5, 3))
    ckpt = net.save_checkpoint(str(tmp_path / "m"))
    fresh, sess = _fresh_returnn_network(net.config_code(), ckpt)
    data = fresh.extern_data.get_default_input_data()
    x = np.random.randn(2, 9, 3).astype("float32")
    got = sess.run(fresh.get_layer("output").output.placeholder, {data.placeholder: x,
                                                                  data.get_sequence_lengths(): [9, 9]})
    np.testing.assert_allclose(got, (x * 2).transpose(2, 0, 1), rtol=1e-6)
    assert net.extern_data["data"]["dim_tags"][0].is_batch_dim()


def test_param_map_and_net_dict_members():
    model = nn.Sequential(nn.Conv1d(3, 4, 3), nn.ReLU())
    with returnn_capture(dynamic_shapes=({2: "time"},)) as net:
        model(torch.randn(2, 3, 9))
    # the conv layer (named by the module) holds the weight as its W, torch's (out, in, k) stored as (k, in, out)
    assert net.param_map["0.weight"]["tf_vars"] == ["0/W"]
    assert net.param_map["0.weight"]["perm"] == [2, 1, 0]
    assert net.param_map["0.weight"]["transform"].startswith("transpose [2, 1, 0]")
    assert net.param_map["0.bias"] == {"tf_vars": ["0/bias"], "layer": "0", "transform": "none (same layout as torch)"}
    assert net.net_dict["0"]["class"] == "conv"
    assert net.session is not None and net.network is not None


def test_package_import_is_quiet_and_turns_on_onednn():
    """TF's C++ notice that oneDNN is on ignores TF_CPP_MIN_LOG_LEVEL: importing the package prints nothing."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_ENABLE_ONEDNN_OPTS", "TF_CPP_MIN_LOG_LEVEL")}
    script = ("import torchdispatch_returnn\nfrom tensorflow.python.util import _pywrap_util_port as p\n"
              "print(p.IsMklEnabled())")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert (out.stdout.strip(), out.stderr.strip()) == ("True", "")


def test_capture_leaves_tf_tensor_equality_as_it_was_and_checks_without_grappler():
    """Building turns TF's tensor equality off (identity either way in a graph, but quadratic in the number of
    variables with it on) and restores it; the capture's own session runs the checks without grappler."""
    import tensorflow as tf

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 4)).eval()
    x = torch.randn(2, 5, 8)
    for before in (True, False):
        (tf.compat.v1.enable_tensor_equality if before else tf.compat.v1.disable_tensor_equality)()
        try:
            with returnn_capture(dynamic_shapes=({1: "time"},)) as net:
                model(x)
            assert tf.Tensor._USE_EQUALITY is before
        finally:
            tf.compat.v1.enable_tensor_equality()
        assert net.parity.ok
        np.testing.assert_allclose(net.run(x), model(x).detach().numpy(), rtol=1e-5, atol=1e-6)
    assert net.session._config.graph_options.rewrite_options.disable_meta_optimizer
