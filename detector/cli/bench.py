"""`detector bench`: compare rule sets on generated replays of the documented attacks.

The only place in ``detector`` that imports ``synthetic_logs``: it hands
``detector.bench`` a function that generates a data set, so the library itself
knows only the contract files.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import click

from detector import bench as bench_lib
from detector.cli.options import pseudonymise_options, pseudonymiser, timezone_option


def generator_fingerprint() -> str:
    """A hash of the generator's code and scenario files: cached data sets die with them."""
    import synthetic_logs
    from synthetic_logs.scenario import builtin_dir

    root = Path(synthetic_logs.__file__).parent
    # The scenario folder is named apart: it is the top-level scenarios/, linked into the package.
    files = [(p.relative_to(root), p) for p in sorted(root.rglob("*.py"))]
    files += [(Path("scenarios") / p.name, p) for p in sorted(builtin_dir().glob("*.toml"))]
    digest = hashlib.sha256()
    for name, path in files:
        digest.update(str(name).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def generate_with_synthetic_logs(out: Path, spec: bench_lib.DatasetSpec) -> None:
    """Generate a spec's data set with ``synthetic_logs``: its scenarios, knobs and population."""
    from synthetic_logs.generate import generate_dataset
    from synthetic_logs.scenario import load_scenario, with_overrides

    knobs = dict(spec.knobs)
    scenarios = [with_overrides(load_scenario(name), **knobs) for name in spec.scenarios]
    population = {
        k: v for k, v in {"accounts": spec.accounts, "days": spec.days}.items() if v is not None
    }
    generate_dataset(out, scenarios=scenarios, seed=spec.seed, **population)


def _parse_values(knob: str, text: str | None) -> list | None:
    """`--sweep-values 1,2,5` as the knob's type (numbers, or true/false)."""
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    if isinstance(bench_lib.SWEEP_KNOBS[knob][0], bool):
        truth = {"true": True, "false": False, "1": True, "0": False}
        if any(t.lower() not in truth for t in items):
            raise click.BadParameter(f"{knob} takes true or false", param_hint="--sweep-values")
        return [truth[t.lower()] for t in items]
    try:
        return [float(t) for t in items]
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
    help="Scenario name or TOML file; repeat. Default: the four documented attacks.",
)
@click.option("--seeds", default=3, show_default=True, type=click.IntRange(1), help="Seeds 1..N.")
@click.option("--accounts", type=click.IntRange(1), help="Population size (generator default).")
@click.option("--days", type=click.IntRange(1), help="Days of log (generator default).")
@click.option(
    "--mode",
    "modes",
    multiple=True,
    type=click.Choice(bench_lib.MODES),
    help="Scoring mode; repeat. Default: rules and both.",
)
@click.option("--out", type=click.Path(), help="CSV of results (+ .rules.csv).")
@click.option("--plot", type=click.Path(), help="PNG comparing the rule sets.")
@click.option(
    "--sweep",
    type=click.Choice(list(bench_lib.SWEEP_KNOBS)),
    help="Vary one stealth knob of the scenarios and report detection against it.",
)
@click.option("--sweep-values", metavar="V1,V2,...", help="Values of the swept knob.")
@click.option(
    "--cache-dir",
    default=".cache/bench",
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
    """Compare rule sets on generated replays of the documented attacks.

    One data set per seed holds every selected scenario; each is generated once
    (cached), prepared once, then scored per rule set and mode. Prints medians
    over seeds, the first rule to fire on each attack and each rule's false
    alerts. Metrics are defined in docs/metrics.md.

    \b
    Examples:
      detector bench --out bench.csv --plot bench.png
      detector bench --rules naive --rules default --scenario kairos_infostealer --seeds 1
      detector bench --sweep rate_multiple --sweep-values 1,5,20 --mode rules
    """
    from detector.outputs import check_outputs
    from synthetic_logs.scenario import load_scenario

    if sweep_values and not sweep:
        raise click.UsageError("--sweep-values needs --sweep KNOB")
    check_outputs(
        {
            "--out": out,
            "the per-rule CSV": bench_lib.rules_csv_path(out) if out else None,
            "--plot": plot,
        },
        [
            *[("the rules file", p) for p in rulesets if Path(p).is_file()],
            *[("the scenario file", p) for p in scenarios if Path(p).is_file()],
            ("the pseudonym key file", pseudonym_key_file),
        ],
    )
    hide = pseudonymiser(pseudonymise, pseudonym_key_file)
    for name in scenarios:
        load_scenario(name)  # an unknown scenario fails before any generation
    result = bench_lib.run(
        generate_with_synthetic_logs,
        out=out,
        plot=plot,
        rulesets=list(rulesets) or None,
        scenarios=tuple(scenarios) or bench_lib.SCENARIOS,
        seeds=list(range(1, seeds + 1)),
        accounts=accounts,
        days=days,
        modes=tuple(modes) or bench_lib.DEFAULT_MODES,
        knob=sweep,
        knob_values=_parse_values(sweep, sweep_values) if sweep else None,
        cache_dir=cache_dir,
        timezone=timezone,
        generator=generator_fingerprint(),
        progress=lambda line: click.echo(line, err=True),
        pseudonymiser=hide,
    )
    click.echo(bench_lib.format_summary(result))
    for path in result.files:
        click.echo(f"wrote {path}")
