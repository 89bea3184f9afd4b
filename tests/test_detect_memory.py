"""Detection frees and skips what cannot change its result: the same alerts, scores and threshold."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from detector.model import WindowModel
from detector.pipeline import detect, prepare


@pytest.fixture(scope="module")
def table(small_log):
    return prepare(small_log).features.table


def _plan_on_small_tables(monkeypatch) -> None:
    """The sampled floor and tree order, which large tables get, on the small test table."""
    import detector.model as model_module

    monkeypatch.setattr(model_module, "PLAN_FROM_ROWS", 100)
    monkeypatch.setattr(model_module, "PLAN_SAMPLE_ROWS", 2_000)


@pytest.mark.parametrize("planned", [False, True])
@pytest.mark.parametrize("chunked", [False, True])
def test_fitting_leaves_unscored_only_rows_below_the_threshold(
    table, chunked, planned, monkeypatch
):
    import detector.model as model_module

    if chunked:  # rows scored in three threads, each pruning its own rows
        monkeypatch.setattr(model_module, "SCORE_CHUNK_MIN_ROWS", 7)
        monkeypatch.setattr(model_module, "_cores", lambda: 3)
    if planned:
        _plan_on_small_tables(monkeypatch)
    full = WindowModel().fit(table)
    pruned = WindowModel().fit(table, all_scores=False)
    assert pruned.threshold_ == full.threshold_
    unscored = np.isnan(pruned.training_scores_)
    assert 0 < unscored.sum() < len(table)
    assert (full.training_scores_[unscored] < full.threshold_).all()
    if not planned:
        assert (full.training_scores_[unscored] < full.min_score).all()
    np.testing.assert_array_equal(
        pruned.training_scores_[~unscored], full.training_scores_[~unscored]
    )
    # The forest itself is the same: any row scores alike with both.
    np.testing.assert_array_equal(pruned.score(table), full.training_scores_)


@pytest.mark.parametrize("planned", [False, True])
@pytest.mark.parametrize("min_score", [0.3, 0.62, 0.95])
def test_the_threshold_is_exact_whatever_min_score_leaves(table, min_score, planned, monkeypatch):
    """A high min_score leaves fewer rows above it than the alert rate takes: the rest
    are scored too, and the quantile is the full one."""
    if planned:
        _plan_on_small_tables(monkeypatch)
    full = WindowModel(min_score=min_score).fit(table)
    pruned = WindowModel(min_score=min_score).fit(table, all_scores=False)
    assert pruned.threshold_ == full.threshold_
    scored = ~np.isnan(pruned.training_scores_)
    np.testing.assert_array_equal(pruned.training_scores_[scored], full.training_scores_[scored])


@pytest.mark.parametrize("reverse", [False, True])
def test_a_floor_above_the_quantile_is_caught_and_the_rows_it_pruned_scored(
    table, reverse, monkeypatch
):
    """Were the sampled floor ever above the training quantile, the threshold stays the
    full scoring's: the rows pruned below that floor are scored after all."""
    n_trees = WindowModel().n_estimators
    walk = np.arange(n_trees)[::-1] if reverse else None
    monkeypatch.setattr(WindowModel, "_pruning_plan", lambda self, matrix: (0.99, walk))
    full = WindowModel().fit(table)
    assert full.threshold_ < 0.99
    pruned = WindowModel().fit(table, all_scores=False)
    assert pruned.threshold_ == full.threshold_
    np.testing.assert_array_equal(pruned.training_scores_, full.training_scores_)


def test_the_sampled_plan_raises_the_floor_and_orders_every_tree(table, monkeypatch):
    _plan_on_small_tables(monkeypatch)
    model = WindowModel().fit(table)
    from detector.model import model_matrix

    floor, walk = model._pruning_plan(model_matrix(table))
    assert model.min_score <= floor <= model.threshold_
    assert sorted(walk) == list(range(model.n_estimators))


def test_a_consumed_table_gives_the_alerts_of_a_kept_one(small_log):
    kept = prepare(small_log)
    consumed = prepare(small_log)
    n_rows = len(consumed.features.table)
    assert consumed.features.caseloads is not None and len(consumed.features.caseloads)
    first = detect(kept, mode="both")
    second = detect(consumed, mode="both", consume=True)
    assert len(first) > 0
    pd.testing.assert_frame_equal(first, second)
    # Only the candidates' internal numbers and their accounts' caseloads are left.
    internal = consumed.features.internal
    assert internal.rows is not None and 0 < len(internal.rows) < n_rows
    assert internal.block.shape == (len(internal.names), len(internal.rows))
    accounts = set(consumed.features.table["account_id"].to_numpy()[internal.rows])
    assert set(consumed.features.caseloads["account_id"]) <= accounts
    assert len(consumed.features.caseloads) < len(kept.features.caseloads)
    # Kept numbers are unchanged; those of other windows are no longer there.
    name = internal.names[0]
    np.testing.assert_array_equal(
        internal.values(name, internal.rows),
        kept.features.internal.values(name, internal.rows),
    )
    others = np.setdiff1d(np.arange(n_rows), internal.rows)[:3]
    with pytest.raises(ValueError, match="not kept"):
        internal.values(name, others)


def test_internal_numbers_are_not_table_columns(small_log):
    features = prepare(small_log).features
    assert not [c for c in features.table.columns if c in features.internal.names]
    assert features.internal.block.shape == (len(features.internal.names), len(features.table))


def test_rows_selected_before_conforming_are_the_rows_conformed_then_selected(small_log):
    from detector.engine.sources import source_of
    from detector.schema import read_row_groups

    source = source_of(small_log, "Europe/Paris", streaming=True)
    schema = source._read_schema(["record_id", "src_ip", "records_returned"])
    whole, repaired = read_row_groups(str(small_log), [0], schema)
    keep = np.random.default_rng(1).random(whole.num_rows) < 0.1
    some, _ = read_row_groups(str(small_log), [0], schema, keep)
    assert some.num_rows == keep.sum() > 0
    assert some.equals(whole.filter(pa.array(keep)))
    assert repaired == {}


def test_candidates_without_caseload_rows_keep_the_table_whole(small_log):
    """No candidate account follows any record: the kernel cannot take an empty
    caseload table, so it is kept as it is, and the alerts are those of a kept table."""
    caseloads = pd.DataFrame({"account_id": ["nobody", "nobody"], "record_id": ["r1", "r2"]})
    kept = prepare(small_log, caseloads=caseloads)
    consumed = prepare(small_log, caseloads=caseloads)
    first = detect(kept, mode="rules")
    second = detect(consumed, mode="rules", consume=True)
    assert len(first) > 0
    pd.testing.assert_frame_equal(first, second)
    assert len(consumed.features.caseloads) == 2


def test_flags_are_the_scores_at_or_above_the_threshold(table):
    """The replay's model condition prunes rows below the threshold: the same flags."""
    model = WindowModel().fit(table)
    flags = model.flags(table)
    assert 0 < flags.sum() < len(table)
    np.testing.assert_array_equal(flags, model.score(table) >= model.threshold_)
    assert np.isnan(model.score(table, floor=model.threshold_)[~flags]).any()
