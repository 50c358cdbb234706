"""The one closeness rule of parity, self-checks and gradient check (numeric.close)."""

import numpy as np

from torchdispatch_returnn.numeric import close


def test_close_scales_by_the_largest_entry_or_per_entry():
    want = np.array([1000.0, 0.001], dtype=np.float32)
    got = np.array([1000.0, 0.002], dtype=np.float32)  # the small entry is off by 100%
    assert close(got, want, 1e-4, 1e-4)  # max-based: 1e-3 <= 1e-4 + 1e-4 * 1000
    assert not close(got, want, 1e-4, 1e-4, per_entry=True)  # 1e-3 > 1e-4 + 1e-4 * 0.001
    assert close(want, want, 0.0, 0.0, per_entry=True)


def test_close_nan_places_ints_and_complex():
    nan = np.array([np.nan, 1.0])
    assert close(nan, nan, 1e-5, 1e-5, per_entry=True)
    assert not close(np.array([0.0, 1.0]), nan, 1e-5, 1e-5, per_entry=True)
    assert not close(np.array([1, 2]), np.array([1, 3]), 1e-5, 10, per_entry=True)  # ints: within atol only
    c = np.array([1 + 1j, 0.001j])
    assert close(c, c, 0.0, 0.0, per_entry=True) and not close(c * 1.01, c, 1e-4, 1e-4, per_entry=True)
    assert not close(np.zeros(3), np.zeros(2), 1.0, 1.0)


def test_differences_block_by_block_equal_the_whole():
    from torchdispatch_returnn import numeric

    rng = np.random.default_rng(0)
    want = rng.standard_normal(numeric.BLOCK * 2 + 7).astype(np.float32)
    got = want + rng.standard_normal(want.shape).astype(np.float32) * 1e-6
    mask = rng.random(want.shape) < 0.5
    blocked = numeric.differences(got, want, mask)
    whole = numeric.differences(got[mask][:numeric.BLOCK], want[mask][:numeric.BLOCK])  # (under one block)
    assert blocked[3] == "" and blocked[0] >= whole[0] and blocked[2] >= whole[2]
    assert blocked[0] == float(np.abs(got[mask].astype(np.float64) - want[mask]).max())
    got[numeric.BLOCK + 3] = np.nan  # a NaN torch does not have, in the second block
    assert numeric.differences(got, want)[3] and not numeric.close(got, want, 1e-3, 1e-3)
    mask[numeric.BLOCK + 3] = False  # masked out: not compared
    assert numeric.differences(got, want, mask)[3] == ""


def test_differences_of_a_transposed_view_in_blocks_of_rows():
    """A layer's value in torch's order is a transposed numpy view: compared in blocks of rows (after leading
    size-1 axes), with the same result as its contiguous copy, also where a mask leaves entries out."""
    from torchdispatch_returnn import numeric

    rng = np.random.default_rng(1)
    layer = rng.standard_normal((1, 3 * numeric.BLOCK // 64 + 5, 64)).astype(np.float32)
    got = layer.transpose(0, 2, 1)  # (1, 64, T): rows of T entries
    want = np.ascontiguousarray(got) + rng.standard_normal(got.shape).astype(np.float32) * 1e-6
    mask = rng.random(got.shape) < 0.7
    for m in (None, mask):
        assert numeric.differences(got, want, m) == numeric.differences(np.ascontiguousarray(got), want, m)
    flat = np.abs(np.ascontiguousarray(got)[mask].astype(np.float64) - want[mask]).max()
    assert numeric.differences(got, want, mask)[0] == float(flat)
    got[0, 5, 7] = np.inf
    assert numeric.differences(got, want)[3] and not numeric.differences(got, want, ~(got == np.inf))[3]
