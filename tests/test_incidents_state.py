"""Incidents across runs: alerts of earlier runs (kept by --state) link this run's alerts."""

from __future__ import annotations

import pandas as pd

from detector.incidents import group_incidents


def _alerts(rows: list[tuple[str, str]], first: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Alerts (account, local day) and their feature rows."""
    records, features = [], []
    for i, (account, day) in enumerate(rows):
        start = pd.Timestamp(f"{day}T08:00:00Z")
        records.append(
            {
                "alert_id": f"A{first + i:05d}",
                "account_id": account,
                "window_start": start,
                "window_end": start + pd.Timedelta(hours=9),
                "detected_at": start + pd.Timedelta(hours=1),
                "score": 0.7,
                "severity": "medium",
                "rules": ["r"],
            }
        )
        features.append(
            {
                "account_id": account,
                "window_start": start,
                "day": pd.Timestamp(day).date(),
                "records_touched": 10.0,
            }
        )
    return pd.DataFrame(records), pd.DataFrame(features)


def _earlier(alerts: pd.DataFrame, features: pd.DataFrame) -> pd.DataFrame:
    """What a state keeps of a run's alerts."""
    return alerts[["account_id", "window_start", "window_end", "detected_at"]].merge(
        features[["account_id", "window_start", "day"]], on=["account_id", "window_start"]
    )


CREATIONS = pd.DataFrame(
    {
        "creator": ["manager"],
        "target": ["new1"],
        "timestamp": pd.to_datetime(["2024-01-08T09:00Z"]),  # during the manager's alerted window
    }
)


def test_an_account_created_last_week_joins_its_creators_incident():
    # One run over both weeks: the reference.
    alerts, features = _alerts(
        [("manager", "2024-01-08"), ("new1", "2024-01-15"), ("other", "2024-01-15")]
    )
    whole, _ = group_incidents(alerts, features, CREATIONS)
    # Last week's run alerted on the manager; this week's on the account it created.
    before, before_features = _alerts([("manager", "2024-01-08")])
    today, today_features = _alerts([("new1", "2024-01-15"), ("other", "2024-01-15")], first=2)
    earlier = _earlier(before, before_features)

    alone, _ = group_incidents(today, today_features, CREATIONS)
    assert alone["incident_id"].iloc[0] != whole["incident_id"].iloc[0]  # without the past

    grouped, incidents = group_incidents(today, today_features, CREATIONS, earlier)
    assert list(grouped["incident_id"]) == list(whole["incident_id"].iloc[1:])
    assert grouped["incident_id"].iloc[0] == whole["incident_id"].iloc[0]  # the manager's
    assert grouped["incident_id"].iloc[1] != grouped["incident_id"].iloc[0]
    # The table counts this run's alerts only.
    assert sorted(incidents["alerts"]) == [1, 1]
    assert sorted(a for accounts in incidents["accounts"] for a in accounts) == ["new1", "other"]


def test_an_account_alerted_friday_and_monday_keeps_its_incident_across_runs():
    friday, friday_features = _alerts([("u1", "2024-01-12")])
    monday, monday_features = _alerts([("u1", "2024-01-15")], first=2)
    first, _ = group_incidents(friday, friday_features, CREATIONS.iloc[:0])
    grouped, incidents = group_incidents(
        monday, monday_features, CREATIONS.iloc[:0], _earlier(friday, friday_features)
    )
    assert grouped["incident_id"].iloc[0] == first["incident_id"].iloc[0]
    assert incidents["first_activity"].iloc[0] == monday["window_start"].iloc[0]


def test_a_creation_outside_the_creators_alerted_windows_links_nothing():
    before, before_features = _alerts([("manager", "2024-01-09")])  # alerted the day after
    today, today_features = _alerts([("new1", "2024-01-15")], first=2)
    grouped, _ = group_incidents(
        today, today_features, CREATIONS, _earlier(before, before_features)
    )
    alone, _ = group_incidents(today, today_features, CREATIONS)
    assert grouped["incident_id"].iloc[0] == alone["incident_id"].iloc[0]
