"""Shortcuts the assembly of a run with saved state takes give what the plain computation
gives: caseload sizes read from the caseload index, day columns by counting, first-seen
pairs read dictionary-encoded."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from detector.engine import state
from detector.features import kernel
from detector.features.table import _day_columns


def _counted(caseloads: pd.DataFrame, accounts: pd.Index) -> np.ndarray:
    """Rows of each account in the caseload table, counted the plain way."""
    counts = caseloads["account_id"].value_counts()
    return counts.reindex(accounts).fillna(0).to_numpy(dtype=np.float64)


@pytest.mark.parametrize("indexed", [False, True], ids=["table", "indexed-table"])
@pytest.mark.parametrize("missing_record", [False, True], ids=["every-row", "a-missing-record"])
def test_caseload_sizes_count_every_row_of_each_account(missing_record, indexed):
    caseloads = pd.DataFrame(
        {
            "account_id": ["b", "a", "a", "c", "a", "b", "z"],
            "record_id": ["r1", "r1", "r2", "r3", "r2", "r9", "r4"],  # a repeated pair counts twice
        }
    )
    if missing_record:  # the index leaves such a row out; the table still counts it
        caseloads.loc[3, "record_id"] = None
    kernel.forget_caseload_index()
    if indexed:  # the kernel built the table's index: sizes are read from it
        kernel.caseload_index(caseloads)
    accounts = pd.Index(["a", "b", "c", "d"])  # "d" has no caseload, "z" is not in the table
    np.testing.assert_array_equal(
        kernel.caseload_sizes(caseloads, accounts), _counted(caseloads, accounts)
    )


@pytest.mark.parametrize("days", [[0, 0, 3, 1, 3, 9], [-4, 2, -4, 0], [7], [5, 400, 5]], ids=str)
def test_day_columns_are_numpy_unique_with_the_inverse(days):
    days = np.array(days, dtype=np.int64)
    present, column = _day_columns(days)
    want_present, want_column = np.unique(days, return_inverse=True)
    np.testing.assert_array_equal(present, want_present)
    np.testing.assert_array_equal(column, want_column)


def test_new_pairs_are_found_among_stored_pairs_read_dictionary_encoded():
    stored = pa.table(
        {
            "account_id": pa.array(["a", "a", "b", "c"]).dictionary_encode(),
            "value": pa.array(["x", "y", "x", "z"]).dictionary_encode(),
            "day": pa.array([1, 2, 2, 3], pa.int32()),
        }
    )
    new = pa.table(
        {
            "account_id": ["a", "b", "b", "c", "d"],
            "value": ["y", "y", "x", "x", "x"],
            "day": pa.array([4, 4, 4, 5, 5], pa.int32()),
        }
    )
    kept = state._not_in(new, stored)
    assert kept.to_pydict() == {
        "account_id": ["b", "c", "d"],
        "value": ["y", "x", "x"],
        "day": [4, 5, 5],
    }
    plain = stored.cast(
        pa.schema([("account_id", pa.string()), ("value", pa.string()), ("day", pa.int32())])
    )
    assert state._not_in(new, plain).equals(kept)
