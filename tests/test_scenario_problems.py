"""A scenario file with several mistakes names every one, each with its line and key,
the way a rule file is checked (both through tomlcheck)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from detector.cli import main
from synthetic_logs.errors import ScenarioError
from synthetic_logs.scenario import load_scenario, parse_scenario
from tomlcheck import KeyLines, Problem

SEVERAL = """\
name = "several"
summary = "Four mistakes in one file"
colour = "red"

[source]
article = "none"
dates = "2024-01-01"

[parameters]
victim_type = "partner_advisor"
victims = "three"

[[steps]]
primitive = "take_over"

[[steps]]
primitive = "bulk_read"
scope = "everyone"
population_share = 0.5
"""


def test_every_problem_is_reported_with_its_line(tmp_path):
    path = tmp_path / "several.toml"
    path.write_text(SEVERAL, encoding="utf-8")
    with pytest.raises(ScenarioError) as raised:
        load_scenario(path)
    where = str(path)
    assert raised.value.problems == [
        Problem(where, 3, "colour: unknown key"),
        Problem(where, 5, "source.facts: missing required key"),
        Problem(where, 11, "parameters.victims: expected int, got str"),
        Problem(where, 18, "steps[1].scope: unknown value 'everyone' (one of: job_seekers, "
                "young_people, all, other_structures)"),
    ]  # fmt: skip
    result = CliRunner().invoke(
        main, ["generate", "--out", str(tmp_path / "l.parquet"), "--scenario", where]
    )
    assert result.exit_code == 1
    assert result.output == f"Error: {'; '.join(str(p) for p in raised.value.problems)}\n"


def test_inline_steps_point_at_the_steps_line(tmp_path):
    path = tmp_path / "inline.toml"
    text = SEVERAL.split("[[steps]]")[0].replace('colour = "red"\n', "")
    text = text.replace('dates = "2024-01-01"', 'dates = "x"\nfacts = "x"')
    text = text.replace('"three"', "3")
    text = text.replace("[source]", 'steps = [{ primitive = "fly" }]\n\n[source]')
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ScenarioError) as raised:
        load_scenario(path)
    (problem,) = raised.value.problems
    assert text.splitlines()[problem.line - 1].startswith("steps = [")
    assert problem.message.startswith("steps[0].primitive: unknown primitive 'fly'")


def test_a_parsed_dict_has_no_lines_but_every_problem():
    data = {
        "name": "x",
        "summary": "x",
        "source": {"article": "", "dates": "x", "facts": "x"},
        "parameters": {"victim_type": "advisor", "victims": 0},
        "steps": [],
    }
    with pytest.raises(ScenarioError) as raised:
        parse_scenario(data, "d")
    assert str(raised.value) == (
        "d: parameters.victims: must be at least 1; d: steps: needs at least one step"
    )


def test_key_lines_of_tables_arrays_and_missing_keys():
    lines = KeyLines(SEVERAL)
    assert lines.line("name") == 1
    assert lines.line("source") == 5  # a table: its header
    assert lines.line("parameters", "victims") == 11
    assert lines.line("parameters", "weekends") == 9  # not written: the header
    assert lines.line("steps", 0) == 13
    assert lines.line("steps", 1, "scope") == 18
    assert lines.line("steps", 7, "scope") == 1  # no such entry: the file
    assert lines.line("stealth", "office_hours_only") == 1
