"""`detector generate` and `detector scenarios`: thin wrappers over synthetic_logs."""

from __future__ import annotations

import datetime as dt

import click

from synthetic_logs import settings

LONG_RUN = 100_000  # account-days above which a progress bar is worth showing


@click.command()
@click.option(
    "--out",
    required=True,
    type=click.Path(),
    help="Log file to write (.parquet), or a dataset directory (ends in / or exists): one "
    "Parquet file per local day. Side files go beside it.",
)
@click.option(
    "--partition-by",
    type=click.Choice(settings.PARTITIONS),
    default=None,
    help="day: write a dataset directory, one file per local day (implied by an --out "
    "ending in / or naming a directory); none: one file.",
)
@click.option(
    "--scenario",
    "scenarios",
    multiple=True,
    metavar="NAME|FILE",
    help="Built-in scenario name or TOML file; repeat for several; 'none' for a benign log; "
    "'quiet' or 'all' for those built-ins. Default: the four documented attacks.",
)
@click.option("--no-attacks", is_flag=True, help="Benign log only (same as --scenario none).")
@click.option(
    "--lookalikes",
    type=click.Choice(settings.LOOKALIKE_SET_NAMES),
    default=settings.DEFAULT_LOOKALIKES,
    show_default=True,
    help="Organisation-wide benign changes: default (those the shipped rules stay quiet on), "
    "extended (all: browser rollout, VPN migration, outage, campaign, reorganisation, auditor, "
    "batch changes, application rename, DST), basic (none).",
)
@click.option(
    "--seed",
    default=settings.DEFAULT_SEED,
    show_default=True,
    help="Random seed: same seed, same data.",
)
@click.option(
    "--accounts", default=settings.DEFAULT_ACCOUNTS, show_default=True, help="Number of accounts."
)
@click.option(
    "--days",
    default=settings.DEFAULT_DAYS,
    show_default=True,
    help="Number of local days in the log.",
)
@click.option(
    "--start",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help=f"First local day (YYYY-MM-DD). Default: {settings.DEFAULT_START}, a "
    f"{settings.DEFAULT_START:%A}.",
)
def generate(
    out, partition_by, scenarios, no_attacks, lookalikes, seed, accounts, days, start
) -> None:
    """Generate a synthetic access log replaying the documented attacks, with ground truth.

    Writes OUT plus OUT's stem with .truth.parquet, .attacks.json, .caseloads.parquet
    and .lookalikes.json beside it. A directory OUT (data/big/) gets one file per local
    day, data/big/day=YYYY-MM-DD/part-0.parquet, and data/big.truth.parquet etc. beside it.

    \b
    Examples:
      detector generate --out data/logs.parquet --accounts 500 --days 21 --scenario kairos_infostealer
      detector generate --out data/big/ --accounts 90000 --days 30
    """
    from synthetic_logs.generate import generate_dataset

    chosen = None
    if no_attacks or "none" in scenarios:
        chosen = []
    elif scenarios:
        chosen = list(scenarios)
    start_date = start.date() if isinstance(start, dt.datetime) else None
    settings = {
        "seed": seed,
        "accounts": accounts,
        "days": days,
        "start": start_date,
        "partition_by": partition_by,
        "lookalikes": lookalikes,
    }
    if accounts * days < LONG_RUN:
        summary = generate_dataset(out, chosen, **settings)
    else:
        with click.progressbar(
            length=100, label="population", file=click.get_text_stream("stderr")
        ) as bar:

            def progress(stage: str, fraction: float) -> None:
                bar.label = stage
                bar.update(max(0, int(fraction * 100) - bar.pos))

            summary = generate_dataset(out, chosen, progress=progress, **settings)
    for line in summary.lines():
        click.echo(line)


@click.command()
def scenarios() -> None:
    """List the built-in attack scenarios: name, documented dates, summary.

    \b
    Example:
      detector scenarios
    """
    from synthetic_logs.scenario import list_builtin_scenarios

    for scenario in list_builtin_scenarios():
        click.echo(f"{scenario.name}\t{scenario.source_dict['dates']}\t{scenario.summary}")
