"""Floors of issue 9 for the `default` rule set (slow: `pytest -m slow`).

Seeds 1-3 of the default population (2,000 accounts, 28 days) with every
scenario (the four documented attacks and the five quiet ones) and the
extended organisation-wide look-alikes, scored with and without the caseload
table. Floors, not exact figures; `benchmarks/quiet_quality.py` prints the
figures behind them.
"""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from detector import bench
from detector.rules import load_ruleset
from synthetic_logs.generate import generate_dataset

pytestmark = pytest.mark.slow

SEEDS = (1, 2, 3)
SCENARIOS = 9  # four documented, five quiet
ACCOUNTS = 2000


@pytest.fixture(scope="module")
def rows(tmp_path_factory) -> pd.DataFrame:
    ruleset = load_ruleset("default")
    parts = []
    for seed in SEEDS:
        folder = tmp_path_factory.mktemp(f"seed{seed}")
        log = folder / "logs.parquet"
        generate_dataset(
            log, scenarios=["all"], seed=seed, accounts=ACCOUNTS, lookalikes="extended"
        )
        bare = tmp_path_factory.mktemp(f"seed{seed}-nocaseloads")
        for path in folder.iterdir():
            if "caseloads" not in path.name:
                shutil.copy(path, bare / path.name)
        for caseloads, path in (("yes", log), ("no", bare / "logs.parquet")):
            result = bench.evaluate_dataset(path, [ruleset], modes=("rules", "both"))
            parts.append(result.rows.assign(seed=seed, caseloads=caseloads))
    return pd.concat(parts, ignore_index=True)


def _with(rows: pd.DataFrame, caseloads: str) -> pd.DataFrame:
    chosen = rows[rows["caseloads"] == caseloads]
    assert len(chosen) == 2 * SCENARIOS * len(SEEDS)  # modes x scenarios x seeds
    return chosen


@pytest.mark.parametrize("caseloads", ["yes", "no"])
def test_every_scenario_detected_in_every_seed(rows, caseloads):
    chosen = _with(rows, caseloads)
    missed = chosen.loc[chosen["detected"] == 0, ["mode", "seed", "scenario"]]
    assert missed.empty, missed.to_dict("records")


def test_records_exposed_before_detection(rows):
    exposed = _with(rows, "yes")["exposed_before_detection"]
    assert exposed.median() <= 0.03
    assert exposed.max() <= 0.10


def test_without_caseloads_exposure_stays_low(rows):
    exposed = _with(rows, "no")["exposed_before_detection"]
    assert exposed.median() <= 0.10


def test_benign_accounts_alerted_and_lookalikes(rows):
    chosen = _with(rows, "yes")
    per_dataset = chosen.groupby(["seed", "mode"]).first()
    assert per_dataset["benign_accounts_alerted"].max() <= 3 * ACCOUNTS / 2000
    assert per_dataset["lookalike_accounts_alerted_high"].max() == 0
