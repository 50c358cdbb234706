"""The written configs through RETURNN's own entry point (``python -m returnn``): the network as a
subnetwork of the user's config, its weights loaded with ``preload_from_files`` and a prefix, a
forward pass into an HDF file, per sequence against torch."""

import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from torchdispatch_returnn import returnn_capture
from torchdispatch_returnn._backend import BEHAVIOR_VERSION, tf

F_IN = 5


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(F_IN, 6, 3, padding=1)
        self.lstm = nn.LSTM(6, 4, batch_first=True, bidirectional=True)
        self.out = nn.Linear(8, 3)

    def forward(self, x):
        y = torch.relu(self.conv(x.transpose(1, 2))).transpose(1, 2)
        return self.out(self.lstm(y)[0])


def _forward_config(code: str, ckpt: str, seqs: list, out_file: str, extra: str) -> str:
    data = ", ".join(f"{{'data': numpy.array({s.tolist()!r}, dtype='float32')}}" for s in seqs)
    return code + f"""
task = "forward"
network.pop("loss", None)
eval = {{"class": "StaticDataset", "data": [{data}], "output_dim": {{"data": [{F_IN}, 2]}}}}
{extra}
allow_random_model_init = True
forward_batch_size = 1000
output_file = {out_file!r}
"""


def _run_returnn(config: str, cwd: str) -> None:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", DISABLE_CUDA="1")
    proc = subprocess.run([sys.executable, "-m", "returnn", config], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def _hdf_sequences(path: str) -> dict:
    with h5py.File(path, "r") as f:
        values, lens, tags = f["inputs"][...], f["seqLengths"][...], [t.decode() if isinstance(t, bytes) else t
                                                                       for t in f["seqTags"][...]]
    lens = lens[:, 0] if lens.ndim == 2 else lens
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
    return {tag: values[s:s + n] for tag, s, n in zip(tags, starts, lens)}


def _forward_equals_torch(tmp_path, model, code: str, ckpt: str, seqs: list, extra: str, rtol: float = 1e-5,
                          atol: float = 1e-5) -> None:
    """``python -m returnn`` with ``task = "forward"`` on ``seqs`` (weights by ``extra``: ``load`` or
    ``preload_from_files``), each sequence's output equal to torch's on it alone."""
    cfg = tmp_path / "fwd.config"
    cfg.write_text(_forward_config(code, ckpt, [s.numpy() for s in seqs], str(tmp_path / "out.hdf"), extra))
    _run_returnn(str(cfg), str(tmp_path))
    got = _hdf_sequences(str(tmp_path / "out.hdf"))
    assert len(got) == len(seqs)
    for i, s in enumerate(seqs):
        with torch.no_grad():
            want = model(s[None])[0].numpy()
        np.testing.assert_allclose(got[f"seq-{i}"], want, rtol=rtol, atol=atol)


def preload(ckpt: str, prefix: str = "enc/") -> str:
    """The config line loading the capture's checkpoint into subnetwork ``prefix``."""
    return f"preload_from_files = {{'torch': {{'filename': {ckpt!r}, 'prefix': {prefix!r}}}}}"


def _train_config(code: str, ckpt: str, seqs: list, model: str) -> str:
    """One epoch at learning rate 0 that preloads the torch weights and saves ``model.001``; a
    user's loss layer after the subnetwork."""
    data = ", ".join(f"{{'data': numpy.array({s.tolist()!r}, dtype='float32')}}" for s in seqs)
    return code + f"""
network["loss"] = {{"class": "reduce", "from": "enc", "mode": "sum", "axes": "except_batch", "loss": "as_is"}}
task = "train"
train = {{"class": "StaticDataset", "data": [{data}], "output_dim": {{"data": [{F_IN}, 2]}}}}
num_epochs = 1
learning_rate = 0.0
optimizer = {{"class": "adam"}}
batch_size = 1000
model = {model!r}
preload_from_files = {{"torch": {{"filename": {ckpt!r}, "prefix": "enc/", "init_for_train": True}}}}
"""


@pytest.mark.slow
def test_subnetwork_trained_at_learning_rate_0_then_forward_equals_torch(tmp_path):
    """The RETURNN user's round trip: train one epoch (lr 0) from the preloaded torch weights, then
    ``task = "forward"`` with ``load`` of the saved epoch."""
    torch.manual_seed(1)
    model = Encoder().eval()
    with torch.no_grad(), returnn_capture(dynamic_shapes=({1: "time"},)) as net:
        model(torch.randn(2, 9, F_IN))
    code = net.config_code(subnetwork="enc")
    ckpt = net.save_checkpoint(str(tmp_path / "torch_model"))
    seqs = [torch.randn(n, F_IN) for n in (6, 11, 4)]
    train_cfg = tmp_path / "train.config"
    train_cfg.write_text(_train_config(code, ckpt, [s.numpy() for s in seqs], str(tmp_path / "model")))
    _run_returnn(str(train_cfg), str(tmp_path))
    assert (tmp_path / "model.001.index").exists()
    _forward_equals_torch(tmp_path, model, code, ckpt, seqs, f"load = {str(tmp_path / 'model.001')!r}")


@pytest.mark.slow
def test_subnetwork_config_with_preloaded_checkpoint_runs_in_returnn(tmp_path):
    torch.manual_seed(0)
    model = Encoder().eval()
    with torch.no_grad(), returnn_capture(dynamic_shapes=({1: "time"},)) as net:
        model(torch.randn(2, 9, F_IN))
    code = net.config_code(subnetwork="enc")
    assert "'enc': {'class': 'subnetwork', 'from': 'data', 'subnetwork': {" in code
    ckpt = net.save_checkpoint(str(tmp_path / "torch_model"))
    _forward_equals_torch(tmp_path, model, code, ckpt, [torch.randn(n, F_IN) for n in (7, 12, 3)], preload(ckpt))


def test_subnetwork_names_its_variables_relative_to_it(tmp_path):
    torch.manual_seed(0)
    with torch.no_grad(), returnn_capture(dynamic_shapes=({1: "time"},)) as net:
        Encoder().eval()(torch.randn(2, 9, F_IN))
    code = net.config_code(subnetwork="enc")
    assert "'name_scope': '/" not in code  # relative: inside the subnetwork, under enc/
    assert "'output': {'class': 'copy', 'from': 'enc'}" in code
    with pytest.raises(ValueError, match="subnetwork must be a layer name"):
        net.config_code(subnetwork="a/b")


MODEL_FILE = """
import torch
from torch import nn


class Prenet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(5, 6, 3, stride=2, padding=1)
        self.lin = nn.Linear(6, 4)

    def forward(self, x):
        return self.lin(torch.tanh(self.conv(x.transpose(1, 2)).transpose(1, 2)))


def make():
    torch.manual_seed(3)
    return Prenet()
"""


def _embedding_config(tmp_path, seqs: list, out_file: str) -> str:
    data = ", ".join(f"{{'data': numpy.array({s.tolist()!r}, dtype='float32')}}" for s in seqs)
    return f"""#!rnn.py
import sys
import numpy
from returnn.tensor import Dim, batch_dim
sys.path.insert(0, {str(tmp_path)!r})
import prenet_model
from torchdispatch_returnn import as_returnn_layer_dict

use_tensorflow = True
behavior_version = {BEHAVIOR_VERSION}
time_dim = Dim(None, name="time")
in_dim = Dim({F_IN}, name="in")
extern_data = {{"data": {{"dim_tags": [batch_dim, time_dim, in_dim]}}}}
network = {{
    "prenet": as_returnn_layer_dict(prenet_model.make(), extern_data["data"]),
    "output": {{"class": "copy", "from": "prenet"}},
}}
task = "forward"
eval = {{"class": "StaticDataset", "data": [{data}], "output_dim": {{"data": [{F_IN}, 2]}}}}
allow_random_model_init = True
forward_batch_size = 1000
output_file = {out_file!r}
"""


@pytest.mark.slow
def test_torch_model_embedded_in_a_config_runs_in_returnn(tmp_path):
    (tmp_path / "prenet_model.py").write_text(MODEL_FILE)
    seqs = [torch.randn(n, F_IN) for n in (9, 4, 13)]
    cfg = tmp_path / "embed.config"
    cfg.write_text(_embedding_config(tmp_path, [s.numpy() for s in seqs], str(tmp_path / "out.hdf")))
    _run_returnn(str(cfg), str(tmp_path))
    got = _hdf_sequences(str(tmp_path / "out.hdf"))
    sys.path.insert(0, str(tmp_path))
    try:
        import prenet_model
        model = prenet_model.make().eval()
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("prenet_model", None)
    for i, s in enumerate(seqs):
        with torch.no_grad():
            want = model(s[None])[0].numpy()
        np.testing.assert_allclose(got[f"seq-{i}"], want, rtol=1e-5, atol=1e-5)


def test_as_returnn_layer_dict_uses_the_configs_dims_and_carries_the_weights():
    from returnn.tensor import Dim, batch_dim

    from torchdispatch_returnn import as_returnn_layer_dict

    time_dim, in_dim = Dim(None, name="time"), Dim(F_IN, name="in")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(F_IN, 4), nn.ReLU())
    d = as_returnn_layer_dict(model, {"dim_tags": [batch_dim, time_dim, in_dim]}, source="feats")
    assert d["class"] == "subnetwork" and d["from"] == "feats"
    lin = d["subnetwork"]["0"]
    assert lin["class"] == "linear" and lin["in_dim"] is in_dim  # the config's own dim
    assert model.training  # the module's mode is left as it was
    # built in a network of the config's dims: the layer's W and b are created with the torch values
    from returnn.config import Config
    from returnn.tf.network import TFNetwork

    graph = tf.Graph()
    with graph.as_default():
        net = TFNetwork(config=Config({"extern_data": {"feats": {"dim_tags": [batch_dim, time_dim, in_dim]}}}))
        net.construct_from_dict({"sub": {**d, "from": "data:feats"}, "output": {"class": "copy", "from": "sub"}})
        with tf.compat.v1.Session(graph=graph) as session:
            net.initialize_params(session)
            values = net.get_param_values_dict(session)["sub/0"]
            x = np.random.default_rng(0).standard_normal((2, 5, F_IN)).astype("float32")
            got = session.run(net.get_default_output_layer().output.copy_as_batch_major().placeholder, feed_dict={
                net.extern_data.data["feats"].placeholder: x,
                net.extern_data.data["feats"].get_sequence_lengths(): [5, 5]})
    np.testing.assert_array_equal(values["W"], model[0].weight.detach().numpy().T)  # (RETURNN's (in, out) layout)
    np.testing.assert_array_equal(values["b"], model[0].bias.detach().numpy())
    with torch.no_grad():
        np.testing.assert_allclose(got, model(torch.from_numpy(x)).numpy(), rtol=1e-5, atol=1e-6)


def test_as_returnn_layer_dict_refuses_a_config_with_another_behavior_version():
    from returnn.tensor import Dim, batch_dim

    from torchdispatch_returnn import InputSpecError

    config_globals = {"behavior_version": 12, "as_returnn_layer_dict": __import__(
        "torchdispatch_returnn").as_returnn_layer_dict, "nn": nn, "Dim": Dim, "batch_dim": batch_dim}
    with pytest.raises(InputSpecError, match=f"needs behavior_version = {BEHAVIOR_VERSION}"):
        exec("as_returnn_layer_dict(nn.Linear(5, 2), {'dim_tags': [batch_dim, Dim(None, name='t'), Dim(5, name='f')]})",
             config_globals)
