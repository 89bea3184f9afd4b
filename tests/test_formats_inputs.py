"""Readers and mappings on bad input: one `Error: ...` line, or rows counted and set aside."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from click.testing import CliRunner

from detector.cli import main
from detector.formats.mapping import MappingError, apply_mapping, load_mapping, parse_mapping

BAD_MAPPINGS = Path(__file__).parent / "fixtures" / "mappings_bad"
EXPECTED = {
    "not_toml.toml": "not_toml.toml:3: invalid TOML: Illegal character",
    "missing_required_column.toml": "missing_required_column.toml: the mapping does not cover required column(s): action",
    "unknown_contract_column.toml": "unknown_contract_column.toml:6: 'acount_type' is not a contract column",
    "case_without_value.toml": 'case_without_value.toml:7: a case needs exactly one of value = ... or from = "path"',
    "bad_time_unit.toml": "bad_time_unit.toml:2: time_unit 'minutes' is not one of s, ms, us, ns",
    "unknown_top_key.toml": "unknown_top_key.toml:2: unknown key 'colums' (expected: cases, columns, description, name, time_unit)",
}


def _events(n: int = 30) -> list[dict]:
    start = pd.Timestamp("2024-01-08T08:00:00Z")
    return [
        {
            "@timestamp": (start + pd.Timedelta(minutes=i)).isoformat(),
            "user": {"name": f"u{i % 3}"},
            "event": {"action": "record-view"},
            "labels": {"record_id": f"r{i}"},
        }
        for i in range(n)
    ]


def _score(*args: str):
    return CliRunner().invoke(main, ["score", *args, "--mode", "rules"])


def test_the_bad_mapping_fixtures_are_the_expected_ones():
    assert sorted(p.name for p in BAD_MAPPINGS.glob("*.toml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_bad_mapping_is_one_located_error_line(tmp_path, name):
    log = tmp_path / "logs.ndjson"
    log.write_text("\n".join(json.dumps(e) for e in _events()) + "\n")
    mapping = BAD_MAPPINGS / name
    result = _score(str(log), "--mapping", str(mapping))
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith(f"Error: {BAD_MAPPINGS}/")
    assert lines[-1].removeprefix(f"Error: {BAD_MAPPINGS}/").startswith(EXPECTED[name])
    assert "Traceback" not in result.output


def test_shipped_mappings_load_and_cover_every_contract_column():
    for name in ("ecs", "ocsf"):
        mapping = load_mapping(name)
        assert {"timestamp", "account_id", "action"} <= set(mapping.covered)


def test_missing_mapping_file_is_an_error(tmp_path):
    log = tmp_path / "logs.ndjson"
    log.write_text(json.dumps(_events(1)[0]) + "\n")
    result = _score(str(log), "--mapping", str(tmp_path / "nope.toml"))
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        f"Error: no such mapping file: {tmp_path / 'nope.toml'} (shipped mappings: ecs, ocsf)"
    )


def test_schema_and_mapping_together_is_an_error(tmp_path):
    log = tmp_path / "logs.ndjson"
    log.write_text(json.dumps(_events(1)[0]) + "\n")
    result = _score(str(log), "--schema", "ecs", "--mapping", "x.toml")
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == "Error: give --schema or --mapping, not both"


def test_unknown_extension_asks_for_input_format(tmp_path):
    log = tmp_path / "logs.txt"
    log.write_text("x\n")
    result = _score(str(log))
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        f"Error: {log}: cannot tell the format from the extension; use --input-format (parquet, ndjson, csv)"
    )


def test_input_format_overrides_the_extension(tmp_path):
    log = tmp_path / "logs.txt"
    log.write_text("\n".join(json.dumps(e) for e in _events()) + "\n")
    result = _score(
        str(log),
        "--input-format",
        "ndjson",
        "--schema",
        "ecs",
        "--out",
        str(tmp_path / "a.parquet"),
    )
    assert result.exit_code == 0, result.output
    assert "30 events" in result.output


def test_malformed_json_lines_are_counted_and_set_aside(tmp_path):
    lines = [json.dumps(e) for e in _events()]
    lines[4] = '{"@timestamp": "2024-01-08T08:04:00Z", "user": '  # cut short
    lines[9] = "[1, 2, 3]"  # JSON, but not an object
    lines[12] = '{"@timestamp": "not a time", "user": {"name": "u1"}, "event": {"action": "read"}}'
    lines[15] = '{"@timestamp": "2024-01-08T08:15:00Z", "event": {"action": "read"}}'  # no user
    log = tmp_path / "logs.ndjson.gz"
    with gzip.open(log, "wt") as stream:
        stream.write("\n".join(lines) + "\n")
    out = tmp_path / "alerts.parquet"
    result = _score(str(log), "--schema", "ecs", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "Notice: 4 rows rejected (" in result.output
    for reason in ("malformed JSON line", "JSON line is not an object", "unparseable timestamp"):
        assert f"1 {reason}" in result.output
    assert "26 events" in result.output
    rejects = pd.read_parquet(tmp_path / "alerts.rejects.parquet")
    assert sorted(rejects["reason"]) == sorted(
        [
            "malformed JSON line",
            "JSON line is not an object",
            "unparseable timestamp",
            "missing account_id",
        ]
    )
    assert sorted(rejects["line"].dropna().astype(int)) == [5, 10]


def test_malformed_csv_rows_are_counted_and_set_aside(tmp_path):
    log = tmp_path / "logs.csv"
    rows = ["timestamp,account_id,action,record_id"]
    rows += [f"2024-01-08T08:{i:02d}:00Z,u{i % 3},view_record,r{i}" for i in range(20)]
    rows[5] = "2024-01-08T08:04:00Z,u1,view_record,r4,extra,cells"
    log.write_text("\n".join(rows) + "\n")
    out = tmp_path / "alerts.parquet"
    result = _score(str(log), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "Notice: 1 rows rejected (1 malformed CSV row)" in result.output
    assert "19 events" in result.output
    rejects = pd.read_parquet(tmp_path / "alerts.rejects.parquet")
    assert list(rejects["reason"]) == ["malformed CSV row"]


def test_a_field_changing_type_between_lines_is_read_as_text(tmp_path):
    events = _events(10)
    events[3]["labels"]["record_id"] = 12345  # a number among strings
    log = tmp_path / "logs.ndjson"
    log.write_text("\n".join(json.dumps(e) for e in events) + "\n")
    staged = tmp_path / "staged"
    result = _score(
        str(log),
        "--schema",
        "ecs",
        "--staged-out",
        str(staged),
        "--out",
        str(tmp_path / "a.parquet"),
    )
    assert result.exit_code == 0, result.output
    assert "12345" in pd.read_parquet(staged)["record_id"].tolist()


def test_numeric_times_follow_time_unit_and_lists_match_any_element():
    mapping = parse_mapping(
        """
time_unit = "s"
[columns]
timestamp = "t"
account_id = "who"
action = "what"
[[cases.action]]
value = "login"
when = { kind = "start" }
""",
        "inline.toml",
    )
    table = pa.Table.from_struct_array(
        pa.array(
            [
                {"t": 1704700800, "who": "a", "what": "read", "kind": ["x", "start"]},
                {"t": 1704700860, "who": "b", "what": "read", "kind": ["x"]},
            ]
        )
    )
    mapped = apply_mapping(table, mapping).table
    assert mapped.column("timestamp").to_pylist() == [1704700800 * 10**9, 1704700860 * 10**9]
    assert mapped.column("action").to_pylist() == ["login", "read"]


def test_a_csv_export_with_flat_dotted_ecs_headers(tmp_path):
    log = tmp_path / "export.csv"
    rows = ["@timestamp,user.name,event.action,labels.record_id,event.outcome"]
    rows += [f"2024-01-08T08:{i:02d}:00Z,u{i % 2},record-view,r{i},success" for i in range(12)]
    log.write_text("\n".join(rows) + "\n")
    staged = tmp_path / "staged"
    result = _score(
        str(log),
        "--schema",
        "ecs",
        "--staged-out",
        str(staged),
        "--out",
        str(tmp_path / "a.parquet"),
    )
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(staged)
    assert set(frame["action"]) == {"view_record"}
    assert sorted(frame["account_id"].unique()) == ["u0", "u1"]
    assert len(frame) == 12


def test_staged_out_refuses_a_directory_holding_other_files(tmp_path):
    log = tmp_path / "logs.ndjson"
    log.write_text("\n".join(json.dumps(e) for e in _events()) + "\n")
    staged = tmp_path / "staged"
    staged.mkdir()
    (staged / "notes.txt").write_text("mine")
    result = _score(str(log), "--schema", "ecs", "--staged-out", str(staged))
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        f"Error: {staged}: the staging directory holds other files (notes.txt, ...); give an empty one"
    )


def test_a_users_own_mapping_with_its_vocabulary(tmp_path):
    mapping = tmp_path / "audit_fr.toml"
    mapping.write_text(
        """
name = "audit_fr"
time_unit = "s"

[columns]
timestamp = "horodatage"
account_id = "agent.identifiant"
action = "operation"
record_id = "dossier"
src_ip = "poste.adresse"   # never present in this export

[[cases.action]]
value = "view_record"
when = { operation = ["consultation", "lecture"] }

[[cases.action]]
value = "login"
when = { operation = "connexion" }
"""
    )
    records = [
        {
            "horodatage": 1704700800 + 60 * i,
            "agent": {"identifiant": "a1"},
            "operation": ["connexion", "consultation", "lecture", "impression"][i % 4],
            "dossier": f"d{i}",
        }
        for i in range(8)
    ]
    log = tmp_path / "journal.jsonl"
    log.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    staged = tmp_path / "staged"
    result = _score(
        str(log),
        "--mapping",
        str(mapping),
        "--staged-out",
        str(staged),
        "--out",
        str(tmp_path / "a.parquet"),
    )
    assert result.exit_code == 0, result.output
    assert (
        f"Notice: {log}: source field(s) never found by mapping audit_fr: poste.adresse"
        in result.output
    )
    frame = pd.read_parquet(staged).sort_values("timestamp")
    assert frame["action"].tolist() == ["login", "view_record", "view_record", "impression"] * 2
    assert frame["timestamp"].iloc[0] == pd.Timestamp("2024-01-08T08:00:00Z")
    assert frame["event_id"].tolist() == list(range(8))


def test_an_input_without_any_field_for_a_required_column_is_an_error(tmp_path):
    log = tmp_path / "logs.ndjson"
    log.write_text('{"timestamp": "2024-01-08T08:00:00Z", "who": "u1", "action": "login"}\n')
    result = _score(str(log))
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        f"Error: {log}: no record holds a field mapped to required column(s): account_id <- account_id"
    )


def test_a_mapping_with_several_problems_reports_each_on_its_line(tmp_path):
    path = tmp_path / "many.toml"
    path.write_text(
        'time_unit = "minutes"\n'  # 1
        "colums = 1\n"  # 2
        "[columns]\n"  # 3
        'timestamp = "@timestamp"\n'  # 4
        'acount_id = "user.name"\n'  # 5
        'action = "event.action"\n'  # 6
        "[[cases.action]]\n"  # 7
        'when = { "event.kind" = "x" }\n'  # 8
    )
    with pytest.raises(MappingError) as raised:
        load_mapping(path)
    assert str(raised.value) == "; ".join(
        [
            f"{path}:1: time_unit 'minutes' is not one of s, ms, us, ns",
            f"{path}:2: unknown key 'colums' (expected: cases, columns, description, name, time_unit)",
            f"{path}:5: 'acount_id' is not a contract column",
            f'{path}:7: a case needs exactly one of value = ... or from = "path"',
        ]
    )


def test_a_huge_mapping_file_is_refused_without_reading_it(tmp_path):
    path = tmp_path / "huge.toml"
    path.write_text("# " + "x" * (2 << 20) + "\n")
    with pytest.raises(MappingError, match="larger than 1,048,576 bytes"):
        load_mapping(path)
