"""Input that is not clean: validation, normalisation, rejects, and one-line errors."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from detector.cli import main
from detector.errors import InputError
from detector.schema import normalise, read_log


def _frame(**columns) -> pd.DataFrame:
    base = {
        "timestamp": ["2024-03-25T08:00:00Z", "2024-03-25T08:05:00+00:00", "2024-03-25T09:00:00"],
        "account_id": ["a1", "a1", "a2"],
        "action": ["login", "view_record", "search"],
        "record_id": [None, "r1", None],
    }
    base.update(columns)
    return pd.DataFrame(base)


def test_iso_strings_and_naive_timestamps_are_utc():
    log = normalise(_frame())
    stamps = log.events["timestamp"]
    assert str(stamps.dt.tz) == "UTC"
    assert stamps.iloc[2] == pd.Timestamp("2024-03-25T09:00:00Z")


def test_naive_datetime_column_is_utc():
    frame = _frame(
        timestamp=pd.to_datetime(["2024-03-25 08:00", "2024-03-25 08:05", "2024-03-25 09:00"])
    )
    log = normalise(frame)
    assert log.events["timestamp"].iloc[0] == pd.Timestamp("2024-03-25T08:00:00Z")


def test_unknown_actions_count_as_other_with_a_notice():
    log = normalise(_frame(action=["login", "download", "SEARCH "]))
    assert list(log.events["action"].astype(str)) == ["login", "other", "search"]
    assert any(
        "1 events with unknown or missing actions counted as 'other' (e.g. 'download')" in n
        for n in log.notices
    )


def test_rows_without_account_or_timestamp_are_rejected_with_reasons():
    frame = _frame(
        account_id=["a1", None, "a2"],
        timestamp=["2024-03-25T08:00:00Z", "2024-03-25T08:05:00Z", "garbage"],
    )
    log = normalise(frame)
    assert len(log.events) == 1
    assert list(log.rejects["reason"]) == ["missing account_id", "unparseable timestamp"]
    assert list(log.rejects["row"]) == [1, 2]
    assert "2 rows rejected (1 missing account_id, 1 unparseable timestamp)" in log.notices


def test_events_are_put_in_time_order():
    frame = _frame(
        timestamp=["2024-03-25T09:00:00Z", "2024-03-25T08:00:00Z", "2024-03-25T08:30:00Z"]
    )
    log = normalise(frame)
    assert list(log.events["event_id"]) == [1, 2, 0]


def test_a_column_of_garbage_timestamps_is_an_error():
    with pytest.raises(InputError, match="holds no parseable timestamp"):
        normalise(_frame(timestamp=["x", "y", "z"]))


def test_numeric_timestamps_are_an_error():
    with pytest.raises(InputError, match="has type int64"):
        normalise(_frame(timestamp=[1, 2, 3]))


def test_directory_of_parquet_files_is_one_log(tmp_path):
    frame = _frame()
    folder = tmp_path / "export"
    folder.mkdir()
    frame.iloc[:2].to_parquet(folder / "part-0.parquet")
    frame.iloc[2:].to_parquet(folder / "part-1.parquet")
    log = read_log(folder)
    assert len(log.events) == 3


def _score(args: list[str]):
    return CliRunner().invoke(main, ["score", *args])


def test_cli_missing_file(tmp_path):
    result = _score([str(tmp_path / "nope.parquet")])
    assert result.exit_code == 1
    assert (
        result.output.splitlines()[-1]
        == f"Error: no such file or directory: {tmp_path / 'nope.parquet'}"
    )


def test_cli_file_that_is_not_parquet(tmp_path):
    path = tmp_path / "log.parquet"
    path.write_text("timestamp,account_id\n")
    result = _score([str(path)])
    assert result.exit_code == 1
    last = result.output.splitlines()[-1]
    assert last.startswith(f"Error: {path}: not a Parquet file or a directory of Parquet files")
    assert "Traceback" not in result.output


def test_cli_missing_required_column(tmp_path):
    path = tmp_path / "log.parquet"
    _frame().drop(columns="action").to_parquet(path)
    result = _score([str(path)])
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == f"Error: {path}: missing required column(s): action"


def test_cli_unparseable_timestamps(tmp_path):
    path = tmp_path / "log.parquet"
    _frame(timestamp=["soon", "later", "never"]).to_parquet(path)
    result = _score([str(path)])
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == (
        f"Error: {path}: column 'timestamp' holds no parseable timestamp (first value: 'soon')"
    )


def test_cli_broken_rule_file(tmp_path):
    log = tmp_path / "log.parquet"
    _frame().to_parquet(log)
    rules = tmp_path / "rules.toml"
    rules.write_text('[ruleset]\nname = "x"\ndescription = "y"\n\n[[rules]]\nid = "r"\nbogus = 1\n')
    result = _score([str(log), "--rules", str(rules)])
    assert result.exit_code == 1
    assert result.output.splitlines()[-1].startswith(f"Error: {rules}:")
    assert "Traceback" not in result.output


def test_cli_unknown_timezone(tmp_path):
    log = tmp_path / "log.parquet"
    _frame().to_parquet(log)
    result = _score([str(log), "--timezone", "Mars/Olympus"])
    assert result.exit_code == 1
    assert (
        result.output.splitlines()[-1]
        == "Error: unknown time zone: 'Mars/Olympus' (e.g. Europe/Paris)"
    )


def test_cli_empty_log_is_a_clean_run(tmp_path):
    log = tmp_path / "empty.parquet"
    schema = pa.schema(
        [
            ("timestamp", pa.timestamp("us", tz="UTC")),
            ("account_id", pa.string()),
            ("action", pa.string()),
        ]
    )
    pq.write_table(schema.empty_table(), log)
    out = tmp_path / "alerts.parquet"
    result = _score([str(log), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert len(pd.read_parquet(out)) == 0
    assert "0 alerts" in result.output


def test_cli_writes_rejects_beside_the_output(tmp_path):
    log = tmp_path / "log.parquet"
    _frame(account_id=["a1", None, "a2"]).to_parquet(log)
    out = tmp_path / "alerts.parquet"
    result = _score([str(log), "--out", str(out)])
    assert result.exit_code == 0, result.output
    rejects = pd.read_parquet(tmp_path / "alerts.rejects.parquet")
    assert list(rejects["reason"]) == ["missing account_id"]
    assert "Notice: 1 rows rejected (1 missing account_id)" in result.output
