"""Record ids read from Parquet stay Arrow text (not a categorical): the kernel decides first
reads and caseload membership from 64-bit hashes of the ids, and on the ids themselves
wherever two hashes are equal. The counts are those of the ids as categories, even when
every hash collides."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from detector.features import kernel
from detector.schema import read_log

TZ = "Europe/Paris"
_REAL_HASHES = kernel.text_hashes


def _events(seed: int = 3, n: int = 4000) -> pd.DataFrame:
    """Validated events: a few accounts and days, records read once, again in the same
    window, and again in other windows; some events without a record, some not reads."""
    rng = np.random.default_rng(seed)
    stamps = np.sort(
        pd.Timestamp("2024-03-01", tz="UTC").value + rng.integers(0, 4 * 86_400, n) * 1_000_000_000
    )
    records = np.array([f"r{i}" for i in range(n // 3)], dtype=object)
    record = records[rng.integers(0, len(records), n)].astype(object)
    record[rng.random(n) < 0.1] = None
    actions = np.array(["view_record", "update_record", "export", "search", "login"])
    frame = pd.DataFrame(
        {
            "event_id": np.arange(n),
            "timestamp": pd.to_datetime(stamps, utc=True),
            "account_id": pd.Categorical([f"a{i}" for i in rng.integers(0, 7, n)]),
            "action": pd.Categorical(
                actions[rng.choice(5, n, p=[0.6, 0.1, 0.1, 0.1, 0.1])], categories=actions
            ),
            "record_id": pd.Categorical(record),
            "organization_id": pd.Categorical([f"o{i}" for i in rng.integers(0, 2, n)]),
            "record_org_id": pd.Categorical([f"o{i}" for i in rng.integers(0, 3, n)]),
        }
    )
    return frame


def _as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """The same events with record ids as Arrow text, as reading a Parquet log gives them."""
    text = frame.copy()
    ids = pa.array(frame["record_id"].astype(object), type=pa.string(), from_pandas=True)
    text["record_id"] = pd.Series(pd.arrays.ArrowStringArray(ids))
    return text


def _caseloads(frame: pd.DataFrame) -> pd.DataFrame:
    """Each account follows a third of the records it reads, and records nobody reads."""
    known = frame.dropna(subset=["record_id"])
    pairs = known[["account_id", "record_id"]].astype(str).drop_duplicates().iloc[::3]
    extra = pd.DataFrame({"account_id": ["a1", "a2"], "record_id": ["zz1", "zz2"]})
    return pd.concat([pairs, extra], ignore_index=True).astype("string")


def _weak(values) -> np.ndarray:
    """A hash with four values: most ids collide, pairs of every key are compared."""
    return _REAL_HASHES(values) % np.uint64(4)


@pytest.mark.parametrize("hashes", ["real", "weak", "constant"])
@pytest.mark.parametrize("mode", ["caseloads", "structure", None])
def test_text_record_ids_count_as_categories_whatever_the_hashes(monkeypatch, hashes, mode):
    frame = _events()
    caseloads = _caseloads(frame) if mode == "caseloads" else None
    kernel.forget_caseload_index()
    expected = kernel.event_counts(frame, TZ, caseloads, mode)
    if hashes == "weak":
        monkeypatch.setattr(kernel, "text_hashes", _weak)
    elif hashes == "constant":  # every id hashes alike
        monkeypatch.setattr(
            kernel, "text_hashes", lambda values: np.full(len(values), 7, dtype=np.uint64)
        )
    kernel.forget_caseload_index()
    got = kernel.event_counts(_as_text(frame), TZ, caseloads, mode)
    kernel.forget_caseload_index()
    assert expected.counts["records_read"].sum() > 0
    assert 0 < expected.counts["records_read"].sum() < (frame["record_id"].notna()).sum()
    for name in ("records_read", "out_of_caseload_reads"):
        np.testing.assert_array_equal(got.counts[name], expected.counts[name])
    if mode == "caseloads":
        out = expected.counts["out_of_caseload_reads"]
        assert 0 < out.sum() < expected.counts["records_read"].sum()


def test_first_text_pairs_is_first_occurrence_even_when_keys_collide(monkeypatch):
    rng = np.random.default_rng(5)
    n = 3000
    window = rng.integers(0, 6, n)
    record = rng.integers(0, 2000, n)
    ids = pa.array([f"id-{r}" for r in record])
    expected = kernel.first_occurrence(window * 2000 + record)
    rows = np.arange(n)
    for hashes in (_REAL_HASHES(ids), _REAL_HASHES(ids) % np.uint64(3), np.zeros(n, np.uint64)):
        np.testing.assert_array_equal(kernel._first_text_pairs(window, hashes, ids, rows), expected)


def test_reading_keeps_record_ids_as_text_and_empty_ids_are_missing(tmp_path):
    path = tmp_path / "log.parquet"
    table = pa.table(
        {
            "timestamp": pa.array(
                pd.to_datetime(
                    ["2024-03-01 10:00", "2024-03-01 11:00", "2024-03-01 12:00"], utc=True
                )
            ),
            "account_id": ["a1", "a1", "a2"],
            "action": ["view_record", "view_record", "view_record"],
            "record_id": ["r1", "", None],
        }
    )
    pa.parquet.write_table(table, path)
    events = read_log(path).events
    assert not isinstance(events["record_id"].dtype, pd.CategoricalDtype)
    assert events["record_id"].isna().tolist() == [False, True, True]
    counts = kernel.event_counts(events, TZ, None, None)
    assert counts.counts["records_read"].tolist() == [True, False, False]


@pytest.mark.parametrize("bucket_bits", [8, 21])
def test_first_occurrence_by_buckets_is_pandas_first_occurrence(monkeypatch, bucket_bits):
    """Keys beyond a scatter array: bucketed, and hashed where keys share a bucket (with
    256 buckets, nearly all of them)."""
    monkeypatch.setattr(kernel, "_BUCKET_BITS", bucket_bits)
    rng = np.random.default_rng(9)
    for n, high in [(20_000, 50), (50_000, 10**12), (80_000, 30_000), (60_000, 2**62)]:
        keys = rng.integers(-3, high, n)
        expected = ~pd.Series(keys).duplicated(keep="first").to_numpy()
        np.testing.assert_array_equal(kernel.first_occurrence(keys), expected)


def test_missing_text_hashes_as_the_empty_string_whatever_bytes_its_slot_spans():
    data = pa.py_buffer(b"abcXYZdefghijklmnop")
    offsets = pa.array([0, 3, 6, 19], type=pa.int32()).buffers()[1]
    validity = pa.array([True, False, True]).buffers()[1]
    values = pa.StringArray.from_buffers(3, offsets, data, validity, null_count=1)
    expected = kernel.text_hashes(pa.array(["abc", "", "defghijklmnop"]))
    np.testing.assert_array_equal(kernel.text_hashes(values), expected)
    large = pa.array(["abc", None, "defghijklmnop"], type=pa.large_string())
    np.testing.assert_array_equal(kernel.text_hashes(large), expected)
