"""`detector bench`: compare rule sets on generated attacks, documented and quiet.

The only place in ``detector`` that imports ``synthetic_logs``: it hands
``detector.bench`` the generator's entry (:mod:`synthetic_logs.bench_data`), so the
library itself knows only the contract files. ``--plot`` draws the bench's rows
with :func:`detector.plots.bench_figure`, the figure notebook 02 shows.
"""

from __future__ import annotations

from pathlib import Path

import click

from detector import bench as bench_lib
from detector.cli.options import pseudonymise_options, pseudonymiser, timezone_option
from detector.vocabulary import MODES
from synthetic_logs.bench_data import fingerprint as generator_fingerprint
from synthetic_logs.bench_data import generate_for_bench, scenario_names
from synthetic_logs.lookalikes import LOOKALIKE_SETS


def _parse_values(knob: str, text: str | None) -> list | None:
    """`--sweep-values 1,2,5` as numbers, or true/false for a switch; the library checks them."""
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    if isinstance(bench_lib.SWEEP_KNOBS[knob][0], bool):
        truth = {"true": True, "false": False, "1": True, "0": False}
        if any(t.lower() not in truth for t in items):
            raise click.BadParameter(f"{knob} takes true or false", param_hint="--sweep-values")
        return [truth[t.lower()] for t in items]
    try:
        return [int(t) if t.lstrip("+-").isdigit() else float(t) for t in items]
    except ValueError:
        raise click.BadParameter(f"{knob} takes numbers", param_hint="--sweep-values") from None


@click.command()
@click.option(
    "--rules",
    "rulesets",
    multiple=True,
    metavar="FILE",
    help="Rule set name or TOML file; repeat to compare. Default: every shipped rule set.",
)
@click.option(
    "--scenario",
    "scenarios",
    multiple=True,
    metavar="NAME",
    help="Scenario name, TOML file, or group (documented, quiet, all); repeat. "
    "Default: all (the four documented attacks and the five quiet ones).",
)
@click.option(
    "--seeds",
    default=len(bench_lib.DEFAULT_SEEDS),
    show_default=True,
    type=click.IntRange(1),
    help="Seeds 1..N.",
)
@click.option("--accounts", type=click.IntRange(1), help="Population size (generator default).")
@click.option("--days", type=click.IntRange(1), help="Days of log (generator default).")
@click.option(
    "--lookalikes",
    type=click.Choice(list(LOOKALIKE_SETS)),
    default=bench_lib.DEFAULT_LOOKALIKES,
    show_default=True,
    help="Look-alike set of the generated data: extended adds the organisation-wide changes "
    "the shipped rules still alert on; default leaves them out.",
)
@click.option(
    "--mode",
    "modes",
    multiple=True,
    type=click.Choice(MODES),
    help="Scoring mode; repeat. Default: rules and both.",
)
@click.option("--out", type=click.Path(), help="CSV of results (+ .rules.csv, .lookalikes.csv).")
@click.option("--plot", type=click.Path(), help="PNG comparing the rule sets.")
@click.option(
    "--sweep",
    type=click.Choice(list(bench_lib.SWEEP_KNOBS)),
    help="Vary one stealth knob of the scenarios and report detection against it.",
)
@click.option("--sweep-values", metavar="V1,V2,...", help="Values of the swept knob.")
@click.option(
    "--cache-dir",
    default=bench_lib.DEFAULT_CACHE_DIR,
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where generated data sets are kept for reruns.",
)
@timezone_option
@pseudonymise_options
def bench(
    rulesets,
    scenarios,
    seeds,
    accounts,
    days,
    lookalikes,
    modes,
    out,
    plot,
    sweep,
    sweep_values,
    cache_dir,
    timezone,
    pseudonymise,
    pseudonym_key_file,
) -> None:
    """Compare rule sets on generated attacks: the documented replays and the quiet classes.

    One data set per seed holds every selected scenario; each is generated once
    (cached), prepared once, then scored per rule set and mode. Prints medians
    over seeds, the first rule to fire on each attack, the look-alikes alerted
    and each rule's false alerts. Metrics are defined in docs/metrics.md.

    \b
    Examples:
      detector bench --out bench.csv --plot bench.png
      detector bench --rules naive --rules default --scenario kairos_infostealer --seeds 1
      detector bench --scenario quiet --lookalikes default --seeds 1
      detector bench --sweep per_day --sweep-values 10,30,60 --mode rules
    """
    from detector.outputs import check_outputs
    from synthetic_logs.scenario import load_scenario

    if sweep_values and not sweep:
        raise click.UsageError("--sweep-values needs --sweep KNOB")
    check_outputs(
        {
            "--out": out,
            "the per-rule CSV": bench_lib.rules_csv_path(out) if out else None,
            "the look-alike CSV": bench_lib.lookalikes_csv_path(out) if out else None,
            "--plot": plot,
        },
        [
            *[("the rules file", p) for p in rulesets if Path(p).is_file()],
            *[("the scenario file", p) for p in scenarios if Path(p).is_file()],
            ("the pseudonym key file", pseudonym_key_file),
        ],
    )
    hide = pseudonymiser(pseudonymise, pseudonym_key_file)
    scenarios = tuple(scenario_names(scenarios)) or bench_lib.SCENARIOS
    for name in scenarios:
        load_scenario(name)  # an unknown scenario fails before any generation
    values = _parse_values(sweep, sweep_values) if sweep else None
    if sweep:
        bench_lib.knob_settings(sweep, values)  # a bad value fails before any generation
    result = bench_lib.run(
        generate_for_bench,
        out=out,
        rulesets=list(rulesets) or None,
        scenarios=scenarios,
        seeds=list(range(1, seeds + 1)),
        accounts=accounts,
        days=days,
        lookalikes=lookalikes,
        modes=tuple(modes) or bench_lib.DEFAULT_MODES,
        knob=sweep,
        knob_values=values,
        cache_dir=cache_dir,
        timezone=timezone,
        generator=generator_fingerprint(),
        progress=lambda line: click.echo(line, err=True),
        pseudonymiser=hide,
    )
    if plot:
        from detector import plots  # matplotlib: only when a figure is asked for

        result.files.append(plots.save_figure(plots.bench_figure(result.rows, result.knob), plot))
    click.echo(bench_lib.format_summary(result))
    for path in result.files:
        click.echo(f"wrote {path}")
