"""A nightly state fed by whatever the exports deliver: a night in another format than the
history (NDJSON ids are text, Parquet ids may be integers), and a night run without the
caseload table the state was built with."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_runs import score_alerts
from click.testing import CliRunner
from daily_files import cut_into_days

from detector.cli import main
from detector.schema import sibling


@pytest.fixture(scope="module")
def nights(fortnight_log, tmp_path_factory):
    """(history folder of Parquet days, every day's file, caseload file): days cut at
    local midnight, so that the last file continues the day the state keeps."""
    folder = tmp_path_factory.mktemp("inputs")
    files = cut_into_days(fortnight_log, "days", at_midnight=True)
    history = folder / "history"
    history.mkdir()
    for path in files[:-1]:
        shutil.copy(path, history / path.name)
    caseloads = folder / "caseloads.parquet"
    shutil.copy(sibling(fortnight_log, ".caseloads.parquet"), caseloads)
    return history, files, caseloads


def _ndjson(parquet: Path | list[Path], out: Path) -> Path:
    """The same events as NDJSON, as a JSON export writes them (ids as JSON numbers)."""
    files = parquet if isinstance(parquet, list) else [parquet]
    frame = pd.concat([pq.read_table(p).to_pandas() for p in files], ignore_index=True)
    frame.to_json(out, orient="records", lines=True, date_format="iso", date_unit="ns")
    return out


def _state(history: Path, caseloads: Path, folder: Path, as_ndjson: bool) -> Path:
    """A state built from the history (in one run), its days given as Parquet or NDJSON."""
    state = folder / "state"
    log = history
    if as_ndjson:
        frame = pd.concat([pq.read_table(p).to_pandas() for p in sorted(history.iterdir())])
        log = folder / "history.ndjson"
        frame.to_json(log, orient="records", lines=True, date_format="iso", date_unit="ns")
    score_alerts(
        str(log),
        folder / "history.alerts.parquet",
        "--caseloads",
        str(caseloads),
        "--state",
        str(state),
        "--mode",
        "rules",
    )
    return state


def _night(files: list[Path], out: Path, as_ndjson: bool) -> Path:
    """One night's file holding the given days' events, as Parquet or NDJSON."""
    if as_ndjson:
        return _ndjson(files, out.with_suffix(".ndjson"))
    pq.write_table(pa.concat_tables([pq.read_table(p) for p in files]), out.with_suffix(".parquet"))
    return out.with_suffix(".parquet")


@pytest.mark.parametrize("redelivered", [False, True])
@pytest.mark.parametrize("history_ndjson, night_ndjson", [(False, True), (True, False)])
def test_a_night_in_another_format_than_the_history(
    nights, tmp_path, history_ndjson, night_ndjson, redelivered
):
    """The kept day's events (integer ids from Parquet, text ids from NDJSON) and the
    night's events of that day are merged whatever their id types, and events delivered
    again are recognised: the alerts are those of the same night given in the history's
    own format."""
    history, files, caseloads = nights
    state = _state(history, caseloads, tmp_path, history_ndjson)
    same_format = shutil.copytree(state, tmp_path / "same")
    days = files[-2:] if redelivered else files[-1:]  # the kept day again, then the new one
    night_as_history = _night(days, tmp_path / "as_history", history_ndjson)
    night = _night(days, tmp_path / "night", night_ndjson)
    options = ("--caseloads", str(caseloads), "--mode", "rules")
    expected = score_alerts(
        str(night_as_history), tmp_path / "a.parquet", *options, "--state", str(same_format)
    )
    got = score_alerts(str(night), tmp_path / "b.parquet", *options, "--state", str(state))
    assert len(expected) > 0
    pd.testing.assert_frame_equal(got, expected)


def test_a_night_without_the_caseload_table_uses_the_stored_one(nights, tmp_path):
    """A state built with a caseload table keeps its index; a night run without any
    caseload table is scored against that stored one (and says so), not silently in
    another mode than its history."""
    history, files, caseloads = nights
    state = _state(history, caseloads, tmp_path, as_ndjson=False)
    copy = shutil.copytree(state, tmp_path / "copy")
    night = tmp_path / "night" / "day.parquet"  # no caseload file beside it
    night.parent.mkdir()
    shutil.copy(files[-1], night)
    expected = score_alerts(
        str(night),
        tmp_path / "a.parquet",
        "--caseloads",
        str(caseloads),
        "--mode",
        "rules",
        "--state",
        str(copy),
    )
    result = CliRunner().invoke(
        main,
        [
            "score",
            str(night),
            "--out",
            str(tmp_path / "b.parquet"),
            "--top",
            "0",
            "--mode",
            "rules",
            "--state",
            str(state),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "no caseload table given: the one stored with the state is used" in result.output
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "b.parquet"), expected)
    manifest = json.loads((state / "manifest.json").read_text())
    assert (
        manifest["caseload_key"] == json.loads((copy / "manifest.json").read_text())["caseload_key"]
    )


@pytest.mark.parametrize("night", ["empty", "every row rejected"])
def test_a_night_without_usable_events_changes_nothing(nights, tmp_path, night):
    """An export of no event (or of rows that are all rejected) is scored: no alert, exit
    status 0; the night after it gives the alerts it gives without it."""
    history, files, caseloads = nights
    state = _state(history, caseloads, tmp_path, as_ndjson=False)
    without = shutil.copytree(state, tmp_path / "without")
    table = pq.read_table(files[-1])
    if night == "empty":
        table = table.slice(0, 0)
    else:
        position = table.schema.get_field_index("timestamp")
        stamps = pa.nulls(len(table), table.schema.field("timestamp").type)
        table = table.set_column(position, "timestamp", stamps)
    pq.write_table(table, tmp_path / "nothing.parquet")
    options = ("--caseloads", str(caseloads), "--mode", "rules")
    nothing = score_alerts(
        str(tmp_path / "nothing.parquet"), tmp_path / "n.parquet", *options, "--state", str(state)
    )
    assert len(nothing) == 0
    expected = score_alerts(
        str(files[-1]), tmp_path / "a.parquet", *options, "--state", str(without)
    )
    got = score_alerts(str(files[-1]), tmp_path / "b.parquet", *options, "--state", str(state))
    assert len(expected) > 0
    pd.testing.assert_frame_equal(got, expected)
