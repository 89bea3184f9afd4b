"""Issue 10, reading a log: files with differing schemas, far-off timestamps, invalid UTF-8,
an empty record_id column and duplicated event ids. Bad inputs are built with pyarrow."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from detector.cli import main
from detector.errors import InputError
from detector.features import baselines
from detector.features.table import build_feature_table
from detector.pipeline import prepare
from detector.schema import (
    REJECT_FAR_OFF,
    REJECT_OUT_OF_RANGE,
    accepted_span,
    dataset_files,
    normalise,
    read_caseloads,
    read_events,
    read_log,
    unified_schema,
)

T0 = pd.Timestamp("2024-03-25T08:00:00Z")


def _stamps(*offsets_s: int, unit: str = "us", tz: str | None = "UTC") -> pa.Array:
    values = [(T0.value // 1000 + s * 1_000_000) for s in offsets_s]  # microseconds
    array = pa.array(values, pa.timestamp("us", tz="UTC"))
    return array.cast(pa.timestamp(unit, tz="UTC")).cast(pa.timestamp(unit, tz=tz))


def _table(n: int = 3, start: int = 0, **columns) -> pa.Table:
    base = {
        "timestamp": _stamps(*range(start, start + n)),
        "account_id": pa.array([f"a{i % 2}" for i in range(n)]),
        "action": pa.array(["view_record"] * n),
        "record_id": pa.array([f"r{start + i}" for i in range(n)]),
    }
    base.update(columns)
    return pa.table(base)


def _folder(tmp_path, *tables: pa.Table):
    folder = tmp_path / "export"
    folder.mkdir()
    for i, table in enumerate(tables):
        pq.write_table(table, folder / f"part-{i}.parquet")
    return folder


def _score(*args: str):
    return CliRunner().invoke(main, ["score", *args])


# --- 3. a directory of files with differing schemas ------------------------------------


def test_integer_epoch_seconds_beside_timestamps_is_refused_naming_file_column_and_types(tmp_path):
    seconds = pa.array([T0.value // 10**9 + i for i in range(3)], pa.int64())
    folder = _folder(tmp_path, _table(), _table(start=3, timestamp=seconds))
    result = _score(str(folder), "--out", str(tmp_path / "alerts.parquet"))
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == (
        f"Error: {folder / 'part-1.parquet'}: column 'timestamp' is int64 here but "
        f"timestamp[us, tz=UTC] in {folder / 'part-0.parquet'}; these files cannot be read as one log"
    )


def test_columns_missing_from_the_first_file_are_kept_and_null_where_absent(tmp_path):
    later = _table(start=3, src_ip=pa.array(["10.0.0.1"] * 3), records_returned=pa.array([1, 2, 3]))
    folder = _folder(tmp_path, _table(), later)
    events = read_log(folder).events
    assert list(events["src_ip"].astype(object).where(events["src_ip"].notna(), None)) == [
        None,
        None,
        None,
        "10.0.0.1",
        "10.0.0.1",
        "10.0.0.1",
    ]
    assert list(events["records_returned"]) == [0, 0, 0, 1, 2, 3]


def test_text_types_integer_widths_units_and_zones_unify_exactly(tmp_path):
    records = ["r0", "r1", "r2"]
    first = _table(
        record_id=pa.array(records, pa.large_string()),
        event_id=pa.array([0, 1, 2], pa.int32()),
        timestamp=_stamps(0, 1, 2, unit="s", tz=None),  # naive seconds: UTC
    )
    second = _table(
        start=3,
        record_id=pa.array(["r3", "r4", "r5"]).dictionary_encode(),
        account_id=pa.array([b"a1", b"a0", b"a1"], pa.binary()),
        event_id=pa.array([3, 4, 5], pa.int64()),
        timestamp=_stamps(3, 4, 5, unit="ns", tz="Europe/Paris"),
    )
    folder = _folder(tmp_path, first, second)
    schema = unified_schema(dataset_files(folder))
    assert schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert schema.field("event_id").type == pa.int64()
    assert schema.field("record_id").type == pa.string()
    events = read_log(folder).events
    assert list(events["event_id"]) == [0, 1, 2, 3, 4, 5]
    assert list(events["timestamp"]) == [T0 + pd.Timedelta(seconds=s) for s in range(6)]
    assert list(events["record_id"].astype(str)) == [f"r{i}" for i in range(6)]
    assert list(events["account_id"].astype(str)) == ["a0", "a1", "a0", "a1", "a0", "a1"]


def test_text_timestamps_beside_timestamps_are_parsed_the_same_way(tmp_path):
    text = pa.array(["2024-03-25T08:00:03Z", "2024-03-25T09:00:04+01:00", "2024-03-25 08:00:05"])
    folder = _folder(tmp_path, _table(), _table(start=3, timestamp=text))
    events = read_log(folder).events
    assert list(events["timestamp"]) == [T0 + pd.Timedelta(seconds=s) for s in range(6)]


def test_nanoseconds_that_microseconds_cannot_hold_are_refused(tmp_path):
    nanos = pa.array([T0.value + 1, T0.value + 2, T0.value + 3], pa.timestamp("ns", tz="UTC"))
    folder = _folder(tmp_path, _table(), _table(start=3, timestamp=nanos))
    with pytest.raises(InputError) as error:
        read_log(folder)
    assert str(error.value).startswith(
        f"{folder / 'part-1.parquet'}: column 'timestamp' (timestamp[ns, tz=UTC]) cannot be read"
        " exactly as timestamp[us, tz=UTC]: "
    )


def test_integer_and_text_event_ids_are_refused(tmp_path):
    folder = _folder(
        tmp_path,
        _table(event_id=pa.array(["e0", "e1", "e2"])),
        _table(start=3, event_id=pa.array([3, 4, 5])),
    )
    with pytest.raises(InputError) as error:
        read_log(folder)
    assert str(error.value) == (
        f"{folder / 'part-1.parquet'}: column 'event_id' is int64 here but string in "
        f"{folder / 'part-0.parquet'}; these files cannot be read as one log"
    )


def test_a_file_without_a_required_column_is_named(tmp_path):
    caseloads = pa.table({"account_id": ["a0"], "record_id": ["r0"]})
    folder = _folder(tmp_path, _table(), caseloads)
    with pytest.raises(InputError) as error:
        read_log(folder)
    assert str(error.value) == (
        f"{folder / 'part-1.parquet'}: missing required column(s): timestamp, action"
    )


def test_a_file_that_is_not_parquet_in_a_directory_is_named(tmp_path):
    folder = _folder(tmp_path, _table())
    (folder / "notes.parquet").write_text("not parquet")
    with pytest.raises(InputError) as error:
        dataset_files(folder)
    assert str(error.value).startswith(f"{folder / 'notes.parquet'}: not a Parquet file (")


def test_extra_columns_of_differing_types_are_ignored(tmp_path):
    folder = _folder(
        tmp_path, _table(note=pa.array([1, 2, 3])), _table(start=3, note=pa.array(["x", "y", "z"]))
    )
    assert len(read_log(folder).events) == 6


def test_dataset_files_reads_each_schema_and_unified_schema_is_pandas_free(tmp_path):
    folder = _folder(tmp_path, _table(), _table(start=3, outcome=pa.array(["success"] * 3)))
    files = dataset_files(folder)
    assert [path.name for path, _ in files] == ["part-0.parquet", "part-1.parquet"]
    assert all(isinstance(schema, pa.Schema) for _, schema in files)
    schema = unified_schema(files, columns=("timestamp", "account_id", "outcome"))
    assert schema.names == ["timestamp", "account_id", "outcome"]
    assert schema.field("outcome").type == pa.string()


def test_empty_directory_is_an_error(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    with pytest.raises(InputError, match="no Parquet files in this directory"):
        read_log(folder)


# --- 4. far-off and out-of-range timestamps ---------------------------------------------


def _fortnight(*extra: str) -> pd.DataFrame:
    """A 14-day log of hourly events plus events at the given instants."""
    stamps = list(pd.date_range("2024-03-01", periods=14 * 24, freq="h", tz="UTC").astype(str))
    stamps += list(extra)
    n = len(stamps)
    return pd.DataFrame({"timestamp": stamps, "account_id": ["a1"] * n, "action": ["login"] * n})


def test_events_far_outside_the_logs_span_are_rejected_with_a_reason():
    log = normalise(_fortnight("1970-01-01T12:00:00Z", "2100-01-01T12:00:00Z"))
    assert len(log.events) == 14 * 24
    assert list(log.rejects["reason"]) == [REJECT_FAR_OFF, REJECT_FAR_OFF]
    assert list(log.rejects["row"]) == [14 * 24, 14 * 24 + 1]
    assert REJECT_FAR_OFF == "timestamp over 366 days outside the log's central span"
    assert (
        "2 events more than 366 days outside the log's central span (2024-03-01 to 2024-03-14,"
        " the 1st to 99th percentile of its timestamps) rejected as far off"
    ) in log.notices


@pytest.mark.parametrize("order", ["in_time_order", "shuffled"])
def test_far_off_events_of_a_parquet_log_go_to_the_rejects_file(tmp_path, order, monkeypatch):
    # The partitioned engine sees one partition of days at a time: the span comes first.
    monkeypatch.setattr("detector.engine.sources.STREAM_ROWS", 24)  # about a day a partition
    monkeypatch.setattr("detector.engine.sources.TARGET_ROWS", 24)
    frame = _fortnight("1970-01-01T12:00:00Z", "2100-01-01T12:00:00Z")
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True, format="ISO8601")
    if order == "shuffled":  # row groups out of time order: the log is clustered first
        frame = frame.sample(frac=1.0, random_state=3)
    log = tmp_path / "log.parquet"
    frame.to_parquet(log, row_group_size=100)
    out = tmp_path / "alerts.parquet"
    features = tmp_path / "features.parquet"
    result = _score(str(log), "--out", str(out), "--features-out", str(features))
    assert result.exit_code == 0, result.output
    rejects = pd.read_parquet(tmp_path / "alerts.rejects.parquet")
    assert list(rejects["reason"]) == [REJECT_FAR_OFF, REJECT_FAR_OFF]
    assert sorted(rejects["row"]) == sorted(frame.index.get_indexer([14 * 24, 14 * 24 + 1]))
    assert "2 events more than 366 days outside the log's central span" in result.output
    days = pd.read_parquet(features)["day"].astype(str)
    assert (
        days.min() == "2024-02-29" and days.max() <= "2024-03-15"
    )  # no 1970, no 2100 (04:00 days)


@pytest.mark.parametrize("shuffled", [False, True], ids=["in_time_order", "clustered"])
def test_a_file_of_only_far_off_and_undated_rows_is_rejected_whole(tmp_path, shuffled, monkeypatch):
    # A part holding nothing but far-off instants and a missing one: none of it is lost.
    monkeypatch.setattr("detector.engine.sources.STREAM_ROWS", 24)
    monkeypatch.setattr("detector.engine.sources.TARGET_ROWS", 24)
    log = tmp_path / "export"
    log.mkdir()
    main = _fortnight()
    main["timestamp"] = pd.to_datetime(main["timestamp"], utc=True, format="ISO8601")
    if shuffled:
        main = main.sample(frac=1.0, random_state=3)
    main.to_parquet(log / "part-0.parquet", row_group_size=100, index=False)
    stray = pd.DataFrame(
        {
            "timestamp": pd.to_datetime(
                ["1970-01-01T12:00:00Z", None, "2100-01-01T12:00:00Z"], utc=True
            ),
            "account_id": ["a1"] * 3,
            "action": ["login"] * 3,
        }
    )
    stray.to_parquet(log / "part-1.parquet", index=False)
    out = tmp_path / "alerts.parquet"
    result = _score(str(log), "--out", str(out))
    assert result.exit_code == 0, result.output
    rejects = pd.read_parquet(tmp_path / "alerts.rejects.parquet")
    assert sorted(rejects["reason"]) == sorted(
        [REJECT_FAR_OFF, REJECT_FAR_OFF, "missing timestamp"]
    )
    assert sorted(rejects["row"]) == [14 * 24, 14 * 24 + 1, 14 * 24 + 2]


def test_events_within_a_year_of_the_span_are_kept():
    log = normalise(_fortnight("2023-04-01T12:00:00Z", "2025-03-01T12:00:00Z"))
    assert len(log.rejects) == 0
    assert len(log.events) == 14 * 24 + 2


def test_instants_beyond_nanoseconds_are_rejected_not_a_traceback():
    log = normalise(_fortnight("2500-01-01T00:00:00Z", "1000-01-01T00:00:00Z"))
    assert list(log.rejects["reason"]) == [REJECT_OUT_OF_RANGE, REJECT_OUT_OF_RANGE]
    assert REJECT_OUT_OF_RANGE == "timestamp outside 1677-09-22..2262-04-11"
    tiny = normalise(_fortnight()[:2].assign(timestamp=["2024-03-01T00:00:00Z", "2500-01-01"]))
    assert list(tiny.rejects["reason"]) == [REJECT_OUT_OF_RANGE]


def test_year_2500_in_a_parquet_timestamp_column_goes_to_the_rejects_file(tmp_path):
    log = tmp_path / "log.parquet"
    stamps = pa.array(["2024-03-25T08:00:00Z", "2024-03-25T08:00:01Z", "2500-01-01T00:00:00Z"])
    pq.write_table(_table(timestamp=stamps.cast(pa.timestamp("us", tz="UTC"))), log)
    out = tmp_path / "alerts.parquet"
    result = _score(str(log), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    rejects = pd.read_parquet(tmp_path / "alerts.rejects.parquet")
    assert list(rejects["reason"]) == [REJECT_OUT_OF_RANGE]
    assert rejects["timestamp"].iloc[0].startswith("2500-01-01")
    assert f"Notice: 1 rows rejected (1 {REJECT_OUT_OF_RANGE})" in result.output


def test_integer_timestamps_are_refused_in_one_line(tmp_path):
    log = tmp_path / "log.parquet"
    pq.write_table(_table(timestamp=pa.array([10**17, 1, 2], pa.int64())), log)
    result = _score(str(log))
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == (
        f"Error: {log}: column 'timestamp' has type int64; expected a timestamp or ISO-8601 text"
    )


def _gappy_log() -> pd.DataFrame:
    """One account: 2 events a day on days 0-9, 100 a day on days 40-45 (a 30-day gap)."""
    rows = []
    for day, per_day in [(d, 2) for d in range(10)] + [(d, 100) for d in range(40, 46)]:
        start = pd.Timestamp("2024-01-01T09:00:00Z") + pd.Timedelta(days=day)
        rows += [start + pd.Timedelta(minutes=i) for i in range(per_day)]
    n = len(rows)
    return pd.DataFrame({"timestamp": rows, "account_id": ["a1"] * n, "action": ["login"] * n})


def test_baselines_over_a_gap_take_only_the_28_calendar_days_before(monkeypatch):
    shapes = []
    own = baselines.own_stats
    monkeypatch.setattr(
        baselines,
        "own_stats",
        lambda matrix, days=None, only=None: shapes.append(matrix.shape) or own(matrix, days, only),
    )
    table = build_feature_table(normalise(_gappy_log())).table.set_index("log_days")
    assert shapes and all(shape == (1, 16) for shape in shapes)  # days that hold events, not 46
    assert table.loc[5.0, "own_median_events"] == 2
    # Day 40: days 0-9 are more than 28 days back, so no own history at all.
    assert np.isnan(table.loc[40.0, "own_median_events"])
    assert np.isnan(table.loc[42.0, "own_median_events"])  # two earlier days: fewer than 3
    assert table.loc[43.0, "own_median_events"] == 100
    assert table.loc[40.0, "history_days"] == 10  # earlier active windows, whatever their age
    assert list(table.index) == [float(d) for d in [*range(10), *range(40, 46)]]


def test_a_small_gap_keeps_the_days_before_it():
    frame = _gappy_log()
    frame = frame[pd.DatetimeIndex(frame["timestamp"]) < pd.Timestamp("2024-01-11", tz="UTC")]
    later = frame.assign(timestamp=frame["timestamp"] + pd.Timedelta(days=15))
    table = build_feature_table(normalise(pd.concat([frame, later]))).table.set_index("log_days")
    assert table.loc[15.0, "own_median_events"] == 2  # days 0-9 lie within the 28 before day 15
    assert table.loc[15.0, "account_age_days"] == 15


def test_far_apart_events_that_are_kept_cost_only_their_days(monkeypatch):
    shapes = []
    own = baselines.own_stats
    monkeypatch.setattr(
        baselines,
        "own_stats",
        lambda matrix, days=None, only=None: shapes.append(matrix.shape) or own(matrix, days, only),
    )
    # As many events in 1678 as in 2262: the central span covers 584 years, nothing is far off.
    stamps = (
        ["1678-01-01T12:00:00Z"] * 50 + ["2024-03-01T12:00:00Z"] + ["2262-01-01T12:00:00Z"] * 50
    )
    frame = pd.DataFrame({"timestamp": stamps, "account_id": "a1", "action": "login"})
    log = normalise(frame)
    assert len(log.rejects) == 0
    table = build_feature_table(log).table
    assert shapes[0] == (1, 3)
    assert [str(day) for day in table["day"]] == ["1678-01-01", "2024-03-01", "2262-01-01"]


# --- 7. invalid UTF-8 -------------------------------------------------------------------


def _invalid(values: list[bytes], large: bool = False) -> pa.Array:
    binary = pa.array(values, pa.large_binary() if large else pa.binary())
    return binary.view(pa.large_string() if large else pa.string())  # unchecked, as a reader gives


def test_invalid_utf8_in_string_columns_is_replaced_and_counted(tmp_path):
    log = tmp_path / "log.parquet"
    table = _table(
        user_agent=_invalid([b"curl/8", b"bad\xff\xfe", b"bad\xff\xfe"]),
        record_id=_invalid([b"r0", b"r\xc3", None], large=True),
        application=_invalid([b"dossier", b"dossier", b"\xe9t\xe9"]).dictionary_encode(),
    )
    pq.write_table(table, log)
    read = read_log(log)
    assert list(read.events["user_agent"].astype(str)) == [
        "curl/8",
        "bad\ufffd\ufffd",
        "bad\ufffd\ufffd",
    ]
    assert read.events["record_id"].astype(object).iloc[1] == "r\ufffd"
    assert read.events["application"].astype(str).iloc[2] == "\ufffdt\ufffd"
    assert read.notices[0] == (
        "4 values with invalid UTF-8 bytes read with U+FFFD in their place"
        " (record_id: 1, application: 1, user_agent: 2)"
    )


def test_binary_columns_are_read_as_text_and_the_cli_runs(tmp_path):
    log = tmp_path / "log.parquet"
    table = _table(
        account_id=pa.array([b"a0", b"a\x80", b"a0"], pa.binary()),
        src_ip=pa.array([b"10.0.0.1", b"10.0.0.2", b"\xff"], pa.large_binary()),
    )
    pq.write_table(table, log)
    read = read_log(log)
    assert list(read.events["account_id"].astype(str)) == ["a0", "a\ufffd", "a0"]
    result = _score(str(log), "--out", str(tmp_path / "alerts.parquet"))
    assert result.exit_code == 0, result.output
    assert (
        "Notice: 2 values with invalid UTF-8 bytes read with U+FFFD in their place"
        " (account_id: 1, src_ip: 1)"
    ) in result.output


# --- 12. an empty record_id column, duplicated event ids ---------------------------------


def test_an_all_null_record_id_column_is_called_empty_not_missing(tmp_path):
    log = tmp_path / "log.parquet"
    pq.write_table(_table(record_id=pa.nulls(3, pa.string())), log)
    notices = prepare(log).notices
    assert (
        "record_id column is empty (no value in 3 events): record reads cannot be counted"
        in notices
    )
    assert not any(n.startswith("no record_id column") for n in notices)


def test_a_missing_record_id_column_is_still_called_missing(tmp_path):
    log = tmp_path / "log.parquet"
    pq.write_table(_table().drop_columns("record_id"), log)
    assert "no record_id column: record reads cannot be counted" in prepare(log).notices


@pytest.mark.parametrize(
    "ids",
    [pa.array([7, 8, 7, 7, 9], pa.int64()), pa.array(["e1", "e2", "e1", "e1", "e3"])],
    ids=["int64", "string"],
)
def test_duplicated_event_ids_are_counted_in_a_notice(tmp_path, ids):
    log = tmp_path / "log.parquet"
    pq.write_table(_table(n=5, event_id=ids), log)
    read = read_log(log)
    assert len(read.events) == 5  # kept: only counted
    assert "event_id is not unique: 2 events repeat an earlier event's id (1 ids repeated)" in (
        read.notices
    )


def test_unique_event_ids_give_no_notice(tmp_path):
    log = tmp_path / "log.parquet"
    pq.write_table(_table(n=5, event_id=pa.array([10**15, 3, 2, 1, 0])), log)
    assert not any("event_id" in n for n in read_log(log).notices)


def test_compact_day_baselines_equal_those_over_the_calendar():
    rng = np.random.default_rng(3)
    days = np.array([0, 1, 2, 5, 9, 30, 31, 40, 41, 42, 75, 76, 77, 78, 79, 80])
    compact = rng.poisson(20, size=(30, len(days))).astype(np.float32)
    compact[rng.random(compact.shape) < 0.2] = np.nan
    calendar = np.full((30, days[-1] + 1), np.nan, dtype=np.float32)
    calendar[:, days] = compact
    groups = np.arange(30) % 2
    for got, want in [
        (baselines.own_stats(compact, days), baselines.own_stats(calendar)),
        (baselines.peer_stats(compact, groups, days), baselines.peer_stats(calendar, groups)),
    ]:
        for key in want:
            np.testing.assert_array_equal(got[key], want[key][:, days], err_msg=key)


def test_accepted_span_is_a_year_around_the_central_percentiles():
    day = 86_400 * 10**9
    bulk = np.arange(1000, dtype=np.int64) * (day // 100)  # ten days
    instants = np.concatenate([bulk, [-30_000 * day, 40_000 * day]])
    low, high = accepted_span(instants)
    p01, p99 = np.quantile(instants, (0.01, 0.99))
    assert (low, high) == (int(p01) - 366 * day, int(p99) + 366 * day)
    assert low < bulk.min() and bulk.max() < high
    assert instants[-2] < low and high < instants[-1]
    assert accepted_span(bulk) is None  # all within a year of one another: nothing to reject
    assert accepted_span(np.array([], dtype=np.int64)) is None


def test_caseloads_with_invalid_utf8_are_read_and_a_caseload_file_without_a_column_is_named(
    tmp_path,
):
    path = tmp_path / "caseloads.parquet"
    pq.write_table(
        pa.table({"account_id": _invalid([b"a0", b"a\xff"]), "record_id": ["r0", "r1"]}), path
    )
    assert list(read_caseloads(path)["account_id"]) == ["a0", "a\ufffd"]
    folder = _folder(
        tmp_path,
        pa.table({"account_id": ["a0"], "record_id": ["r0"]}),
        pa.table({"account_id": ["a1"]}),
    )
    with pytest.raises(InputError) as error:
        read_caseloads(folder)
    assert str(error.value) == (
        f"caseload table: {folder / 'part-1.parquet'}: missing required column(s): record_id"
    )


def test_reading_some_accounts_filters_every_file_whatever_its_account_id_type(tmp_path):
    binary_accounts = pa.array([b"a0", b"a1", b"a\xff"], pa.binary())
    folder = _folder(tmp_path, _table(), _table(start=3, account_id=binary_accounts))
    events = read_events(folder, accounts=["a0"])
    assert list(events["record_id"].astype(str)) == ["r0", "r2", "r3"]
