"""Nightly logs cut at local midnight: the kept day is completed by the next file and scored again."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from daily_files import cut_into_days

from detector.cli import main
from detector.engine.state import load_state
from detector.features.kernel import DAY_NS, local_days, local_wall_ns
from detector.pipeline import score_log
from detector.schema import sibling
from synthetic_logs.generate import generate_dataset

TZ = "Europe/Paris"
COLUMNS = ["account_id", "window_start", "window_end", "detected_at", "rules", "reason"]


@pytest.fixture(scope="module")
def nights(tmp_path_factory):
    """A 21-day log with the four attacks, cut at local midnight into one file per calendar day."""
    out = tmp_path_factory.mktemp("nights") / "logs.parquet"
    generate_dataset(out, seed=5, accounts=200, days=21)
    files = cut_into_days(out, "nights", at_midnight=True)
    stamps = pd.DatetimeIndex(pq.read_table(out)["timestamp"].to_pandas()).as_unit("ns").asi8
    calendar = local_wall_ns(stamps, TZ) // DAY_NS
    # The cut is at midnight, the detector's day at 04:00: each file continues the day before.
    assert (local_days(stamps, TZ)[0] != calendar).sum() > 100
    return out, files


def _key(alerts: pd.DataFrame) -> pd.DataFrame:
    frame = alerts[COLUMNS].copy()
    frame["rules"] = frame["rules"].map(lambda r: ",".join(r))
    return frame.sort_values(["account_id", "window_start"]).reset_index(drop=True)


def _incidents(alerts: pd.DataFrame, since: pd.Timestamp) -> pd.DataFrame:
    frame = alerts.loc[
        alerts["window_start"] >= since, ["account_id", "window_start", "incident_id"]
    ]
    return frame.sort_values(["account_id", "window_start"]).reset_index(drop=True)


def _by_day(result) -> dict:
    """Alerts of a run per local day it scored (a day without alerts maps to none)."""
    days = result.features[["account_id", "window_start", "day"]]
    alerts = result.alerts.merge(days, on=["account_id", "window_start"], how="left")
    return {day: alerts[alerts["day"] == day] for day in result.features["day"].unique()}


def test_nights_cut_at_midnight_give_the_alerts_of_one_run(nights, tmp_path):
    log, files = nights
    caseloads = sibling(log, ".caseloads.parquet")
    whole = score_log(log, caseloads=caseloads, mode="rules")
    state = tmp_path / "state"
    latest: dict = {}  # local day -> its alerts from the last run that scored it
    completed = 0
    for path in files:
        result = score_log(path, caseloads=caseloads, mode="rules", state=state)
        latest.update(_by_day(result))
        completed += any(" completed with " in n for n in result.notices)
        assert not any("late events" in n for n in result.notices)
    assert completed == len(files) - 1  # every night but the first completes the day before
    week = whole.features["window_start"].min().normalize() + pd.Timedelta(days=7)
    expected = _key(whole.alerts[whole.alerts["window_start"] >= week])
    together = pd.concat(list(latest.values()), ignore_index=True)
    got = _key(together[together["window_start"] >= week])
    assert len(expected) > 0
    pd.testing.assert_frame_equal(expected, got, check_dtype=False)
    # Incidents: the state's links and alerts group each night's alerts as the one run does,
    # among them an attack whose creator was alerted days before the accounts it created.
    incident = _incidents(whole.alerts, week)
    assert (incident.groupby("incident_id")["account_id"].nunique() > 1).any()
    pd.testing.assert_frame_equal(incident, _incidents(together, week), check_dtype=False)
    # Every event counted once: the state holds the whole log's day totals.
    stored = load_state(state, TZ).day_events()
    per_day = whole.features.assign(d=pd.to_datetime(whole.features["day"]))
    totals = per_day.groupby("d")["events"].sum()
    assert stored.sum() == whole.events
    np.testing.assert_array_equal(stored.to_numpy(), totals.to_numpy())


@pytest.mark.parametrize("own_ids", [True, False], ids=["event_id", "no_event_id"])
def test_scoring_the_same_night_twice_counts_nothing_twice(nights, tmp_path, own_ids):
    _, files = nights
    if not own_ids:  # events told apart by their whole row
        stripped = []
        for path in files[:4]:
            copy = tmp_path / path.name
            pq.write_table(pq.read_table(path).drop_columns(["event_id"]), copy)
            stripped.append(copy)
        files = stripped
    state = tmp_path / "state"
    for path in files[:4]:
        first = score_log(path, mode="rules", state=state)
    before = load_state(state, TZ)
    again = score_log(files[3], mode="rules", state=state)
    after = load_state(state, TZ)
    pd.testing.assert_series_equal(after.day_events(), before.day_events())
    assert after.kept_day == before.kept_day
    # The day before: its early hours were counted the first time (late events now).
    assert any("late events" in n for n in again.notices)
    day = pd.Timestamp(after.kept_day, unit="D").date()
    kept_events = int(before.day_events()[after.kept_day])
    assert f"day {day} completed with 0 events of this log ({kept_events:,} already counted)" in (
        " ".join(again.notices)
    )
    pd.testing.assert_frame_equal(_key(again.alerts), _key(first.alerts), check_dtype=False)


def test_cli_says_which_day_was_completed(nights, tmp_path):
    _, files = nights
    state = tmp_path / "state"
    runner = CliRunner()
    outputs = []
    for i, path in enumerate(files[:2]):
        args = ["score", str(path), "--mode", "rules", "--state", str(state)]
        result = runner.invoke(main, args + ["--out", str(tmp_path / f"{i}.parquet")])
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    day = pd.Timestamp(load_state(state, TZ).kept_day - 1, unit="D").date()
    assert f"Notice: day {day} completed with " in outputs[1]
    assert " completed with " not in outputs[0]


def test_nights_on_a_two_worker_dask_cluster_give_the_local_engines_results(nights, tmp_path):
    _, files = nights
    runs = {}
    for engine in ("local", "dask"):
        state = tmp_path / engine
        runs[engine] = [
            score_log(path, mode="rules", state=state, engine=engine, workers=2)
            for path in files[:3]
        ]
    for local, on_dask in zip(runs["local"], runs["dask"], strict=True):
        pd.testing.assert_frame_equal(_key(local.alerts), _key(on_dask.alerts), check_dtype=False)
        assert [n for n in local.notices if "completed" in n] == [
            n for n in on_dask.notices if "completed" in n
        ]
    assert any(" completed with " in n for n in runs["dask"][2].notices)
    pd.testing.assert_series_equal(
        load_state(tmp_path / "local", TZ).day_events(),
        load_state(tmp_path / "dask", TZ).day_events(),
    )


def _events(rows: list[tuple[int, str, str, str]]) -> pd.DataFrame:
    """Validated events (event_id, minute of 2024-03-04 08:00 UTC, account, record)."""
    from detector.schema import normalise

    frame = pd.DataFrame(rows, columns=["event_id", "minute", "account_id", "record_id"])
    frame["timestamp"] = pd.Timestamp("2024-03-04T08:00Z") + pd.to_timedelta(
        frame.pop("minute"), "m"
    )
    frame["action"] = "view_record"
    return normalise(frame).events


def _table(events: pd.DataFrame):
    import pyarrow as pa

    return pa.Table.from_pandas(events, preserve_index=False)


def test_merging_with_the_kept_events_counts_each_event_once():
    from detector.engine.state import not_kept

    kept = _events([(0, 1, "a", "r1"), (1, 2, "a", "r2"), (2, 2, "a", "r2"), (3, 5, "b", "r3")])
    # Row positions as ids (no own ids): the same rows at other positions are known,
    # an identical row is known as many times as the kept events hold it.
    again = _events([(3, 1, "a", "r1"), (0, 2, "a", "r2"), (1, 2, "a", "r2"), (2, 2, "a", "r2")])
    assert not_kept(_table(kept), again, by_id=False).tolist() == [False, False, False, True]
    # Colliding positions on other rows are not known.
    other = _events([(0, 3, "a", "r1"), (3, 6, "b", "r3")])
    assert not_kept(_table(kept), other, by_id=False).tolist() == [True, True]
    assert not_kept(_table(kept), other, by_id=True).tolist() == [True, True]
    # Own ids: the same event re-delivered with another column changed is known.
    changed = _events([(3, 5, "b", "r9"), (4, 5, "b", "r3")])
    assert not_kept(_table(kept), changed, by_id=True).tolist() == [False, False]
    assert not_kept(_table(kept), changed, by_id=False).tolist() == [True, False]


def test_cli_unreadable_kept_events(nights, tmp_path):
    _, files = nights
    state = tmp_path / "state"
    score_log(files[0], mode="rules", state=state)
    kept = load_state(state, TZ).kept_path
    kept.write_bytes(b"not parquet")
    args = ["score", str(files[1]), "--mode", "rules", "--state", str(state)]
    result = CliRunner().invoke(main, args + ["--out", str(tmp_path / "a.parquet")])
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == (
        f"Error: {kept}: unreadable kept events (File is too small: 11)"
    )
