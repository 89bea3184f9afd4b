"""Benchmark metrics on tiny hand-computed cases (definitions in docs/metrics.md)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from detector import metrics
from detector.errors import InputError

T = pd.Timestamp


def _events() -> pd.DataFrame:
    rows = [
        # attack A1 (missed): 2 distinct records
        ("2024-01-02 01:00", "x1", "view_record", "r1", None),
        ("2024-01-02 02:00", "x1", "view_record", "r2", None),
        # attack A2 (detected at its first event): 50 + 1 + 100 = 151 records
        ("2024-01-03 10:00", "x2", "search", None, 50),
        ("2024-01-03 10:30", "x2", "view_record", "r1", None),
        ("2024-01-03 11:00", "x2", "view_record", "r1", None),  # same record again: not new
        ("2024-01-03 11:30", "x2", "export", None, 100),  # bulk export
        # attack A3 (detected late, at its third event): 4 records
        ("2024-01-04 08:00", "x3", "view_record", "r1", None),
        ("2024-01-04 09:00", "x3", "view_record", "r2", None),
        ("2024-01-04 10:00", "x3", "update_record", "r3", None),
        ("2024-01-04 11:00", "x3", "export", "r4", None),  # single-record export
        ("2024-01-04 12:00", "x3", "login", None, None),
        # benign accounts: b1 2 local days, b2 2 local days (one UTC day), b3 1 day
        ("2024-01-02 09:00", "b1", "view_record", "r9", None),
        ("2024-01-02 15:00", "b1", "view_record", "r8", None),
        ("2024-01-03 09:00", "b1", "search", None, 3),
        ("2024-01-01 22:00", "b2", "login", None, None),  # 23:00 in Paris, 1 January
        ("2024-01-01 23:30", "b2", "view_record", "r7", None),  # 00:30 in Paris, 2 January
        ("2024-01-05 10:00", "b3", "view_record", "r6", None),
    ]
    frame = pd.DataFrame(
        rows, columns=["timestamp", "account_id", "action", "record_id", "records_returned"]
    )
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    frame["records_returned"] = frame["records_returned"].astype("Int64")
    frame.insert(0, "event_id", [f"e{i}" for i in range(len(frame))])
    return frame


ATTACKS = [
    {
        "attack_id": "A1",
        "scenario": "s_missed",
        "accounts": ["x1"],
        "start": "2024-01-02T01:00:00Z",
        "end": "2024-01-02T02:00:00Z",
    },
    {
        "attack_id": "A2",
        "scenario": "s_first",
        "accounts": ["x2"],
        "start": "2024-01-03T10:00:00Z",
        "end": "2024-01-03T11:30:00Z",
    },
    {
        "attack_id": "A3",
        "scenario": "s_late",
        "accounts": ["x3"],
        "start": "2024-01-04T08:00:00Z",
        "end": "2024-01-04T12:00:00Z",
    },
]


def _truth(events: pd.DataFrame) -> pd.DataFrame:
    attack_of = {"x1": "A1", "x2": "A2", "x3": "A3"}
    bad = events[events["account_id"].isin(list(attack_of))]
    return pd.DataFrame(
        {
            "event_id": bad["event_id"],
            "attack_id": bad["account_id"].map(attack_of),
            "scenario": "whatever",
        }
    )


def _alerts(rows) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["account_id", "detected_at", "severity", "rules"])
    frame["detected_at"] = pd.to_datetime(frame["detected_at"], utc=True)
    return frame


ALERTS = [
    ("x3", "2024-01-01 12:00", "high", ["volume"]),  # before A3 starts: detects nothing
    ("x2", "2024-01-03 10:00", "medium", ["bulk_search", "night"]),
    ("x3", "2024-01-04 10:00", "low", []),  # model alone
    ("x3", "2024-01-04 11:00", "high", ["volume"]),
    ("b1", "2024-01-02 09:00", "medium", ["night"]),  # benign, twice on one day
    ("b1", "2024-01-02 15:00", "high", ["night", "volume"]),
]


@pytest.fixture
def case():
    events = _events()
    return _alerts(ALERTS), events, _truth(events)


def test_missed_attack(case):
    alerts, events, truth = case
    row = metrics.attack_outcomes(alerts, ATTACKS, truth, events).set_index("attack_id").loc["A1"]
    assert row["detected"] == 0
    assert pd.isna(row["detected_at"]) and math.isnan(row["time_to_detect_h"])
    assert row["records_total"] == 2
    assert row["exposed_before_detection"] == 1.0
    assert pd.isna(row["first_rule"])


def test_detected_at_first_event(case):
    alerts, events, truth = case
    row = metrics.attack_outcomes(alerts, ATTACKS, truth, events).set_index("attack_id").loc["A2"]
    assert row["detected"] == 1
    assert row["time_to_detect_h"] == 0.0
    assert row["records_total"] == 151  # 50 searched + r1 once + 100 exported
    # the detection instant is included: the search's 50 records were already out
    assert row["records_exposed"] == 50
    assert row["exposed_before_detection"] == pytest.approx(50 / 151)
    assert row["first_rule"] == "bulk_search"


def test_detected_late(case):
    alerts, events, truth = case
    row = metrics.attack_outcomes(alerts, ATTACKS, truth, events).set_index("attack_id").loc["A3"]
    assert row["detected"] == 1
    assert row["time_to_detect_h"] == 2.0  # the alert before the start does not count
    assert row["records_total"] == 4
    assert row["exposed_before_detection"] == pytest.approx(3 / 4)
    assert row["first_rule"] == metrics.MODEL_ONLY
    assert row["first_severity"] == "low"


@pytest.mark.parametrize(
    ("detected_at", "detected"),
    [
        ("2024-01-02 00:59:59", 0),  # before the start
        ("2024-01-02 01:00:00", 1),  # at the start
        ("2024-01-03 02:00:00", 1),  # end + exactly one day
        ("2024-01-03 02:00:01", 0),  # past the grace day
    ],
)
def test_detection_window_bounds(detected_at, detected):
    found = metrics.detections(_alerts([("x1", detected_at, "low", ["r"])]), ATTACKS)
    assert found.set_index("attack_id").loc["A1", "detected"] == detected


def test_first_rule_is_the_model_when_the_alert_predates_its_rules():
    at = T("2024-01-03 10:00", tz="UTC")
    later = T("2024-01-03 10:30", tz="UTC")
    alerts = pd.DataFrame(
        {
            "account_id": ["x2"],
            "detected_at": [at],
            "severity": ["high"],
            "rules": [["bulk_search"]],
            "rule_times": [[later]],
        }
    )
    found = metrics.detections(alerts, ATTACKS).set_index("attack_id")
    assert found.loc["A2", "first_rule"] == metrics.MODEL_ONLY
    alerts["rule_times"] = [[at]]
    found = metrics.detections(alerts, ATTACKS).set_index("attack_id")
    assert found.loc["A2", "first_rule"] == "bulk_search"


def test_benign_account_alerted_twice_on_one_day(case):
    alerts, events, _ = case
    counts = metrics.alert_counts(alerts, ATTACKS, events)
    assert counts["alerts_total"] == 6
    assert counts["benign_alerts"] == 2
    assert counts["benign_accounts_alerted"] == 1
    assert counts["benign_alert_days"] == 1
    # b1: 2 days, b2: 2 local days (a single UTC day), b3: 1 day
    assert counts["benign_account_days"] == 5
    assert counts["fp_per_1000_account_days"] == pytest.approx(2 / 5 * 1000)
    # alerted accounts x2, x3, b1; attack accounts x1, x2, x3
    assert counts["precision"] == pytest.approx(2 / 3)
    assert counts["recall"] == pytest.approx(2 / 3)


def test_account_days_use_local_days_unless_told():
    events = _events()
    b2 = events[events["account_id"] == "b2"]
    assert len(metrics.account_days(b2)) == 2
    assert len(metrics.account_days(b2, timezone="UTC")) == 1


def test_no_alerts_gives_undefined_precision_and_zero_false_alerts(case):
    _, events, truth = case
    empty = _alerts([])
    counts = metrics.alert_counts(empty, ATTACKS, events)
    assert math.isnan(counts["precision"])
    assert counts["recall"] == 0
    assert counts["fp_per_1000_account_days"] == 0
    outcomes = metrics.attack_outcomes(empty, ATTACKS, truth, events)
    assert outcomes["detected"].tolist() == [0, 0, 0]
    assert outcomes["exposed_before_detection"].tolist() == [1.0, 1.0, 1.0]


def test_scenario_rows(case):
    alerts, events, truth = case
    rows = metrics.scenario_metrics(alerts, ATTACKS, truth, events).set_index("scenario")
    assert rows.loc["s_missed", "detected"] == 0
    assert math.isnan(rows.loc["s_missed", "time_to_detect_h"])
    assert rows.loc["s_late", "time_to_detect_h"] == 2.0
    assert rows.loc["s_late", "recall"] == 1.0
    assert rows.loc["s_missed", "recall"] == 0.0
    # benign side is data-set-wide: identical on every row
    assert set(rows["fp_per_1000_account_days"]) == {400.0}
    assert set(rows["benign_accounts_alerted"]) == {1}


def test_scenario_with_two_instances_pools_records():
    events = _events()
    truth = _truth(events)
    attacks = [dict(a, scenario="same") for a in ATTACKS[1:]]  # A2 and A3
    truth = truth[truth["attack_id"].isin(["A2", "A3"])]
    only_a3 = _alerts([("x3", "2024-01-04 10:00", "low", [])])
    row = metrics.scenario_metrics(only_a3, attacks, truth, events).iloc[0]
    assert (row["attacks"], row["attacks_detected"], row["detected"]) == (2, 1, 0)
    assert math.isnan(row["time_to_detect_h"])
    assert row["exposed_before_detection"] == 1.0
    both = _alerts([("x3", "2024-01-04 10:00", "low", []), ("x2", "2024-01-03 11:00", "low", [])])
    row = metrics.scenario_metrics(both, attacks, truth, events).iloc[0]
    assert row["detected"] == 1
    assert row["time_to_detect_h"] == 2.0  # the slower instance
    # A2: 50 + r1 by 11:00 = 51 of 151; A3: 3 of 4
    assert row["exposed_before_detection"] == pytest.approx((51 + 3) / (151 + 4))


def test_positional_and_integer_event_ids():
    events = _events()
    truth = _truth(events)
    truth["event_id"] = truth["event_id"].str[1:].astype("int64")
    alerts = _alerts(ALERTS)
    expected = metrics.attack_outcomes(alerts, ATTACKS, _truth(events), events)
    without_ids = metrics.attack_outcomes(alerts, ATTACKS, truth, events.drop(columns="event_id"))
    assert without_ids["records_exposed"].tolist() == expected["records_exposed"].tolist()
    int_ids = events.assign(event_id=range(len(events)))
    with_ints = metrics.attack_outcomes(alerts, ATTACKS, truth, int_ids)
    assert with_ints["records_total"].tolist() == [2, 151, 4]


def test_lookalikes(case):
    alerts, _, _ = case
    lookalikes = [
        {
            "kind": "late_work",
            "accounts": ["b1"],
            "start": "2024-01-02T08:00:00Z",
            "end": "2024-01-02T20:00:00Z",
        },
        {
            "kind": "handover",
            "accounts": ["b2", "b3"],
            "start": "2024-01-01T00:00:00Z",
            "end": "2024-01-05T00:00:00Z",
        },
        {  # b1 again, but its alerts fall before this instance
            "kind": "remote_work",
            "accounts": ["b1"],
            "start": "2024-01-04T00:00:00Z",
            "end": "2024-01-04T20:00:00Z",
        },
    ]
    out = metrics.lookalike_outcomes(alerts, lookalikes)
    assert out["accounts"].tolist() == [1, 2, 1]
    assert out["accounts_alerted"].tolist() == [1, 0, 0]
    assert out["accounts_alerted_high"].tolist() == [1, 0, 0]
    assert out["alerts"].tolist() == [2, 0, 0]
    assert out["max_severity"].tolist() == ["high", None, None]
    assert metrics.lookalike_outcomes(alerts, None).empty
    # b1 is in two instances but counts once; b2, b3 were not alerted
    assert metrics.lookalike_summary(alerts, lookalikes) == {
        "lookalike_accounts": 3,
        "lookalike_accounts_alerted": 1,
        "lookalike_accounts_alerted_high": 1,
    }


def test_rule_alert_counts(case):
    alerts, _, _ = case
    counts = metrics.rule_alert_counts(alerts, ATTACKS).set_index("rule")
    assert counts.loc["night", "false_alerts"] == 2
    assert counts.loc["night", "attack_account_alerts"] == 1
    assert counts.loc["volume", "false_alerts"] == 1
    assert counts.loc["volume", "attack_account_alerts"] == 2
    assert counts.loc[metrics.MODEL_ONLY, "attack_account_alerts"] == 1
    assert counts.loc["bulk_search", "false_alerts"] == 0


def test_attack_times_in_mixed_iso_forms():
    attacks = [
        dict(ATTACKS[0], start="2024-01-02T01:00:00.000000+00:00", end="2024-01-02T02:00:00Z"),
        dict(ATTACKS[1], start="2024-01-03T11:00:00+01:00"),  # 10:00 UTC
    ]
    table = metrics.attacks_table(attacks)
    assert table["start"].tolist() == [
        T("2024-01-02 01:00", tz="UTC"),
        T("2024-01-03 10:00", tz="UTC"),
    ]
    with pytest.raises(InputError, match="unreadable timestamp"):
        metrics.attacks_table([dict(ATTACKS[0], start="yesterday")])


def test_missing_columns_are_input_errors(case):
    alerts, events, truth = case
    with pytest.raises(InputError, match="alerts lack detected_at"):
        metrics.alert_counts(alerts.drop(columns="detected_at"), ATTACKS, events)
    with pytest.raises(InputError, match="attacks lack end"):
        metrics.attacks_table([{k: v for k, v in ATTACKS[0].items() if k != "end"}])
