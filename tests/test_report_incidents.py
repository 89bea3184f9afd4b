"""`detector report` by incident: one section per incident, its alert-days inside, small."""

from __future__ import annotations

import json
import re

import pandas as pd
from click.testing import CliRunner

from detector.cli import main
from detector.incidents import group_incidents, incidents_path, read_incidents
from detector.report import render_report
from detector.schema import read_events

# A report of 100 incidents (300 alert-days, all detailed) must stay under this
# size: about what a browser opens at once; each incident draws one small
# timeline per account, not one per alert-day.
BUDGET_BYTES_100_INCIDENTS = 5 * 2**20


def test_report_has_one_section_per_incident_with_its_alert_days(small_log, tmp_path):
    alerts_path = tmp_path / "alerts.parquet"
    result = CliRunner().invoke(
        main, ["score", str(small_log), "--out", str(alerts_path), "--mode", "rules"]
    )
    assert result.exit_code == 0, result.output
    out = tmp_path / "report.html"
    result = CliRunner().invoke(
        main,
        [
            "report",
            str(alerts_path),
            "--log",
            str(small_log),
            "--out",
            str(out),
            "--max-alerts",
            "500",
        ],
    )
    assert result.exit_code == 0, result.output
    page = out.read_text()
    alerts = pd.read_parquet(alerts_path)
    incidents = read_incidents(incidents_path(alerts_path))
    sections = re.findall(
        r'<section id="incident-([^"]+)" class="incident">(.*?)</section>\n(?=<section id="incident-|</body>)',
        page,
        re.S,
    )
    assert [s[0] for s in sections] == list(incidents["incident_id"])
    for incident_id, body in sections:
        expected = alerts.loc[alerts["incident_id"] == incident_id, "alert_id"]
        inside = re.findall(r'<section id="alert-([^"]+)"', body)
        assert sorted(inside) == sorted(expected)
    assert page.count("<h3>Incidents</h3>") == 1


def _hundred_incidents(events: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Three alert-days on each of 100 accounts, as detector.alerts writes them."""
    accounts = events["account_id"].astype(str).drop_duplicates().head(100).tolist()
    records, features = [], []
    for a, account in enumerate(accounts):
        for d in range(3):
            start = pd.Timestamp("2024-01-09T07:00:00Z") + pd.Timedelta(days=d)
            records.append(
                {
                    "alert_id": f"A{a * 3 + d + 1:05d}",
                    "account_id": account,
                    "account_type": "advisor",
                    "window_start": start,
                    "window_end": start + pd.Timedelta(hours=10),
                    "detected_at": start + pd.Timedelta(hours=2),
                    "score": 0.7,
                    "severity": "medium",
                    "rules": ["volume_far_above_own_and_peers"],
                    "rule_times": [start + pd.Timedelta(hours=2)],
                    "model_score": float("nan"),
                    "top_features": [],
                    "reason": "records_read 900 (own median 40, peers' 95th percentile 120)",
                    "evidence": json.dumps(
                        [
                            {
                                "feature": "records_read",
                                "doc": "records read",
                                "value": 900.0,
                                "own_median": 40.0,
                                "peer_p95": 120.0,
                            }
                        ]
                    ),
                }
            )
            features.append(
                {
                    "account_id": account,
                    "window_start": start,
                    "day": start.date(),
                    "records_touched": 900.0,
                }
            )
    return group_incidents(
        pd.DataFrame(records),
        pd.DataFrame(features),
        pd.DataFrame({"creator": [], "target": [], "timestamp": []}),
    )


def test_a_report_of_100_incidents_stays_within_its_size_budget(small_log):
    max_alerts = 300  # every alert-day of the 100 incidents detailed
    events = read_events(small_log)
    alerts, incidents = _hundred_incidents(events)
    assert len(incidents) == 100
    page = render_report(
        alerts,
        events[events["account_id"].isin(set(alerts["account_id"]))],
        max_alerts=max_alerts,
        incidents=incidents,
    )
    detailed = page.count('class="incident"')
    assert detailed == 100
    assert len(page.encode()) < BUDGET_BYTES_100_INCIDENTS
