"""Alerts as OCSF Detection Findings (class 2004), one JSON object per line.

What a SIEM ingests: each alert (an account-day) becomes one finding with a
stable ``finding_info.uid`` (a hash of the account, the window and the rules
that fired: a rerun on the same log gives the same uid), the rules as analytics
(type Rule) or the model (type Learning), MITRE ATT&CK techniques from each
rule's ``technique``, the features behind the alert with their baselines as
evidences, and the incident it belongs to. Written against OCSF 1.8.0; the
tests validate the output with that version's JSON Schema.
"""

from __future__ import annotations

import hashlib
import json
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pandas as pd

from detector.outputs import write_text
from detector.rules import RuleSet, load_ruleset

OCSF_VERSION = "1.8.0"
CLASS_UID = 2004  # Detection Finding
CATEGORY_UID = 2  # Findings
ACTIVITY_CREATE = 1
SEVERITY_ID = {"low": 2, "medium": 3, "high": 4}  # OCSF: 2 Low, 3 Medium, 4 High
STATUS_NEW = 1
ANALYTIC_RULE = 1
ANALYTIC_LEARNING = 4  # "Learning (ML/DL)"
MODEL_ANALYTIC = "isolation_forest"


def _product_version() -> str:
    try:
        return version("logsentinel")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0"


def _ms(stamp) -> int:
    return int(pd.Timestamp(stamp).value // 1_000_000)


def finding_uid(account_id: str, window_start, window_end, rules: list[str]) -> str:
    """A stable id of an alert: account, window and the sorted set of what fired."""
    key = "|".join(
        [
            account_id,
            pd.Timestamp(window_start).isoformat(),
            pd.Timestamp(window_end).isoformat(),
            ",".join(sorted(rules)),
        ]
    )
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def _attack(technique: str) -> dict:
    """An ATT&CK id (T1078 or T1567.002) as an OCSF attack object."""
    base, _, sub = technique.partition(".")
    attack: dict = {"technique": {"uid": base}}
    if sub:
        attack["sub_technique"] = {"uid": technique}
    return attack


def to_finding(alert: pd.Series, ruleset: RuleSet | None) -> dict:
    """One alert row (as :mod:`detector.alerts` writes it) as a Detection Finding."""
    rules = [str(r) for r in alert["rules"]]
    # The model raised (or co-raised) the alert when it alone fired or it named its drivers.
    model_hit = not rules or len(alert.get("top_features", [])) > 0
    fired = rules + ([MODEL_ANALYTIC] if model_hit else [])
    analytics = []
    attacks = []
    for rule_id in rules:
        rule = ruleset.rule(rule_id) if ruleset is not None else None
        name = rule.title if rule is not None else rule_id
        analytics.append({"uid": rule_id, "name": name, "type_id": ANALYTIC_RULE, "type": "Rule"})
        if rule is not None and rule.technique:
            attacks.append(_attack(rule.technique))
    if model_hit:
        analytics.append(
            {
                "uid": MODEL_ANALYTIC,
                "name": "IsolationForest over the feature table",
                "type_id": ANALYTIC_LEARNING,
                "type": "Learning (ML/DL)",
            }
        )
    evidence = json.loads(alert["evidence"]) if isinstance(alert.get("evidence"), str) else []
    severity = str(alert["severity"])
    finding_info: dict = {
        "uid": finding_uid(alert["account_id"], alert["window_start"], alert["window_end"], fired),
        "title": f"Unusual activity of account {alert['account_id']}: {', '.join(fired)}",
        "desc": alert["reason"],
        "first_seen_time": _ms(alert["window_start"]),
        "last_seen_time": _ms(alert["window_end"]),
        "created_time": _ms(alert["detected_at"]),
        "analytic": analytics[0],
        "types": ["Account behaviour anomaly"],
    }
    if len(analytics) > 1:
        finding_info["related_analytics"] = analytics[1:]
    if attacks:
        finding_info["attacks"] = [
            dict(t) for t in {json.dumps(a, sort_keys=True): a for a in attacks}.values()
        ]
    finding = {
        "class_uid": CLASS_UID,
        "class_name": "Detection Finding",
        "category_uid": CATEGORY_UID,
        "category_name": "Findings",
        "activity_id": ACTIVITY_CREATE,
        "activity_name": "Create",
        "type_uid": CLASS_UID * 100 + ACTIVITY_CREATE,
        "type_name": "Detection Finding: Create",
        "time": _ms(alert["detected_at"]),
        "start_time": _ms(alert["window_start"]),
        "end_time": _ms(alert["window_end"]),
        "severity_id": SEVERITY_ID[severity],
        "severity": severity.capitalize(),
        "status_id": STATUS_NEW,
        "status": "New",
        "is_alert": True,
        "risk_score": int(round(float(alert["score"]) * 100)),
        "message": alert["reason"],
        "finding_info": finding_info,
        "evidences": [
            {
                "name": item["feature"],
                "data": {
                    "feature": item["feature"],
                    "doc": item.get("doc"),
                    "value": item.get("value"),
                    "own_median": item.get("own_median"),
                    "peer_p95": item.get("peer_p95"),
                },
                "user": {"uid": alert["account_id"]},
            }
            for item in evidence
        ]
        or [{"user": {"uid": alert["account_id"]}}],
        "metadata": {
            "product": {
                "name": "logsentinel",
                "vendor_name": "logsentinel",
                "version": _product_version(),
            },
            "version": OCSF_VERSION,
            "uid": str(alert.get("alert_id", "")),
        },
        "unmapped": {"account_type": alert.get("account_type")},
    }
    if isinstance(alert.get("incident_id"), str):
        finding["metadata"]["correlation_uid"] = alert["incident_id"]
    return finding


def write_findings(
    alerts: pd.DataFrame, path: str | Path, rules: str | Path | RuleSet | None
) -> Path:
    """Write alerts as OCSF Detection Findings, one JSON object per line.

    ``rules`` is the rule set the alerts were raised with (name, file or loaded):
    it gives each rule's title and ATT&CK technique.
    """
    ruleset = load_ruleset(rules) if isinstance(rules, str | Path) else rules
    lines = [json.dumps(to_finding(alert, ruleset)) + "\n" for _, alert in alerts.iterrows()]
    return write_text(path, "".join(lines))  # one per alert: tens to hundreds


def read_findings(path: str | Path) -> list[dict]:
    """The findings of a file written by :func:`write_findings`."""
    with Path(path).open(encoding="utf-8") as stream:
        return [json.loads(line) for line in stream if line.strip()]
