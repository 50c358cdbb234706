"""The capture's check runs reuse TF's executors: a run whose fetches an earlier run (same feeds)
fetched runs that earlier fetch list again; a failure there falls back to the fetches alone."""

import numpy as np
import tensorflow as tf
import torch
import torch.nn as nn

from torchdispatch_returnn import returnn_capture
from torchdispatch_returnn.runtime import ReusedRuns


class _Counting:
    """A session that records the fetch lists it is run with."""

    def __init__(self, session):
        self.session, self.graph, self.calls = session, session.graph, []

    def run(self, fetches, feed_dict=None):
        self.calls.append([getattr(t, "name", t) for t in fetches] if isinstance(fetches, list) else fetches)
        return self.session.run(fetches, feed_dict=feed_dict)


def _graph():
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None], name="x")
        a, b = tf.add(x, 1.0, name="a"), tf.multiply(x, 2.0, name="b")
        with tf.control_dependencies([tf.debugging.assert_positive(x, message="neg")]):
            guarded = tf.identity(x, name="guarded")
    return g, x, a, b, guarded


def test_a_subset_of_an_earlier_run_runs_that_list_again():
    g, x, a, b, guarded = _graph()
    with tf.compat.v1.Session(graph=g) as s:
        counting = _Counting(s)
        runs = ReusedRuns(counting)
        feed = {x: np.array([1.0, 2.0], np.float32)}
        va, vb = runs.run([a, b], feed)
        vb2, = runs.run([b], {x: np.array([3.0], np.float32)})
        np.testing.assert_array_equal(va, [2.0, 3.0])
        np.testing.assert_array_equal(vb, [2.0, 4.0])
        np.testing.assert_array_equal(vb2, [6.0])
        assert counting.calls == [["a:0", "b:0"], ["a:0", "b:0"]]


def test_fetches_spread_over_two_earlier_runs_run_both():
    g, x, a, b, guarded = _graph()
    with tf.compat.v1.Session(graph=g) as s:
        counting = _Counting(s)
        runs = ReusedRuns(counting)
        feed = {x: np.array([1.0], np.float32)}
        runs.run([a], feed)
        runs.run([b], feed)
        vb, va = runs.run([b, a], {x: np.array([5.0], np.float32)})
        np.testing.assert_array_equal([va, vb], [[6.0], [10.0]])
        assert counting.calls == [["a:0"], ["b:0"], ["a:0"], ["b:0"]]


def test_other_feeds_or_new_fetches_make_a_new_run():
    g, x, a, b, guarded = _graph()
    with tf.compat.v1.Session(graph=g) as s, g.as_default():
        y = tf.compat.v1.placeholder(tf.float32, [None], name="y")
        c = tf.add(a, y, name="c")
        counting = _Counting(s)
        runs = ReusedRuns(counting)
        one = np.array([1.0], np.float32)
        runs.run([a], {x: one})
        runs.run([a, b], {x: one})  # b is new
        vc, = runs.run([c], {x: one, y: one})  # other feeds
        np.testing.assert_array_equal(vc, [3.0])
        assert counting.calls == [["a:0"], ["a:0", "b:0"], ["c:0"]]


def test_an_op_of_the_earlier_list_failing_here_falls_back_to_the_fetches_alone():
    g, x, a, b, guarded = _graph()
    with tf.compat.v1.Session(graph=g) as s:
        counting = _Counting(s)
        runs = ReusedRuns(counting)
        runs.run([a, guarded], {x: np.array([1.0], np.float32)})
        va, = runs.run([a], {x: np.array([-1.0], np.float32)})  # guarded fails at -1
        np.testing.assert_array_equal(va, [0.0])
        assert counting.calls == [["a:0", "guarded:0"], ["a:0", "guarded:0"], ["a:0"]]


def test_a_capture_runs_its_self_checks_with_the_parity_runs_executors():
    """The other-length and padded-batch checks fetch what the parity run fetched (same feeds): the
    capture's graph does not grow after the weights are loaded, and the checks still catch errors."""

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 3)

        def forward(self, x):
            return torch.tanh(self.lin(x)).cumsum(1)

    torch.manual_seed(0)
    model, x = Net().eval(), torch.randn(3, 7, 4)
    with returnn_capture(dynamic_shapes=({1: "time"},), progress=False) as net:
        model(x)
    n_ops = len(net.graph.get_operations())
    assert net.parity.ok
    assert [c.ok for c in net.parity.self_checks] == [True, True]
    np.testing.assert_allclose(net.run(x[:, :5].numpy()), model(x[:, :5]).detach().numpy(), rtol=1e-5, atol=1e-5)
    assert len(net.graph.get_operations()) == n_ops  # the fetches were made before the first run
