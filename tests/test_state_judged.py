"""logsentinel-state/6: the accumulation's terms (each account's reference and same-day
shift of each of the last days, features.table.Judged) are stored, and a night reads those
of the stored days instead of working them out again; it must give exactly what the long
way gives (every feature, the internal columns the replay reads, the alerts, the terms
stored). A re-delivered earlier day, and a /5 state, take the long way."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from daily_files import cut_into_days

import detector.pipeline as pipeline
from detector.engine.state import load_state
from detector.features import table as assembly
from detector.features.history import Prior
from detector.pipeline import score_log

TZ = "Europe/Paris"


@pytest.fixture(scope="module")
def log(fortnight_log):
    return fortnight_log


def _tables(monkeypatch) -> list:
    """Each night's assembled table, copied before detection trims it: (features, internal
    columns and rare hours)."""
    tables = []
    original = pipeline.assemble

    def spy(*args, **kwargs):
        table = original(*args, **kwargs)
        internal = pd.DataFrame(table.internal.block.T.copy(), columns=table.internal.names)
        rare = pd.DataFrame(table.rare_hours, columns=[f"rare_{h}" for h in range(24)])
        tables.append((table.table.copy(), pd.concat([internal, rare], axis=1)))
        return table

    monkeypatch.setattr(pipeline, "assemble", spy)
    return tables


def _uses(monkeypatch, long_way: bool) -> tuple[list[bool], list[bool]]:
    """Whether each night read the stored terms, and the stored hours (``long_way``: never
    let it)."""
    used: tuple[list[bool], list[bool]] = ([], [])

    def spied(name, found):
        original = getattr(assembly, name)

        def spy(*args, **kwargs):
            stored = None if long_way else original(*args, **kwargs)
            found.append(stored is not None)
            return stored

        monkeypatch.setattr(assembly, name, spy)

    spied("_stored_terms", used[0])
    spied("_stored_hours", used[1])
    return used


def _nights(files, state, monkeypatch, long_way: bool):
    """Each file scored into ``state`` with the log's caseloads (a day without them would
    know no out-of-caseload reads, and the next night could not read the stored terms)."""
    caseloads = files[0].parent.parent / "logs.caseloads.parquet"
    with monkeypatch.context() as patch:
        used = _uses(patch, long_way)
        tables = _tables(patch)
        alerts = [
            score_log(path, caseloads=caseloads, mode="rules", state=state).alerts for path in files
        ]
    assert used[0] == used[1]  # both stand, or neither
    return used[0], tables, alerts


def _judged(state) -> pd.DataFrame:
    """The stored terms, and the summed hours with the day they end before."""
    loaded = load_state(state, TZ)
    frame = loaded.judged.frame.to_pandas()
    frame["account_id"] = frame["account_id"].astype(str)
    frame = frame.sort_values(["day", "account_id"]).reset_index(drop=True)
    hours = pd.DataFrame(loaded.hours.counts, index=loaded.hours.accounts.to_pylist())
    return pd.concat([frame, hours.sort_index().reset_index().assign(before=loaded.hours.before)])


def _same(long, short) -> None:
    for (table, internal), (expected, expected_internal) in zip(short[1], long[1], strict=True):
        pd.testing.assert_frame_equal(table, expected)
        pd.testing.assert_frame_equal(internal, expected_internal)
    for alerts, expected in zip(short[2], long[2], strict=True):
        pd.testing.assert_frame_equal(alerts, expected)


@pytest.mark.parametrize("at_midnight", [False, True])
def test_nights_with_stored_terms_equal_the_long_way(log, tmp_path, monkeypatch, at_midnight):
    files = cut_into_days(log, f"days{at_midnight}", at_midnight)
    long = _nights(files, tmp_path / "long", monkeypatch, long_way=True)
    short = _nights(files, tmp_path / "short", monkeypatch, long_way=False)
    assert len(short[0]) == len(files) and all(short[0][1:])  # every night after the first
    _same(long, short)
    # The accumulation is not idle here: excess accumulated, and shifts were found.
    tables = pd.concat([table for table, _ in short[1]])
    internal = pd.concat([internal for _, internal in short[1]])
    assert (tables["cusum_records_touched"] > 0).any()
    assert (internal["_shift_records_touched"] > 0).any()
    manifest = json.loads((tmp_path / "short" / "manifest.json").read_text())
    assert manifest["format"] == "logsentinel-state/6"
    assert len(manifest["judged"]) == 15  # the last HORIZON_DAYS + 1 days
    pd.testing.assert_frame_equal(_judged(tmp_path / "short"), _judged(tmp_path / "long"))


def test_a_redelivered_day_and_a_state_of_5_take_the_long_way(log, tmp_path, monkeypatch):
    files = cut_into_days(log, "days")
    state = tmp_path / "state"
    _nights(files[:-1], state, monkeypatch, long_way=False)
    old = tmp_path / "old"  # the same state as /5 wrote it: no terms
    shutil.copytree(state, old)
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["format"] = "logsentinel-state/5"
    manifest.pop("judged_caseloads", None)
    manifest.pop("hours_before", None)
    (old / manifest["current"] / "hours.parquet").unlink()
    for segment in manifest.pop("judged"):
        (old / manifest["current"] / segment["file"]).unlink()
    (old / "manifest.json").write_text(json.dumps(manifest))
    reference = tmp_path / "reference"
    shutil.copytree(state, reference)

    again = _nights([files[3]], state, monkeypatch, long_way=False)  # a stored day, again
    assert again[0] == [False]
    expected = _nights([files[3]], tmp_path / "reference", monkeypatch, long_way=True)
    _same(expected, again)

    upgraded = _nights([files[-1]], old, monkeypatch, long_way=False)
    assert upgraded[0] == [False]
    assert json.loads((old / "manifest.json").read_text())["format"] == "logsentinel-state/6"
    night = _nights([files[-1]], tmp_path / "state2", monkeypatch, long_way=False)
    assert night[0] == [False]  # a fresh state: its first run builds it
    shutil.rmtree(tmp_path / "state2")
    shutil.copytree(reference, tmp_path / "state2")
    carried = _nights([files[-1]], tmp_path / "state2", monkeypatch, long_way=False)
    assert carried[0] == [True]
    _same(upgraded, carried)
    pd.testing.assert_frame_equal(_judged(old), _judged(tmp_path / "state2"))


def test_a_type_first_known_on_a_scored_day_takes_the_long_way():
    """An account whose type (or structure) was missing on the stored days and comes from a
    scored day's window changes peer groups on the stored days: their terms cannot stand,
    unless days pruned from the state had given it."""
    w_day = np.array([0, 1, 2, 0, 2])  # account 0: rows 0-2; account 1: rows 3-4
    first = np.array([0, 3])
    scored, first_day = {102}, 100  # day index 2
    same = (np.array([0, 3]), np.array([0, 3]))  # each from the account's first window
    moved = (np.array([0, 3]), np.array([0, 4]))  # account 1's structure from day 2
    assert not assembly._moved_attributes(same, w_day, first, scored, first_day, None)
    assert assembly._moved_attributes(moved, w_day, first, scored, first_day, None)
    assert not assembly._moved_attributes(moved, w_day, first, None, first_day, None)
    known = np.array([None, "agency-1"], dtype=object)
    prior = Prior(
        np.array([False, True]),
        np.zeros(2, np.int64),
        np.zeros(2, np.int64),
        np.zeros(2, np.int64),
        np.zeros((2, 24), np.int64),
        {"type": (known, known), "org": (known, known)},
    )
    assert not assembly._moved_attributes(moved, w_day, first, scored, first_day, prior)
