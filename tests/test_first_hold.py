"""First-hold instants behind ``detected_at``: the same whatever the chunking or the subset asked."""

from __future__ import annotations

import numpy as np
import pytest

import detector.alerts as alerts_module
from detector.alerts import NEVER, first_hold_times
from detector.features.prefix import _member, replay_events
from detector.pipeline import prepare
from detector.rules import load_ruleset


@pytest.fixture(scope="module")
def prepared(small_log):
    return prepare(small_log)


@pytest.fixture(scope="module")
def case(prepared):
    """Windows where a default rule fires, their replay, and the rules as conditions."""
    table = prepared.features.table
    ruleset = load_ruleset("default")
    fired = ruleset.evaluate(table)
    windows = np.flatnonzero(fired.any(axis=1).to_numpy())
    assert len(windows) > 5
    conditions = {rule.id: rule.evaluate for rule in ruleset.rules}
    replay = replay_events(prepared.features, windows)
    return windows, conditions, replay, fired.iloc[windows]


def test_chunks_replayed_side_by_side_give_the_instants_of_one_pass(prepared, case, monkeypatch):
    windows, conditions, replay, _ = case
    whole = first_hold_times(prepared.features, windows, conditions, replay=replay)
    monkeypatch.setattr(alerts_module, "REPLAY_CHUNK_EVENTS", 50)
    chunked = first_hold_times(prepared.features, windows, conditions, replay=replay)
    assert any((times != NEVER).any() for times in whole.values())
    for name in conditions:
        np.testing.assert_array_equal(chunked[name], whole[name], err_msg=name)


def test_instants_are_checked_only_where_wanted(prepared, case):
    windows, conditions, replay, fired = case
    whole = first_hold_times(prepared.features, windows, conditions, replay=replay)
    wanted = {rule: fired[rule].to_numpy() for rule in fired.columns}
    some = first_hold_times(prepared.features, windows, conditions, replay=replay, wanted=wanted)
    for name in conditions:
        where = wanted[name]
        np.testing.assert_array_equal(some[name][where], whole[name][where], err_msg=name)
        assert (some[name][~where] == NEVER).all()
    # Where a rule fired on the whole window, it held at some instant of it.
    assert all((some[name][wanted[name]] != NEVER).all() for name in conditions)


def test_first_uses_are_matched_as_numpy_would():
    rng = np.random.default_rng(1)
    known = rng.integers(0, 10**10, 5_000)
    values = np.concatenate([rng.choice(known, 3_000), rng.integers(0, 10**10, 3_000)])
    np.testing.assert_array_equal(_member(values, known), np.isin(values, known))
    assert not _member(values, known[:0]).any()
    assert _member(values[:0], known).shape == (0,)


def test_candidates_re_read_a_few_days_at_a_time_give_the_alerts_of_one_read(
    prepared, monkeypatch, tmp_path
):
    import ipaddress
    from dataclasses import replace

    import pandas as pd

    import detector.pipeline as pipeline_module
    from detector.pipeline import detect, replay_groups

    # Allowlist every address one candidate window used, so that the per-group
    # allowlist pass drops it.
    ruleset = load_ruleset("default")
    table = prepared.features.table
    fired = ruleset.evaluate(table)
    windows = np.flatnonzero(fired.any(axis=1).to_numpy())
    replay = replay_events(prepared.features, windows)
    first_window = replay.frame["src_ip"][replay.counts.window == windows[0]]
    network = tuple(ipaddress.ip_network(str(ip)) for ip in first_window.dropna().unique())
    allowing = replace(ruleset, allowlist=replace(ruleset.allowlist, networks=network))

    def alerts(rules):
        found = detect(prepared, rules=rules, mode="both")
        return found.sort_values(["account_id", "window_start"]).reset_index(drop=True)

    whole = {id(r): alerts(r) for r in (ruleset, allowing)}
    assert len(whole[id(allowing)]) < len(whole[id(ruleset)])  # the network allows some
    monkeypatch.setattr(pipeline_module, "REPLAY_READ_EVENTS", 1)  # one day per group
    groups = replay_groups(table, windows)
    days = table["_day"].to_numpy()
    assert len(groups) == len(np.unique(days[windows])) > 3
    assert all(len(np.unique(days[g])) == 1 for g in groups)
    for rules in (ruleset, allowing):
        grouped = alerts(rules)
        assert len(grouped) > 0
        pd.testing.assert_frame_equal(grouped, whole[id(rules)])
