"""The model does not depend on the order of its rows: the same windows, the same scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from detector.model import WindowModel
from detector.pipeline import prepare, score_log
from detector.schema import sibling


@pytest.fixture(scope="module")
def table(small_log):
    return prepare(small_log).features.table


def test_a_shuffled_feature_table_gives_the_same_model(table):
    shuffled = table.sample(frac=1.0, random_state=7)
    assert not shuffled.index.equals(table.index)
    model = WindowModel().fit(table)
    again = WindowModel().fit(shuffled)
    np.testing.assert_array_equal(model.score(table), again.score(table))
    assert model.threshold_ == again.threshold_
    # Training scores stay in the order of the rows given.
    np.testing.assert_array_equal(again.training_scores_, model.training_scores_[shuffled.index])


def test_a_shuffled_log_gives_the_same_model_alerts(small_log, tmp_path):
    raw = pq.read_table(small_log)
    order = np.random.default_rng(3).permutation(raw.num_rows)
    shuffled = tmp_path / "shuffled.parquet"
    pq.write_table(raw.take(pa.array(order)), shuffled, row_group_size=50_000)
    caseloads = sibling(small_log, ".caseloads.parquet")
    first = score_log(small_log, caseloads=caseloads, mode="model").alerts
    second = score_log(shuffled, caseloads=caseloads, mode="model").alerts
    assert len(first) > 0
    columns = ["account_id", "window_start", "detected_at", "model_score"]
    key = ["account_id", "window_start"]
    pd.testing.assert_frame_equal(
        first[columns].sort_values(key).reset_index(drop=True),
        second[columns].sort_values(key).reset_index(drop=True),
    )
