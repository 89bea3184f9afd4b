"""`detector report`: alerts and their accounts' activity as one self-contained HTML file."""

from __future__ import annotations

import click

from detector.cli.input_options import log_input_options
from detector.cli.options import LocalPath, pseudonymise_options, pseudonymiser, timezone_option
from detector.report import DEFAULT_MAX_ALERTS  # the package loads its modules on first use


@click.command()
@click.argument("alerts", type=click.Path(dir_okay=False, path_type=str))
@click.option(
    "--log",
    "log",
    required=True,
    # The report re-reads the alerted accounts' events from local files only.
    type=LocalPath("the report reads the log from local files; copy it first"),
    help="The event log the alerts were computed from (Parquet file or directory).",
)
@click.option(
    "--out",
    default="report.html",
    show_default=True,
    type=click.Path(path_type=str),
    help="Where to write the HTML report.",
)
@click.option(
    "--max-alerts",
    default=DEFAULT_MAX_ALERTS,
    show_default=True,
    type=click.IntRange(min=0),
    help="Detail at most this many alerts, most urgent first; the summary counts the rest.",
)
@timezone_option
@pseudonymise_options
@log_input_options
def report(
    alerts: str,
    log,
    out: str,
    max_alerts: int,
    timezone: str,
    pseudonymise: bool,
    pseudonym_key_file,
    **inputs,
) -> None:
    """Write a self-contained HTML report of ALERTS (the table `detector score` wrote).

    The file has a summary, then one section per alert: reason, rules fired,
    features against their baselines, addresses and clients, and a timeline of
    the account's activity. Images are inlined; it opens with no network.

    \b
    Example:
      detector report data/alerts.parquet --log data/logs.parquet --out report.html
    """
    from detector.outputs import check_outputs

    check_outputs(
        {"--out": out},
        {
            "the alerts file": alerts,
            "the log": str(log),
            "the mapping file": inputs.get("mapping"),
            "the pseudonym key file": pseudonym_key_file,
        },
    )
    from detector.formats.staging import contract_log
    from detector.report import write_report  # matplotlib: imported once the paths are sound

    with contract_log(str(log), **inputs) as source:
        result = write_report(
            alerts,
            source.path,
            out,
            max_alerts=max_alerts,
            timezone=timezone,
            pseudonymiser=pseudonymiser(pseudonymise, pseudonym_key_file),
        )
    note = f", {result.left_out} more summarised only" if result.left_out else ""
    click.echo(
        f"{result.alerts} alerts on {result.accounts} accounts ({result.shown} detailed{note})"
    )
    click.echo(f"report written to {result.path}")
