"""What logsentinel-state/4 adds: the kept day's events as Arrow IPC (states of /3, whose
kept events are Parquet, are read and continued as before) and the caseload index kept
for the next run given the same caseload file."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from daily_files import cut_into_days, nights_with_caseloads

from detector.engine.state import (
    CASELOAD_INDEX,
    KEPT,
    KEPT_ARROW,
    MANIFEST,
    caseload_index_at,
    caseload_key,
    load_state,
    read_kept,
    stored_caseload_index,
)
from detector.features.kernel import caseload_index
from detector.pipeline import score_log
from detector.schema import read_caseloads, sibling
from synthetic_logs.generate import generate_dataset

TZ = "Europe/Paris"


@pytest.fixture(scope="module")
def nights(tmp_path_factory):
    out = tmp_path_factory.mktemp("kept") / "logs.parquet"
    generate_dataset(out, seed=5, accounts=60, days=12)
    return out, cut_into_days(out, "nights", at_midnight=True)


def _as_parquet_kept(state) -> None:
    """Rewrite a state's current version as /3 wrote it: the kept events as Parquet."""
    manifest = json.loads((state / "manifest.json").read_text())
    current = state / manifest["current"]
    kept = load_state(state, TZ)
    table = read_kept(kept)
    (current / KEPT_ARROW).unlink()
    pq.write_table(table, current / KEPT)
    manifest["format"] = "logsentinel-state/3"
    (state / "manifest.json").write_text(json.dumps(manifest))


def test_a_state_with_parquet_kept_events_is_read_and_continued(nights, tmp_path):
    log, files = nights
    caseloads = sibling(log, ".caseloads.parquet")
    state, old = tmp_path / "state", tmp_path / "old"
    for path in files[:-1]:
        score_log(path, caseloads=caseloads, mode="rules", state=state)
    current = load_state(state, TZ)
    assert current.kept_path.name == KEPT_ARROW
    shutil.copytree(state, old)
    _as_parquet_kept(old)
    before = load_state(old, TZ)
    assert before.kept_path.name == KEPT and before.kept_day == current.kept_day
    pd.testing.assert_frame_equal(
        read_kept(before).to_pandas(), read_kept(current).to_pandas(), check_dtype=False
    )
    new_run = score_log(files[-1], caseloads=caseloads, mode="rules", state=state)
    old_run = score_log(files[-1], caseloads=caseloads, mode="rules", state=old)
    assert any(" completed with " in n for n in old_run.notices)  # the Parquet events were read
    assert old_run.notices == new_run.notices
    pd.testing.assert_frame_equal(new_run.features, old_run.features)
    pd.testing.assert_frame_equal(new_run.alerts, old_run.alerts)
    after = load_state(old, TZ)
    assert json.loads((old / "manifest.json").read_text())["format"] == "logsentinel-state/6"
    assert after.kept_path.name == KEPT_ARROW
    pd.testing.assert_frame_equal(
        read_kept(after).to_pandas(), read_kept(load_state(state, TZ)).to_pandas()
    )


def test_no_scratch_file_is_left_behind(nights, tmp_path):
    _, files = nights
    state = tmp_path / "state"
    for path in files[:3]:
        score_log(path, mode="rules", state=state)
    assert not list(state.glob(".kept.*"))
    assert (
        state / json.loads((state / "manifest.json").read_text())["current"] / KEPT_ARROW
    ).exists()


def test_the_caseload_index_is_kept_for_the_same_caseload_file(nights, tmp_path):
    log, files = nights
    caseloads, state = nights_with_caseloads(log, files[:4], tmp_path)
    rebuilt = tmp_path / "rebuilt"
    stored = load_state(state, TZ)
    key = caseload_key(caseloads)
    assert stored.caseload_key == key
    kept = stored_caseload_index(stored, key)
    built = caseload_index(read_caseloads(caseloads))
    assert kept.records.equals(built.records) and kept.accounts.equals(built.accounts)
    for name in ("account", "rank", "account_start"):
        np.testing.assert_array_equal(getattr(kept, name), getattr(built, name))
    assert stored_caseload_index(stored, "another file") is None
    # A state whose kept index is gone builds it again: the same alerts and features.
    shutil.copytree(state, rebuilt)
    for name in CASELOAD_INDEX.values():
        (rebuilt / stored.path.joinpath(f"v{stored.version:06d}").name / name).unlink()
    with_index = score_log(files[4], caseloads=caseloads, mode="rules", state=state)
    without = score_log(files[4], caseloads=caseloads, mode="rules", state=rebuilt)
    pd.testing.assert_frame_equal(with_index.features, without.features)
    pd.testing.assert_frame_equal(with_index.alerts, without.alerts)
    # Another caseload table: another key, its own index stored.
    table = pq.read_table(caseloads)
    pq.write_table(table.slice(0, table.num_rows // 2), caseloads)
    score_log(files[5], caseloads=caseloads, mode="rules", state=state)
    after = load_state(state, TZ)
    assert after.caseload_key == caseload_key(caseloads) != key
    half = caseload_index(read_caseloads(caseloads))
    assert stored_caseload_index(after, after.caseload_key).records.equals(half.records)


def test_the_kept_caseload_index_is_mapped_from_the_manifest_alone(nights, tmp_path):
    log, files = nights
    caseloads, state = nights_with_caseloads(log, files[:2], tmp_path)
    stored = load_state(state, TZ)
    key = caseload_key(caseloads)
    found = caseload_index_at(state, key)
    assert found is not None and found[1] == stored.version
    kept = stored_caseload_index(stored, key)
    assert found[0].records.equals(kept.records)
    np.testing.assert_array_equal(found[0].keys, kept.keys)
    assert caseload_index_at(state, "another file") is None
    assert caseload_index_at(state, None) is None
    assert caseload_index_at(tmp_path / "nowhere", key) is None
    (state / MANIFEST).write_text("{not json")
    assert caseload_index_at(state, key) is None  # load_state names the broken manifest
