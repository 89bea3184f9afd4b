"""`detector rules`: check rule set files and list their rules."""

from __future__ import annotations

import click


@click.group()
def rules() -> None:
    """Check and list rule sets (built-in names or TOML files).

    \b
    Examples:
      detector rules check default my_rules.toml
      detector rules list strict
      detector rules features records
    """


@rules.command()
@click.argument("rulesets", nargs=-1, required=True, metavar="NAME_OR_FILE...")
def check(rulesets: tuple[str, ...]) -> None:
    """Load each rule set and run its test cases; print every problem as path:line: message.

    Prints `PATH: OK (N rules, M test cases)` for a sound file; exits 1 when any
    file has a problem.

    \b
    Example:
      detector rules check default detector/rulesets/strict.toml
    """
    from detector.rules import check_rulesets  # with the command, not `--help` (pandas)

    outcomes = check_rulesets(rulesets)
    for outcome in outcomes:
        for line in outcome.lines():
            click.echo(line)
    if not all(outcome.ok for outcome in outcomes):
        raise SystemExit(1)


@rules.command(name="list")
@click.argument("rulesets", nargs=-1, metavar="[NAME_OR_FILE]...")
def list_(rulesets: tuple[str, ...]) -> None:
    """Print each rule's id, severity, ATT&CK technique and title, under a header per set.

    Without an argument, lists every built-in rule set.

    \b
    Example:
      detector rules list default
    """
    from detector.rules import describe_rulesets  # with the command, not `--help`

    for line in describe_rulesets(rulesets):
        click.echo(line)


@rules.command()
@click.argument("words", nargs=-1, metavar="[WORD]...")
def features(words: tuple[str, ...]) -> None:
    """Print the catalogued features a rule may name: name, unit, one line of meaning.

    With WORDs, only the features whose name holds one of them.

    \b
    Examples:
      detector rules features
      detector rules features caseload night
    """
    from detector.features.catalogue import describe

    for line in describe(words):
        click.echo(line)
