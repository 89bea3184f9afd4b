"""The `detector` command: a thin group whose subcommands are imported only when used.

Each subcommand lives in its own module of this package and calls one library
function. Importing lazily keeps `detector --help` fast (no pandas/sklearn import).
"""

from __future__ import annotations

import importlib

import click

from detector.errors import DetectorError

# name -> "module:attribute"; one line per command, in the order `--help` lists them.
COMMANDS: dict[str, str] = {
    "score": "detector.cli.score:score",
    "fit": "detector.cli.score:fit",
    "generate": "detector.cli.generate:generate",
    "scenarios": "detector.cli.generate:scenarios",
    "report": "detector.cli.report:report",
    "rules": "detector.cli.rules:rules",
    "bench": "detector.cli.bench:bench",
}


def _expected_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean bad input, not a bug: shown as one line, never a traceback."""
    errors: list[type[BaseException]] = [DetectorError]
    try:
        from synthetic_logs.errors import GeneratorError
    except ImportError:  # pragma: no cover - both packages ship together
        pass
    else:
        errors.append(GeneratorError)
    return tuple(errors)


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        return getattr(importlib.import_module(module_name), attribute)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except _expected_errors() as error:
            from detector.textsafe import visible

            # Messages quote paths and values from the data: one line, no raw controls.
            raise click.ClickException(visible(error)) from error


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="logsentinel")
def main() -> None:
    """Find accounts behaving like intruders in access logs.

    \b
    Typical session:
      detector generate --out data/logs.parquet
      detector score data/logs.parquet --out data/alerts.parquet
      detector report data/alerts.parquet --log data/logs.parquet --out report.html
    """
