"""The partitioned engine: same feature table and alerts whatever the partitioning and reading."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from feature_tables import same_features

from detector.engine.local import build_features, merge_notices
from detector.engine.sources import FrameSource, ParquetSource
from detector.pipeline import detect, prepare
from detector.schema import read_caseloads, read_log, sibling

TZ = "Europe/Paris"


@pytest.fixture(scope="module")
def caseloads(small_log):
    return read_caseloads(sibling(small_log, ".caseloads.parquet"))


@pytest.fixture(scope="module")
def whole(small_log, caseloads):
    """The whole log as one partition: what the detector computed before it was partitioned."""
    source = FrameSource(read_log(small_log), TZ, target_rows=10**12)
    assert len(source.partitions()) == 1
    return build_features(source, caseloads, TZ, workers=1).features


def test_one_partition_per_day_gives_the_whole_log_table(small_log, caseloads, whole):
    source = FrameSource(read_log(small_log), TZ, target_rows=1)
    assert len(source.partitions()) >= 21
    same_features(whole, build_features(source, caseloads, TZ, workers=1).features)


def test_parquet_partitions_in_worker_processes_give_the_same_table(
    small_log, caseloads, whole, tmp_path
):
    # Small row groups, so that partitions read a few of them each.
    path = tmp_path / "logs.parquet"
    pq.write_table(pq.read_table(small_log), path, row_group_size=20_000)
    source = ParquetSource(path, TZ, target_rows=40_000)
    assert source._spill is None  # time-ordered: read by push-down, not copied
    assert len(source.partitions()) >= 3
    same_features(whole, build_features(source, caseloads, TZ, workers=2).features)


def test_partitions_streamed_from_row_groups_read_once_give_the_same_table(
    small_log, caseloads, whole, tmp_path, monkeypatch
):
    from detector.engine import sources

    monkeypatch.setattr(sources, "STREAM_ROWS", 30_000)
    path = tmp_path / "logs.parquet"
    table = pq.read_table(small_log)
    pq.write_table(table, path, row_group_size=20_000)
    source = ParquetSource(path, TZ, streaming=True)
    streamed = list(source.stream())
    assert len(streamed) >= 5
    assert sum(len(rows) for _, _, rows in streamed) == table.num_rows  # every event once
    assert [p.index for p, _, _ in streamed] == [p.index for p in source.partitions()]
    same_features(whole, build_features(source, caseloads, TZ, workers=2).features)


def test_a_log_out_of_time_order_is_clustered_first_and_gives_the_same_table(
    small_log, caseloads, whole, tmp_path
):
    table = pq.read_table(small_log)
    shuffled = table.take(np.random.default_rng(0).permutation(table.num_rows))
    path = tmp_path / "shuffled.parquet"
    pq.write_table(shuffled, path, row_group_size=50_000)
    source = ParquetSource(path, TZ, target_rows=60_000)
    assert source._spill is not None
    same_features(whole, build_features(source, caseloads, TZ, workers=1).features)


def test_rows_without_timestamp_are_rejected_with_their_row(tmp_path):
    frame = pd.DataFrame(
        {
            "timestamp": pd.to_datetime(
                ["2024-03-25T08:00Z", None, "2024-03-25T09:00Z", "2024-03-26T09:00Z"], utc=True
            ),
            "account_id": ["a", "a", None, "a"],
            "action": ["login", "login", "login", "view_record"],
            "record_id": [None, None, None, "r1"],
        }
    )
    path = tmp_path / "log.parquet"
    pq.write_table(pa.Table.from_pandas(frame), path, row_group_size=2)
    prepared = prepare(path)
    rejects = prepared.rejects
    assert list(rejects["row"]) == [1, 2]
    assert list(rejects["reason"]) == ["missing timestamp", "missing account_id"]
    assert "2 rows rejected (1 missing timestamp, 1 missing account_id)" in prepared.notices
    assert prepared.features.n_events == 2


def test_alerts_do_not_depend_on_the_partitioning(small_log):
    coarse = detect(prepare(small_log), mode="rules")
    fine = prepare(small_log)
    source = FrameSource(read_log(small_log), TZ, target_rows=1)
    fine.features = build_features(
        source, read_caseloads(sibling(small_log, ".caseloads.parquet")), TZ, workers=1
    )
    again = detect(fine, mode="rules")
    columns = ["account_id", "window_start", "detected_at", "rules", "reason"]
    assert len(coarse) > 0
    pd.testing.assert_frame_equal(coarse[columns], again[columns])


def test_notices_of_partitions_are_summed():
    merged = merge_notices(
        [
            "3 events with unknown or missing actions counted as 'other' (e.g. 'x')",
            "2 events with unknown or missing actions counted as 'other' (e.g. 'y')",
            "no caseload table: reads outside the caseload approximated by structure mismatch",
        ]
    )
    assert merged == [
        "5 events with unknown or missing actions counted as 'other' (e.g. 'x')",
        "no caseload table: reads outside the caseload approximated by structure mismatch",
    ]


def test_a_two_worker_dask_cluster_gives_the_alerts_of_the_local_engine(small_log):
    pytest.importorskip("distributed")
    local = detect(prepare(small_log, workers=2))
    on_dask = detect(prepare(small_log, engine="dask", workers=2))
    columns = ["account_id", "window_start", "detected_at", "score", "rules", "reason"]
    assert len(local) > 0
    pd.testing.assert_frame_equal(local[columns], on_dask[columns])


def test_cli_unreachable_dask_scheduler(small_log, tmp_path):
    pytest.importorskip("distributed")
    from click.testing import CliRunner

    from detector.cli import main

    result = CliRunner().invoke(
        main,
        [
            "score",
            str(small_log),
            "--engine",
            "dask",
            "--scheduler",
            "tcp://127.0.0.1:9",
            "--out",
            str(tmp_path / "alerts.parquet"),
        ],
    )
    assert result.exit_code == 1
    assert result.output.splitlines()[-1].startswith(
        "Error: cannot reach the Dask scheduler tcp://127.0.0.1:9"
    )


def test_caseload_membership_from_the_prepared_index_matches_a_plain_lookup():
    """Single owners, a record handed over (two owners), unknown accounts and records, none."""
    from detector.features.kernel import _caseload_membership, caseload_index

    caseloads = pd.DataFrame(
        {
            "account_id": ["a1", "a1", "a2", "a3", "a2", "a9"],
            "record_id": ["r1", "r2", "r3", "r3", "r4", "r8"],
        }
    ).astype("string")
    accounts = pd.Index(["a1", "a2", "a3", "a4"])
    records = pd.Index(["r1", "r2", "r3", "r4", "r5"])
    rng = np.random.default_rng(0)
    acc = rng.integers(0, len(accounts), 400)
    rec = rng.integers(-1, len(records), 400)  # -1: no record
    pairs = set(zip(caseloads["account_id"], caseloads["record_id"], strict=True))
    expected = np.array(
        [r >= 0 and (accounts[a], records[r]) in pairs for a, r in zip(acc, rec, strict=True)]
    )
    assert expected.any() and not expected.all()
    inside = _caseload_membership(acc, rec, accounts, records, caseloads)
    np.testing.assert_array_equal(inside, expected)
    assert caseload_index(caseloads) is caseload_index(caseloads)  # prepared once per table


def test_first_reads_of_records_read_once_or_again():
    from detector.features.kernel import _first_pairs, first_occurrence

    rng = np.random.default_rng(1)
    window = rng.integers(0, 5, 2000)
    record = rng.integers(0, 3000, 2000)  # most read once, some again
    expected = first_occurrence(window * 3000 + record)
    np.testing.assert_array_equal(_first_pairs(window, record, 3000), expected)


def test_a_partition_handed_over_in_memory_comes_back_whole_and_its_files_go(tmp_path):
    """Slices of two row groups with different dictionaries, and the result's arrays, round trip."""
    from detector.engine.local import _hand_over, _receive, _send_back, _take_over
    from detector.features.kernel import Aggregates

    def group(names, first):
        accounts = pa.DictionaryArray.from_arrays(pa.array([0, 1, 1, 0], pa.int32()), names)
        return pa.table({"account_id": accounts, "n": pa.array(range(first, first + 4))})

    table = pa.concat_tables([group(["a", "b"], 0).slice(2), group(["c", "a"], 4).slice(0, 3)])
    rows = np.array([2, 3, 4, 5, 6])
    path = _hand_over(str(tmp_path), 0, table, rows)
    taken, taken_rows = _take_over(path)
    assert taken.to_pylist() == table.to_pylist()
    np.testing.assert_array_equal(taken_rows, rows)
    assert list(tmp_path.iterdir()) == []

    windows = pd.DataFrame({"account_id": ["a", "c"], "events": [3.0, 2.0]})
    hours = np.arange(48, dtype=np.int32).reshape(2, 24)
    first_seen = {"src_ip": pa.table({"value": pa.array(["10.0.0.1", None])})}
    sent = Aggregates(windows, hours, first_seen, pa.table({"day": pa.array([1], pa.int32())}), 5)
    back = _receive(_send_back(sent, str(tmp_path / "out")))
    pd.testing.assert_frame_equal(back.windows, windows)
    np.testing.assert_array_equal(back.hours, hours)
    back.hours[0, 0] = -1  # writable (a private copy of the mapped pages)
    assert back.first_seen["src_ip"].equals(first_seen["src_ip"]) and back.events == 5
    assert list(tmp_path.iterdir()) == []


def test_handover_folder_leaves_a_small_dev_shm_for_the_temporary_directory(monkeypatch):
    from detector.engine import local

    monkeypatch.setattr(local, "_SHARED_MEMORY_NEEDED", 1 << 62)  # more than any /dev/shm holds
    with local._handover_folder() as folder:
        assert not folder.startswith("/dev/shm")


def test_cli_no_room_to_hand_partitions_over(small_log, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from detector.cli import main
    from detector.engine import local, sources

    monkeypatch.setattr(sources, "STREAM_ROWS", 30_000)  # several partitions: the pool runs
    open_file = pa.OSFile

    def full(path, mode="r"):
        if str(path).endswith(".arrows"):  # only the handover's files
            raise OSError(28, "No space left on device")
        return open_file(path, mode)

    monkeypatch.setattr(local.pa, "OSFile", full)
    result = CliRunner().invoke(
        main, ["score", str(small_log), "--workers", "2", "--out", str(tmp_path / "a.parquet")]
    )
    assert result.exit_code == 1
    assert result.output.splitlines()[-1].startswith(
        "Error: cannot hand a partition to the workers through "
    )
    assert result.output.splitlines()[-1].endswith(
        "([Errno 28] No space left on device); free some space there or use --workers 1"
    )
