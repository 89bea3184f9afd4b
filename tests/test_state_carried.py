"""logsentinel-state/5: each stored window carries its novelty counts (features.table.CARRIED),
which a night reads instead of finding them again from every stored first-seen pair; a
night that re-delivers an earlier day finds them all again."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from daily_files import cut_into_days

from detector.engine.state import load_state
from detector.features import table as assembly
from detector.features.table import CARRIED
from detector.pipeline import score_log

TZ = "Europe/Paris"


@pytest.fixture(scope="module")
def log(fortnight_log):
    return fortnight_log


@pytest.fixture(scope="module")
def whole(log) -> pd.DataFrame:
    """The novelty counts of one run over the whole log, by (account_id, local day number)."""
    features = score_log(log, mode="rules").features
    day = (pd.to_datetime(features["day"]).to_numpy().astype("datetime64[D]")).astype(np.int64)
    return features.assign(day=day).set_index(["account_id", "day"])[list(CARRIED)]


def _carried(state) -> pd.DataFrame:
    windows = load_state(state, TZ).history.windows
    frame = windows.set_index(["account_id", "day"])[list(CARRIED.values())]
    return frame.rename(columns={column: name for name, column in CARRIED.items()})


def _spied(monkeypatch) -> list[int]:
    """Counts the nights' uses of the carried counts (assembly._novelty_after)."""
    calls: list[int] = []
    original = assembly._novelty_after

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(assembly, "_novelty_after", spy)
    return calls


def test_nights_carry_the_counts_one_run_finds(log, whole, tmp_path, monkeypatch):
    files = cut_into_days(log, "days")
    state = tmp_path / "state"
    calls = _spied(monkeypatch)
    for path in files:
        score_log(path, mode="rules", state=state)
    assert len(calls) == len(CARRIED) * (len(files) - 1)  # every night after the first
    carried = _carried(state)
    assert json.loads((state / "manifest.json").read_text())["format"] == "logsentinel-state/6"
    assert carried.notna().all().all() and carried.to_numpy().sum() > 0
    expected = whole.loc[carried.index]
    pd.testing.assert_frame_equal(carried.astype(np.float64), expected, check_names=False)


def test_a_redelivered_earlier_day_finds_every_count_again(log, whole, tmp_path, monkeypatch):
    files = cut_into_days(log, "days")
    state = tmp_path / "state"
    for path in files[:-1]:
        score_log(path, mode="rules", state=state)
    calls = _spied(monkeypatch)
    result = score_log(files[3], mode="rules", state=state)  # a stored day, whole again
    assert any("re-delivered" in notice for notice in result.notices)
    assert not calls  # later stored days follow it: their counts are found again
    carried = _carried(state)
    expected = whole.loc[carried.index]
    pd.testing.assert_frame_equal(carried.astype(np.float64), expected, check_names=False)
