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


def test_scoring_in_row_chunks_gives_scikit_learns_numbers(table, monkeypatch):
    """Rows scored side by side in threads: exactly the sequential scores, bit for bit."""
    import detector.model as model_module

    model = WindowModel().fit(table)
    matrix = model_module.model_matrix(table)
    sequential = -model.forest_.score_samples(matrix)
    monkeypatch.setattr(model_module, "SCORE_CHUNK_MIN_ROWS", 7)
    monkeypatch.setattr(model_module, "_cores", lambda: 3)
    np.testing.assert_array_equal(model._score_matrix(matrix), sequential)
    np.testing.assert_array_equal(model.training_scores_, sequential)


@pytest.mark.parametrize("dropped", [0, 1, 2, 3, 10])
def test_the_float32_matrix_is_the_float64_one_rounded_and_its_medians(table, dropped):
    """What scikit-learn would cast, cast once here; medians of the float64 columns
    (odd and even row counts)."""
    from detector.model import COUNTS, MODEL_FEATURES, ZS, model_matrix

    part = table.iloc[: len(table) - dropped]
    matrix, centre = model_matrix(part, centre=True)
    reference = []  # the float64 matrix as the model built it before
    for name in MODEL_FEATURES:
        values = np.asarray(part[name], dtype=np.float64)
        if name in ZS:
            values = np.sign(values) * np.log1p(np.abs(values))
        elif name in COUNTS:
            values = np.log1p(np.maximum(values, 0.0))
        reference.append(np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0))
    reference = np.column_stack(reference)
    assert matrix.dtype == np.float32
    np.testing.assert_array_equal(matrix, reference.astype(np.float32))
    np.testing.assert_array_equal(centre, np.median(reference, axis=0))


def test_the_fitting_order_falls_back_to_the_model_columns_on_repeated_windows(table):
    from detector.model import MODEL_FEATURES, fitting_order

    doubled = pd.concat([table.iloc[:50], table.iloc[:50].iloc[::-1]], ignore_index=True)
    doubled.loc[50:, "events"] = doubled.loc[50:, "events"] + 1
    keys = [doubled[name].to_numpy() for name in MODEL_FEATURES if name in doubled]
    keys += [pd.factorize(doubled[name], sort=True)[0] for name in ("day", "account_id")]
    np.testing.assert_array_equal(fitting_order(doubled), np.lexsort(keys))
    keys = [table[name].to_numpy() for name in MODEL_FEATURES if name in table]
    keys += [pd.factorize(table[name], sort=True)[0] for name in ("day", "account_id")]
    np.testing.assert_array_equal(fitting_order(table), np.lexsort(keys))
