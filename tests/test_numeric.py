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
