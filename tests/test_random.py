"""Random ops: the network samples its own values; the parity run feeds torch's values into the random
layers so every op after them is compared; the written config samples too.

``assert_parity`` cannot compare random outputs, so these tests use the public API directly: the
handlers' shapes (dynamic dims included) and dtypes, rough distribution statistics of the live
network's samples, parity with feeding (also dropout and rrelu in training mode, with gradients),
the report text, and the rebuilt config.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from parity_helpers import COVERED, GRAD_COVERED

from torchdispatch_returnn import returnn_capture
from torchdispatch_returnn.export import ConfigNetwork

BTF = ({1: "time"},)


class Fn(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def capture(fn, x, dyn=BTF, **options):
    """Capture ``fn(x)``; every random op's own record must be fed, every other op compared and ok."""
    torch.manual_seed(0)
    with returnn_capture(dynamic_shapes=dyn, progress=False, **options) as net:
        fn(x)
    assert net.parity.ok, str(net.parity)
    assert net.parity.feeds, "no random layer was fed"
    assert all(r.ok is True or r.fed for r in net.parity), net.parity.table()
    COVERED.update(net.ops_seen)
    if any(g.ok for g in net.parity.grads):
        GRAD_COVERED.update(net.ops_seen)
    return net


def samples(net, x, n=4):
    return [np.asarray(net.run(x)) for _ in range(n)]


X = torch.randn(2, 9, 300)
X2 = torch.randn(2, 5, 300)  # another length along "time"


def _unit(v):
    assert 0 <= v.min() and v.max() < 1 and abs(v.mean() - 0.5) < 0.02


def _std_normal(v):
    assert abs(v.mean()) < 0.03 and abs(v.std() - 1) < 0.03


def _ints(lo, hi):
    def check(v):
        assert np.all(v == np.round(v)) and v.min() == lo and v.max() == hi - 1
        assert abs(v.mean() - (lo + hi - 1) / 2) < 0.05 * (hi - lo)
    return check


def _mean_std(mean, std, tol=0.05):
    def check(v):
        assert abs(v.mean() - mean) < tol * max(1, abs(mean), std) and abs(v.std() - std) < tol * std
    return check


def _bernoulli(p):
    def check(v):
        assert set(np.unique(v)) <= {0, 1} and abs(v.mean() - p) < 0.02
    return check


def _geometric(v):
    assert v.min() >= 1 and np.all(v == np.round(v)) and abs(v.mean() - 4) < 0.2  # p = 0.25


def _exponential(v):
    assert v.min() >= 0 and abs(v.mean() - 0.5) < 0.02  # rate 2


def _cauchy(v):
    assert abs(np.median(v)) < 0.05 and abs(np.median(np.abs(v)) - 1) < 0.05


def _log_normal(v):
    assert v.min() > 0 and abs(np.log(v).mean()) < 0.02 and abs(np.log(v).std() - 0.5) < 0.02


# name, fn(x), dtype of the result, check of the samples (stacked over runs)
FACTORIES = [
    ("randn_shape", lambda x: torch.randn(x.shape), torch.float32, _std_normal),
    ("randn_sizes_double", lambda x: torch.randn(x.shape[0], x.shape[1], 300, dtype=torch.float64), torch.float64,
     _std_normal),
    ("rand_dyn_sizes", lambda x: torch.rand(x.size(0), x.size(1), 300), torch.float32, _unit),
    ("randint", lambda x: torch.randint(3, 9, x.shape), torch.int64, _ints(3, 9)),
    ("randint_high_kw", lambda x: torch.randint(5, size=(x.shape[0], x.shape[1], 300), dtype=torch.int32),
     torch.int32, _ints(0, 5)),
    ("randn_like", lambda x: torch.randn_like(x), torch.float32, _std_normal),
    ("rand_like", lambda x: torch.rand_like(x), torch.float32, _unit),
    ("randint_like", lambda x: torch.randint_like(x, -2, 4), torch.float32, _ints(-2, 4)),
    ("normal_tensor_mean", lambda x: torch.normal(x * 0 + 3, 2.0), torch.float32, _mean_std(3, 2)),
    ("normal_tensor_std", lambda x: torch.normal(-1.0, torch.ones_like(x) * 0.5), torch.float32, _mean_std(-1, 0.5)),
    ("normal_tensors", lambda x: torch.normal(torch.zeros_like(x), torch.full_like(x, 4.0)), torch.float32,
     _mean_std(0, 4)),
    ("normal_size", lambda x: torch.normal(1.0, 2.0, size=(x.shape[0], x.shape[1], 300)), torch.float32,
     _mean_std(1, 2)),
    ("bernoulli_tensor", lambda x: torch.bernoulli(torch.full_like(x, 0.3)), torch.float32, _bernoulli(0.3)),
    ("bernoulli_p", lambda x: torch.bernoulli(x, 0.7), torch.float32, _bernoulli(0.7)),
    ("bernoulli_method", lambda x: (x * 0 + 0.6).bernoulli(), torch.float32, _bernoulli(0.6)),
    ("poisson", lambda x: torch.poisson(torch.full_like(x, 4.0)), torch.float32, _mean_std(4, 2)),
    ("uniform_", lambda x: x.clone().uniform_(-2, 3), torch.float32, _mean_std(0.5, 5 / 12 ** 0.5)),
    ("normal_", lambda x: x.clone().normal_(1, 3), torch.float32, _mean_std(1, 3)),
    ("bernoulli_", lambda x: x.clone().bernoulli_(0.2), torch.float32, _bernoulli(0.2)),
    ("bernoulli_tensor_p", lambda x: x.clone().bernoulli_(torch.full_like(x[:, :1], 0.8)), torch.float32,
     _bernoulli(0.8)),
    ("exponential_", lambda x: x.clone().exponential_(2.0), torch.float32, _exponential),
    ("cauchy_", lambda x: x.clone().cauchy_(), torch.float32, _cauchy),
    ("log_normal_", lambda x: x.clone().log_normal_(0.0, 0.5), torch.float32, _log_normal),
    ("geometric_", lambda x: x.clone().geometric_(0.25), torch.float32, _geometric),
    ("random_range", lambda x: x.clone().random_(2, 12), torch.float32, _ints(2, 12)),
    ("random_to_long", lambda x: x.long().random_(7), torch.int64, _ints(0, 7)),
]


@pytest.mark.parametrize("name,fn,dtype,check", FACTORIES, ids=[c[0] for c in FACTORIES])
def test_sampler(name, fn, dtype, check):
    net = capture(Fn(fn), X)
    assert [r for r in net.parity if r.fed], "the random op's record is not marked fed"
    want = fn(X2)
    got = samples(net, X2, n=12)  # (36000 values: the statistics checks sit at > 5 standard errors)
    assert got[0].shape == tuple(want.shape) and got[0].dtype == want.numpy().dtype
    assert not np.array_equal(got[0], got[1]), "the network must sample new values at every run"
    check(np.stack(got).astype(np.float64))


def test_random_ops_keep_the_gradient_of_the_ops_around_them():
    lin = nn.Linear(300, 4)
    net = capture(Fn(lambda x: lin(x) * torch.rand_like(lin(x)) + torch.normal(lin(x), 1.0)), X, check_grads=True)
    assert any(g.ok for g in net.parity.grads) and all(g.ok is not False for g in net.parity.grads)


def test_multinomial():
    def fn(x):
        probs = torch.softmax(x[:, 0, :10], -1)  # (B, 10)
        return torch.multinomial(probs, 4), probs.multinomial(30, replacement=True)

    net = capture(Fn(fn), X)
    for _ in range(3):
        a, b = net.run(X2)
        assert a.shape == (2, 4) and a.dtype == np.int64 and all(len(set(row)) == 4 for row in a)
        assert b.shape == (2, 30) and 0 <= b.min() and b.max() < 10
    with pytest.raises(NotImplementedError, match="static category axis"):
        with returnn_capture(dynamic_shapes=BTF, progress=False):
            Fn(lambda x: torch.multinomial(x[:, :, 0].abs(), 2))(X)


def test_randint_up_to_a_dynamic_size():
    net = capture(Fn(lambda x: torch.randint(x.shape[1] - 3, x.shape[1], (x.shape[0], 400))), X)
    for t in (5, 12):
        got = np.stack(samples(net, torch.randn(2, t, 300), 2))
        assert got.shape == (2, 2, 400) and got.min() == t - 3 and got.max() == t - 1


def test_self_check_at_another_length_feeds_torchs_samples_there():
    class Broken(nn.Module):  # a Python loop over the length: fine at the capture length only
        def forward(self, x):
            noise = torch.randn(x.shape[0], x.shape[1], 1)
            return torch.stack([x[:, i] * noise[:, i] * (i + 1) for i in range(x.shape[1])], 1).sum(1)

    with returnn_capture(dynamic_shapes=BTF, progress=False, check=False) as net:
        Broken()(torch.randn(2, 9, 3))
    assert net.parity.feeds and not net.parity.ok
    bad = next(c for c in net.parity.self_checks if c.ok is False)
    assert "sizes" in bad.what and net.parity.records[0].fed and all(r.ok for r in net.parity.records[1:])


def test_randn_with_dynamic_time_runs_on_padded_batches():
    net = capture(Fn(lambda x: x + torch.randn(x.shape[0], x.shape[1], 1)), X)
    x = torch.randn(3, 8, 300)
    out = net.run(x, seq_lens={"time": np.array([8, 3, 5])})
    noise = out - x.numpy()
    assert out.shape == (3, 8, 300) and np.allclose(noise, noise[..., :1], atol=1e-5)  # one value per frame


# -- parity with feeding ---------------------------------------------------------------------------------
class NoisyLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 5)

    def forward(self, x):
        h = self.lin(x)
        return torch.relu(h + torch.randn_like(h))


def test_noise_is_fed_and_every_op_after_it_compared():
    net = capture(NoisyLinear(), torch.randn(3, 7, 4), check_grads=True)
    ops = [(r.torch_op, r.status) for r in net.parity]
    assert ops == [("torch.nn.functional.linear", "ok"), ("torch.randn_like", "fed"), ("torch.Tensor.add", "ok"),
                   ("torch.relu", "ok")]
    assert [g.ok for g in net.parity.grads if "padded" not in g.name] == [True] * 3
    skipped = [g for g in net.parity.grads if g.ok is None]
    assert skipped and "random ops" in skipped[0].detail
    short, table = str(net.parity), net.parity.table()
    assert "3/3 checked ops agree, 0 unchecked, 1 fed" in short
    assert "random values: torch's fed into 1 layer(s) (randn_like)" in short
    assert "torch.randn_like" in short and "fed: torch's random values fed into the network" in table
    sizes, padded = net.parity.self_checks  # another length: torch's samples there fed too; padded: skipped
    assert sizes.ok is True and sizes.compared == 3
    assert padded.ok is None and "skipped: random ops" in padded.detail
    assert "self-check at padded batch: skipped" in short  # never a silent pass
    page = net.parity.to_html()
    assert "tdr-fed" in page and "1 fed" in page and "random values: torch&#x27;s fed into 1 layer(s)" in page
    assert "randn_like" in page


def test_written_config_samples():
    net = capture(NoisyLinear(), torch.randn(3, 7, 4))
    code = net.config_code()
    assert "tf.random.normal" in code
    x = torch.randn(2, 11, 4)
    with tempfile.TemporaryDirectory(prefix="tdr_") as tmp:
        fresh = ConfigNetwork(net.save_config(os.path.join(tmp, "net.config")),
                              net.save_checkpoint(os.path.join(tmp, "model")))
    try:
        a, b = fresh.run(x), fresh.run(x)
    finally:
        fresh.close()
    assert a.shape == (2, 11, 5) and not np.array_equal(a, b)


class DropNet(nn.Module):
    def __init__(self, drop):
        super().__init__()
        self.lin = nn.Linear(6, 8)
        self.drop = drop

    def forward(self, x):
        return torch.relu(self.drop(self.lin(x)))


DROPS = [
    ("dropout", lambda: nn.Dropout(0.3), (3, 7, 6)),
    ("dropout1d", lambda: nn.Dropout1d(0.4), (3, 7, 6)),
    ("dropout2d", lambda: nn.Dropout2d(0.4), (3, 7, 5, 6)),
    ("dropout3d", lambda: nn.Dropout3d(0.4), (3, 7, 2, 5, 6)),
    ("alpha_dropout", lambda: nn.AlphaDropout(0.2), (3, 7, 6)),
    ("feature_alpha_dropout", lambda: nn.FeatureAlphaDropout(0.2), (3, 7, 5, 6)),
    ("rrelu", lambda: nn.RReLU(0.1, 0.3), (3, 7, 6)),
]


@pytest.mark.parametrize("name,drop,shape", DROPS, ids=[c[0] for c in DROPS])
def test_training_mode_noise_is_fed(name, drop, shape):
    m = DropNet(drop()).train()
    net = capture(m, torch.randn(*shape), ({1: "time"},), train=True, check_grads=True)
    assert [r.status for r in net.parity] == ["ok"] * 3  # the dropout/rrelu result too: its noise is fed
    assert "fed from torch" in net.parity.records[1].note
    assert net.parity.grads and all(g.ok is not False for g in net.parity.grads), str(net.parity)
    assert all(c.ok is None and "training-mode" in c.detail for c in net.parity.self_checks)


def test_dropout_follows_the_train_flag_in_the_config():
    m = DropNet(nn.Dropout(0.5)).train()
    x = torch.randn(4, 9, 6)
    net = capture(m, x, train=True)
    assert "'class': 'dropout'" in net.config_code()
    lin = m.lin(x).detach().numpy()
    live = np.stack([net.run(x) for _ in range(3)])
    pos = np.broadcast_to(lin > 0, live.shape)
    assert abs((live[pos] == 0).mean() - 0.5) < 0.05  # dropped where the linear output was positive
    kept = live[pos & (live != 0)]
    np.testing.assert_allclose(kept, np.broadcast_to(2 * lin, live.shape)[pos & (live != 0)], rtol=1e-5, atol=1e-5)
    with tempfile.TemporaryDirectory(prefix="tdr_") as tmp:
        cfg, ckpt = net.save_config(os.path.join(tmp, "net.config")), net.save_checkpoint(os.path.join(tmp, "model"))
        fresh_eval, fresh_train = ConfigNetwork(cfg, ckpt), ConfigNetwork(cfg, ckpt, train=True)
    try:
        np.testing.assert_allclose(fresh_eval.run(x), np.maximum(lin, 0), rtol=1e-5, atol=1e-6)  # eval: identity
        assert (fresh_train.run(x)[lin > 0] == 0).any()
    finally:
        fresh_eval.close()
        fresh_train.close()


def test_explicit_training_noise_in_an_eval_capture_samples_always():
    net = capture(Fn(lambda x: (F.dropout(x, 0.25, training=True), F.rrelu(x, 0.1, 0.3, training=True),
                                torch.alpha_dropout(x, 0.2, True), torch.feature_dropout(x, 0.5, True))), X)
    drop, rrelu, alpha, feature = net.run(X2)
    x = X2.numpy()
    assert abs((drop == 0).mean() - 0.25) < 0.02
    np.testing.assert_allclose(drop[drop != 0], (x / 0.75)[drop != 0], rtol=1e-5)
    slopes = rrelu[x < 0] / x[x < 0]
    assert np.allclose(rrelu[x >= 0], x[x >= 0]) and 0.1 <= slopes.min() and slopes.max() <= 0.3
    assert abs(slopes.mean() - 0.2) < 0.01
    k = 1.7580993408473766 / ((1.7580993408473766 ** 2 * 0.2 + 1) * 0.8) ** 0.5
    assert abs(np.isclose(alpha, -0.8 * k).mean() - 0.2) < 0.02  # dropped: one constant; kept: a x + alpha a p
    np.testing.assert_allclose(alpha[~np.isclose(alpha, -0.8 * k)], (x * k / 1.7580993408473766 + 0.2 * k)[
        ~np.isclose(alpha, -0.8 * k)], rtol=1e-4, atol=1e-5)
    channel_dropped = (feature == 0).all(-1)  # per (batch, time) "channel"
    assert channel_dropped.any() and not channel_dropped.all()
    assert "'dropout_on_forward': True" in net.config_code()
    noted = [r for r in net.parity if "training=True in a capture with train=False" in r.note]
    assert len(noted) == 4 and "call model.eval()" in noted[0].note  # said loudly: often a forgotten .eval()


def test_dropout_edge_cases():
    x = torch.randn(2, 6, 4)
    with returnn_capture(dynamic_shapes=BTF, progress=False, train=True) as net:
        Fn(lambda t: F.dropout(t, 1.0) + F.dropout(t, 0.0) + torch.dropout(t, 0.5, False))(x)
    assert net.parity.ok and not net.parity.feeds
    COVERED.update(net.ops_seen)
    with pytest.raises(NotImplementedError, match="in-place rrelu"):
        with returnn_capture(dynamic_shapes=BTF, progress=False, train=True):
            Fn(lambda t: F.rrelu(t * 1, training=True, inplace=True))(x)


def test_eval_capture_keeps_the_models_dropout_for_training(tmp_path):
    """nn.Dropout in an eval capture: a RETURNN dropout layer with torch's p (off at inference, so
    parity holds; on when RETURNN trains the converted network), per channel for Dropout1d."""
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.3), nn.ReLU(), nn.Dropout1d(0.25)).eval()
    x = torch.randn(2, 8, 4)
    with returnn_capture(dynamic_shapes=({1: "time"},)) as net:
        model(x)
    drops = [d for d in net.net_dict.values() if d["class"] == "dropout"]
    assert sorted(d["dropout"] for d in drops) == [0.25, 0.3]
    assert net.parity.ok
    fresh = ConfigNetwork(net.save_config(str(tmp_path / "c.config")), net.save_checkpoint(str(tmp_path / "m")),
                          train=True)
    try:
        with torch.no_grad():
            want = model(x).numpy()
        got = fresh.run(x)
        assert got.shape == want.shape and not np.allclose(got, want)  # training: dropout is on
        assert (got == 0).mean() > (want == 0).mean()  # dropped entries
    finally:
        fresh.close()
