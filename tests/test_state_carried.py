"""logsentinel-state/5: each stored window carries its novelty counts (features.table.CARRIED),
which a night reads instead of finding them again from every stored first-seen pair; a
night that re-delivers an earlier day finds them all again."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from daily_files import cut_into_days

from detector.engine.state import load_state
from detector.features import table as assembly
from detector.features.kernel import local_days, local_wall_ns
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


def _terms(state) -> pd.DataFrame:
    """The accumulation's terms a state stores (features.table.Judged), in one order."""
    frame = load_state(state, TZ).judged.frame.to_pandas()
    return frame.sort_values(["day", "account_id"], ignore_index=True)


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


def _with_earlier_copies(log, out) -> tuple[object, int]:
    """``log`` with day 8's daytime events copied five days earlier (new event ids), as a
    corrected export of day 3 would hold: pairs first used on day 8 are then first used on
    day 3, which changes the novelty counts of later days. Gives the new log's path and
    the number of events added."""
    table = pq.read_table(log)
    stamps = pd.DatetimeIndex(table["timestamp"].to_pandas()).as_unit("ns").asi8
    day, _ = local_days(stamps, TZ)
    days = np.unique(day)
    hour = local_wall_ns(stamps, TZ) // 3_600_000_000_000 % 24
    copied = table.filter((day == days[8]) & (hour >= 8) & (hour < 20))
    frame = copied.to_pandas()
    frame["timestamp"] -= pd.Timedelta(days=5)
    frame["event_id"] = table["event_id"].to_numpy().max() + 1 + np.arange(len(frame))
    added = pa.Table.from_pandas(frame, schema=table.schema, preserve_index=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.concat_tables([table, added]), out)
    return out, len(frame)


def test_a_changed_earlier_day_recounts_the_later_stored_days(log, tmp_path):
    """An earlier day re-delivered with other content: the stored counts of the later
    days, and the next nights' features, are those of one run over the corrected log."""
    caseloads = log.parent / "logs.caseloads.parquet"
    changed, added = _with_earlier_copies(log, tmp_path / "changed" / "logs.parquet")
    assert added > 50
    one_run = score_log(changed, caseloads=caseloads, mode="rules").features
    day = (pd.to_datetime(one_run["day"]).to_numpy().astype("datetime64[D]")).astype(np.int64)
    expected = one_run.assign(day=day).set_index(["account_id", "day"])[list(CARRIED)]
    files = cut_into_days(log, "days")
    corrected = cut_into_days(changed, "days")
    state = tmp_path / "state"
    for path in files[:-5]:
        score_log(path, caseloads=caseloads, mode="rules", state=state)
    stale = _carried(state).astype(np.float64)
    assert not stale.equals(expected.loc[stale.index])  # the correction changes later counts
    result = score_log(corrected[3], caseloads=caseloads, mode="rules", state=state)
    assert any("re-delivered" in notice for notice in result.notices)
    carried = _carried(state)
    pd.testing.assert_frame_equal(
        carried.astype(np.float64), expected.loc[carried.index], check_names=False
    )
    reference = tmp_path / "reference"  # the corrected days scored night by night
    for path in corrected[:-5]:
        score_log(path, caseloads=caseloads, mode="rules", state=reference)
    assert _terms(state).equals(_terms(reference))  # the later days' stored terms too
    for path in corrected[-5:]:  # working days and a weekend
        night = score_log(path, caseloads=caseloads, mode="rules", state=state).features
        same = one_run[one_run["day"].isin(night["day"].unique())]
        pd.testing.assert_frame_equal(night.reset_index(drop=True), same.reset_index(drop=True))
    carried = _carried(state)
    pd.testing.assert_frame_equal(
        carried.astype(np.float64), expected.loc[carried.index], check_names=False
    )
