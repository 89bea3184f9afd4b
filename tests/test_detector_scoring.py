"""Scoring end to end: alerts' form, honest detection times, the model, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from detector.cli import main
from detector.errors import ModelError
from detector.model import WindowModel
from detector.pipeline import detect, prepare, score_log
from detector.rules import builtin_rulesets
from detector.schema import read_events

CONTRACT_COLUMNS = [
    "account_id",
    "window_start",
    "window_end",
    "detected_at",
    "score",
    "severity",
    "rules",
    "reason",
]


@pytest.fixture(scope="module")
def prepared(small_log):
    return prepare(small_log)


def test_alerts_follow_the_contract(prepared):
    alerts = detect(prepared)
    assert len(alerts) > 0
    assert set(CONTRACT_COLUMNS) <= set(alerts.columns)
    assert alerts["score"].between(0, 1).all()
    assert set(alerts["severity"]) <= {"low", "medium", "high"}
    assert (alerts["window_start"] <= alerts["detected_at"]).all()
    assert (alerts["detected_at"] <= alerts["window_end"]).all()
    assert all(reason.strip() for reason in alerts["reason"])
    # One alert per account and window, not one per rule.
    assert not alerts.duplicated(["account_id", "window_start"]).any()
    for rules, times in zip(alerts["rules"], alerts["rule_times"], strict=True):
        assert len(rules) == len(times) and list(times) == sorted(times)
    evidence = json.loads(alerts["evidence"].iloc[0])
    assert {"feature", "doc", "value", "own_median", "peer_p95"} <= set(evidence[0])


def test_model_only_alerts_have_no_rules_and_name_their_drivers(prepared):
    alerts = detect(prepared, mode="model")
    assert len(alerts) > 0
    assert all(len(rules) == 0 for rules in alerts["rules"])
    assert all("unusual window for the model" in reason for reason in alerts["reason"])
    assert alerts["model_score"].between(0, 1).all()


def test_detected_at_uses_no_event_after_it(small_log):
    """Cut the log at an alert's detected_at and score again: the same alert, same instant."""
    read = pd.read_parquet(small_log)
    alerts = score_log(small_log, mode="rules").alerts
    assert len(alerts) >= 3
    for _, alert in alerts.head(5).iterrows():
        cut = read[pd.to_datetime(read["timestamp"], utc=True) <= alert["detected_at"]]
        again = score_log(
            cut, caseloads=str(small_log).replace(".parquet", ".caseloads.parquet"), mode="rules"
        ).alerts
        same = again[
            (again["account_id"] == alert["account_id"])
            & (again["window_start"] == alert["window_start"])
        ]
        assert len(same) == 1, alert["reason"]
        assert same["detected_at"].iloc[0] == alert["detected_at"]


def test_every_shipped_rule_set_scores(prepared):
    for name in builtin_rulesets():
        alerts = detect(prepared, rules=name, mode="rules")
        assert set(CONTRACT_COLUMNS) <= set(alerts.columns), name


def test_model_round_trips_through_skops(prepared, tmp_path):
    table = prepared.features.table
    model = WindowModel(random_state=3).fit(table)
    path = tmp_path / "model.skops"
    model.save(path)
    loaded = WindowModel.load(path)
    np.testing.assert_allclose(loaded.score(table), model.score(table))
    assert loaded.threshold_ == model.threshold_


def test_a_file_that_is_not_a_model_is_refused(tmp_path):
    path = tmp_path / "model.skops"
    path.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="is not a model saved by `detector fit`"):
        WindowModel.load(path)


def test_scoring_before_fitting_is_an_error(prepared):
    with pytest.raises(ModelError, match="not fitted"):
        WindowModel().score(prepared.features.table)


def test_cli_score_prints_top_alerts_and_summary(small_log, tmp_path):
    out = tmp_path / "alerts.parquet"
    # A wide terminal (pytest-xdist sets COLUMNS=80 in its workers: the narrow layout).
    result = CliRunner(env={"COLUMNS": "250"}).invoke(
        main, ["score", str(small_log), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    header = next(line for line in lines if line.startswith("account"))
    assert "severity" in header and "score" in header and "reason" in header
    summary = lines[-1]
    alerts = pd.read_parquet(out)
    assert summary.startswith(f"{len(alerts)} alerts (")
    assert summary.endswith(f"-> {out}")


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_cli_score_other_formats(small_log, tmp_path, fmt):
    out = tmp_path / f"alerts.{fmt}"
    result = CliRunner().invoke(
        main, ["score", str(small_log), "--mode", "rules", "--format", fmt, "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    alerts = pd.read_json(out, lines=True) if fmt == "jsonl" else pd.read_csv(out)
    assert len(alerts) > 0 and set(CONTRACT_COLUMNS) <= set(alerts.columns)


def test_cli_fit_then_score_with_the_model(small_log, tmp_path):
    model = tmp_path / "model.skops"
    result = CliRunner().invoke(main, ["fit", str(small_log), "--out", str(model)])
    assert result.exit_code == 0, result.output
    assert model.exists()
    result = CliRunner().invoke(
        main,
        [
            "score",
            str(small_log),
            "--model",
            str(model),
            "--mode",
            "model",
            "--out",
            str(tmp_path / "a.parquet"),
        ],
    )
    assert result.exit_code == 0, result.output


def test_cli_score_with_a_missing_model_file(small_log, tmp_path):
    result = CliRunner().invoke(
        main, ["score", str(small_log), "--model", str(tmp_path / "none.skops")]
    )
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == f"Error: no such model file: {tmp_path / 'none.skops'}"


def test_allowlists_silence_rules(prepared, small_log, tmp_path):
    """An allowlisted account, or one whose every address is in an allowlisted network, raises no rule alert."""
    from pathlib import Path

    from detector.rules import load_ruleset

    alerts = detect(prepared, mode="rules")
    first, last = alerts["account_id"].iloc[0], alerts["account_id"].iloc[-1]
    events = read_events(small_log)
    addresses = sorted(set(events.loc[events["account_id"] == last, "src_ip"].astype(str)))
    networks = ", ".join(f'"{address}/32"' for address in addresses)
    default = Path(load_ruleset("default").path).read_text()
    assert "accounts = []\nnetworks = []" in default
    for allow, silenced in (
        (f'accounts = ["{first}"]\nnetworks = []', first),
        (f"accounts = []\nnetworks = [{networks}]", last),
    ):
        path = tmp_path / "allow.toml"
        path.write_text(default.replace("accounts = []\nnetworks = []", allow))
        again = detect(prepared, rules=str(path), mode="rules")
        assert silenced not in set(again["account_id"]), allow
        assert len(again) < len(alerts)


def test_a_tiny_log_is_scored_by_rules_with_a_notice(tmp_path):
    log = pd.DataFrame(
        {
            "timestamp": ["2024-03-25T08:00:00Z", "2024-03-25T08:05:00Z"],
            "account_id": ["a1", "a1"],
            "action": ["login", "view_record"],
            "record_id": [None, "r1"],
        }
    )
    result = score_log(log)
    assert len(result.alerts) == 0
    assert any("too few to fit the model" in notice for notice in result.notices)
