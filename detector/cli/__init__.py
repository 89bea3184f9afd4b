"""The `detector` command: a thin group whose subcommands are imported only when used.

Each subcommand lives in its own module of this package and calls one library
function. Importing lazily keeps `detector --help` fast (no pandas/sklearn import).
"""

from __future__ import annotations

import importlib
import signal
import threading

import click

from detector.errors import DetectorError

# name -> ("module:attribute", the command's first help sentence). One line per command, in
# the order `--help` lists them. The sentence is kept here so that listing the commands imports
# none of them (bench's module alone pulls in pandas); a test checks it against each command.
COMMANDS: dict[str, tuple[str, str]] = {
    "score": (
        "detector.cli.score:score",
        "Score LOG (Parquet, NDJSON or CSV; the contract's fields or --schema/--mapping) "
        "and write alerts.",
    ),
    "fit": (
        "detector.cli.score:fit",
        "Fit the IsolationForest on LOG (e.g. a known-clean month) and save it.",
    ),
    "generate": (
        "detector.cli.generate:generate",
        "Generate a synthetic access log replaying the documented attacks, with ground truth.",
    ),
    "scenarios": (
        "detector.cli.generate:scenarios",
        "List the built-in attack scenarios: name, documented dates, summary.",
    ),
    "report": (
        "detector.cli.report:report",
        "Write a self-contained HTML report of ALERTS (the table `detector score` wrote).",
    ),
    "rules": (
        "detector.cli.rules:rules",
        "Check and list rule sets (built-in names or TOML files).",
    ),
    "bench": (
        "detector.cli.bench:bench",
        "Compare rule sets on generated attacks: the documented replays and the quiet classes.",
    ),
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
        if name not in COMMANDS:
            return None
        module_name, attribute = COMMANDS[name][0].split(":")
        return getattr(importlib.import_module(module_name), attribute)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The commands and their summaries, cut to the terminal as click would cut them."""
        limit = formatter.width - 6 - max(len(name) for name in COMMANDS)
        rows = [
            (name, click.Command(name, help=summary).get_short_help_str(limit))
            for name, (_, summary) in COMMANDS.items()
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context):
        if threading.current_thread() is threading.main_thread():
            # Stopped by a scheduler (SIGTERM: cron's timeout, systemd, Kubernetes) as by
            # Ctrl-C: temporary files, /dev/shm hand-overs included, are cleaned up on the
            # way out, and the run ends with "Aborted!" and status 1.
            signal.signal(signal.SIGTERM, signal.default_int_handler)
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
