"""The generator as `detector.bench` calls it: one data set per bench spec, and a fingerprint.

`detector.bench` does not import the generator: callers hand it
:func:`generate_for_bench` (the `detector bench` command and notebook 02 do),
which keeps the data flow one way. Notebook use::

    from detector import bench
    from synthetic_logs.bench_data import generate_for_bench
    result = bench.run_bench(generate_for_bench, rulesets=["default"], seeds=[1])
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from synthetic_logs import scenario
from synthetic_logs.generate import generate_dataset


def generate_for_bench(out: Path, spec: Any) -> None:
    """Generate a bench spec's data set (a `detector.bench.DatasetSpec`) into `out`.

    Its scenarios with its stealth knobs applied, its seed, and its population
    size where named (the generator's defaults otherwise).
    """
    knobs = dict(spec.knobs)
    scenarios = [scenario.with_overrides(scenario.load_scenario(name), **knobs) for name in spec.scenarios]
    population = {
        k: v for k, v in {"accounts": spec.accounts, "days": spec.days}.items() if v is not None
    }
    generate_dataset(out, scenarios=scenarios, seed=spec.seed, **population)


def fingerprint() -> str:
    """A hash of the generator's code and scenario files: cached data sets die with them."""
    root = Path(__file__).parent
    # The scenario folder is named apart: it is the top-level scenarios/, linked into the package.
    files = [(p.relative_to(root), p) for p in sorted(root.rglob("*.py"))]
    files += [(Path("scenarios") / p.name, p) for p in sorted(scenario.builtin_dir().glob("*.toml"))]
    digest = hashlib.sha256()
    for name, path in files:
        digest.update(str(name).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]
