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

def pseudonymise_options(command):
    """``--pseudonymise`` and ``--pseudonym-key-file``, shared by score, report and bench."""
    command = click.option(
        "--pseudonym-key-file",
        type=click.Path(path_type=Path),
        help="File holding the pseudonym key (default: $LOGSENTINEL_PSEUDONYM_KEY).",
    )(command)
    return click.option(
        "--pseudonymise",
        is_flag=True,
        help="Replace account ids, addresses, record ids and target accounts in every output "
        "by keyed pseudonyms (HMAC-SHA-256; see docs/outputs.md).",
    )(command)


def pseudonymiser(pseudonymise: bool, key_file: Path | None):
    """The run's :class:`~detector.privacy.Pseudonymiser`, or None without ``--pseudonymise``."""
    if not pseudonymise:
        if key_file is not None:
            raise click.UsageError("--pseudonym-key-file needs --pseudonymise")
        return None
    from detector.privacy import Pseudonymiser, load_key

    return Pseudonymiser(load_key(key_file))
