"""The day a state keeps is written by the local engine's workers (each slice its events of
it), not read and validated again: the same events, each once, and the same next day."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from daily_files import cut_into_days, morning_and_evening

import detector.engine.state
import detector.pipeline
from detector.engine import sources
from detector.engine.state import load_state, read_kept
from detector.pipeline import score_log
from detector.schema import sibling
from synthetic_logs.generate import generate_dataset

TZ = "Europe/Paris"


@pytest.fixture(scope="module")
def days(tmp_path_factory):
    out = tmp_path_factory.mktemp("handover") / "logs.parquet"
    generate_dataset(out, seed=9, accounts=60, days=10)
    files = cut_into_days(out, "days")
    # The eighth day re-delivers some events and repeats an event_id under another account.
    table = pq.read_table(files[7])
    if "event_id" not in table.column_names:
        table = table.append_column("event_id", pa.array(np.arange(table.num_rows) + 10**9))
    ids = table["event_id"].to_numpy().copy()
    accounts = table["account_id"].to_numpy(zero_copy_only=False)
    other = int(np.flatnonzero(accounts != accounts[5])[-1])  # a later event, another account
    ids[other] = ids[5]
    table = table.set_column(table.schema.get_field_index("event_id"), "event_id", pa.array(ids))
    table = pa.concat_tables([table, table.slice(100, 40)])  # re-delivered: counted once
    pq.write_table(table.sort_by("timestamp"), files[7])
    for file in files:  # every file with ids, as a log with its own
        day = pq.read_table(file)
        if "event_id" not in day.column_names:
            n = day.num_rows
            start = int(pc.min(day["timestamp"].cast(pa.int64())).as_py()) // 10**6
            pq.write_table(day.append_column("event_id", pa.array(np.arange(n) + start)), file)
    return out, files


def _events(table: pa.Table) -> pd.DataFrame:
    frame = table.to_pandas()
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.CategoricalDtype) or frame[column].dtype == object:
            frame[column] = frame[column].astype("string")
    order = ["timestamp", "account_id", "event_id"]
    return frame.sort_values(order, kind="stable", ignore_index=True)


def test_kept_events_handed_over_by_slices_are_the_days_events(days, tmp_path, monkeypatch):
    log, files = days
    monkeypatch.setattr(sources, "STREAM_ROWS", 1)  # one day a partition
    monkeypatch.setattr(sources, "SLICE_ROWS", 150)  # each day cut into slices
    caseloads = sibling(log, ".caseloads.parquet")
    handed, reread = tmp_path / "handed", tmp_path / "reread"
    asked, handed_over = [], []
    real, read_handed = detector.pipeline.last_day_handover, detector.pipeline.handed_kept

    def spy(partitions):
        asked.append(len(partitions))
        return real(partitions)

    def handed_spy(files, by_id):
        handed_over.append(read_handed(files, by_id))
        return handed_over[-1]

    monkeypatch.setattr(detector.pipeline, "handed_kept", handed_spy)
    for path in files[:-1]:
        monkeypatch.setattr(detector.pipeline, "last_day_handover", spy)
        one = score_log(path, caseloads=caseloads, mode="rules", state=handed, workers=2)
        monkeypatch.setattr(detector.pipeline, "last_day_handover", lambda partitions: None)
        other = score_log(path, caseloads=caseloads, mode="rules", state=reread, workers=2)
        pd.testing.assert_frame_equal(one.alerts, other.alerts)
        kept_one, kept_other = load_state(handed, TZ), load_state(reread, TZ)
        assert kept_one.kept_day == kept_other.kept_day
        pd.testing.assert_frame_equal(
            _events(read_kept(kept_one)), _events(read_kept(kept_other)), check_dtype=False
        )
    assert sum(n > 1 for n in asked) >= len(asked) - 1  # the days were sliced
    assert len(handed_over) == len(asked) and all(t is not None for t in handed_over)
    monkeypatch.undo()
    # The next day on either state: the same alerts, features and notices.
    one = score_log(files[-1], caseloads=caseloads, mode="both", state=handed)
    other = score_log(files[-1], caseloads=caseloads, mode="both", state=reread)
    pd.testing.assert_frame_equal(one.alerts, other.alerts)
    pd.testing.assert_frame_equal(one.features, other.features)
    assert one.notices == other.notices
    assert not list(tmp_path.glob("**/kept-*.arrow"))


def test_kept_day_completed_from_the_partitions_files(days, tmp_path, monkeypatch):
    """A log continuing the kept day: its events of that day come from the files the
    partitions wrote (not read again), with the same alerts, features and notices."""
    log, files = days
    caseloads = sibling(log, ".caseloads.parquet")
    morning_and_evening(files, tmp_path)
    read_days = []
    real_read_day = detector.engine.state.read_day

    def read_day_spy(source, day):
        read_days.append(day)
        return real_read_day(source, day)

    monkeypatch.setattr(detector.engine.state, "read_day", read_day_spy)
    results = {}
    for name, handover in (("handed", detector.pipeline.last_day_handover), ("reread", None)):
        if handover is None:
            monkeypatch.setattr(detector.pipeline, "last_day_handover", lambda partitions: None)
        state = tmp_path / name
        score_log(tmp_path / "morning.parquet", caseloads=caseloads, mode="rules", state=state)
        kept_day = load_state(state, TZ).kept_day
        read_days.clear()
        results[name] = score_log(
            tmp_path / "evening.parquet", caseloads=caseloads, mode="both", state=state, workers=2
        )
        assert any("completed with" in n for n in results[name].notices)
        assert (kept_day in read_days) == (handover is None)
    one, other = results["handed"], results["reread"]
    pd.testing.assert_frame_equal(one.alerts, other.alerts)
    pd.testing.assert_frame_equal(one.features, other.features)
    assert one.notices == other.notices


@pytest.mark.parametrize("shared", [True, False])
def test_handed_files_are_stacked_or_united(tmp_path, shared):
    """Slices sharing their dictionaries are stacked as they are; other files' dictionaries
    are united: the same events either way."""
    names = pa.array(["a", "b", "c"]) if shared else None
    frames, paths = [], []
    for n, accounts in enumerate((["a", "b"], ["c", "a", "c"])):
        own = pa.array(sorted(set(accounts), reverse=n == 1))  # another order in each file
        dictionary = names if shared else own
        codes = pa.array([dictionary.to_pylist().index(a) for a in accounts], pa.int32())
        column = pa.DictionaryArray.from_arrays(codes, dictionary)
        stamps = pa.array(np.arange(len(accounts), dtype=np.int64) + 10 * n, pa.int64())
        table = pa.table({"timestamp": stamps, "account_id": column, "event_id": stamps})
        paths.append(str(tmp_path / f"kept-{n}.arrow"))
        detector.engine.state.write_kept(table, paths[-1])
        frames.append(table.to_pandas().astype({"account_id": "string"}))
    got = detector.engine.state.handed_kept(paths, True)
    assert got.column("account_id").num_chunks == (2 if shared else 1)
    expected = pd.concat(frames, ignore_index=True)
    pd.testing.assert_frame_equal(got.to_pandas().astype({"account_id": "string"}), expected)
