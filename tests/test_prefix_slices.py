"""Prefix features a slice of events at a time, even within a window: the values of one pass."""

from __future__ import annotations

import numpy as np
import pytest

import detector.alerts as alerts_module
from detector.alerts import NEVER, first_hold_times
from detector.features.prefix import prefix_features, prefix_slices, replay_events
from detector.model import WindowModel
from detector.pipeline import prepare
from detector.rules import load_ruleset


@pytest.fixture(scope="module")
def case(small_log):
    features = prepare(small_log).features
    table = features.table
    fired = load_ruleset("default").evaluate(table)
    windows = np.flatnonzero(fired.any(axis=1).to_numpy())
    return features, windows, replay_events(features, windows)


def test_slices_cut_within_windows_hold_the_values_of_one_pass(case):
    features, windows, replay = case
    whole = prefix_features(features, windows, replay)
    slices = list(prefix_slices(features, windows, replay, max_events=97))
    assert len(slices) > 1
    sizes = np.bincount(whole["window"])[whole["window"]]
    assert sizes.max() > 97  # some windows are cut between slices
    for name, values in whole.items():
        joined = np.concatenate([columns[name] for columns, _, _ in slices])
        np.testing.assert_array_equal(joined, values, err_msg=name)
    rank = np.concatenate([r for _, r, _ in slices])
    size = np.concatenate([s for _, _, s in slices])
    np.testing.assert_array_equal(size, sizes)
    starts = np.flatnonzero(np.r_[True, whole["window"][1:] != whole["window"][:-1]])
    np.testing.assert_array_equal(rank[starts], 0)
    np.testing.assert_array_equal(rank[np.r_[starts[1:], len(rank)] - 1], sizes[starts] - 1)


def test_no_events_is_one_empty_slice(case):
    features, _, replay = case
    (columns, rank, size), *rest = prefix_slices(features, np.zeros(0, np.int64), replay, 5)
    assert not rest and len(columns["window"]) == 0 and len(rank) == len(size) == 0


def test_the_model_instant_is_the_same_in_slices_of_a_few_events(case, monkeypatch):
    features, windows, replay = case
    windows = windows[np.argsort(-features.table["events"].to_numpy()[windows])[:12]]
    windows = np.sort(windows)  # the largest windows: cut between slices of 40 events
    assert features.table["events"].to_numpy()[windows].max() > 80
    fitted = WindowModel().fit(features.table)
    conditions = {"model": lambda frame: fitted.score(frame) >= 0.5}
    whole = first_hold_times(features, windows, conditions, frozenset({"model"}), replay)
    monkeypatch.setattr(alerts_module, "REPLAY_CHUNK_EVENTS", 40)
    sliced = first_hold_times(features, windows, conditions, frozenset({"model"}), replay)
    assert (whole["model"] != NEVER).any()
    np.testing.assert_array_equal(sliced["model"], whole["model"])
