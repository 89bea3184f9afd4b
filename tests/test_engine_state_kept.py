"""The kept day's events as Arrow IPC (logsentinel-state/4); states of /3, whose kept events
are Parquet, are read and continued as before."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pyarrow.parquet as pq
import pytest
from daily_files import cut_into_days

from detector.engine.state import KEPT, KEPT_ARROW, load_state, read_kept
from detector.pipeline import score_log
from detector.schema import sibling
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
    assert json.loads((old / "manifest.json").read_text())["format"] == "logsentinel-state/4"
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
