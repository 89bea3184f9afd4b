"""The HTML report: produced, names every alert, self-contained, clear errors."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pandas as pd
import pytest
from click.testing import CliRunner

from detector import plots
from detector.alerts import write_alerts
from detector.cli import main
from detector.plots import hourly_activity
from detector.report import (
    account_summary,
    caseload_reads,
    evidence_table,
    explanations,
    format_local,
    read_alerts,
    usage_table,
)

UTC = "UTC"


def _log() -> pd.DataFrame:
    """Two partner advisors over five days; adv-2 turns into a bulk reader on day 5."""
    rows = []
    for day in range(1, 6):
        for account in ("adv-1", "adv-2"):
            base = pd.Timestamp(f"2024-02-0{day} 08:00", tz=UTC)
            rows.append((base, account, "login", None, "10.0.0.1", "Firefox", 0))
            for minute in range(5):
                rows.append(
                    (
                        base + pd.Timedelta(minutes=10 + minute),
                        account,
                        "view_record",
                        f"r-{account}-{minute}",
                        "10.0.0.1",
                        "Firefox",
                        0,
                    )
                )
    attack = pd.Timestamp("2024-02-05 21:00", tz=UTC)
    rows.append((attack, "adv-2", "login", None, "203.0.113.9", "python-requests", 0))
    for minute in range(40):
        rows.append(
            (
                attack + pd.Timedelta(minutes=minute),
                "adv-2",
                "search",
                None,
                "203.0.113.9",
                "python-requests",
                50,
            )
        )
    log = pd.DataFrame(
        rows,
        columns=[
            "timestamp",
            "account_id",
            "action",
            "record_id",
            "src_ip",
            "user_agent",
            "records_returned",
        ],
    )
    log["account_type"] = "partner_advisor"
    log["organization_id"] = "cap-01"
    log["application"] = "dossier"
    return log


def _alerts() -> pd.DataFrame:
    evidence = [
        {
            "feature": "records_touched",
            "doc": "records_read + records_returned",
            "value": 2005.0,
            "own_median": 5.0,
            "peer_p95": 6.0,
        },
        {
            "feature": "new_addresses",
            "doc": "never-seen addresses",
            "value": 1.0,
            "own_median": None,
            "peer_p95": None,
        },
    ]
    return pd.DataFrame(
        {
            "alert_id": ["al-7", "al-8"],
            "account_id": ["adv-2", "adv-1"],
            "account_type": ["partner_advisor", "partner_advisor"],
            "window_start": pd.to_datetime(["2024-02-04 23:00", "2024-02-03 23:00"]).tz_localize(
                UTC
            ),
            "window_end": pd.to_datetime(["2024-02-05 23:00", "2024-02-04 23:00"]).tz_localize(UTC),
            "detected_at": pd.to_datetime(["2024-02-05 21:05", "2024-02-04 08:14"]).tz_localize(
                UTC
            ),
            "score": [0.97, 0.41],
            "severity": ["high", "low"],
            "rules": [["bulk_read", "new_address"], []],
            "rule_times": [
                list(pd.to_datetime(["2024-02-05 21:05", "2024-02-05 21:00"]).tz_localize(UTC)),
                [],
            ],
            "model_score": [0.9, 0.41],
            "top_features": [["records_touched"], ["events"]],
            "reason": ["read 2,005 records against a usual 5 <script>x</script>", "odd but mild"],
            "evidence": [json.dumps(evidence), "[]"],
        }
    )


@pytest.fixture
def files(tmp_path):
    log_path = tmp_path / "logs.parquet"
    _log().to_parquet(log_path)
    alerts_path = tmp_path / "alerts.parquet"
    _alerts().to_parquet(alerts_path)
    return tmp_path, alerts_path, log_path


def _run(*args):
    return CliRunner().invoke(main, ["report", *map(str, args)])


def _sections(document: str) -> list[str]:
    return re.findall(r'<section id="([^"]+)"', document)


def test_report_names_every_alert_and_is_self_contained(files):
    tmp_path, alerts_path, log_path = files
    out = tmp_path / "out" / "report.html"
    result = _run(alerts_path, "--log", log_path, "--out", out)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == f"report written to {out}"
    document = out.read_text(encoding="utf-8")
    for alert in _alerts().itertuples():
        assert alert.alert_id in document
        assert alert.account_id in document
        assert f'<span class="badge {alert.severity}">{alert.severity}</span>' in document
    assert _sections(document) == ["alert-al-7", "alert-al-8"]  # high before low
    for forbidden in ("http://", "https://", 'src="//', "<script", "<link", "@import"):
        assert forbidden not in document
    images = re.findall(r'<img [^>]*src="([^"]*)"', document)
    assert len(images) == 3  # alerts per day + one timeline per alert
    assert all(src.startswith("data:image/png;base64,") for src in images)


def test_report_shows_reason_rules_evidence_and_new_address(files):
    tmp_path, alerts_path, log_path = files
    out = tmp_path / "report.html"
    assert _run(alerts_path, "--log", log_path, "--out", out).exit_code == 0
    document = out.read_text(encoding="utf-8")
    assert "against a usual 5 &lt;script&gt;x&lt;/script&gt;" in document
    assert "<td>bulk_read</td><td>2024-02-05 22:05:00 CET (UTC+01:00)</td>" in document
    assert "<code>records_touched</code>" in document
    assert '<span class="num">2,005</span>' in document
    assert "203.0.113.9 <strong>(new)</strong>" in document
    assert "None: the model alone raised this alert." in document


def test_max_alerts_details_the_most_urgent_and_counts_the_rest(files):
    tmp_path, alerts_path, log_path = files
    out = tmp_path / "report.html"
    result = _run(alerts_path, "--log", log_path, "--out", out, "--max-alerts", "1")
    assert result.exit_code == 0, result.output
    assert "2 alerts on 2 accounts (1 detailed, 1 more summarised only)" in result.output
    document = out.read_text(encoding="utf-8")
    assert _sections(document) == ["alert-al-7"]
    assert "1 more are left out" in document
    assert "al-8" in document  # still named in the summary's index


def test_timezone_option_changes_displayed_times(files):
    tmp_path, alerts_path, log_path = files
    out = tmp_path / "report.html"
    assert _run(alerts_path, "--log", log_path, "--out", out, "--timezone", "UTC").exit_code == 0
    assert "2024-02-05 21:05:00 UTC (UTC+00:00)" in out.read_text(encoding="utf-8")


def test_empty_alerts_give_a_report_saying_so(files):
    tmp_path, _, log_path = files
    empty = tmp_path / "empty.parquet"
    _alerts().iloc[:0].to_parquet(empty)
    out = tmp_path / "report.html"
    result = _run(empty, "--log", log_path, "--out", out)
    assert result.exit_code == 0, result.output
    document = out.read_text(encoding="utf-8")
    assert "No alerts." in document
    assert _sections(document) == []


def test_contract_only_alerts_degrade_gracefully(files):
    tmp_path, _, log_path = files
    contract_only = _alerts()[
        [
            "account_id",
            "window_start",
            "window_end",
            "detected_at",
            "score",
            "severity",
            "rules",
            "reason",
        ]
    ]
    path = tmp_path / "plain.parquet"
    contract_only.to_parquet(path)
    out = tmp_path / "report.html"
    result = _run(path, "--log", log_path, "--out", out)
    assert result.exit_code == 0, result.output
    document = out.read_text(encoding="utf-8")
    assert _sections(document) == ["alert-A0001", "alert-A0002"]
    assert "This alert carries no evidence table." in document
    assert "model did not run" in document


def test_jsonl_alerts_are_accepted(files):
    tmp_path, _, _ = files
    path = tmp_path / "alerts.jsonl"
    _alerts().to_json(path, orient="records", lines=True, date_format="iso")
    alerts = read_alerts(path)
    assert alerts["rules"].tolist() == [["bulk_read", "new_address"], []]
    assert alerts["detected_at"].iloc[0] == pd.Timestamp("2024-02-05 21:05", tz=UTC)


def test_missing_alerts_file_is_one_error_line(files):
    tmp_path, _, log_path = files
    result = _run(tmp_path / "nope.parquet", "--log", log_path)
    assert result.exit_code == 1
    assert result.output == f"Error: alerts file not found: {tmp_path / 'nope.parquet'}\n"


def test_non_parquet_alerts_file_is_one_error_line(files):
    tmp_path, _, log_path = files
    bad = tmp_path / "alerts.parquet"
    bad.write_text("account_id,score\nx,1\n")
    result = _run(bad, "--log", log_path)
    assert result.exit_code == 1
    assert result.output == f"Error: cannot read alerts file {bad}: not a valid Parquet file\n"


def test_alerts_missing_contract_columns_are_named(files):
    tmp_path, _, log_path = files
    path = tmp_path / "thin.parquet"
    _alerts()[["account_id", "score"]].to_parquet(path)
    result = _run(path, "--log", log_path)
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {path} lacks column(s): window_start, window_end, detected_at, severity, rules, reason\n"
    )


def test_csv_alerts_with_empty_ids(files):
    # Hand-edited CSV: an empty alert_id is numbered; an empty account_id is one error line.
    tmp_path, _, log_path = files
    path = tmp_path / "edited.csv"
    alerts = _alerts()
    alerts.loc[0, "alert_id"] = None
    write_alerts(alerts, path, "csv")
    result = _run(path, "--log", log_path)
    assert result.exit_code == 0, result.output
    alerts.loc[1, "account_id"] = None
    write_alerts(alerts, path, "csv")
    result = _run(path, "--log", log_path)
    assert result.exit_code == 1
    assert result.output == f"Error: {path}: 1 alert(s) without an account_id\n"
    alerts.loc[1, "account_id"] = "adv-1"
    alerts.to_csv(path, index=False)  # lists written by pandas, not JSON: rule_times unreadable
    result = _run(path, "--log", log_path)
    assert result.exit_code == 1
    assert result.output == f"Error: {path}: column rule_times does not hold timestamps\n"


def test_missing_log_and_unknown_timezone_are_one_error_line(files):
    tmp_path, alerts_path, log_path = files
    result = _run(alerts_path, "--log", tmp_path / "nolog.parquet")
    assert result.exit_code == 1
    assert result.output == f"Error: log not found: {tmp_path / 'nolog.parquet'}\n"
    result = _run(alerts_path, "--log", log_path, "--timezone", "Mars/Olympus")
    assert result.exit_code == 1
    assert result.output == "Error: unknown time zone: 'Mars/Olympus' (e.g. Europe/Paris)\n"


def test_format_local_follows_daylight_saving():
    assert (
        format_local(pd.Timestamp("2024-02-06 13:00", tz=UTC))
        == "2024-02-06 14:00:00 CET (UTC+01:00)"
    )
    assert format_local(pd.Timestamp("2024-10-23 21:30")) == "2024-10-23 23:30:00 CEST (UTC+02:00)"


def test_usage_table_marks_values_never_seen_before_the_window():
    log = _log()
    table = usage_table(log, "adv-2", "src_ip", "2024-02-05 00:00", "2024-02-05 23:00")
    assert table["src_ip"].tolist() == ["203.0.113.9", "10.0.0.1"]
    assert table["new"].tolist() == [True, False]
    assert table["events"].tolist() == [41, 6]


def test_evidence_table_reads_the_json_column():
    table = evidence_table(_alerts().iloc[0])
    assert table["feature"].tolist() == ["records_touched", "new_addresses"]
    assert table["value"].tolist() == [2005.0, 1.0]
    assert evidence_table(_alerts().iloc[1]).empty


def test_explanations_has_one_row_per_evidence_feature():
    table = explanations(_alerts())
    assert table["alert_id"].tolist() == ["al-7", "al-7", "al-8"]
    assert table["feature"].tolist()[:2] == ["records_touched", "new_addresses"]
    assert pd.isna(table["feature"].iloc[2])  # al-8 has no evidence: one empty row
    assert table["rules"].iloc[0] == ["bulk_read", "new_address"]


def test_caseload_reads_marks_records_outside_the_caseload():
    log = _log()
    caseloads = pd.DataFrame(
        {"account_id": ["adv-1"] * 3, "record_id": ["r-adv-1-0", "r-adv-1-1", "r-x"]}
    )
    reads = caseload_reads(log, "adv-1", caseloads)
    assert len(reads) == 25  # five reads a day over five days
    assert reads["in_caseload"].sum() == 10
    log["record_org_id"] = log["organization_id"].where(log["record_id"] != "r-adv-1-4", "other")
    by_structure = caseload_reads(log, "adv-1")
    assert (~by_structure["in_caseload"]).sum() == 5


def test_hourly_activity_counts_events_and_records_per_hour():
    hourly = hourly_activity(_log(), "adv-2", "2024-02-05 00:00", "2024-02-05 23:59")
    assert len(hourly) == 24  # idle hours included as zeros
    at_nine_pm = hourly.loc[pd.Timestamp("2024-02-05 21:00", tz=UTC)]
    assert at_nine_pm["searches & exports"] == 40
    assert at_nine_pm["sessions"] == 1
    assert at_nine_pm["records"] == 40 * 50
    assert hourly["record reads"].sum() == 5


def test_account_vs_peers_draws_the_account_and_its_peer_band():
    days = pd.date_range("2024-02-01", periods=4, freq="D")
    features = pd.DataFrame(
        {
            "account_id": ["a"] * 4 + ["b"] * 4 + ["c"] * 4,
            "account_type": ["advisor"] * 8 + ["service"] * 4,
            "day": list(days) * 3,
            "records_touched": [5, 6, 5, 900, 4, 5, 6, 5, 1000, 1000, 1000, 1000],
        }
    )
    axes = plots.account_vs_peers(features, "a").axes[0]
    own = [line for line in axes.get_lines() if line.get_label() == "a"][0]
    assert list(own.get_ydata()) == [5, 6, 5, 900]
    peer_median = [line for line in axes.get_lines() if line.get_label() == "peers median"][0]
    assert list(peer_median.get_ydata()) == [4, 5, 6, 5]  # b only: c is another type
    with pytest.raises(KeyError):
        plots.account_vs_peers(features, "nobody")


def test_bench_comparison_marks_missed_scenarios():
    rows = pd.DataFrame(
        {
            "ruleset": ["naive", "naive", "default", "default"],
            "mode": ["rules"] * 4,
            "scenario": ["cap_emploi", "kairos_infostealer"] * 2,
            "seed": [1] * 4,
            "detected": [1, 0, 1, 1],
            "time_to_detect_h": [30.0, float("nan"), 2.0, 5.0],
            "exposed_before_detection": [0.5, 1.0, 0.01, 0.02],
            "benign_accounts_alerted": [3, 3, 1, 1],
            "fp_per_1000_account_days": [2.0, 2.0, 0.5, 0.5],
            "precision": [0.5] * 4,
            "recall": [0.5] * 4,
            "alerts_total": [4] * 4,
        }
    )
    figure = plots.bench_comparison(rows)
    ttd_axes = figure.axes[0]
    hatched = [bar for bar in ttd_axes.patches if bar.get_hatch() == "//"]
    assert len(hatched) == 1  # naive missed kairos
    assert [bar.get_height() for bar in ttd_axes.patches if bar.get_hatch() is None] == [
        30.0,
        2.0,
        5.0,
    ]


def test_stealth_curve_plots_detection_against_the_knob():
    rows = pd.DataFrame(
        {
            "ruleset": ["default"] * 3,
            "mode": ["rules"] * 3,
            "scenario": ["cap_emploi"] * 3,
            "seed": [1] * 3,
            "knob": ["rate_multiple"] * 3,
            "knob_value": [50.0, 5.0, 1.0],
            "detected": [1, 1, 0],
            "exposed_before_detection": [0.01, 0.2, 1.0],
        }
    )
    figure = plots.stealth_curve(rows)
    detected_ax, exposed_ax = figure.axes
    assert list(detected_ax.get_lines()[0].get_ydata()) == [1, 1, 0]
    assert list(exposed_ax.get_lines()[0].get_ydata()) == [0.01, 0.2, 1.0]
    assert detected_ax.get_xlabel() == "rate_multiple"
    with pytest.raises(KeyError):
        plots.stealth_curve(rows.drop(columns="knob_value"))


def test_unreadable_log_is_one_error_line(files):
    tmp_path, alerts_path, _ = files
    bad_log = tmp_path / "bad.parquet"
    bad_log.write_text("not parquet")
    result = _run(alerts_path, "--log", bad_log)
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1, result.output


def test_report_on_generated_and_scored_data_names_every_alert(tmp_path):
    """End to end on the generator's replay of the attacks and the real scorer's alerts."""
    from detector.pipeline import score_log
    from synthetic_logs.generate import generate_dataset

    log_path = tmp_path / "logs.parquet"
    generate_dataset(log_path, accounts=150, days=14, seed=3)
    alerts = score_log(log_path, caseloads=tmp_path / "logs.caseloads.parquet").alerts
    assert len(alerts) > 0  # the replayed attacks must raise something to report on
    alerts_path = tmp_path / "alerts.parquet"
    alerts.to_parquet(alerts_path)
    out = tmp_path / "report.html"
    result = _run(alerts_path, "--log", log_path, "--out", out, "--max-alerts", "5")
    assert result.exit_code == 0, result.output
    document = out.read_text(encoding="utf-8")
    for alert in alerts.itertuples():
        assert f">{alert.alert_id}<" in document  # every alert is in the summary's index
        assert alert.account_id in document
    assert len(_sections(document)) == min(5, len(alerts))
    assert "http://" not in document and "https://" not in document


def test_account_summary_ranks_accounts_by_their_worst_alert():
    alerts = pd.concat([_alerts(), _alerts().iloc[[1]].assign(alert_id="al-9", severity="medium")])
    table = account_summary(alerts)
    assert table["account_id"].tolist() == ["adv-2", "adv-1"]
    assert table["alerts"].tolist() == [1, 2]
    assert table["top_severity"].tolist() == ["high", "medium"]


class _TagBalance(HTMLParser):
    """Records end tags that do not close the innermost open element."""

    VOID = {"meta", "img", "br", "link", "hr", "input"}

    def __init__(self):
        super().__init__()
        self.open, self.mismatches = [], []

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag):
        if self.open and self.open[-1] == tag:
            self.open.pop()
        else:
            self.mismatches.append(tag)


def test_report_html_is_well_nested(files):
    tmp_path, alerts_path, log_path = files
    out = tmp_path / "report.html"
    assert _run(alerts_path, "--log", log_path, "--out", out).exit_code == 0
    checker = _TagBalance()
    checker.feed(out.read_text(encoding="utf-8"))
    assert checker.mismatches == [] and checker.open == []
