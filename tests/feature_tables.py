"""Comparing two feature tables window by window (engine equivalence tests)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from detector.features.catalogue import FEATURES

KEY = ["account_id", "day"]


def same_features(left: pd.DataFrame, right: pd.DataFrame) -> None:
    """Assert the two tables hold the same windows with the same catalogued features."""
    left = left.set_index(KEY).sort_index()
    right = right.set_index(KEY).sort_index()
    assert left.index.equals(right.index)
    for name in ["account_type", "organization_id", "window_start", "window_end"]:
        assert (left[name].astype(str) == right[name].astype(str)).all(), name
    for name in FEATURES:
        np.testing.assert_allclose(
            left[name].to_numpy(float), right[name].to_numpy(float), equal_nan=True, err_msg=name
        )
