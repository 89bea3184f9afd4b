"""Quality floors of the shipped rule sets on the default population (slow: `pytest -m slow`).

Floors, not exact figures: they hold on seeds 1-3 of the default population
(2,000 accounts, 28 days, the four documented attacks) with room to spare.
"""

from __future__ import annotations

import pytest

from detector import bench
from synthetic_logs.bench_data import generate_for_bench

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    # The data these floors were set on: the documented attacks and the default look-alikes
    # (the bench's own defaults now add the quiet scenarios and the extended look-alikes).
    result = bench.run_bench(
        generate_for_bench,
        rulesets=["default", "naive"],
        scenarios=bench.DOCUMENTED,
        lookalikes="default",
        modes=("rules", "both"),
        cache_dir=tmp_path_factory.mktemp("bench-cache"),
    )
    return result.rows


def test_default_catches_every_documented_attack_early(rows):
    default = rows[rows["ruleset"] == "default"]
    assert len(default) == 2 * 4 * 3  # modes x scenarios x seeds
    assert default["detected"].eq(1).all()
    assert default["time_to_detect_h"].max() <= 6.0
    assert default["exposed_before_detection"].max() <= 0.10


def test_default_false_alerts_and_lookalikes(rows):
    default = rows[rows["ruleset"] == "default"]
    assert default["fp_per_1000_account_days"].max() <= 5.0
    assert default["lookalike_accounts_alerted_high"].eq(0).all()


def test_default_beats_the_afternoon_baseline_on_exposure(rows):
    exposed = rows[rows["mode"] == "rules"].groupby("ruleset")["exposed_before_detection"].median()
    assert exposed["default"] <= exposed["naive"]
