"""The generator as `detector.bench` calls it: one data set per bench spec, and a fingerprint.

`detector.bench` does not import the generator: callers hand it
:func:`generate_for_bench` (the `detector bench` command and notebook 02 do),
which keeps the data flow one way. Notebook use::

    from detector import bench
    from synthetic_logs.bench_data import generate_for_bench
    result = bench.run_bench(generate_for_bench, rulesets=["default"], seeds=[1])
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from synthetic_logs import scenario
from synthetic_logs.generate import generate_dataset, sidecar
from synthetic_logs.scenario import Scenario

#: Step parameters a sweep may set. A scenario has one when one of its steps sets it
#: (non-zero): `per_day` in a bulk_read that reads so many records a day, not in one
#: that reads a share of the population.
STEP_KNOBS = ("per_day", "daily_multiple", "searches_per_day", "records_per_search")


def generate_for_bench(out: Path, spec: Any) -> None:
    """Generate a bench spec's data set (a `detector.bench.DatasetSpec`) into `out`.

    Its scenarios with the stealth knobs they have applied, its seed, its look-alike
    set, and its population size where named (the generator's defaults otherwise).
    Beside the log, ``NAME.knobs.json`` says which knobs each scenario took.
    """
    knobs = dict(spec.knobs)
    chosen, applied = [], {}
    for name in scenario_names(spec.scenarios):
        changed, took = apply_knobs(scenario.load_scenario(name), knobs)
        chosen.append(changed)
        applied[changed.name] = took
    population = {
        k: v for k, v in {"accounts": spec.accounts, "days": spec.days}.items() if v is not None
    }
    lookalikes = getattr(spec, "lookalikes", "default")
    generate_dataset(out, scenarios=chosen, seed=spec.seed, lookalikes=lookalikes, **population)
    sidecar(Path(out), "knobs.json").write_text(json.dumps(applied, indent=1) + "\n")


def scenario_names(names: Iterable[str]) -> list[str]:
    """Names with the groups `documented`, `quiet` and `all` expanded to built-in names."""
    out: list[str] = []
    for name in names:
        if name in scenario.GROUPS:
            out.extend(s.name for s in scenario.list_builtin_scenarios(name))
        else:
            out.append(name)
    return list(dict.fromkeys(out))


def apply_knobs(chosen: Scenario, knobs: Mapping[str, Any]) -> tuple[Scenario, list[str]]:
    """The scenario with the knobs it has set to the given values, and their names.

    Stealth knobs and parameters (`duration_days`) every scenario has; a step knob
    (:data:`STEP_KNOBS`) only the scenarios whose steps set it. A knob a scenario
    lacks leaves it as written, and is not in the names returned.
    """
    step_knobs = {k: v for k, v in knobs.items() if k in STEP_KNOBS}
    others = {k: v for k, v in knobs.items() if k not in STEP_KNOBS}
    chosen = scenario.with_overrides(chosen, **others)
    applied = set(others)
    steps = []
    for step in chosen.steps:
        params = dict(step.params)
        for key, value in step_knobs.items():
            if params.get(key):
                params[key] = type(params[key])(value)
                applied.add(key)
        steps.append(dataclasses.replace(step, params=tuple(sorted(params.items()))))
    return dataclasses.replace(chosen, steps=tuple(steps)), sorted(applied)


def fingerprint() -> str:
    """A hash of the generator's code and scenario files: cached data sets die with them."""
    root = Path(__file__).parent
    # The scenario folder is named apart: it is the top-level scenarios/, linked into the package.
    files = [(p.relative_to(root), p) for p in sorted(root.rglob("*.py"))]
    files += [
        (Path("scenarios") / p.name, p) for p in sorted(scenario.builtin_dir().glob("*.toml"))
    ]
    digest = hashlib.sha256()
    for name, path in files:
        digest.update(str(name).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]
