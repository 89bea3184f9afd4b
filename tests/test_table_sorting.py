"""The feature table's sort-based helpers equal a plain pandas computation.

First uses and peer counts sort packed int64 keys (and fall back to a lexsort
or argsort when a key does not fit); both paths must give the same numbers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detector.features import table


@pytest.fixture(params=["packed", "fallback"])
def path(request, monkeypatch):
    if request.param == "fallback":
        monkeypatch.setattr(table, "_packed", lambda high, low, span: None)
    return request.param


def test_first_per_key_is_each_keys_smallest_day(path):
    rng = np.random.default_rng(5)
    keys = rng.integers(-3, 400, size=5000)  # -1..-3: accounts without a window
    day = rng.integers(-4, 30, size=5000)  # negative: days pruned from a state
    got_keys, got_day = table._first_per_key(keys.copy(), day.copy())
    want = pd.Series(day).groupby(keys).min()
    np.testing.assert_array_equal(got_keys, want.index.to_numpy())
    np.testing.assert_array_equal(got_day, want.to_numpy())


def test_users_by_then_counts_pairs_of_the_group_value_seen_by_that_day(path):
    rng = np.random.default_rng(6)
    n_days = 20
    group_value = rng.integers(0, 50, size=3000)
    first = rng.integers(0, n_days, size=3000)
    got = table._users_by_then(group_value.copy(), first, n_days)
    frame = pd.DataFrame({"gv": group_value, "first": first})
    want = [
        int(((frame["gv"] == g) & (frame["first"] <= f)).sum())
        for g, f in zip(group_value, first, strict=True)
    ]
    np.testing.assert_array_equal(got, want)
    assert len(table._users_by_then(np.zeros(0, np.int64), np.zeros(0, np.int64), n_days)) == 0


def test_an_account_attribute_missing_at_first_is_its_first_non_missing_one():
    # Accounts whose first window has no type take the first window (in table order, across
    # partitions) that has any; read from those accounts' rows only.
    from detector.features.kernel import Aggregates

    def part(rows):
        frame = pd.DataFrame(rows, columns=["account_id", "day", "_type_first", "_type_any"])
        return Aggregates(frame, np.zeros((len(frame), 24), np.int32), {}, None)

    parts = [
        part([("b", 1, None, None), ("a", 0, "x", "x"), ("b", 3, None, "late")]),
        part([("b", 2, None, "early"), ("c", 0, None, None), ("a", 2, "y", "y")]),
    ]
    accounts = ["a", "b", "c"]
    windows = pd.concat([p.windows for p in parts], ignore_index=True)
    codes = windows["account_id"].map({a: i for i, a in enumerate(accounts)}).to_numpy()
    order = np.lexsort((windows["day"].to_numpy(), codes))
    w_acc = codes[order]
    first_of_account = np.searchsorted(w_acc, np.arange(3))
    value, source = table._account_attribute(parts, "type", order, w_acc, first_of_account)
    assert list(value[:2]) == ["x", "early"] and pd.isna(value[2])
    np.testing.assert_array_equal(source, [0, 3, 5])  # table rows: a0 a2 | b1 b2 b3 | c0
