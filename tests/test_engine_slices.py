"""Partitions smaller than a day: days cut by account give the table and alerts of whole days."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from feature_tables import same_features

from detector.engine import sources
from detector.engine.local import build_features
from detector.engine.sources import FrameSource, ParquetSource, slice_buckets, slices_of
from detector.engine.state import read_day
from detector.features.kernel import ACCOUNT_BUCKETS, account_buckets, local_days
from detector.incidents import group_incidents
from detector.pipeline import detect, prepare
from detector.schema import read_caseloads, read_log, sibling

TZ = "Europe/Paris"
SLICE = 800  # events: every day of the small log (~2,000-3,000 events) is cut


def _links(table) -> pd.DataFrame:
    return table.links.sort_values(["timestamp", "creator", "target"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def caseloads(small_log):
    return read_caseloads(sibling(small_log, ".caseloads.parquet"))


@pytest.fixture(scope="module")
def whole_days(small_log, caseloads):
    """One partition per whole day (no slice)."""
    source = FrameSource(read_log(small_log), TZ, target_rows=1)
    assert all(p.slices == 1 for p in source.partitions())
    return build_features(source, caseloads, TZ, workers=1)


def _sliced(partitions) -> None:
    days = {(p.first_day, p.end_day) for p in partitions}
    assert len(partitions) >= 3 * len(days)  # every day cut into three slices or more
    for first, end in days:
        cut = sorted(
            (p.slice, p.slices) for p in partitions if (p.first_day, p.end_day) == (first, end)
        )
        assert cut == [(i, cut[0][1]) for i in range(cut[0][1])]


def test_slices_cover_every_bucket_once():
    for slices in (1, 2, 3, 7, ACCOUNT_BUCKETS):
        bounds = [slice_buckets(i, slices) for i in range(slices)]
        assert bounds[0][0] == 0 and bounds[-1][1] == ACCOUNT_BUCKETS
        assert all(a[1] == b[0] and a[0] < a[1] for a, b in zip(bounds, bounds[1:], strict=False))
    assert slices_of(1_500, 1_000) == 1  # up to 1.5 times the target: whole
    assert slices_of(1_501, 1_000) == 2
    assert slices_of(4_000_000, 1_000_000) == 4
    assert slices_of(10**12, 1) == ACCOUNT_BUCKETS


def test_an_account_falls_in_the_same_bucket_however_its_ids_are_held():
    ids = ["a1", "agent-0042", "é", "a1", None]
    expected = account_buckets(pd.Series(ids, dtype="category"))
    assert expected[0] == expected[3] and expected[4] == 0
    for held in (
        pa.array(ids),
        pa.array(ids).dictionary_encode(),
        pa.chunked_array(
            [pa.array(ids[:2]).dictionary_encode(), pa.array(ids[2:]).dictionary_encode()]
        ),
        pd.Series(ids, dtype="string"),
    ):
        np.testing.assert_array_equal(account_buckets(held), expected)
    spread = account_buckets(pa.array([f"acc{i}" for i in range(20_000)]))
    assert np.bincount(spread, minlength=ACCOUNT_BUCKETS).min() > 20  # hashed evenly


def test_days_cut_by_account_give_the_table_and_links_of_whole_days(
    small_log, caseloads, whole_days
):
    source = FrameSource(read_log(small_log), TZ, target_rows=1, slice_rows=SLICE)
    partitions = source.partitions()
    _sliced(partitions)
    assert "accounts 1/" in max(partitions, key=lambda p: p.slices).label()
    sliced = build_features(source, caseloads, TZ, workers=1)
    same_features(whole_days.features, sliced.features)
    pd.testing.assert_frame_equal(_links(whole_days), _links(sliced))
    # First uses were found slice by slice: novelty is there to compare.
    assert sliced.features["new_addresses"].sum() > 0
    # Accounts created by an account of another slice: the creation reached the target's age.
    links = _links(sliced)
    day = local_days(pd.DatetimeIndex(links["timestamp"]).as_unit("ns").asi8, TZ)[0]
    slices = {p.first_day: p.slices for p in partitions}
    apart = [
        _slice_of(account_buckets(pd.Series([c]))[0], slices[d])
        != _slice_of(account_buckets(pd.Series([t]))[0], slices[d])
        for c, t, d in zip(links["creator"], links["target"], day, strict=True)
    ]
    assert any(apart)


def _slice_of(bucket: int, slices: int) -> int:
    return next(i for i in range(slices) if bucket < slice_buckets(i, slices)[1])


def test_alerts_and_incidents_of_sliced_days_are_those_of_whole_days(small_log, caseloads):
    whole = prepare(small_log)
    whole_alerts = detect(whole, mode="rules")
    sliced = prepare(small_log)
    source = FrameSource(read_log(small_log), TZ, target_rows=1, slice_rows=SLICE)
    sliced.features = build_features(source, caseloads, TZ, workers=1)
    sliced_alerts = detect(sliced, mode="rules")
    columns = ["account_id", "window_start", "detected_at", "rules", "reason"]
    assert len(whole_alerts) > 0
    pd.testing.assert_frame_equal(whole_alerts[columns], sliced_alerts[columns])
    table = whole.features.table
    left = group_incidents(whole_alerts, table, whole.features.links)[0]
    right = group_incidents(sliced_alerts, sliced.features.table, sliced.features.links)[0]
    assert (left["incident_id"] == right["incident_id"]).all()


def test_sliced_days_streamed_to_workers_give_the_same_table(
    small_log, caseloads, whole_days, tmp_path, monkeypatch
):
    monkeypatch.setattr(sources, "STREAM_ROWS", 1)  # one day a partition
    monkeypatch.setattr(sources, "SLICE_ROWS", SLICE)
    path = tmp_path / "logs.parquet"
    table = pq.read_table(small_log)
    pq.write_table(table, path, row_group_size=20_000)
    source = ParquetSource(path, TZ, streaming=True)
    _sliced(source.partitions())
    streamed = list(source.stream())
    assert [(p.index, p.slice) for p, _, _ in streamed] == [
        (p.index, p.slice) for p in source.partitions()
    ]
    rows = np.concatenate([r for _, _, r in streamed])
    assert np.array_equal(np.sort(rows), np.arange(table.num_rows))  # every event once
    for partition, events, _ in streamed:  # each slice holds its accounts only
        first, end = partition.buckets
        bucket = account_buckets(events["account_id"])
        assert ((bucket >= first) & (bucket < end)).all()
    sliced = build_features(source, caseloads, TZ, workers=2)
    same_features(whole_days.features, sliced.features)
    pd.testing.assert_frame_equal(_links(whole_days), _links(sliced))


def test_workers_reading_their_own_slices_give_the_same_table(
    small_log, caseloads, whole_days, tmp_path
):
    path = tmp_path / "logs.parquet"
    pq.write_table(pq.read_table(small_log), path, row_group_size=20_000)
    source = ParquetSource(path, TZ, target_rows=1, slice_rows=SLICE)  # as a cluster reads
    _sliced(source.partitions())
    sliced = build_features(source, caseloads, TZ, workers=2)
    same_features(whole_days.features, sliced.features)


def test_the_kept_day_is_read_whole_from_a_sliced_source(small_log, tmp_path):
    path = tmp_path / "logs.parquet"
    table = pq.read_table(small_log)
    pq.write_table(table, path, row_group_size=20_000)
    source = ParquetSource(path, TZ, target_rows=1, slice_rows=SLICE)
    day = source.partitions()[-1].first_day
    stamps = table["timestamp"].cast(pa.timestamp("ns", tz="UTC")).cast(pa.int64()).to_numpy()
    assert len(read_day(source, day)) == int((local_days(stamps, TZ)[0] == day).sum())


def test_a_two_worker_dask_cluster_on_sliced_days_gives_the_alerts_of_whole_days(
    small_log, monkeypatch
):
    pytest.importorskip("distributed")
    local = detect(prepare(small_log, workers=2))
    monkeypatch.setattr(sources, "SLICE_ROWS", SLICE // 2)  # workers read their own slices
    on_dask = detect(prepare(small_log, engine="dask", workers=2))
    columns = ["account_id", "window_start", "detected_at", "score", "rules", "reason"]
    assert len(local) > 0
    pd.testing.assert_frame_equal(local[columns], on_dask[columns])


@pytest.mark.parametrize("n_used", [3, 400])  # a few accounts' pairs gathered; most: one span
def test_caseload_membership_probes_only_the_partitions_accounts(n_used):
    from detector.features.kernel import _caseload_membership

    rng = np.random.default_rng(n_used)
    caseloads = pd.DataFrame(
        {
            "account_id": [f"a{i}" for i in rng.integers(0, 500, 20_000)],
            "record_id": [f"r{i}" for i in rng.integers(0, 30_000, 20_000)],
        }
    ).astype("string")
    accounts = pd.Index([f"a{i}" for i in rng.choice(520, n_used, replace=False)])  # some unknown
    records = pd.Index([f"r{i}" for i in range(0, 31_000, 3)])
    acc = rng.integers(0, len(accounts), 5_000)
    rec = rng.integers(-1, len(records), 5_000)
    pairs = set(zip(caseloads["account_id"], caseloads["record_id"], strict=True))
    expected = [
        r >= 0 and (accounts[a], records[r]) in pairs for a, r in zip(acc, rec, strict=True)
    ]
    assert any(expected) and not all(expected)
    inside = _caseload_membership(acc, rec, accounts, records, caseloads)
    np.testing.assert_array_equal(inside, np.array(expected))
