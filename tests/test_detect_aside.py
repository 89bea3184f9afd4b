"""A large table's internal block and caseloads wait on disk while the model runs, and the
candidates' share read back is the one kept in memory otherwise: the same alerts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import detector.pipeline as pipeline
from detector.pipeline import detect, prepare


@pytest.fixture(scope="module")
def in_memory(small_log):
    prepared = prepare(small_log)
    alerts = detect(prepared, mode="both", consume=True)
    return prepared.features, alerts


def test_set_aside_gives_the_alerts_and_candidates_of_memory(small_log, in_memory, monkeypatch):
    features, alerts = in_memory
    monkeypatch.setattr(pipeline, "SET_ASIDE_FROM_WINDOWS", 1)
    monkeypatch.setattr(pipeline, "CASELOAD_BATCH_ROWS", 7)  # many batches read back
    prepared = prepare(small_log)
    assert len(prepared.features.caseloads)
    aside = detect(prepared, mode="both", consume=True)
    assert len(alerts) > 0
    pd.testing.assert_frame_equal(alerts, aside)
    kept = prepared.features
    np.testing.assert_array_equal(kept.internal.rows, features.internal.rows)
    np.testing.assert_array_equal(kept.internal.block, features.internal.block)
    pd.testing.assert_frame_equal(kept.caseloads, features.caseloads)


def test_set_aside_files_are_removed_even_when_the_model_fails(small_log, monkeypatch):
    folders = []
    original = pipeline._Aside.__init__

    def remember(self, features):
        original(self, features)
        folders.append(self._folder.name)

    def failing(*args, **kwargs):
        raise RuntimeError("model failed")

    monkeypatch.setattr(pipeline, "SET_ASIDE_FROM_WINDOWS", 1)
    monkeypatch.setattr(pipeline._Aside, "__init__", remember)
    monkeypatch.setattr(pipeline, "_model_scores", failing)
    with pytest.raises(RuntimeError, match="model failed"):
        detect(prepare(small_log), mode="both", consume=True)
    assert folders and not any(pipeline.Path(f).exists() for f in folders)
