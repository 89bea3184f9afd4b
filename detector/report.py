"""A self-contained HTML report of alerts that an analyst can read and forward.

`write_report(alerts_path, log_path, out)` reads the alerts table (contract
section 4), the log of the alerted accounts only, and writes one HTML file:
a summary (alerts by severity, accounts, period, rules), then one section per
alert with its reason, the rules that fired, its features against their
baselines, the addresses and clients it used and a timeline picture of the
account's activity with the detection instant marked. Pictures are PNGs
inlined as base64 `data:` URIs; there is no script and no external reference,
so the file opens offline. All text from the data is escaped.

The same pieces (`read_alerts`, `evidence_table`, `usage_table`,
`render_report`) serve the notebooks.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from matplotlib.figure import Figure

from detector import plots
from detector.alerts import CONTRACT_COLUMNS
from detector.errors import InputError
from detector.incidents import incidents_path, read_incidents
from detector.outputs import write_text
from detector.privacy import Pseudonymiser
from detector.schema import read_events
from detector.textsafe import visible
from detector.timeutil import DEFAULT_TIMEZONE, check_timezone, to_utc

DEFAULT_MAX_ALERTS = 50
# The index of the summary lists at most this many alerts: past that the file
# stops being something one forwards.
MAX_INDEX_ROWS = 1000
MAX_TIMELINES_PER_INCIDENT = 3  # one picture per account of an incident, at most this many

SEVERITY_RANK = {"high": 0, "medium": 1, "low": 2}
_TIME_COLUMNS = ("window_start", "window_end", "detected_at")


@dataclass(frozen=True)
class ReportResult:
    """What `write_report` wrote: where, and how many alerts it holds and details."""

    path: Path
    alerts: int
    shown: int
    accounts: int

    @property
    def left_out(self) -> int:
        return self.alerts - self.shown


# --------------------------------------------------------------------------- reading


def read_alerts(path: str | Path) -> pd.DataFrame:
    """Read an alerts table (Parquet; `.jsonl` and `.csv` accepted too), normalised.

    Raises `InputError` when the file is missing, unreadable or lacks a
    contract column. See `normalise_alerts` for what the result holds.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"alerts file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".jsonl":
            table = pd.read_json(path, lines=True, dtype=False)
        elif suffix == ".csv":
            table = pd.read_csv(path)
        else:
            table = pd.read_parquet(path)
    except Exception as error:  # pyarrow/pandas raise many types for a bad file
        kind = {".jsonl": "JSON lines", ".csv": "CSV"}.get(suffix, "Parquet")
        raise InputError(f"cannot read alerts file {path}: not a valid {kind} file") from error
    return normalise_alerts(table, source=str(path))


def _as_list(value) -> list:
    """A list from a Parquet list cell, a JSON-encoded list (CSV) or nothing."""
    if value is None:
        return []
    if isinstance(value, float) and np.isnan(value):
        return []
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return []
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            return [part.strip() for part in text.split(",") if part.strip()]
        return list(parsed) if isinstance(parsed, list) else [parsed]
    return list(value)


def normalise_alerts(alerts: pd.DataFrame, source: str = "alerts") -> pd.DataFrame:
    """The alerts with every column the report reads, most urgent first.

    Contract columns are required (an empty table may have none). Extensions
    absent from alerts written by other tools are filled: `alert_id`
    (`A0001`... in input order), `account_type` (""), `rule_times` (nulls),
    `model_score` (NaN), `top_features` ([]), `evidence` ("[]"). Times become
    UTC; order is severity, then score descending, then detection time.
    """
    if len(alerts) == 0 and not set(CONTRACT_COLUMNS) <= set(alerts.columns):
        alerts = pd.DataFrame({column: pd.Series(dtype=object) for column in CONTRACT_COLUMNS})
    missing = [column for column in CONTRACT_COLUMNS if column not in alerts]
    if missing:
        raise InputError(f"{source} lacks column(s): {', '.join(missing)}")
    alerts = alerts.reset_index(drop=True).copy()
    unnamed = int(alerts["account_id"].isna().sum())
    if unnamed:
        raise InputError(f"{source}: {unnamed:,} alert(s) without an account_id")
    alerts["account_id"] = alerts["account_id"].astype(str)
    numbered = pd.Series([f"A{i + 1:04d}" for i in range(len(alerts))], dtype=object)
    if "alert_id" not in alerts:
        alerts["alert_id"] = numbered
    # An empty id (a hand-edited CSV) gets its position's number, never NaN.
    alerts["alert_id"] = (
        alerts["alert_id"].astype(object).where(alerts["alert_id"].notna(), numbered)
    )
    alerts["alert_id"] = alerts["alert_id"].astype(str)
    for column in _TIME_COLUMNS:
        try:
            alerts[column] = to_utc(alerts[column])
        except InputError as error:
            raise InputError(f"{source}: column {column} does not hold timestamps") from error
    alerts["score"] = pd.to_numeric(alerts["score"], errors="coerce")
    alerts["severity"] = alerts["severity"].astype(str).str.lower()
    alerts["reason"] = alerts["reason"].fillna("").astype(str)
    alerts["rules"] = alerts["rules"].map(lambda v: [str(r) for r in _as_list(v)])
    if "account_type" not in alerts:
        alerts["account_type"] = ""
    alerts["account_type"] = alerts["account_type"].fillna("").astype(str)
    if "rule_times" in alerts:
        try:
            alerts["rule_times"] = alerts["rule_times"].map(
                lambda v: [pd.Timestamp(t) if t is not None else None for t in _as_list(v)]
            )
        except (ValueError, TypeError) as error:
            raise InputError(f"{source}: column rule_times does not hold timestamps") from error
    else:
        alerts["rule_times"] = alerts["rules"].map(lambda rules: [None] * len(rules))
    alerts["model_score"] = pd.to_numeric(alerts.get("model_score", np.nan), errors="coerce")
    if "top_features" not in alerts:
        alerts["top_features"] = [[] for _ in range(len(alerts))]
    alerts["top_features"] = alerts["top_features"].map(lambda v: [str(f) for f in _as_list(v)])
    if "evidence" not in alerts:
        alerts["evidence"] = "[]"
    alerts["evidence"] = alerts["evidence"].fillna("[]")
    rank = alerts["severity"].map(SEVERITY_RANK).fillna(len(SEVERITY_RANK))
    order = np.lexsort(
        (alerts["detected_at"].to_numpy(), -alerts["score"].fillna(0).to_numpy(), rank.to_numpy())
    )
    return alerts.iloc[order].reset_index(drop=True)


def load_account_events(log: str | Path, accounts: Collection[str]) -> pd.DataFrame:
    """The log's events of `accounts` only, as `detector.schema.read_events` gives them."""
    log = Path(log)
    if not log.exists():
        raise InputError(f"log not found: {log}")
    return read_events(log, accounts=sorted(set(accounts)))


def _log_accounts(log: str | Path) -> pa.ChunkedArray:
    """The log's account_id column alone (a file or a directory of Parquet files)."""
    try:
        return pq.read_table(log, columns=["account_id"]).column("account_id")
    except (pa.ArrowInvalid, OSError, KeyError) as error:
        raise InputError(f"{log}: cannot read its account_id column ({error})") from None


def evidence_table(alert: pd.Series | dict) -> pd.DataFrame:
    """An alert's `evidence` as a table: feature, doc, value, own_median, peer_p95.

    Empty (with those columns) when the alert carries no evidence.
    """
    columns = ["feature", "doc", "value", "own_median", "peer_p95"]
    raw = alert.get("evidence", "[]")
    if isinstance(raw, str):
        try:
            items = json.loads(raw) if raw.strip() else []
        except json.JSONDecodeError as error:
            raise InputError(f"alert {alert.get('alert_id', '?')}: evidence is not JSON") from error
    else:
        items = _as_list(raw)
    table = pd.DataFrame([item for item in items if isinstance(item, dict)])
    return table.reindex(columns=columns)


def usage_table(
    events: pd.DataFrame,
    account_id: str,
    column: str,
    window_start=None,
    window_end=None,
) -> pd.DataFrame:
    """Values of `column` (e.g. `src_ip`, `user_agent`) an account used, with history.

    One row per value: `events` in the window (all events when no window),
    `events_before` the window, `first_seen`, `last_seen` (UTC) and `new`:
    True when the value was never used before the window. Values not used in
    the window are left out; most used first.
    """
    columns = [column, "events", "events_before", "first_seen", "last_seen", "new"]
    if column not in events:
        return pd.DataFrame(columns=columns)
    mine = events[(events["account_id"] == account_id) & events[column].notna()]
    stamps = to_utc(mine["timestamp"])
    start = plots._utc(window_start) if window_start is not None else stamps.min()
    end = plots._utc(window_end) if window_end is not None else stamps.max()
    if pd.isna(start) or pd.isna(end):
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame({"timestamp": stamps})
    frame["in_window"] = (stamps >= start) & (stamps <= end)
    frame["before"] = stamps < start
    # Group on the column as stored (often categorical): casting 100k values to
    # str first costs more than the grouping.
    table = frame.groupby(mine[column].rename(column), observed=True).agg(
        events=("in_window", "sum"),
        events_before=("before", "sum"),
        first_seen=("timestamp", "min"),
        last_seen=("timestamp", "max"),
    )
    table = table[table["events"] > 0].reset_index()
    table[column] = table[column].astype(str)
    table["new"] = table["events_before"] == 0
    return table.sort_values(["events", column], ascending=[False, True]).reset_index(drop=True)[
        columns
    ]


def explanations(alerts: pd.DataFrame, limit: int | None = None) -> pd.DataFrame:
    """Why each alert fired, one row per alert and evidence feature, most urgent first.

    Columns: `alert_id`, `account_id`, `severity`, `rules`, `reason`, then the
    evidence columns (`feature`, `value`, `own_median`, `peer_p95`); an alert
    without evidence keeps one row with those empty. `limit` keeps the first
    alerts only.
    """
    alerts = normalise_alerts(alerts).head(limit)
    keys = ["alert_id", "account_id", "severity", "rules", "reason"]
    columns = [*keys, "feature", "value", "own_median", "peer_p95"]
    tables = []
    for _, alert in alerts.iterrows():  # an alert list has tens of rows, not millions
        evidence = evidence_table(alert).drop(columns="doc")
        if evidence.empty:
            evidence = evidence.reindex([0])
        tables.append(evidence.assign(**{key: [alert[key]] * len(evidence) for key in keys}))
    if not tables:
        return pd.DataFrame(columns=columns)
    return pd.concat(tables, ignore_index=True)[columns]


def account_summary(alerts: pd.DataFrame) -> pd.DataFrame:
    """One row per alerted account: type, alerts, highest severity, first and last detection.

    Most urgent account first (highest severity, then earliest detection).
    """
    alerts = normalise_alerts(alerts)
    rank = alerts["severity"].map(SEVERITY_RANK).fillna(len(SEVERITY_RANK))
    table = (
        alerts.assign(rank=rank)
        .groupby("account_id", sort=False)
        .agg(
            account_type=("account_type", "first"),
            alerts=("alert_id", "size"),
            rank=("rank", "min"),
            first_detected=("detected_at", "min"),
            last_detected=("detected_at", "max"),
        )
        .reset_index()
        .sort_values(["rank", "first_detected"])
    )
    by_rank = {rank: name for name, rank in SEVERITY_RANK.items()}
    table.insert(3, "top_severity", table.pop("rank").map(by_rank).fillna("unknown"))
    return table.reset_index(drop=True)


CASELOAD_ACTIONS = ("view_record", "update_record", "export")


def caseload_reads(
    events: pd.DataFrame, account_id: str, caseloads: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One account's single-record accesses, each marked in or out of its caseload.

    Record accesses are `view_record`, `update_record` and single-record
    `export` (a `record_id` is named). `in_caseload` follows the contract
    (section 2): the (account, record) pair is in `caseloads`; without that
    table, the record's `record_org_id` equals the account's
    `organization_id`; without either it is missing (NA).
    """
    mine = events[
        (events["account_id"] == account_id)
        & events["action"].astype(str).isin(CASELOAD_ACTIONS)
        & events["record_id"].notna()
    ]
    keep = [
        c
        for c in ("timestamp", "action", "record_id", "record_org_id", "organization_id")
        if c in mine
    ]
    table = mine[keep].copy()
    table["record_id"] = table["record_id"].astype(str)
    if caseloads is not None:
        assigned = caseloads.loc[caseloads["account_id"].astype(str) == account_id, "record_id"]
        table["in_caseload"] = table["record_id"].isin(assigned.astype(str))
    elif "record_org_id" in table and "organization_id" in table:
        table["in_caseload"] = table["record_org_id"].astype(str) == table[
            "organization_id"
        ].astype(str)
    else:
        table["in_caseload"] = pd.NA
    return table.reset_index(drop=True)


# --------------------------------------------------------------------------- formatting


def format_local(instant, timezone: str = DEFAULT_TIMEZONE) -> str:
    """`2024-02-06 14:03:12 CET (UTC+01:00)`: local wall time with its offset."""
    if instant is None or pd.isna(instant):
        return "-"
    local = plots._utc(instant).tz_convert(timezone)
    offset = local.strftime("%z")
    return f"{local:%Y-%m-%d %H:%M:%S} {local.tzname()} (UTC{offset[:3]}:{offset[3:]})"


def _number(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    value = float(value)
    return f"{value:,.0f}" if value.is_integer() else f"{value:,.3g}"


def figure_data_uri(figure: Figure, dpi: int = 80) -> str:
    """A figure as a PNG `data:` URI, for an `<img>` that needs no other file."""
    buffer = io.BytesIO()
    # No metadata: the default names matplotlib's web site inside the file.
    figure.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _e(value) -> str:
    """Text for HTML: controls and bidirectional characters made visible, then escaped."""
    return html.escape(visible(value), quote=True)


def _figure_text(value) -> str:
    """Text for a figure: controls made visible and ``$`` taken literally (matplotlib would
    read ``$...$`` as mathematics, and raise on an id such as ``a$\\frac$``)."""
    return visible(value).replace("$", r"\$")


def _anchor(alert_id: str) -> str:
    return "alert-" + re.sub(r"[^A-Za-z0-9_-]", "_", alert_id)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], css: str = "") -> str:
    """An HTML table from cells that are already escaped HTML."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _badge(severity: str) -> str:
    return f'<span class="badge {_e(severity)}">{_e(severity)}</span>'


_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;max-width:1100px;
color:#212121;line-height:1.4;padding:0 1em}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:2em;border-top:2px solid #e0e0e0;padding-top:.8em}
h3{font-size:1em;margin-bottom:.3em}
table{border-collapse:collapse;margin:.4em 0 1em;font-size:.9em}
th,td{border:1px solid #e0e0e0;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f5f5f5}.num{display:block;text-align:right}
.badge{display:inline-block;padding:0 .5em;border-radius:.3em;color:#fff;font-size:.85em;font-weight:600}
.badge.high{background:#c62828}.badge.medium{background:#ef6c00}.badge.low{background:#f9a825;color:#212121}
.badge.unknown{background:#757575}
.reason{font-size:1.05em;background:#fff8e1;border-left:4px solid #ffb300;padding:.5em .8em}
dl.facts{display:grid;grid-template-columns:max-content auto;gap:.15em 1em;margin:.5em 0}
dl.facts dt{font-weight:600}dl.facts dd{margin:0}
img{max-width:100%;height:auto}.note{color:#616161;font-size:.9em}
code{background:#f5f5f5;padding:0 .25em}
"""


# --------------------------------------------------------------------------- rendering


def _summary_html(alerts: pd.DataFrame, shown: int, timezone: str, incidents_html: str = "") -> str:
    parts = ["<h2>Summary</h2>"]
    if alerts.empty:
        parts.append("<p><strong>No alerts.</strong> The detector raised nothing on this log.</p>")
        return "\n".join(parts)
    period = f"{format_local(alerts['window_start'].min(), timezone)} to {format_local(alerts['window_end'].max(), timezone)}"
    severities = alerts["severity"].value_counts()
    by_severity = ", ".join(
        f"{_badge(s)} {severities[s]}"
        for s in sorted(severities.index, key=lambda s: SEVERITY_RANK.get(s, 9))
    )
    facts = [
        ("Alerts", f"{len(alerts)} ({by_severity})"),
        ("Accounts", _e(alerts["account_id"].nunique())),
        ("Alert windows span", _e(period)),
        ("First detection", _e(format_local(alerts["detected_at"].min(), timezone))),
    ]
    types = alerts.loc[alerts["account_type"] != "", "account_type"].value_counts()
    if len(types):
        facts.append(("Account types", _e(", ".join(f"{t}: {n}" for t, n in types.items()))))
    parts.append(
        '<dl class="facts">' + "".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in facts) + "</dl>"
    )
    if shown < len(alerts):
        parts.append(
            f'<p class="note">Details below for the {shown} most urgent alerts; '
            f"{len(alerts) - shown} more are left out (raise <code>--max-alerts</code> to see them).</p>"
        )
    parts.append(incidents_html)
    accounts = account_summary(alerts)
    rows = [
        [
            _e(row.account_id),
            _e(row.account_type or "-"),
            f'<span class="num">{row.alerts}</span>',
            _badge(row.top_severity),
            _e(format_local(row.first_detected, timezone)),
            _e(format_local(row.last_detected, timezone)),
        ]
        for row in accounts.head(MAX_INDEX_ROWS).itertuples(index=False)
    ]
    parts.append(
        "<h3>Accounts</h3>"
        + _table(["account", "type", "alerts", "highest", "first detected", "last detected"], rows)
    )
    rule_counts = alerts["rules"].explode().dropna().value_counts()
    model_only = int((alerts["rules"].map(len) == 0).sum())
    rule_rows = [[_e(rule), f'<span class="num">{n}</span>'] for rule, n in rule_counts.items()]
    if model_only:
        rule_rows.append(
            ["<em>model alone (no rule)</em>", f'<span class="num">{model_only}</span>']
        )
    parts.append("<h3>Rules that fired</h3>" + _table(["rule", "alerts"], rule_rows))
    parts.append(
        f'<img alt="alerts per day" src="{figure_data_uri(_alerts_figure(alerts, timezone))}">'
    )
    rows = []
    for position, alert in enumerate(alerts.head(MAX_INDEX_ROWS).itertuples(index=False)):
        label = _e(alert.alert_id)
        if position < shown:
            label = f'<a href="#{_anchor(alert.alert_id)}">{label}</a>'
        rows.append(
            [
                label,
                _badge(alert.severity),
                _e(alert.account_id),
                _e(alert.account_type or "-"),
                _e(format_local(alert.detected_at, timezone)),
                _e(_number(alert.score)),
                _e(", ".join(alert.rules) or "model"),
            ]
        )
    parts.append(
        "<h3>All alerts</h3>"
        + _table(["alert", "severity", "account", "type", "detected at", "score", "rules"], rows)
    )
    if len(alerts) > MAX_INDEX_ROWS:
        parts.append(f'<p class="note">{len(alerts) - MAX_INDEX_ROWS} more alerts not listed.</p>')
    return "\n".join(parts)


def _alerts_figure(alerts: pd.DataFrame, timezone: str) -> Figure:
    """Alerts per day; severities (free text in a CSV) drawn as figure-safe labels."""
    labelled = alerts.assign(severity=alerts["severity"].map(_figure_text))
    return plots.alerts_over_time(labelled, timezone=timezone)


def _alert_html(
    alert: pd.Series, events: pd.DataFrame, timezone: str, timeline: bool = True
) -> str:
    alert_id = alert["alert_id"]
    parts = [
        f'<section id="{_anchor(alert_id)}"><h2>{_badge(alert["severity"])} {_e(alert["account_id"])}'
        f' <span class="note">alert {_e(alert_id)}</span></h2>',
        f'<p class="reason">{_e(alert["reason"] or "(no reason given)")}</p>',
    ]
    delay = alert["detected_at"] - alert["window_start"]
    facts = [
        ("Account type", alert["account_type"] or "-"),
        (
            "Window",
            f"{format_local(alert['window_start'], timezone)} to {format_local(alert['window_end'], timezone)}",
        ),
        (
            "Detected at",
            f"{format_local(alert['detected_at'], timezone)}, {delay} after the window opened",
        ),
        ("Score", _number(alert["score"])),
        (
            "Model score",
            _number(alert["model_score"])
            if not pd.isna(alert["model_score"])
            else "model did not run",
        ),
    ]
    if alert["top_features"]:
        facts.append(("Model driven by", ", ".join(alert["top_features"])))
    parts.append(
        '<dl class="facts">'
        + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts)
        + "</dl>"
    )

    if alert["rules"]:
        times = list(alert["rule_times"]) + [None] * len(alert["rules"])
        rows = [
            [_e(rule), _e(format_local(t, timezone))]
            for rule, t in zip(alert["rules"], times, strict=False)
        ]
        parts.append(
            "<h3>Rules that fired</h3>" + _table(["rule", "condition first held at"], rows)
        )
    else:
        parts.append("<h3>Rules that fired</h3><p>None: the model alone raised this alert.</p>")

    evidence = evidence_table(alert)
    parts.append("<h3>Features against their baselines</h3>")
    if evidence.empty:
        parts.append('<p class="note">This alert carries no evidence table.</p>')
    else:
        rows = [
            [
                f"<code>{_e(item.feature)}</code>",
                _e(item.doc if isinstance(item.doc, str) else ""),
                f'<span class="num">{_e(_number(item.value))}</span>',
                f'<span class="num">{_e(_number(item.own_median))}</span>',
                f'<span class="num">{_e(_number(item.peer_p95))}</span>',
            ]
            for item in evidence.itertuples(index=False)
        ]
        parts.append(
            _table(
                ["feature", "what it measures", "this window", "own median", "peers' 95th pct"],
                rows,
            )
        )

    for column, title in (
        ("src_ip", "Addresses"),
        ("user_agent", "Clients"),
        ("application", "Applications"),
    ):
        usage = usage_table(
            events, alert["account_id"], column, alert["window_start"], alert["detected_at"]
        )
        if usage.empty:
            continue
        rows = [
            [
                _e(row[column]) + (" <strong>(new)</strong>" if row["new"] else ""),
                f'<span class="num">{row["events"]}</span>',
                f'<span class="num">{row["events_before"]}</span>',
                _e(format_local(row["first_seen"], timezone)),
            ]
            for _, row in usage.head(10).iterrows()
        ]
        parts.append(
            f"<h3>{title} used up to detection</h3>"
            + _table([column, "events in window", "events before", "first seen"], rows)
        )
        if len(usage) > 10:
            parts.append(f'<p class="note">{len(usage) - 10} more not shown.</p>')

    if not timeline:  # inside an incident, which draws one timeline per account
        parts.append("</section>")
        return "\n".join(parts)
    figure = plots.account_timeline(
        events,
        alert["account_id"],
        window_start=alert["window_start"],
        window_end=alert["window_end"],
        detected_at=alert["detected_at"],
        rule_times=alert["rule_times"],
        timezone=timezone,
        title=f"{_figure_text(alert['account_id'])}: activity per hour",
    )
    parts.append(
        "<h3>Timeline</h3>"
        f'<img alt="activity of {_e(alert["account_id"])} per hour" src="{figure_data_uri(figure)}">'
        '<p class="note">Shaded: the alert window. Red line: the detection instant; dotted ticks: '
        "when each rule's condition first held.</p></section>"
    )
    return "\n".join(parts)


def _incident_anchor(incident_id: str) -> str:
    return "incident-" + re.sub(r"[^A-Za-z0-9_-]", "_", str(incident_id))


def _incidents_summary_html(incidents: pd.DataFrame, shown_ids: set[str], timezone: str) -> str:
    rows = []
    for row in incidents.head(MAX_INDEX_ROWS).itertuples(index=False):
        label = _e(row.incident_id)
        if row.incident_id in shown_ids:
            label = f'<a href="#{_incident_anchor(row.incident_id)}">{label}</a>'
        rows.append(
            [
                label,
                _badge(row.severity),
                _e(", ".join(row.accounts)),
                f'<span class="num">{row.alerts}</span>',
                _e(format_local(row.first_detected, timezone)),
                _e(format_local(row.last_detected, timezone)),
                f'<span class="num">{_e(_number(row.records_exposed))}</span>',
            ]
        )
    headers = ["incident", "highest", "accounts", "alert-days", "first detected", "last detected"]
    return "<h3>Incidents</h3>" + _table([*headers, "records exposed"], rows)


def _incident_html(
    incident, alerts: pd.DataFrame, by_account: dict, empty: pd.DataFrame, timezone: str
) -> str:
    """One incident: its facts, one timeline per account (at most three), its alert-days."""
    parts = [
        f'<section id="{_incident_anchor(incident.incident_id)}" class="incident">'
        f"<h2>{_badge(incident.severity)} Incident {_e(incident.incident_id)}: "
        f"{_e(', '.join(incident.accounts))}</h2>"
    ]
    facts = [
        (
            "Detected",
            f"{format_local(incident.first_detected, timezone)} to "
            f"{format_local(incident.last_detected, timezone)}",
        ),
        (
            "Activity",
            f"{format_local(incident.first_activity, timezone)} to "
            f"{format_local(incident.last_activity, timezone)}",
        ),
        ("Alert-days", f"{incident.alerts} ({len(alerts)} detailed below)"),
        ("Rules", ", ".join(incident.rules) or "model"),
        ("Records exposed in its alerted windows", _number(incident.records_exposed)),
    ]
    parts.append(
        '<dl class="facts">'
        + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts)
        + "</dl>"
    )
    for account, own in list(alerts.groupby("account_id", sort=False))[:MAX_TIMELINES_PER_INCIDENT]:
        figure = plots.account_timeline(
            by_account.get(account, empty),
            account,
            window_start=own["window_start"].min(),
            window_end=own["window_end"].max(),
            detected_at=own["detected_at"].min(),
            rule_times=[t for times in own["rule_times"] for t in times],
            days_before=2,
            timezone=timezone,
        )
        parts.append(
            f"<h3>Timeline of {_e(account)}</h3>"
            f'<img alt="activity of {_e(account)} per hour" src="{figure_data_uri(figure, dpi=60)}">'
        )
    parts.append(
        '<p class="note">Shaded: the account\'s alerted windows in this incident. Red line: its '
        "first detection; dotted ticks: when each rule's condition first held.</p>"
    )
    parts += [
        _alert_html(alert, by_account.get(alert["account_id"], empty), timezone, timeline=False)
        for _, alert in alerts.iterrows()
    ]
    parts.append("</section>")
    return "\n".join(parts)


def _by_incident(alerts: pd.DataFrame, incidents: pd.DataFrame) -> pd.DataFrame:
    """Alerts in the incidents' order (most severe incident first), by detection inside each."""
    rank = {incident_id: i for i, incident_id in enumerate(incidents["incident_id"])}
    position = alerts["incident_id"].map(rank).fillna(len(rank)).to_numpy()
    order = np.lexsort((alerts["detected_at"].to_numpy(), position))
    return alerts.iloc[order].reset_index(drop=True)


def render_report(
    alerts: pd.DataFrame,
    events: pd.DataFrame,
    *,
    timezone: str = DEFAULT_TIMEZONE,
    max_alerts: int = DEFAULT_MAX_ALERTS,
    title: str = "Alert report",
    sources: dict[str, str] | None = None,
    incidents: pd.DataFrame | None = None,
) -> str:
    """The report as one HTML string.

    `alerts` as `normalise_alerts` returns them (it is applied again, harmlessly);
    `events` holds at least the first `max_alerts` alerted accounts' events.
    `sources` (e.g. `{"alerts": path, "log": path}`) is printed in the header.
    With `incidents` (`detector.incidents`) and alerts carrying `incident_id`, the
    details are one section per incident, its alert-days inside; `max_alerts`
    then counts alert-days in incident order.
    """
    check_timezone(timezone)
    if max_alerts < 0:
        raise InputError("--max-alerts must be 0 or more")
    alerts = normalise_alerts(alerts)
    grouped = (
        incidents is not None
        and len(incidents) > 0
        and "incident_id" in alerts
        and alerts["incident_id"].notna().all()
    )
    if grouped:
        alerts = _by_incident(alerts, incidents)
    shown = min(len(alerts), max_alerts)
    generated = format_local(datetime.now(UTC), timezone)
    header = [
        f"<h1>{_e(title)}</h1>",
        f'<p class="note">Generated {_e(generated)}. Times are local to {_e(timezone)}.',
    ]
    for name, value in (sources or {}).items():
        header.append(f"<br>{_e(name)}: <code>{_e(value)}</code>")
    header.append("</p>")
    # Split once: each section then filters its own account's events only.
    by_account = dict(tuple(events.groupby("account_id", sort=False, observed=True)))
    empty = events.iloc[:0]
    if grouped:
        detailed = alerts.head(shown)
        shown_ids = set(detailed["incident_id"])
        summary = _summary_html(
            alerts, shown, timezone, _incidents_summary_html(incidents, shown_ids, timezone)
        )
        sections = [
            _incident_html(
                incident,
                detailed[detailed["incident_id"] == incident.incident_id],
                by_account,
                empty,
                timezone,
            )
            for incident in incidents.itertuples(index=False)
            if incident.incident_id in shown_ids
        ]
    else:
        summary = _summary_html(alerts, shown, timezone)
        sections = [
            _alert_html(alert, by_account.get(alert["account_id"], empty), timezone)
            for _, alert in alerts.head(shown).iterrows()
        ]
    body = "\n".join([*header, summary, *sections])
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head>\n<body>\n{body}\n</body></html>\n"
    )


def write_report(
    alerts_path: str | Path,
    log_path: str | Path,
    out: str | Path,
    *,
    max_alerts: int = DEFAULT_MAX_ALERTS,
    timezone: str = DEFAULT_TIMEZONE,
    title: str = "Alert report",
    pseudonymiser: Pseudonymiser | None = None,
) -> ReportResult:
    """Read alerts and the alerted accounts' log, write the HTML report to `out`.

    With a `pseudonymiser`, account ids, addresses, record ids and target
    accounts are replaced in the alerts and events before anything is rendered.
    """
    check_timezone(timezone)
    if max_alerts < 0:
        raise InputError("--max-alerts must be 0 or more")
    alerts = read_alerts(alerts_path)
    incidents = None
    if incidents_path(alerts_path).exists() and "incident_id" in alerts:
        incidents = read_incidents(incidents_path(alerts_path))
        alerts = _by_incident(alerts, incidents)
    shown = alerts.head(max_alerts)
    accounts = shown["account_id"].unique()
    if pseudonymiser is not None and pseudonymiser.is_pseudonymised(alerts["account_id"], "acct"):
        # Alerts written by `score --pseudonymise`: their accounts are found in the
        # log by pseudonym, and only the events are pseudonymised here.
        originals = pseudonymiser.originals(accounts, _log_accounts(log_path), "acct")
        events = pseudonymiser.frame(load_account_events(log_path, originals.values()))
    else:
        events = load_account_events(log_path, accounts)
        if pseudonymiser is not None:
            alerts, events = pseudonymiser.frame(alerts), pseudonymiser.frame(events)
            if incidents is not None:
                incidents = pseudonymiser.frame(incidents)
    document = render_report(
        alerts,
        events,
        timezone=timezone,
        max_alerts=max_alerts,
        title=title,
        sources={"alerts": str(alerts_path), "log": str(log_path)},
        incidents=incidents,
    )
    out = write_text(out, document)
    return ReportResult(
        path=out, alerts=len(alerts), shown=len(shown), accounts=alerts["account_id"].nunique()
    )
