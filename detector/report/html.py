"""The HTML report: escaping and formatting, the summary, one section per alert and incident.

The stylesheet is the package's `style.css`; its severity badges are drawn in
the vocabulary's colours.
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from detector import plots
from detector.alerts import normalise_alerts, read_alerts
from detector.errors import InputError
from detector.incidents import incidents_path, read_incidents
from detector.outputs import write_text
from detector.privacy import Pseudonymiser
from detector.report import DEFAULT_MAX_ALERTS
from detector.report.data import (
    SEVERITY_RANK,
    account_summary,
    evidence_table,
    load_account_events,
    log_accounts,
    usage_table,
)
from detector.textsafe import visible
from detector.timeutil import check_timezone, utc_timestamp
from detector.vocabulary import (
    DEFAULT_TIMEZONE,
    SEVERITIES_URGENT_FIRST,
    SEVERITY_COLOURS,
    Severity,
)

# The index of the summary lists at most this many alerts: past that the file
# stops being something one forwards.
MAX_INDEX_ROWS = 1000
MAX_TIMELINES_PER_INCIDENT = 3  # one picture per account of an incident, at most this many


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


# --------------------------------------------------------------------------- formatting


def format_local(instant, timezone: str = DEFAULT_TIMEZONE) -> str:
    """`2024-02-06 14:03:12 CET (UTC+01:00)`: local wall time with its offset."""
    if instant is None or pd.isna(instant):
        return "-"
    local = utc_timestamp(instant).tz_convert(timezone)
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


def _anchor(alert_id: str) -> str:
    return "alert-" + re.sub(r"[^A-Za-z0-9_-]", "_", alert_id)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], css: str = "") -> str:
    """An HTML table from cells that are already escaped HTML."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _badge(severity: str) -> str:
    return f'<span class="badge {_e(severity)}">{_e(severity)}</span>'


def _badge_css() -> str:
    """One badge rule per severity, in the vocabulary's colours (dark text on the light one)."""
    text = {Severity.LOW: ";color:#212121"}
    return "".join(
        f".badge.{s}{{background:{SEVERITY_COLOURS[s]}{text.get(s, '')}}}"
        for s in SEVERITIES_URGENT_FIRST
    )


def _stylesheet() -> str:
    """The package's style.css, its severity badges line filled in from the vocabulary."""
    css = resources.files("detector.report").joinpath("style.css").read_text(encoding="utf-8")
    return css.replace("/* severity badges */", _badge_css())


_STYLE = _stylesheet()


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
    """Alerts per day (plots draws severities, free text in a CSV, as plain text)."""
    return plots.alerts_over_time(alerts, timezone=timezone)


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
        title=f"{alert['account_id']}: activity per hour",
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
        f"<title>{_e(title)}</title><style>\n{_STYLE}</style></head>\n<body>\n{body}\n</body></html>\n"
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
        originals = pseudonymiser.originals(accounts, log_accounts(log_path), "acct")
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
