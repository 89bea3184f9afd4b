"""A run with --state given the caseload file whose index the state keeps does not read
the file: the stored index stands for the table everywhere (kernel, caseload sizes,
the candidates' caseloads of the replay), with the same results."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from daily_files import cut_into_days, nights_with_caseloads

import detector.pipeline
from detector.engine.state import (
    CASELOAD_INDEX,
    caseload_key,
    load_state,
    stored_caseload_index,
)
from detector.features.kernel import caseload_index, caseload_sizes, caseloads_of
from detector.pipeline import score_log
from detector.schema import read_caseloads
from synthetic_logs.generate import generate_dataset

TZ = "Europe/Paris"


@pytest.fixture(scope="module")
def days(tmp_path_factory):
    out = tmp_path_factory.mktemp("index") / "logs.parquet"
    generate_dataset(out, seed=11, accounts=60, days=12)
    return out, cut_into_days(out, "days")


def _table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "account_id": ["a2", "a1", "a1", "a3", "a2", "a9", "a1"],
            "record_id": ["r3", "r1", "r2", "r3", "r4", "r8", "r1"],  # a1 follows r1 twice
        }
    ).astype("string")


def test_caseload_sizes_and_rows_from_the_index_are_the_tables():
    table = _table()
    index = caseload_index(table)
    accounts = pd.Index(["a1", "a2", "a4", "a9"])
    np.testing.assert_array_equal(caseload_sizes(index, accounts), caseload_sizes(table, accounts))
    np.testing.assert_array_equal(caseload_sizes(index, accounts), [3, 2, 0, 1])
    wanted = pa.array(["a1", "a9", "a5"])
    from_index, from_table = caseloads_of(index, wanted), caseloads_of(table, wanted)
    ordered = ["account_id", "record_id"]
    pd.testing.assert_frame_equal(
        from_index.sort_values(ordered, ignore_index=True),
        from_table.sort_values(ordered, ignore_index=True),
    )
    assert caseloads_of(index, pa.array(["a5"])) is None
    assert caseloads_of(table, pa.array(["a5"])) is None


def test_a_kept_index_spares_reading_the_caseload_file(days, tmp_path, monkeypatch):
    log, files = days
    caseloads, state = nights_with_caseloads(log, files[:8], tmp_path)
    reread = tmp_path / "reread"
    shutil.copytree(state, reread)
    key = load_state(state, TZ).caseload_key

    reads = []
    monkeypatch.setattr(
        detector.pipeline, "read_caseloads", lambda path: reads.append(path) or read_caseloads(path)
    )
    alerted = 0
    for path in files[8:]:
        with_index = score_log(path, caseloads=caseloads, mode="both", state=state)
        assert reads == []
        manifest = reread / "manifest.json"  # another key: the file is read and indexed again
        manifest.write_text(manifest.read_text().replace(key, "0" * 32))
        read = score_log(path, caseloads=caseloads, mode="both", state=reread)
        assert reads == [caseloads]
        reads.clear()
        pd.testing.assert_frame_equal(with_index.features, read.features)
        pd.testing.assert_frame_equal(with_index.alerts, read.alerts)
        assert with_index.notices == read.notices
        alerted += len(with_index.alerts)
    assert alerted  # something was replayed through the index

    # A changed caseload file is read and indexed again, and the new index kept.
    table = pq.read_table(caseloads)
    pq.write_table(table.slice(0, table.num_rows // 2), caseloads)
    score_log(files[-1], caseloads=caseloads, mode="rules", state=state)
    assert reads == [caseloads]
    after = load_state(state, TZ)
    assert after.caseload_key == caseload_key(caseloads)
    half = caseload_index(read_caseloads(caseloads))
    assert stored_caseload_index(after, after.caseload_key).records.equals(half.records)


@pytest.mark.parametrize("collide", [False, True])
def test_membership_is_exact_even_when_every_record_hash_collides(monkeypatch, collide):
    """Pairs of one key are compared on their record ids: a collision is never a match."""
    from detector.features import kernel

    if collide:  # every record id hashes alike: keys tell accounts apart only
        monkeypatch.setattr(
            kernel, "text_hashes", lambda values: np.full(len(values), 7, dtype=np.uint64)
        )
    kernel.forget_caseload_index()
    table = _table()
    accounts = pd.Index(["a1", "a2", "a3", "a4"])
    records = pd.Index(["r1", "r2", "r3", "r4", "r5", "r8"])
    rng = np.random.default_rng(2)
    acc = rng.integers(-1, len(accounts), 500)  # -1: no account
    rec = rng.integers(-1, len(records), 500)  # -1: no record
    pairs = set(zip(table["account_id"], table["record_id"], strict=True))
    expected = np.array(
        [
            a >= 0 and r >= 0 and (accounts[a], records[r]) in pairs
            for a, r in zip(acc, rec, strict=True)
        ]
    )
    assert expected.any() and not expected.all()
    inside = kernel._caseload_membership(acc, rec, accounts, records, kernel.caseload_index(table))
    np.testing.assert_array_equal(inside, expected)
    kernel.forget_caseload_index()


def test_record_hashes_depend_on_the_text_only():
    from detector.features.kernel import text_hashes

    texts = ["", "a", "ab", "abcdefgh", "abcdefghi", "abcdefgh\x00", "JS05742884", "x" * 40]
    hashed = text_hashes(pa.array(texts))
    assert len(set(hashed.tolist())) == len(texts)
    np.testing.assert_array_equal(text_hashes(pa.array(texts, pa.large_string())), hashed)
    np.testing.assert_array_equal(text_hashes(pa.array(["q", *texts]).slice(1)), hashed)
    np.testing.assert_array_equal(text_hashes(pa.array([None, "ab"])), hashed[[0, 2]])


def test_an_index_stored_without_keys_is_built_again_once(days, tmp_path, monkeypatch):
    log, files = days
    caseloads, state = nights_with_caseloads(log, files[:7], tmp_path)
    stored = load_state(state, TZ)
    pairs = stored.path / f"v{stored.version:06d}" / CASELOAD_INDEX["pairs"]
    old = pa.ipc.open_file(pa.memory_map(str(pairs))).read_all().drop_columns(["key"])
    pairs.unlink()  # the layout of the first /4 states: pairs without their keys
    with pa.OSFile(str(pairs), "wb") as sink, pa.ipc.new_file(sink, old.schema) as writer:
        writer.write_table(old)
    assert stored_caseload_index(load_state(state, TZ), stored.caseload_key) is None

    reads = []
    monkeypatch.setattr(
        detector.pipeline, "read_caseloads", lambda path: reads.append(path) or read_caseloads(path)
    )
    score_log(files[7], caseloads=caseloads, mode="rules", state=state)
    assert reads == [caseloads]  # read and indexed again...
    after = load_state(state, TZ)
    assert stored_caseload_index(after, after.caseload_key) is not None  # ...and kept with keys
    score_log(files[8], caseloads=caseloads, mode="rules", state=state)
    assert reads == [caseloads]
