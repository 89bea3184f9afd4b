"""The feature table on hand-computed logs, and its honesty about time."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detector.features.catalogue import FEATURES
from detector.features.prefix import prefix_features
from detector.features.table import build_feature_table, local_wall_ns
from detector.schema import normalise, read_log


def _log(rows: list[tuple], **extra) -> pd.DataFrame:
    frame = pd.DataFrame(
        rows, columns=["timestamp", "account_id", "action", "record_id", "records_returned"]
    )
    for name, values in extra.items():
        frame[name] = values
    return frame


# Monday 25 March 2024, Paris is UTC+1 (the switch to UTC+2 is on Sunday 31 March).
ONE_DAY = [
    ("2024-03-25T07:00:00Z", "a", "login", None, None),  # 08:00 local
    ("2024-03-25T07:05:00Z", "a", "view_record", "r1", None),
    ("2024-03-25T07:06:00Z", "a", "view_record", "r1", None),  # same record: read once
    ("2024-03-25T07:10:00Z", "a", "view_record", "r3", None),  # outside the caseload
    ("2024-03-25T08:00:00Z", "a", "search", None, 20),
    ("2024-03-25T22:30:00Z", "a", "export", None, 100),  # 23:30 local: night
]
CASELOADS = pd.DataFrame({"account_id": ["a", "a"], "record_id": ["r1", "r2"]})


def _row(table: pd.DataFrame, account: str = "a") -> pd.Series:
    return table[table["account_id"] == account].iloc[0]


def test_counts_of_one_day_by_hand():
    features = build_feature_table(
        normalise(_log(ONE_DAY, auth_method=["mfa"] + [None] * 5)), CASELOADS
    )
    row = _row(features.features)
    assert row["events"] == 6
    assert row["records_read"] == 2
    assert row["out_of_caseload_reads"] == 1
    assert row["out_of_caseload_share"] == 0.5
    assert row["records_returned"] == 120
    assert row["records_exported"] == 100
    assert row["records_touched"] == 122
    assert row["searches"] == 1 and row["exports"] == 1
    assert row["mfa_logins"] == 1 and row["password_logins"] == 0
    assert row["night_share"] == pytest.approx(1 / 6)
    assert row["caseload_size"] == 2
    assert row["peak_hourly_records"] == 100  # the export's hour


def test_the_feature_table_has_exactly_the_catalogue():
    features = build_feature_table(normalise(_log(ONE_DAY)), CASELOADS).features
    assert list(features.columns[6:]) == list(FEATURES)


def test_without_caseloads_structure_mismatch_stands_in():
    frame = _log(
        ONE_DAY, organization_id=["o1"] * 6, record_org_id=[None, "o1", "o1", "o2", None, None]
    )
    features = build_feature_table(normalise(frame), None)
    assert _row(features.features)["out_of_caseload_reads"] == 1
    assert any("structure mismatch" in n for n in features.notices)


def test_without_caseloads_or_structures_the_features_are_absent_with_a_notice():
    features = build_feature_table(normalise(_log(ONE_DAY)), None)
    assert np.isnan(_row(features.features)["out_of_caseload_reads"])
    assert any("out-of-caseload features are absent" in n for n in features.notices)


def test_local_time_follows_daylight_saving():
    # 31 March 2024: 00:30 UTC is 01:30 CET; 01:30 UTC is 03:30 CEST (02:xx never exists).
    stamps = pd.DatetimeIndex(
        [
            "2024-03-31T00:30:00Z",
            "2024-03-31T01:30:00Z",
            "2024-10-27T00:30:00Z",
            "2024-10-27T01:30:00Z",
        ]
    )
    local = pd.to_datetime(local_wall_ns(stamps.as_unit("ns").asi8, "Europe/Paris"))
    assert [t.strftime("%H:%M") for t in local] == ["01:30", "03:30", "02:30", "02:30"]


def _day_of(account: str, start: str, days: int, reads_per_day: int, address: str) -> list[tuple]:
    rows = []
    for day in range(days):
        base = pd.Timestamp(start) + pd.Timedelta(days=day)
        for i in range(reads_per_day):
            rows.append(
                (
                    base + pd.Timedelta(minutes=i),
                    account,
                    "view_record",
                    f"{account}-r{i}",
                    None,
                    address,
                )
            )
    return rows


def test_novelty_needs_a_week_of_history():
    rows = _day_of("a", "2024-01-08T08:00Z", 8, 5, "10.0.0.1")
    rows += [
        (pd.Timestamp("2024-01-09T15:00Z"), "a", "login", None, None, "10.0.0.2")
    ]  # day 2: too early to judge
    rows += [
        (pd.Timestamp("2024-01-15T15:00Z"), "a", "login", None, None, "10.0.0.3")
    ]  # day 8: new
    frame = pd.DataFrame(
        rows,
        columns=["timestamp", "account_id", "action", "record_id", "records_returned", "src_ip"],
    )
    table = build_feature_table(normalise(frame), None).features
    assert list(table["new_addresses"]) == [0, 0, 0, 0, 0, 0, 0, 1]


def test_baselines_come_only_from_earlier_days(small_log):
    """Changing the last day of the log changes no feature of any earlier day."""
    log = read_log(small_log)
    before = build_feature_table(log, None).features
    events = log.events.copy()
    last_day = events["timestamp"].max() - pd.Timedelta(hours=12)
    burst = events[events["timestamp"] > last_day].head(2000).copy()
    burst["record_id"] = [f"burst-{i}" for i in range(len(burst))]
    after = build_feature_table(
        normalise(pd.concat([events, burst], ignore_index=True)), None
    ).features
    earlier = before["window_end"] <= last_day - pd.Timedelta(hours=12)
    key = ["account_id", "day"]
    left = before[earlier].set_index(key).sort_index()
    right = after.set_index(key).loc[left.index]
    pd.testing.assert_frame_equal(left, right, check_dtype=False)


def test_a_window_replayed_to_its_last_event_has_the_window_features(small_log):
    features = build_feature_table(read_log(small_log), None)
    table = features.features
    rng = np.random.default_rng(0)
    windows = np.sort(rng.choice(len(table), size=40, replace=False))
    replay = pd.DataFrame(prefix_features(features, windows))
    last = replay.groupby("window").tail(1).set_index("window")
    expected = table.iloc[windows]
    for name in FEATURES:
        np.testing.assert_allclose(
            last[name].to_numpy(), expected[name].to_numpy(), equal_nan=True, err_msg=name
        )


def test_replayed_counts_only_grow():
    features = build_feature_table(normalise(_log(ONE_DAY)), CASELOADS)
    replay = prefix_features(features, np.array([0]))
    assert list(replay["events"]) == [1, 2, 3, 4, 5, 6]
    assert list(replay["records_read"]) == [0, 1, 1, 2, 2, 2]
    assert list(replay["records_touched"]) == [0, 1, 1, 2, 22, 122]


def test_every_catalogued_feature_is_documented():
    from pathlib import Path

    doc = (Path(__file__).parents[1] / "docs" / "detector.md").read_text()
    missing = [name for name in FEATURES if f"`{name}`" not in doc]
    assert not missing, f"docs/detector.md lacks: {missing}"
    # The table's unit column says what the catalogue says.
    wrong = [n for n, f in FEATURES.items() if f"| `{n}` | {f.unit} |" not in doc]
    assert not wrong, f"docs/detector.md gives another unit for: {wrong}"


def test_accounts_listed_in_the_dictionary_without_events_are_ignored(tmp_path):
    frame = _log(ONE_DAY)
    frame["account_id"] = pd.Categorical(frame["account_id"], categories=["ghost", "a", "z"])
    path = tmp_path / "log.parquet"
    frame.to_parquet(path)
    table = build_feature_table(read_log(path), CASELOADS).features
    assert list(table["account_id"]) == ["a"]
