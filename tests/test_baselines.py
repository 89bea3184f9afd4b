"""The fast baselines equal a straightforward pandas computation of the same statistics.

:mod:`detector.features.baselines` sorts short rows and reads order
statistics from running counts; the reference here is pandas' own rolling
window over calendar days (own statistics) and a plain filter and group-by
(peer statistics), on seeded data with inactive days, short histories, gaps
of missing days and a peer group of one account.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detector.features import baselines
from detector.features.baselines import HISTORY_DAYS

OWN = (("q25", 0.25), ("median", 0.5), ("q75", 0.75), ("max", 1.0))
PEER = (("q25", 0.25), ("median", 0.5), ("q75", 0.75), ("p95", 0.95))


def _matrix(seed: int, n_accounts: int, days: np.ndarray) -> np.ndarray:
    """(accounts x days) float32 volumes: counts and eighths (exact in float32), with
    inactive days (NaN), accounts that start late and an account never active."""
    rng = np.random.default_rng(seed)
    counts = rng.poisson(rng.integers(1, 60, size=(n_accounts, 1)), size=(n_accounts, len(days)))
    matrix = counts.astype(np.float32)
    matrix[::3] = (rng.integers(0, 9, size=matrix[::3].shape) / 8).astype(np.float32)  # shares
    matrix[rng.random(matrix.shape) < 0.3] = np.nan
    starts = rng.integers(0, len(days), size=n_accounts)
    matrix[np.arange(len(days)) < starts[:, None]] = np.nan  # short histories
    matrix[1] = np.nan
    return matrix


def _own_reference(matrix: np.ndarray, days: np.ndarray) -> dict[str, np.ndarray]:
    """pandas: a rolling window of the HISTORY_DAYS calendar days before each day."""
    index = pd.to_datetime(days, unit="D")
    out: dict[str, list[np.ndarray]] = {key: [] for key in ("count", *dict(OWN))}
    for row in matrix.astype(np.float64):
        rolling = pd.Series(row, index=index).rolling(f"{HISTORY_DAYS}D", closed="left")
        out["count"].append(rolling.count().fillna(0).to_numpy())
        for key, q in OWN:
            out[key].append(rolling.quantile(q, interpolation="linear").to_numpy())
    return {key: np.array(value) for key, value in out.items()}


def _peer_reference(
    matrix: np.ndarray, groups: np.ndarray, days: np.ndarray
) -> dict[str, np.ndarray]:
    """pandas: every earlier account-day of the group within HISTORY_DAYS, grouped."""
    long = pd.DataFrame(
        {
            "group": np.repeat(groups, len(days)),
            "day": np.tile(days, len(groups)),
            "value": matrix.reshape(-1).astype(np.float64),
        }
    ).dropna()
    n_groups = int(groups.max()) + 1
    out = {key: np.full((n_groups, len(days)), np.nan) for key in dict(PEER)}
    out["count"] = np.zeros((n_groups, len(days)))
    for column, day in enumerate(days):
        earlier = long[(long["day"] < day) & (long["day"] >= day - HISTORY_DAYS)]
        grouped = earlier.groupby("group")["value"]
        found = grouped.size()
        out["count"][found.index, column] = found.to_numpy()
        for key, q in PEER:
            value = grouped.quantile(q, interpolation="linear")
            out[key][value.index, column] = value.to_numpy()
    return out


CASES = {
    "consecutive days": np.arange(45),
    "gaps of missing days": np.array([0, 1, 2, 5, 9, 20, 30, 31, 40, 41, 42, 75, 76, 77, 80]),
    "shorter than the history": np.arange(6),
    "one day": np.array([3]),
}


@pytest.mark.parametrize("case", CASES)
def test_own_and_peer_baselines_equal_pandas(case):
    days = CASES[case]
    matrix = _matrix(len(days), 40, days)
    groups = np.arange(40) % 3
    groups[7] = 3  # a peer group of one account
    groups[groups == 2] = 4  # a group number without members
    consecutive = bool(days[-1] - days[0] == len(days) - 1)
    given = None if consecutive and days[0] == 0 else days
    own = baselines.own_stats(matrix, given)
    peers = baselines.peer_stats(matrix, groups, given)
    for got, want in (
        (own, _own_reference(matrix, days)),
        (peers, _peer_reference(matrix, groups, days)),
    ):
        assert set(got) == set(want)
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=f"{case}: {key}")


def test_only_some_days_computes_those_and_leaves_the_rest_empty():
    days = CASES["gaps of missing days"]
    matrix = _matrix(7, 30, days)
    groups = np.arange(30) % 2
    only = np.array([0, 4, 9, 14])
    for compute in (
        lambda only: baselines.own_stats(matrix, days, only),
        lambda only: baselines.peer_stats(matrix, groups, days, only),
    ):
        everything, some = compute(None), compute(only)
        rest = np.setdiff1d(np.arange(len(days)), only)
        for key in everything:
            np.testing.assert_array_equal(some[key][:, only], everything[key][:, only])
            assert (some["count"][:, rest] == 0).all()
            if key != "count":
                assert np.isnan(some[key][:, rest]).all()


@pytest.mark.parametrize("only", [[14], [13, 14], [0, 14], [5]])
def test_a_few_days_are_selected_with_the_numbers_of_the_whole_computation(only):
    # Few days of many: own statistics of those columns alone (own_stats_at), peer
    # statistics by a selection instead of a sort; the numbers must not change.
    days = CASES["gaps of missing days"]
    matrix = _matrix(len(days), 60, days)
    groups = np.arange(60) % 3
    groups[groups == 2] = 4  # a group number without members
    only = np.array(only)
    own, peers = baselines.own_stats(matrix, days), baselines.peer_stats(matrix, groups, days)
    some = baselines.own_stats_at(matrix, only, days)
    selected = baselines.peer_stats(matrix, groups, days, only)
    for key in own:
        np.testing.assert_array_equal(some[key], own[key][:, only], err_msg=key)
    for key in peers:
        np.testing.assert_array_equal(selected[key][:, only], peers[key][:, only], err_msg=key)
    assert (selected["count"][:, only] > 0).any()


@pytest.mark.parametrize("kind", ["counts", "fractions", "large counts", "a negative value"])
def test_a_selected_day_of_many_cells_gives_the_numbers_of_the_sort(kind):
    # Pools of more than a thousand cells: whole numbers are tallied rather than selected
    # (baselines.order_statistics); the numbers must be those of the sort either way.
    rng = np.random.default_rng(3)
    n_days = 40
    days = np.arange(n_days)
    values = {
        "counts": rng.poisson(4, (900, n_days)),
        "fractions": rng.random((900, n_days)),
        "large counts": rng.integers(0, 50_000_000, (900, n_days)),
        "a negative value": rng.poisson(4, (900, n_days)) - (np.arange(900) == 7)[:, None],
    }[kind]
    matrix = np.where(rng.random((900, n_days)) < 0.3, np.nan, values).astype(np.float32)
    groups = np.arange(900) % 2
    whole = baselines.peer_stats(matrix, groups, days)
    selected = baselines.peer_stats(matrix, groups, days, np.array([n_days - 1]))
    assert (selected["count"][:, -1] > 1024).all()
    for key in whole:
        np.testing.assert_array_equal(selected[key][:, -1], whole[key][:, -1], err_msg=key)


def test_order_statistics_are_the_sorted_values_at_the_ranks():
    rng = np.random.default_rng(4)
    for cells in (
        rng.poisson(3, 5000),
        rng.poisson(300, 100_000),
        rng.random(5000),
        np.zeros(3000),
        rng.integers(0, 10**7, 5000),
        np.r_[rng.poisson(3, 4000), [-1]],
        np.r_[rng.poisson(3, 4000), [2.5]],
    ):
        cells = cells.astype(np.float32)
        for ranks in ([0], [0, 1, len(cells) // 2, len(cells) - 1], rng.integers(0, len(cells), 9)):
            ranks = np.unique(ranks)
            found = baselines.order_statistics(cells.copy(), ranks)
            assert found.dtype == cells.dtype
            np.testing.assert_array_equal(found, np.sort(cells)[ranks])
