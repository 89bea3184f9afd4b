"""Incremental scoring through --state: the same alerts as one run, no double counting, atomic updates."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from daily_files import cut_into_days

from detector.cli import main
from detector.engine.state import load_state
from detector.pipeline import score_log
from detector.schema import sibling
from synthetic_logs.generate import generate_dataset

TZ = "Europe/Paris"
COLUMNS = ["account_id", "window_start", "window_end", "detected_at", "rules", "reason"]


@pytest.fixture(scope="module")
def month(tmp_path_factory):
    """A 28-day log with the four attacks, cut into one file per local day."""
    out = tmp_path_factory.mktemp("month") / "logs.parquet"
    generate_dataset(out, seed=11, accounts=250, days=28)
    return out, cut_into_days(out, "days")


def _key(alerts: pd.DataFrame) -> pd.DataFrame:
    frame = alerts[COLUMNS].copy()
    frame["rules"] = frame["rules"].map(lambda r: ",".join(r))
    return frame.sort_values(["account_id", "window_start"]).reset_index(drop=True)


def test_day_by_day_through_state_gives_the_alerts_of_one_run(month, tmp_path):
    log, files = month
    caseloads = sibling(log, ".caseloads.parquet")
    whole = score_log(log, caseloads=caseloads, mode="rules").alerts
    state = tmp_path / "state"
    daily = [
        score_log(path, caseloads=caseloads, mode="rules", state=state).alerts for path in files
    ]
    week = whole["window_start"].min().normalize() + pd.Timedelta(days=7)
    expected = _key(whole[whole["window_start"] >= week])
    together = pd.concat(daily, ignore_index=True)
    got = _key(together[together["window_start"] >= week])
    assert len(expected) > 0
    pd.testing.assert_frame_equal(expected, got, check_dtype=False)
    assert load_state(state, TZ).day_events().size == len(files)


def test_a_redelivered_day_replaces_and_late_events_are_ignored(month, tmp_path):
    log, files = month
    state = tmp_path / "state"
    for path in files[:3]:
        score_log(path, mode="rules", state=state)
    before = load_state(state, TZ).day_events()
    again = score_log(files[1], mode="rules", state=state)  # the same day, whole: re-delivered
    assert any("1 day(s) already in the state re-delivered" in n for n in again.notices)
    pd.testing.assert_series_equal(load_state(state, TZ).day_events(), before)
    # The last day's events are kept: delivered again, each is known and counted once.
    last = score_log(files[2], mode="rules", state=state)
    assert any(f"({before.iloc[-1]:,} already counted)" in n for n in last.notices)
    pd.testing.assert_series_equal(load_state(state, TZ).day_events(), before)

    late = tmp_path / "late.parquet"
    pq.write_table(pq.read_table(files[1]).slice(0, 50), late)
    result = score_log(late, mode="rules", state=state)
    assert any("50 events of 1 day(s) already scored ignored" in n for n in result.notices)
    assert len(result.alerts) == 0
    pd.testing.assert_series_equal(load_state(state, TZ).day_events(), before)


def test_a_repeated_event_id_is_counted_once(month, tmp_path):
    _, files = month
    table = pq.read_table(files[5])  # a whole working day: thousands of events
    assert table.num_rows > 100
    twice = tmp_path / "twice.parquet"
    pq.write_table(pa.concat_tables([table, table.slice(0, 100)]), twice)
    result = score_log(twice, mode="rules", state=tmp_path / "state")
    assert result.features["events"].sum() == table.num_rows
    assert any("100 events repeating an event_id counted once" in n for n in result.notices)


def test_an_interrupted_update_leaves_the_previous_state_current(month, tmp_path):
    _, files = month
    state = tmp_path / "state"
    score_log(files[0], mode="rules", state=state)
    manifest = json.loads((state / "manifest.json").read_text())
    # A crash after writing the next version's files but before the manifest swap:
    (state / ".v000002.tmp").mkdir()
    (state / ".v000002.tmp" / "windows.parquet").write_text("half-written")
    assert load_state(state, TZ).version == manifest["version"]
    score_log(files[1], mode="rules", state=state)
    assert load_state(state, TZ).version == manifest["version"] + 1


def test_cli_state_with_another_time_zone(month, tmp_path):
    _, files = month
    state = tmp_path / "state"
    runner = CliRunner()
    args = ["score", str(files[0]), "--mode", "rules", "--state", str(state)]
    assert runner.invoke(main, args + ["--out", str(tmp_path / "a.parquet")]).exit_code == 0
    result = runner.invoke(main, args + ["--timezone", "UTC", "--out", str(tmp_path / "b.parquet")])
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == (
        f"Error: {state} was built with time zone Europe/Paris, not UTC"
    )


def test_cli_state_that_is_not_a_state(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "manifest.json").write_text("{}")
    log = tmp_path / "log.parquet"
    pd.DataFrame(
        {
            "timestamp": pd.to_datetime(["2024-03-25T08:00Z"]),
            "account_id": ["a"],
            "action": ["login"],
        }
    ).to_parquet(log)
    result = CliRunner().invoke(main, ["score", str(log), "--state", str(state)])
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == (
        f"Error: {state / 'manifest.json'}: not a logsentinel state manifest "
        "(logsentinel-state/1 to logsentinel-state/6)"
    )
