"""The state grows by appending: unchanged segment files linked, new days as new segments,
each first-seen pair stored once with its first day, the older one-file layout still read."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from daily_files import cut_into_days

from detector.engine.state import WEEK_DAYS, load_state
from detector.pipeline import score_log
from detector.schema import sibling
from synthetic_logs.generate import generate_dataset

TZ = "Europe/Paris"


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    out = tmp_path_factory.mktemp("segments") / "logs.parquet"
    generate_dataset(out, seed=5, accounts=60, days=16)
    return out


def _windows(state) -> pd.DataFrame:
    windows = load_state(state, TZ).history.windows
    columns = [c for c in windows.columns if not c.startswith("_")]
    return windows[columns].sort_values(["account_id", "day"]).reset_index(drop=True)


def _pairs(state, column: str) -> pd.DataFrame:
    table = load_state(state, TZ).history.first_seen[column].to_pandas()
    return table.sort_values(["account_id", "value"]).reset_index(drop=True)


def _manifest(state) -> dict:
    return json.loads((state / "manifest.json").read_text())


@pytest.mark.parametrize("at_midnight", [False, True], ids=["local-days", "cut-at-midnight"])
def test_day_by_day_state_stores_what_one_run_stores(log, tmp_path, at_midnight):
    """Segments linked, a past week's files merged, and the same windows and first-seen
    pairs as one run over the whole log; cut at midnight, each night completes the kept day."""
    files = cut_into_days(log, "midnight" if at_midnight else "days", at_midnight)
    whole, daily = tmp_path / "whole", tmp_path / "daily"
    caseloads = sibling(log, ".caseloads.parquet")
    score_log(log, caseloads=caseloads, mode="rules", state=whole)
    linked = 0
    for path in files:
        before = _manifest(daily) if (daily / "manifest.json").exists() else None
        score_log(path, caseloads=caseloads, mode="rules", state=daily)
        after = _manifest(daily)
        for table, segments in after["tables"].items():
            days = [d for s in segments for d in s["days"]]
            assert len(days) == len(set(days)), table  # a day's rows are in one segment
            weeks = [{d // WEEK_DAYS for d in s["days"]} for s in segments]
            assert all(len(w) == 1 for w in weeks), table  # a file holds one week's days
            this_week = max(days) // WEEK_DAYS
            past = [w.pop() for w in weeks if min(w) < this_week - 1]
            assert len(past) == len(set(past)), table  # one file per week once it is over
            if before is None:
                continue
            old = {s["file"] for s in before["tables"].get(table, [])}
            for segment in segments:
                if segment["file"] in old:  # carried over: the very same file, not a copy
                    new_file = daily / after["current"] / segment["file"]
                    old_file = daily / before["current"] / segment["file"]
                    assert new_file.stat().st_ino == old_file.stat().st_ino
                    linked += 1
    assert linked > len(files)
    pd.testing.assert_frame_equal(_windows(whole), _windows(daily))
    for column in load_state(whole, TZ).history.first_seen:
        pairs = _pairs(daily, column)
        assert not pairs.duplicated(["account_id", "value"]).any()
        pd.testing.assert_frame_equal(_pairs(whole, column), pairs)


def _as_one_file_layout(state) -> None:
    """Rewrite a state's current version as the older layout (logsentinel-state/1)."""
    manifest = _manifest(state)
    current = state / manifest["current"]
    for table, segments in manifest.pop("tables").items():
        parts = [pq.read_table(current / s["file"]) for s in segments]
        for segment in segments:
            (current / segment["file"]).unlink()
        pq.write_table(pa.concat_tables(parts), current / f"{table}.parquet")
    manifest["format"] = "logsentinel-state/1"
    (state / "manifest.json").write_text(json.dumps(manifest))


def test_a_state_of_the_one_file_layout_is_read_and_continued(log, tmp_path):
    files = cut_into_days(log, "days")
    state, old = tmp_path / "state", tmp_path / "old"
    for path in files[:-1]:
        score_log(path, mode="rules", state=state)
    shutil.copytree(state, old)
    _as_one_file_layout(old)
    assert load_state(old, TZ).day_events().equals(load_state(state, TZ).day_events())
    new_run = score_log(files[-1], mode="rules", state=state)
    old_run = score_log(files[-1], mode="rules", state=old)
    pd.testing.assert_frame_equal(new_run.features, old_run.features)
    pd.testing.assert_frame_equal(new_run.alerts, old_run.alerts)
    assert _manifest(old)["format"] == "logsentinel-state/6"
    pd.testing.assert_frame_equal(_windows(state), _windows(old))
    pd.testing.assert_frame_equal(_pairs(state, "src_ip"), _pairs(old, "src_ip"))
