"""State pruning (--keep-days): the same alerts and features as a state that keeps every day."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner
from daily_files import cut_into_days

from detector.cli import main
from detector.engine.state import MIN_KEEP_DAYS, load_state, prune
from detector.features.accumulation import CUSUM_VOLUMES, HORIZON_DAYS
from detector.features.baselines import HISTORY_DAYS
from detector.features.catalogue import BASELINED_VOLUMES, FEATURES
from detector.features.table import assemble
from detector.pipeline import score_log
from detector.schema import sibling
from detector.vocabulary import BASELINE_FEATURE_STATS, baseline_name
from synthetic_logs.generate import generate_dataset
from synthetic_logs.scenario import load_scenario, with_overrides

TZ = "Europe/Paris"
KEEP = MIN_KEEP_DAYS
UNPRUNED_DAYS = KEEP + 4  # an old state (no summary) first, then pruned every night
LOG_DAYS = KEEP + 16
ALERT_COLUMNS = ["account_id", "window_start", "window_end", "detected_at", "rules", "reason"]


@pytest.fixture(scope="module")
def days(tmp_path_factory):
    """A log of LOG_DAYS days with attacks after the first pruned night, one file per local day."""
    out = tmp_path_factory.mktemp("prune") / "logs.parquet"
    attacks = [
        with_overrides(load_scenario(name), start_day=day)
        for name, day in (
            ("kairos_infostealer", UNPRUNED_DAYS + 5),
            ("search_enumeration", UNPRUNED_DAYS + 7),
            ("ouiform_account_creation", UNPRUNED_DAYS + 3),
        )
    ]
    generate_dataset(out, attacks, seed=5, accounts=80, days=LOG_DAYS)
    return sibling(out, ".caseloads.parquet"), cut_into_days(out, "days")


def _nightly(files, caseloads, state, keep_days=None, from_night=0):
    """(alerts, features) of each night scored through ``state``."""
    runs = []
    for night, path in enumerate(files):
        keep = keep_days if night >= from_night else None
        result = score_log(path, caseloads=caseloads, mode="rules", state=state, keep_days=keep)
        runs.append((result.alerts, result.features))
    return runs


def _alerts(alerts: pd.DataFrame) -> pd.DataFrame:
    frame = alerts[ALERT_COLUMNS].copy()
    frame["rules"] = frame["rules"].map(lambda r: ",".join(r))
    return frame.sort_values(["account_id", "window_start"]).reset_index(drop=True)


def _features(features: pd.DataFrame) -> pd.DataFrame:
    columns = ["account_id", "day", *FEATURES]
    return features[columns].sort_values(["account_id", "day"]).reset_index(drop=True)


def test_pruned_state_scores_every_night_as_a_whole_state(days, tmp_path):
    caseloads, files = days
    whole = _nightly(files, caseloads, tmp_path / "whole")
    pruned_state = tmp_path / "pruned"
    pruned = _nightly(files[:UNPRUNED_DAYS], caseloads, pruned_state)
    old = json.loads((pruned_state / "manifest.json").read_text())
    assert old["format"] == "logsentinel-state/6" and "pruned_through" not in old
    pruned += _nightly(files[UNPRUNED_DAYS:], caseloads, pruned_state, KEEP)

    stored = load_state(pruned_state, TZ)
    assert stored.day_events().size == KEEP  # the newest day and the KEEP - 1 before it
    assert stored.pruned_through == stored.day_events().index.min() - 1
    assert load_state(tmp_path / "whole", TZ).day_events().size == len(files)
    # Accounts of the dropped days carry their counts into the summary.
    assert stored.summary["days"].sum() == _windows_dropped(tmp_path, stored)

    alerts = 0
    for night, ((a_whole, f_whole), (a_pruned, f_pruned)) in enumerate(
        zip(whole, pruned, strict=True)
    ):
        pd.testing.assert_frame_equal(_alerts(a_whole), _alerts(a_pruned), check_dtype=False)
        pd.testing.assert_frame_equal(_features(f_whole), _features(f_pruned), obj=f"night {night}")
        alerts += len(a_whole) if night >= UNPRUNED_DAYS else 0
    assert alerts > 0  # the pruned nights raise alerts, and the same


def _windows_dropped(tmp_path, stored) -> int:
    whole = load_state(tmp_path / "whole", TZ).history.windows
    return int((whole["day"] <= stored.pruned_through).sum())


def test_every_kept_window_has_the_features_of_the_whole_history(days, tmp_path):
    """Not only the scored day: the older kept windows (a refitted model learns from
    them) keep every feature but the baselines that would read dropped days. Among
    them, the first kept window of an account, where a pair first seen on a dropped
    day must not count as new."""
    caseloads, files = days
    state = tmp_path / "state"
    score_log(caseloads.parent / "logs.parquet", caseloads=caseloads, mode="rules", state=state)
    stored = load_state(state, TZ)
    everything = assemble([stored.history], None, TZ, first_day=stored.first_day)
    history, summary, through = prune(stored.history, stored.first_day, KEEP, stored)
    pruned = assemble([history], None, TZ, first_day=stored.first_day, summary=summary)
    table = everything.table
    kept = table[table["day"] > pd.Timestamp(through, unit="D").date()]
    assert len(kept) == len(pruned.table) and summary["days"].sum() == len(table) - len(kept)
    baselined = {baseline_name(s, v) for v in BASELINED_VOLUMES for s in BASELINE_FEATURE_STATS}
    baselined |= {f"cusum_{volume}" for volume in CUSUM_VOLUMES}  # judged on earlier baselines
    plain = ["account_id", "day", *(name for name in FEATURES if name not in baselined)]
    pd.testing.assert_frame_equal(
        kept[plain].reset_index(drop=True), pruned.table[plain].reset_index(drop=True)
    )
    assert kept["new_addresses"].sum() > 0  # the attacks' addresses at least
    reach = through + HISTORY_DAYS + HORIZON_DAYS  # the furthest back a feature reads
    late = kept["day"] > pd.Timestamp(reach, unit="D").date()
    full = pruned.table["day"].to_numpy() > pd.Timestamp(reach, unit="D").date()
    assert late.any()
    columns = ["account_id", "day", *FEATURES]
    pd.testing.assert_frame_equal(
        kept.loc[late, columns].reset_index(drop=True),
        pruned.table.loc[full, columns].reset_index(drop=True),
    )


def test_a_pruned_day_delivered_again_is_ignored(days, tmp_path):
    caseloads, files = days
    state = tmp_path / "state"
    _nightly(files[: KEEP + 3], caseloads, state, KEEP)
    before = load_state(state, TZ)
    assert before.pruned_through is not None
    again = score_log(files[0], caseloads=caseloads, mode="rules", state=state, keep_days=KEEP)
    assert len(again.alerts) == 0 and len(again.features) == 0
    assert any(
        "older than the state keeps ignored (pruned by --keep-days)" in n for n in again.notices
    )
    after = load_state(state, TZ)
    pd.testing.assert_series_equal(after.day_events(), before.day_events())
    pd.testing.assert_frame_equal(after.summary, before.summary)


@pytest.mark.parametrize("value", ["0", "-3", str(MIN_KEEP_DAYS - 1)])
def test_cli_keep_days_too_small(days, tmp_path, value):
    _, files = days
    state = tmp_path / "state"
    args = ["score", str(files[0]), "--mode", "rules", "--state", str(state), "--keep-days", value]
    result = CliRunner().invoke(main, args + ["--out", str(tmp_path / "a.parquet")])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"Error: --keep-days {value}: keep at least {MIN_KEEP_DAYS} days (the 28 days the"
        " baselines read, the 14 days the accumulated excess reads before them, and the last"
        " stored day, which the next log may complete)"
    ]
    assert not state.exists()


def test_cli_keep_days_without_state(days, tmp_path):
    _, files = days
    args = ["score", str(files[0]), "--keep-days", "50", "--out", str(tmp_path / "a.parquet")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "Error: --keep-days needs --state (it prunes a state directory)"
    ]
