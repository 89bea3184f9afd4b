"""Options shared by several commands, defined once."""

from __future__ import annotations

from pathlib import Path

import click

from detector.vocabulary import DEFAULT_TIMEZONE  # not timeutil: it imports pandas (`--help`)

timezone_option = click.option(
    "--timezone",
    default=DEFAULT_TIMEZONE,
    show_default=True,
    help="Time zone of the people behind the accounts: hours of day, nights, days.",
)


class PathOrURL(click.ParamType):
    """An input: a local path (a Path) or a URL kept as text (detector.engine.storage reads it)."""

    name = "path"

    def convert(self, value, param, ctx):
        from detector.engine.storage import as_location  # with the command, not `--help`

        return as_location(value) if isinstance(value, str) else value


class LocalPath(click.Path):
    """A local path option that refuses a URL with one ``Error:`` line saying ``why``."""

    def __init__(self, why: str, **options):
        super().__init__(path_type=Path, **options)
        self.why = why

    def convert(self, value, param, ctx):
        from detector.engine.storage import local_path

        if isinstance(value, str) and local_path(value) is None:
            from detector.errors import InputError

            raise InputError(f"{param.opts[0]} {value}: a local path is needed ({self.why})")
        return super().convert(local_path(value) if isinstance(value, str) else value, param, ctx)


PATH_OR_URL = PathOrURL()
OUTPUT_PATH = LocalPath("outputs are written to local files")

caseloads_option = click.option(
    "--caseloads",
    type=PATH_OR_URL,
    help="Caseload table, a path or an fsspec URL (default: <stem>.caseloads.parquet beside LOG).",
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
