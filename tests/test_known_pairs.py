"""Novelty of replayed events: (window, value) pairs matched densely as numpy's isin would."""

from __future__ import annotations

import numpy as np
import pytest

import detector.features.prefix as prefix
from detector.features.prefix import _known_pairs


@pytest.mark.parametrize("dense_pairs", [prefix.DENSE_PAIRS, 0])
def test_pairs_are_matched_as_numpy_would(monkeypatch, dense_pairs):
    monkeypatch.setattr(prefix, "DENSE_PAIRS", dense_pairs)  # 0: the hash-table path
    rng = np.random.default_rng(3)
    n_rows, n_values = 5_000, 300
    windows = np.sort(rng.choice(n_rows, 400, replace=False))
    known_window = rng.choice(windows, 6_000)
    known_value = rng.integers(1, n_values, 6_000)
    # Pairs of replayed windows, of other rows, and of no table row (-1); value 0: no value.
    window = np.concatenate([rng.choice(windows, 20_000), rng.integers(-1, n_rows, 2_000)])
    value = rng.integers(0, n_values, len(window))
    window[:3000], value[:3000] = known_window[:3000], known_value[:3000]
    found = _known_pairs((window, value), (known_window, known_value), n_values, windows, n_rows)
    expected = np.isin(window * n_values + value, known_window * n_values + known_value)
    assert found.sum() >= 3000
    np.testing.assert_array_equal(found, expected)
