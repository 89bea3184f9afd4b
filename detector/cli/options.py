"""Options shared by several commands, defined once."""

from __future__ import annotations

from pathlib import Path

import click

from detector.timeutil import DEFAULT_TIMEZONE

timezone_option = click.option(
    "--timezone",
    default=DEFAULT_TIMEZONE,
    show_default=True,
    help="Time zone of the people behind the accounts: hours of day, nights, days.",
)

caseloads_option = click.option(
    "--caseloads",
    type=click.Path(path_type=Path),
    help="Caseload table (default: <stem>.caseloads.parquet beside LOG).",
)
