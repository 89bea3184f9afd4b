"""`detector report`: alerts and their accounts' activity as one self-contained HTML file."""

from __future__ import annotations

import click

from detector.cli.input_options import log_input_options
from detector.cli.options import timezone_option


@click.command()
@click.argument("alerts", type=click.Path(dir_okay=False, path_type=str))
@click.option(
    "--log",
    "log",
    required=True,
    type=click.Path(path_type=str),
    help="The event log the alerts were computed from (Parquet file or directory).",
)
@click.option(
    "--out",
    default="report.html",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=str),
    help="Where to write the HTML report.",
)
@click.option(
    "--max-alerts",
    default=50,
    show_default=True,
    type=click.IntRange(min=0),
    help="Detail at most this many alerts, most urgent first; the summary counts the rest.",
)
@timezone_option
@log_input_options
def report(alerts: str, log: str, out: str, max_alerts: int, timezone: str, **inputs) -> None:
    """Write a self-contained HTML report of ALERTS (the table `detector score` wrote).

    The file has a summary, then one section per alert: reason, rules fired,
    features against their baselines, addresses and clients, and a timeline of
    the account's activity. Images are inlined; it opens with no network.

    \b
    Example:
      detector report data/alerts.parquet --log data/logs.parquet --out report.html
    """
    from detector.formats.staging import contract_log
    from detector.report import write_report

    with contract_log(log, **inputs) as source:
        result = write_report(alerts, source.path, out, max_alerts=max_alerts, timezone=timezone)
    note = f", {result.left_out} more summarised only" if result.left_out else ""
    click.echo(
        f"{result.alerts} alerts on {result.accounts} accounts ({result.shown} detailed{note})"
    )
    click.echo(f"report written to {result.path}")
