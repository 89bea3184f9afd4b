"""A table of the scored days only (what a run with --state builds) holds, for those days,
exactly the rows of the table of every window: features, internal columns, rare hours,
first uses, and the replay's row lookups."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detector.engine.local import run_kernel
from detector.engine.sources import source_of
from detector.features.table import assemble
from detector.schema import read_caseloads, sibling
from synthetic_logs.generate import generate_dataset

TZ = "Europe/Paris"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("scored") / "logs.parquet"
    generate_dataset(out, seed=3, accounts=150, days=24)
    caseloads = read_caseloads(sibling(out, ".caseloads.parquet"))
    return run_kernel(source_of(out, TZ), caseloads, TZ, workers=1, warm_up=None), caseloads


@pytest.mark.parametrize("back", [[0], [0, 1], [3, 9]], ids=["last", "last-two", "apart"])
def test_the_scored_days_rows_are_those_of_the_whole_table(run, back):
    kernel, caseloads = run
    days = np.unique(np.concatenate([p.windows["day"].to_numpy() for p in kernel.parts]))
    scored = {int(days[-1 - b]) for b in back}
    whole = assemble(kernel.parts, caseloads, TZ, first_day=int(days[0]))
    held = assemble(kernel.parts, caseloads, TZ, first_day=int(days[0]), baseline_days=scored)
    rows = np.flatnonzero(np.isin(whole.table["_day"].to_numpy() + days[0], list(scored)))
    assert 0 < len(rows) == len(held.table) < len(whole.table)
    expected = whole.table.iloc[rows].reset_index(drop=True)
    for column in held.table.columns:
        if column == "_account":  # numbered among the accounts each table holds
            continue
        pd.testing.assert_series_equal(held.table[column], expected[column], obj=column)
    np.testing.assert_array_equal(held.rare_hours, whole.rare_hours[rows])
    assert held.accounts == whole.accounts == whole.table["account_id"].nunique()
    position = np.full(len(whole.table), -1)
    position[rows] = np.arange(len(rows))
    assert set(held.novel) == set(whole.novel)
    for key, found in whole.novel.items():
        inside = position[found.window] >= 0
        np.testing.assert_array_equal(held.novel[key].window, position[found.window[inside]])
        assert held.novel[key].values.equals(found.values.filter(inside))
    # The replay finds each held window's row from its account and day.
    accounts = held.table["account_id"].to_numpy()
    day = held.table["_day"].to_numpy() + held.first_day
    np.testing.assert_array_equal(held.rows_of(accounts, day), np.arange(len(held.table)))
    assert (held.rows_of(np.array(["nobody"]), day[:1]) == -1).all()
