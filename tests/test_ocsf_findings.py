"""`detector score --format ocsf`: Detection Findings that validate against OCSF 1.8.0."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pandas as pd
import pytest
from click.testing import CliRunner

from detector.cli import main
from detector.ocsf import OCSF_VERSION, read_findings
from detector.rules import load_ruleset
from synthetic_logs.generate import generate_dataset

SCHEMA = Path(__file__).parent / "ocsf" / f"detection_finding-{OCSF_VERSION}.schema.json"


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.fixture(scope="module")
def scored(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ocsf")
    log = root / "logs.parquet"
    generate_dataset(log, seed=5, accounts=120, days=14)
    paths = {"log": log}
    for name, fmt in (("findings", "ocsf"), ("again", "ocsf"), ("alerts", "parquet")):
        out = root / f"{name}.{'jsonl' if fmt == 'ocsf' else fmt}"
        result = CliRunner().invoke(
            main, ["score", str(log), "--format", fmt, "--out", str(out), "--mode", "both"]
        )
        assert result.exit_code == 0, result.output
        paths[name] = out
    return paths


def test_every_finding_validates_against_the_ocsf_schema(scored, validator):
    findings = read_findings(scored["findings"])
    assert len(findings) == len(pd.read_parquet(scored["alerts"])) > 0
    for finding in findings:
        errors = sorted(validator.iter_errors(finding), key=str)
        assert not errors, f"{finding['finding_info']['uid']}: {errors[0].message}"
        assert finding["class_uid"] == 2004 and finding["is_alert"] is True


def test_the_validator_rejects_a_broken_finding(scored, validator):
    finding = read_findings(scored["findings"])[0]
    broken = {k: v for k, v in finding.items() if k != "finding_info"}
    assert not validator.is_valid(broken)
    assert not validator.is_valid({**finding, "severity_id": 42})
    assert not validator.is_valid({**finding, "not_an_ocsf_field": 1})


def test_finding_uids_are_stable_on_a_rerun_and_unique(scored):
    first = [f["finding_info"]["uid"] for f in read_findings(scored["findings"])]
    again = [f["finding_info"]["uid"] for f in read_findings(scored["again"])]
    assert first == again
    assert len(set(first)) == len(first)


def test_findings_carry_rules_techniques_times_and_evidence(scored):
    alerts = pd.read_parquet(scored["alerts"])
    findings = {f["metadata"]["uid"]: f for f in read_findings(scored["findings"])}
    ruleset = load_ruleset("default")
    severity_ids = {"low": 2, "medium": 3, "high": 4}
    for alert in alerts.itertuples():
        finding = findings[alert.alert_id]
        info = finding["finding_info"]
        analytics = [info["analytic"], *info.get("related_analytics", [])]
        rule_uids = [a["uid"] for a in analytics if a["type_id"] == 1]
        assert rule_uids == list(alert.rules)
        assert any(a["type_id"] == 4 for a in analytics) == (
            len(alert.rules) == 0 or len(alert.top_features) > 0
        )
        techniques = {
            a["sub_technique"]["uid"] if "sub_technique" in a else a["technique"]["uid"]
            for a in info.get("attacks", [])
        }
        assert techniques == {ruleset.rule(r).technique for r in alert.rules}
        assert info["first_seen_time"] == alert.window_start.value // 10**6
        assert info["last_seen_time"] == alert.window_end.value // 10**6
        assert finding["time"] == alert.detected_at.value // 10**6
        assert finding["severity_id"] == severity_ids[alert.severity]
        assert finding["risk_score"] == round(alert.score * 100)
        evidence = json.loads(alert.evidence)
        assert [e["data"]["value"] for e in finding["evidences"] if "data" in e] == [
            e["value"] for e in evidence
        ]
        assert finding["metadata"]["correlation_uid"] == alert.incident_id


def test_no_alerts_give_an_empty_findings_file(tmp_path):
    log = tmp_path / "quiet.parquet"
    pd.DataFrame(
        {
            "timestamp": pd.date_range("2024-01-08 08:00", periods=5, freq="min", tz="UTC"),
            "account_id": ["u1"] * 5,
            "action": ["login", "view_record", "view_record", "search", "logout"],
        }
    ).to_parquet(log)
    out = tmp_path / "findings.jsonl"
    result = CliRunner().invoke(main, ["score", str(log), "--format", "ocsf", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert read_findings(out) == []
    assert len(pd.read_parquet(tmp_path / "findings.incidents.parquet")) == 0


def test_the_side_tables_of_an_ocsf_run_are_named_after_the_findings_not_ocsf(tmp_path):
    """`logs.findings.ocsf.jsonl` gets `logs.findings.incidents.parquet` and
    `logs.findings.rejects.parquet`: Parquet tables in the contract's form, not OCSF."""
    log = tmp_path / "logs.parquet"
    pd.DataFrame(
        {
            "timestamp": pd.to_datetime(["2024-01-08 08:00", None, "2024-01-08 08:02"], utc=True),
            "account_id": ["u1", "u1", "u1"],
            "action": ["login", "view_record", "logout"],
        }
    ).to_parquet(log)
    result = CliRunner().invoke(main, ["score", str(log), "--format", "ocsf"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "logs.findings.incidents.parquet",
        "logs.findings.ocsf.jsonl",
        "logs.findings.rejects.parquet",
        "logs.parquet",
    ]


def test_side_file_drops_the_format_suffixes():
    from detector.outputs import side_file

    assert side_file("d/alerts.parquet", "incidents").as_posix() == "d/alerts.incidents.parquet"
    assert side_file("a.alerts.csv", "rejects").name == "a.alerts.rejects.parquet"
    assert side_file("x.findings.ocsf.jsonl", "incidents").name == "x.findings.incidents.parquet"
    assert side_file("alerts", "incidents").name == "alerts.incidents.parquet"
