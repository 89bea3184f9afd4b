"""Control and bidirectional characters from the data never reach the terminal or the report raw.

An account id, reason or user agent holding ESC, CR/LF, NUL or a bidirectional
control (issue 10, item 9) is shown with visible escapes (``\\x1b``, ``\\u202e``)
by ``detector score``'s table and in every text of the HTML report.
"""

from __future__ import annotations

import html
import json

import pandas as pd
import pytest
from click.testing import CliRunner

from detector.alerts import write_alerts
from detector.cli import main
from detector.cli.score import _top_table
from detector.report import render_report
from detector.textsafe import visible

UTC = "UTC"

# Each character the issue names, with the escape a reader sees instead.
CONTROLS = {
    "\r": "\\r",
    "\n": "\\n",
    "\x1b": "\\x1b",
    "\x00": "\\x00",
    "\u202a": "\\u202a",
    "\u202b": "\\u202b",
    "\u202c": "\\u202c",
    "\u202d": "\\u202d",
    "\u202e": "\\u202e",
    "\u2066": "\\u2066",
    "\u2067": "\\u2067",
    "\u2068": "\\u2068",
    "\u2069": "\\u2069",
    "\u200e": "\\u200e",
    "\u200f": "\\u200f",
    "\u061c": "\\u061c",
}
ACCOUNTS = [f"adv{char}{i}" for i, char in enumerate(CONTROLS)]


@pytest.mark.parametrize("char", list(CONTROLS))
def test_visible_escapes_each_control(char):
    assert visible(f"a{char}b") == f"a{CONTROLS[char]}b"


def test_visible_keeps_ordinary_text_as_it_is():
    for text in ("adv-0001", "DOMAIN\\user", "Zoé Ørsted", "مستشار", "用户", "ok 👍"):
        assert visible(text) == text
    assert visible("\x07\x7f\x9b\u2028\t") == "\\x07\\x7f\\x9b\\u2028\\t"
    assert visible(12) == "12"


def _alerts(accounts: list[str]) -> pd.DataFrame:
    n = len(accounts)
    start = pd.Timestamp("2024-02-05 00:00", tz=UTC)
    evidence = [{"feature": "events", "doc": "doc\x1b[2J", "value": 3.0}]
    return pd.DataFrame(
        {
            "alert_id": [f"al-{i}" for i in range(n)],
            "account_id": accounts,
            "account_type": ["type\u202e"] * n,
            "window_start": [start] * n,
            "window_end": [start + pd.Timedelta(days=1)] * n,
            "detected_at": [start + pd.Timedelta(hours=9, minutes=i) for i in range(n)],
            "score": [0.9] * n,
            "severity": ["high"] * (n - 1) + ["high\x1b[0m"],
            "rules": [["rule\u2066x"]] * n,
            "rule_times": [[start + pd.Timedelta(hours=9)]] * n,
            "model_score": [0.5] * n,
            "top_features": [["events\r"]] * n,
            "reason": [f"read\x00 5 records{char}" for char in CONTROLS][:n],
            "evidence": [json.dumps(evidence)] * n,
        }
    )


def _events(accounts: list[str]) -> pd.DataFrame:
    stamps = pd.Timestamp("2024-02-05 09:00", tz=UTC) + pd.to_timedelta(
        range(len(accounts)), unit="min"
    )
    return pd.DataFrame(
        {
            "timestamp": stamps,
            "account_id": accounts,
            "action": "login",
            "record_id": None,
            "src_ip": "10.0.0.1\u202e",
            "user_agent": "curl\x1b]0;owned\x07",
            "application": "dossier\n",
        }
    )


@pytest.mark.parametrize("columns", [250, 60])
def test_terminal_table_shows_every_control_escaped(columns, monkeypatch):
    monkeypatch.setenv("COLUMNS", str(columns))  # wide: one line per alert; narrow: wrapped
    table = _top_table(_alerts(ACCOUNTS), UTC, top=len(ACCOUNTS))
    lines = table.split("\n")
    alert_lines = [line for line in lines[1:] if not line.startswith("    ")]
    assert len(alert_lines) == len(ACCOUNTS)  # exactly one line per alert (and its reason)
    if columns == 250:
        assert len(lines) == len(ACCOUNTS) + 1  # a header, then exactly one line per alert
    for account, char in zip(ACCOUNTS, CONTROLS, strict=True):
        assert account not in table
        assert visible(account) in table
        if char != "\n":
            assert char not in table
    assert "high\\x1b[0m" in table


def test_report_html_shows_every_control_escaped():
    # Every account in the summary tables; the first three also in detail sections.
    document = render_report(
        _alerts(ACCOUNTS), _events(ACCOUNTS), timezone=UTC, max_alerts=3, title="T\u202e"
    )
    for account in ACCOUNTS:
        assert account not in document
        assert visible(account) in document
    for char in CONTROLS:
        if char != "\n":  # the document's own line breaks
            assert char not in document, repr(char)
    for shown in ("type\\u202e", "rule\\u2066x", "events\\r", "doc\\x1b[2J", "read\\x00 5"):
        assert shown in document
    for shown in ("10.0.0.1\\u202e", "curl\\x1b]0;owned\\x07", "dossier\\n", "T\\u202e"):
        assert shown in document


def test_report_from_csv_alerts_escapes_their_text(tmp_path):
    # A CSV is the easiest alerts file to forge by hand: its text goes through the same helper.
    accounts = ACCOUNTS
    log = tmp_path / "log.parquet"
    _events(accounts).to_parquet(log)
    alerts = _alerts(accounts).assign(reason="read 5 records\x1b[31m\x00\n")
    csv = write_alerts(alerts, tmp_path / "alerts.csv", "csv")
    out = tmp_path / "report.html"
    result = CliRunner().invoke(main, ["report", str(csv), "--log", str(log), "--out", str(out)])
    assert result.exit_code == 0, result.output
    document = out.read_text(encoding="utf-8")
    for account in accounts:
        assert account not in document
        assert visible(account) in document
    for char in CONTROLS:
        if char != "\n":  # the HTML itself has newlines
            assert char not in document


def test_csv_alerts_keep_every_control_inside_its_field(tmp_path):
    # A bare CR or a NUL before a newline used to split a row when the CSV was read back.
    from detector.report import read_alerts

    alerts = _alerts(ACCOUNTS).assign(reason="a\rb\x00\nc")
    back = read_alerts(write_alerts(alerts, tmp_path / "alerts.csv", "csv"))
    assert back["account_id"].tolist() == ACCOUNTS
    assert (back["reason"] == "a\rb\x00\nc").all()


@pytest.mark.parametrize("account", ["a$\\frac$b", "a$x^{$"])
def test_dollar_signs_in_an_account_id_are_text_in_figures(account):
    # matplotlib reads $...$ as mathematics: a bad formula raised at drawing time.
    document = render_report(_alerts([account]), _events([account]), timezone=UTC)
    assert f"{html.escape(account)}</h2>" not in document  # the h2 ends with the alert id
    assert f" {html.escape(account)} <span" in document
    assert document.count('src="data:image/png;base64,') == 2  # alerts per day + timeline


def test_error_lines_quote_data_with_visible_escapes(tmp_path):
    # A missing log whose name holds ESC and a newline: the error stays one line, escaped.
    name = tmp_path / "logs\x1b[2J\nfake.parquet"
    result = CliRunner().invoke(main, ["score", str(name)])
    assert result.exit_code == 1
    assert "\x1b" not in result.output
    error = result.output.splitlines()[-1]  # progress lines may come first
    assert error.startswith("Error: ")
    assert "logs\\x1b[2J\\nfake.parquet" in error
    assert "fake.parquet" not in result.output.replace(error, "")  # not split over two lines


def test_notices_quoting_the_log_are_escaped(tmp_path, monkeypatch):
    # Notices quote values and names from the input (unknown actions, a mapping's paths,
    # columns): whatever a notice holds, the terminal gets it escaped, on one line.
    import detector.pipeline

    real = detector.pipeline.score_log

    def with_hostile_notice(*args, **kwargs):
        result = real(*args, **kwargs)
        result.notices.append("path 'user.name\x1b[2J\nFAKE' never found")
        return result

    monkeypatch.setattr(detector.pipeline, "score_log", with_hostile_notice)
    _events(["adv-1"]).to_parquet(tmp_path / "log.parquet")
    result = CliRunner().invoke(
        main, ["score", str(tmp_path / "log.parquet"), "--out", str(tmp_path / "a.parquet")]
    )
    assert result.exit_code == 0, result.output
    assert "Notice: path 'user.name\\x1b[2J\\nFAKE' never found" in result.output
    assert "\x1b" not in result.output


@pytest.mark.parametrize("account", ["zq$\\frac$b", "zq$x$"])
def test_plots_called_from_a_notebook_draw_dollar_signs_as_text(account):
    """Every figure a notebook draws for an account shows `$` as a dollar sign: a bad
    formula ("zq$\\frac$b") raised at drawing time, a good one ("zq$x$") was set as maths."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    from detector import plots

    events = _events([account, account, "peer"])
    features = pd.DataFrame(
        {
            "account_id": [account, "peer", account, "peer"],
            "account_type": "advisor",
            "day": pd.to_datetime(["2024-02-05", "2024-02-05", "2024-02-06", "2024-02-06"]),
            "records_touched": [5.0, 3.0, 400.0, 4.0],
        }
    )
    evidence = pd.DataFrame(
        {"feature": [f"f{account}"], "value": [9.0], "own_median": [1.0], "peer_p95": [2.0]}
    )
    alerts = _alerts([account]).assign(severity=f"odd{account}")
    figures = [
        plots.account_timeline(events, account, detected_at=events["timestamp"].iloc[0]),
        plots.account_vs_peers(features, account),
        plots.activity_by_hour_of_day(events, account),
        plots.evidence_bars(evidence, title=f"{account}: alert al-0"),
        plots.alerts_over_time(alerts),
    ]
    for figure in figures:
        FigureCanvasAgg(figure).draw()  # raised ValueError on a bad formula
        texts = [t for t in figure.findobj(Text) if "zq" in t.get_text()]
        assert texts, "the account id is drawn somewhere in each figure"
        for text in texts:
            # What matplotlib will draw: (string, is_math). Private, but the one place it decides.
            shown, is_math = text._preprocess_math(text.get_text())
            assert not is_math and account in shown
