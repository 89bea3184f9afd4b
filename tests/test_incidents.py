"""Incidents: alerts grouped by account continuity and by accounts one attack created."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from detector.cli import main
from detector.errors import InputError
from detector.incidents import (
    INCIDENT_COLUMNS,
    creation_pairs,
    group_incidents,
    incidents_path,
    read_incidents,
    write_incidents,
)


def _alerts(rows: list[tuple[str, str, str, list[str]]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Alerts (account, local day, severity, rules) and the feature rows they come from."""
    records, features = [], []
    for i, (account, day, severity, rules) in enumerate(rows):
        start = pd.Timestamp(f"{day}T08:00:00Z")
        records.append(
            {
                "alert_id": f"A{i + 1:05d}",
                "account_id": account,
                "window_start": start,
                "window_end": start + pd.Timedelta(hours=9),
                "detected_at": start + pd.Timedelta(hours=1),
                "score": {"low": 0.5, "medium": 0.7, "high": 0.85}[severity],
                "severity": severity,
                "rules": rules,
            }
        )
        features.append(
            {
                "account_id": account,
                "window_start": start,
                "day": pd.Timestamp(day).date(),
                "records_touched": 100.0 * (i + 1),
            }
        )
    return pd.DataFrame(records), pd.DataFrame(features)


NO_CREATIONS = pd.DataFrame({"creator": [], "target": [], "timestamp": []})


def _groups(alerts: pd.DataFrame) -> list[list[str]]:
    return sorted(sorted(g["alert_id"]) for _, g in alerts.groupby("incident_id"))


@pytest.mark.parametrize(
    "days, expected",
    [
        (["2024-01-08", "2024-01-09"], [["A00001", "A00002"]]),  # Monday, Tuesday
        (["2024-01-12", "2024-01-15"], [["A00001", "A00002"]]),  # Friday, next Monday
        (["2024-01-13", "2024-01-14"], [["A00001", "A00002"]]),  # Saturday, Sunday
        (["2024-01-08", "2024-01-10"], [["A00001"], ["A00002"]]),  # a quiet Tuesday between
        (["2024-01-12", "2024-01-16"], [["A00001"], ["A00002"]]),  # Fri, then Tue: Monday quiet
    ],
)
def test_alerts_on_one_account_chain_over_consecutive_working_days(days, expected):
    alerts, features = _alerts([("u1", day, "medium", ["r"]) for day in days])
    grouped, _ = group_incidents(alerts, features, NO_CREATIONS)
    assert _groups(grouped) == expected


def test_different_accounts_on_the_same_day_stay_apart():
    alerts, features = _alerts(
        [("u1", "2024-01-08", "high", ["r"]), ("u2", "2024-01-08", "low", ["r"])]
    )
    grouped, incidents = group_incidents(alerts, features, NO_CREATIONS)
    assert len(incidents) == 2 and grouped["incident_id"].nunique() == 2


def test_accounts_created_during_an_alerted_window_join_their_creators_incident():
    alerts, features = _alerts(
        [
            ("manager", "2024-01-08", "medium", ["account_admin"]),
            ("new1", "2024-01-10", "high", ["new_account_reading"]),
            ("new2", "2024-01-11", "medium", ["new_account_reading"]),
            ("other", "2024-01-10", "low", ["x"]),
        ]
    )
    creations = pd.DataFrame(
        {
            "creator": ["manager", "manager", "manager"],
            "target": ["new1", "new2", "other"],
            "timestamp": pd.to_datetime(
                ["2024-01-08T09:00Z", "2024-01-08T09:05Z", "2024-01-01T09:00Z"]  # other: earlier
            ),
        }
    )
    grouped, incidents = group_incidents(alerts, features, creations)
    assert _groups(grouped) == [["A00001", "A00002", "A00003"], ["A00004"]]
    attack = incidents.iloc[0]
    assert list(attack["accounts"]) == ["manager", "new1", "new2"]
    assert attack["severity"] == "high"
    assert list(attack["rules"]) == ["account_admin", "new_account_reading"]
    assert attack["records_exposed"] == 100 + 200 + 300
    assert attack["first_detected"] == alerts["detected_at"].iloc[0]
    assert attack["last_detected"] == alerts["detected_at"].iloc[2]
    assert attack["alerts"] == 3


def test_incident_ids_are_stable_and_do_not_depend_on_alert_order():
    alerts, features = _alerts(
        [
            ("u1", "2024-01-08", "medium", ["r"]),
            ("u2", "2024-01-09", "high", ["r"]),
            ("u1", "2024-01-09", "low", ["r"]),
        ]
    )
    first, _ = group_incidents(alerts, features, NO_CREATIONS)
    shuffled, _ = group_incidents(alerts.iloc[::-1].reset_index(drop=True), features, NO_CREATIONS)
    by_alert = dict(zip(first["alert_id"], first["incident_id"], strict=True))
    assert dict(zip(shuffled["alert_id"], shuffled["incident_id"], strict=True)) == by_alert
    assert all(i.startswith("INC-") for i in by_alert.values())


def test_creation_pairs_come_from_create_and_grant_events_naming_an_account():
    events = pd.DataFrame(
        {
            "account_id": pd.Categorical(["m", "m", "m", "a"]),
            "action": pd.Categorical(
                ["create_account", "grant_access", "create_account", "view_record"]
            ),
            "target_account_id": pd.Categorical(["n1", "n2", None, "zz"]),
            "timestamp": pd.to_datetime(["2024-01-08T09:00Z"] * 4),
        }
    )
    pairs = creation_pairs(events)
    assert list(zip(pairs["creator"], pairs["target"], strict=True)) == [("m", "n1"), ("m", "n2")]


def test_write_and_read_round_trip(tmp_path):
    alerts, features = _alerts([("u1", "2024-01-08", "medium", ["r"])])
    _, incidents = group_incidents(alerts, features, NO_CREATIONS)
    path = write_incidents(incidents, tmp_path / "x.incidents.parquet")
    back = read_incidents(path)
    assert list(back.columns) == INCIDENT_COLUMNS
    assert back["accounts"].tolist() == [["u1"]]
    with pytest.raises(InputError, match="no such incidents file"):
        read_incidents(tmp_path / "missing.parquet")


def test_score_groups_each_generated_attack_into_one_incident(small_log, tmp_path):
    out = tmp_path / "alerts.parquet"
    result = CliRunner().invoke(
        main, ["score", str(small_log), "--out", str(out), "--mode", "rules"]
    )
    assert result.exit_code == 0, result.output
    alerts = pd.read_parquet(out)
    incidents = read_incidents(incidents_path(out))
    assert incidents_path(out).name == "alerts.incidents.parquet"
    assert alerts["incident_id"].notna().all()
    assert set(alerts["incident_id"]) == set(incidents["incident_id"])
    assert len(incidents) < len(alerts)  # alert-days are grouped
    attacks = json.loads(small_log.with_name("logs.attacks.json").read_text())
    for attack in attacks:
        alerted = alerts[alerts["account_id"].isin(attack["accounts"])]
        assert len(alerted), attack["scenario"]
        # Each account's alert-days of the attack form one incident (the attack was continuous)...
        assert (alerted.groupby("account_id")["incident_id"].nunique() == 1).all(), attack[
            "scenario"
        ]
        if (
            attack["scenario"] == "ouiform_account_creation"
        ):  # ...created accounts join their creator
            assert alerted["account_id"].nunique() >= 2
            assert alerted["incident_id"].nunique() == 1
        # ...which holds no other attack's accounts.
        others = {a for other in attacks if other is not attack for a in other["accounts"]}
        for incident_id in set(alerted["incident_id"]):
            incident = incidents.set_index("incident_id").loc[incident_id]
            assert not others & set(incident["accounts"]), attack["scenario"]
