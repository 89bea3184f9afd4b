"""The state's kept day is completed by the kernel's partition holding that day alone (in a
worker, beside the other partitions), not by the parent after the kernel: the same alerts,
features, notices and stored state as completing it in the parent."""

from __future__ import annotations

import pandas as pd
import pytest
from daily_files import cut_into_days, morning_and_evening

import detector.pipeline
from detector.engine import sources
from detector.engine.state import load_state, read_kept
from detector.pipeline import score_log
from detector.schema import sibling
from synthetic_logs.generate import generate_dataset

TZ = "Europe/Paris"


@pytest.fixture(scope="module")
def morning_evening(tmp_path_factory):
    """A first day cut in two: the morning, then its evening with the next day."""
    folder = tmp_path_factory.mktemp("completion")
    log = folder / "logs.parquet"
    generate_dataset(log, seed=4, accounts=50, days=4)
    files = cut_into_days(log, "days")
    morning_and_evening(files, folder)
    return folder, sibling(log, ".caseloads.parquet")


def test_kept_day_completed_by_its_partition(morning_evening, tmp_path, monkeypatch):
    folder, caseloads = morning_evening
    monkeypatch.setattr(sources, "STREAM_ROWS", 1)  # one day a partition, not sliced
    parent_completions = []
    real = detector.pipeline.continue_kept_day

    def spy(*args, **kwargs):
        parent_completions.append(True)
        return real(*args, **kwargs)

    monkeypatch.setattr(detector.pipeline, "continue_kept_day", spy)
    results, states = {}, {}
    for name in ("partition", "parent"):
        if name == "parent":
            monkeypatch.setattr(detector.pipeline, "kept_day_of", lambda *_: None)
        states[name] = tmp_path / name
        score_log(folder / "morning.parquet", caseloads=caseloads, mode="rules", state=states[name])
        parent_completions.clear()
        results[name] = score_log(
            folder / "evening.parquet",
            caseloads=caseloads,
            mode="both",
            state=states[name],
            workers=2,
        )
        assert any("completed with" in n for n in results[name].notices)
        # the parent completes the day only when no partition did
        assert parent_completions == ([] if name == "partition" else [True])
    one, other = results["partition"], results["parent"]
    pd.testing.assert_frame_equal(one.alerts, other.alerts)
    pd.testing.assert_frame_equal(one.features, other.features)
    assert one.notices == other.notices
    kept = [load_state(states[n], TZ) for n in ("partition", "parent")]
    assert kept[0].kept_day == kept[1].kept_day
    assert read_kept(kept[0]).equals(read_kept(kept[1]))
    pd.testing.assert_frame_equal(kept[0].history.windows, kept[1].history.windows)
