"""Quality floors on seeded generated data (default population, several seeds).

Floors, not exact numbers: every attack of the four scenarios detected; the
median share of an attack's records exposed before detection at most 10 %;
at most 1 % of benign accounts alerted; no benign look-alike alerted at high
severity. Checked for the default detector (rules and model) and rules alone.
"""

from __future__ import annotations

import pandas as pd
import pytest

from detector import metrics
from detector.bench import read_ground_truth
from detector.pipeline import detect, prepare
from synthetic_logs.generate import generate_dataset

SEEDS = (101, 202, 303)


@pytest.fixture(scope="module", params=SEEDS)
def seeded(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"seed{request.param}") / "logs.parquet"
    generate_dataset(out, seed=request.param)
    answers = read_ground_truth(out)
    return {
        "prepared": prepare(out),
        "attacks": answers.attacks,
        "truth": answers.truth,
        "lookalikes": answers.lookalikes,
        "events": pd.read_parquet(out),
    }


@pytest.mark.parametrize("mode", ["both", "rules"])
def test_quality_floors(seeded, mode):
    alerts = detect(seeded["prepared"], mode=mode)
    outcomes = metrics.attack_outcomes(alerts, seeded["attacks"], seeded["truth"], seeded["events"])
    missed = outcomes.loc[outcomes["detected"] == 0, "attack_id"].tolist()
    assert not missed, f"attacks missed: {missed}"
    assert outcomes["exposed_before_detection"].median() <= 0.10

    attack_accounts = {a for attack in seeded["attacks"] for a in attack["accounts"]}
    all_accounts = set(seeded["events"]["account_id"].unique())
    benign = all_accounts - attack_accounts
    benign_alerted = set(alerts["account_id"]) & benign
    assert len(benign_alerted) <= 0.01 * len(benign), sorted(benign_alerted)

    lookalikes = metrics.lookalike_outcomes(alerts, seeded["lookalikes"])
    high = lookalikes[lookalikes["accounts_alerted_high"] > 0]
    assert high.empty, high[["kind", "accounts"]].to_dict("records")
