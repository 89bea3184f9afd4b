"""A self-contained HTML report of alerts that an analyst can read and forward.

`write_report(alerts_path, log_path, out)` reads the alerts table (contract
section 4), the log of the alerted accounts only, and writes one HTML file:
a summary (alerts by severity, accounts, period, rules), then one section per
alert with its reason, the rules that fired, its features against their
baselines, the addresses and clients it used and a timeline picture of the
account's activity with the detection instant marked. Pictures are PNGs
inlined as base64 `data:` URIs; there is no script and no external reference,
so the file opens offline. All text from the data is escaped.

The package: `data` builds the tables (they serve the notebooks too),
`html` renders them with the stylesheet `style.css`; the alerts table is read
by `detector.alerts`. The names below are loaded on first use, so the CLI can
read `DEFAULT_MAX_ALERTS` without importing pandas or matplotlib.
"""

from __future__ import annotations

import importlib
from typing import Any

DEFAULT_MAX_ALERTS = 50  # alerts detailed unless told otherwise (`detector report --max-alerts`)

# Where each public name lives: tables in `data`, rendering in `html`, the alerts table in alerts.
_HOMES = {
    "detector.report.data": (
        "account_summary",
        "caseload_reads",
        "evidence_table",
        "explanations",
        "load_account_events",
        "usage_table",
    ),
    "detector.report.html": (
        "MAX_INDEX_ROWS",
        "MAX_TIMELINES_PER_INCIDENT",
        "ReportResult",
        "figure_data_uri",
        "format_local",
        "render_report",
        "write_report",
    ),
    "detector.alerts": ("normalise_alerts", "read_alerts"),
}
__all__ = ["DEFAULT_MAX_ALERTS", *(name for names in _HOMES.values() for name in names)]


def __getattr__(name: str) -> Any:
    for module, names in _HOMES.items():
        if name in names:
            return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module 'detector.report' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
