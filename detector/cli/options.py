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

engine_options = [
    click.option(
        "--engine",
        type=click.Choice(["local", "dask"]),
        default="local",
        show_default=True,
        help="Where partitions run: local processes, or a Dask cluster.",
    ),
    click.option(
        "--workers",
        type=click.IntRange(min=1),
        help="Worker processes (local engine; default: one per core) or local Dask workers.",
    ),
    click.option(
        "--scheduler",
        help="Dask scheduler address (tcp://host:8786); default: a local cluster.",
    ),
]


def engine_option(command):
    """--engine, --workers, --scheduler: where the partitions of a log are processed."""
    for option in reversed(engine_options):
        command = option(command)
    return command
