"""Options naming a log's file format and field mapping, shared by the commands that read logs.

The work is in :mod:`detector.formats`; see docs/formats.md.
"""

from __future__ import annotations

from pathlib import Path

import click

FORMATS = ("parquet", "ndjson", "csv")  # detector.formats.readers.FORMATS, without importing Arrow


def log_input_options(command):
    """``--input-format``, ``--schema``, ``--mapping`` and ``--staged-out`` on a command reading LOG."""
    options = [
        click.option(
            "--input-format",
            type=click.Choice(FORMATS),
            help="Format of LOG (default: from its extension; .gz is looked through).",
        ),
        click.option(
            "--schema",
            "schema",
            type=click.Choice(["ecs", "ocsf"]),
            help="LOG's field names: Elastic Common Schema or OCSF (docs/formats.md).",
        ),
        click.option(
            "--mapping",
            type=click.Path(path_type=Path),
            help="A mapping TOML file of LOG's fields onto the contract (docs/formats.md).",
        ),
        click.option(
            "--staged-out",
            type=click.Path(path_type=Path, file_okay=False),
            help="Keep the contract Parquet staged from a non-contract LOG in this directory.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command
