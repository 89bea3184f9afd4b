"""One bad rule file per kind of error (tests/fixtures/rulesets_bad/NAME.toml), each
reported alone, with its file and line, by both check_ruleset and load_ruleset."""

from pathlib import Path

import pytest

from detector.errors import RuleProblem, RuleSetError
from detector.rules import check_ruleset, load_ruleset

BAD = Path(__file__).parent / "fixtures" / "rulesets_bad"

# fixture name -> (line, message); every fixture holds exactly this one problem.
EXPECTED = {
    "toml_syntax": (12, "invalid TOML: Illegal character '\\n' (column 17)"),
    "unknown_top_level_key": (25, "unknown key 'extras'; allowed: ruleset, allowlist, rules"),
    "unknown_ruleset_key": (4, "[ruleset]: unknown key 'version'; allowed: name, description"),
    "missing_ruleset_table": (1, "missing [ruleset] table"),
    "unknown_allowlist_key": (8, "[allowlist]: unknown key 'users'; allowed: accounts, networks"),
    "invalid_network": (
        7,
        "[allowlist]: invalid network '10.20.0.1/16': 10.20.0.1/16 has host bits set",
    ),
    "allowlist_accounts_not_strings": (
        6,
        "[allowlist]: 'accounts' must be a list of non-empty strings",
    ),
    "no_rules": (None, "no rules: add at least one [[rules]] table"),
    "rules_not_array": (9, "'rules' must be an array of tables: write [[rules]]"),
    "unknown_rule_key": (
        13,
        "rule many_reads: unknown key 'owner'; allowed: id, title, severity, technique, "
        "condition, reason, tests, description, status",
    ),
    "missing_rule_key": (9, "rule many_reads: missing required key 'title'"),
    "bad_rule_id": (10, "rule Many-Reads: id must match ^[a-z][a-z0-9_]*$"),
    "duplicate_rule_id": (25, "duplicate rule id 'many_reads' (first at line 10)"),
    "bad_severity": (12, "rule many_reads: severity 'critical' is not one of: low, medium, high"),
    "bad_status": (13, "rule many_reads: status 'beta' is not one of: experimental, stable"),
    "bad_technique": (
        13,
        "rule many_reads: technique 'T12' is not an ATT&CK id like T1078 or T1567.002",
    ),
    "condition_not_string": (14, "rule many_reads: 'condition' must be a non-empty string"),
    "unknown_feature": (
        14,
        "rule many_reads: condition: unknown feature 'recordz_touched' (column 1)",
    ),
    "unknown_function": (
        14,
        "rule many_reads: condition: unknown function 'maxi'; functions: abs, max, min (column 24)",
    ),
    "dangling_operator": (
        14,
        "rule many_reads: condition: dangling operator 'and': nothing follows it (column 59)",
    ),
    "unbalanced_parenthesis": (
        14,
        "rule many_reads: condition: unbalanced parenthesis: '(' at column 27 is never closed (column 57)",
    ),
    "unexpected_character": (
        14,
        "rule many_reads: condition: unexpected character '$' (column 17)",
    ),
    "chained_comparison": (
        14,
        "rule many_reads: condition: comparisons do not chain: '>' follows '<'; "
        "write 'a < b and b < c' (column 21)",
    ),
    "boolean_in_arithmetic": (
        14,
        "rule many_reads: condition: '*' needs a number, got a condition "
        "'own_median_records_touched > 5' (column 52)",
    ),
    "condition_not_boolean": (
        14,
        "rule many_reads: condition: must be a comparison or a combination of comparisons, "
        "got a number (column 1)",
    ),
    "unknown_feature_in_reason": (
        15,
        "rule many_reads: reason: unknown feature 'own_median_records'",
    ),
    "bad_format_in_reason": (
        15,
        "rule many_reads: reason: bad format spec '.2q' for 'records_touched': "
        "Unknown format code 'q' for object of type 'float'",
    ),
    "malformed_reason": (
        15,
        "rule many_reads: reason: malformed template: unexpected '{' in field name",
    ),
    "unknown_test_key": (
        20,
        "rule many_reads: test 1: unknown key 'note'; allowed: features, expect",
    ),
    "test_missing_feature": (
        22,
        "rule many_reads: test 2: missing feature 'own_median_records_touched' used by the condition",
    ),
    "test_unknown_feature": (22, "rule many_reads: test 2: unknown feature 'recordz'"),
    "test_value_not_number": (
        22,
        "rule many_reads: test 2: feature 'records_touched' must be a number (nan allowed)",
    ),
    "test_expect_not_bool": (23, "rule many_reads: test 2: 'expect' must be true or false"),
    "tests_all_true": (
        9,
        "rule many_reads: needs at least one test case with expect = true and one with expect = false",
    ),
    "failing_test_case": (21, "rule many_reads test 2: expected false, got true"),
    # Limits (issue 10): each was a traceback (RecursionError, MemoryError, OverflowError...).
    "condition_nested_too_deeply": (
        14,
        "rule many_reads: condition: nested too deeply: more than 20 levels of parentheses, "
        "function calls, 'not' or unary '-' (column 39)",
    ),
    "condition_too_long": (
        14,
        "rule many_reads: condition: too long: more than 256 tokens (numbers, names, operators) "
        "(column 1543)",
    ),
    "non_ascii_digit": (
        14,
        "rule many_reads: condition: unexpected character '\u0661' (U+0661); numbers are "
        "written with ASCII digits 0-9 (column 19)",
    ),
    "number_too_large": (
        14,
        "rule many_reads: condition: number '1e999' is too large (column 19)",
    ),
    "format_width_too_large": (
        15,
        "rule many_reads: reason: bad format spec '>999999999999' for 'records_touched': "
        "width 999999999999 is over 100",
    ),
    "test_value_too_large": (
        18,
        "rule many_reads: test 1: feature 'records_touched' is too large for a number "
        "(over 1.8e308)",
    ),
    "toml_nested_too_deeply": (None, "invalid TOML: arrays or tables nested too deeply"),
    "toml_integer_too_long": (None, "invalid TOML: an integer has more than 4,300 digits"),
    "too_many_rules": (1005, "too many rules: 501; a rule file holds at most 500"),
    "control_character_in_reason": (
        15,
        "rule many_reads: 'reason' must be one line without control or bidirectional characters",
    ),
}


def test_every_fixture_has_an_expectation():
    assert sorted(p.stem for p in BAD.glob("*.toml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_check_reports_the_one_error_with_file_and_line(name):
    path = BAD / f"{name}.toml"
    line, message = EXPECTED[name]
    assert check_ruleset(path) == [RuleProblem(str(path), line, message)]


@pytest.mark.parametrize("name", sorted(set(EXPECTED) - {"failing_test_case"}))
def test_load_refuses_the_file_with_the_same_problem(name):
    path = BAD / f"{name}.toml"
    with pytest.raises(RuleSetError) as caught:
        load_ruleset(path)
    assert caught.value.problems == [RuleProblem(str(path), *EXPECTED[name])]


def test_every_problem_of_a_file_is_reported_at_once(tmp_path):
    text = (BAD / "unknown_feature.toml").read_text()
    text = text.replace('severity = "high"', 'severity = "urgent"').replace(
        "expect = false", "expect = 0"
    )
    path = tmp_path / "many.toml"
    path.write_text(text)
    assert check_ruleset(path) == [
        RuleProblem(
            str(path), 12, "rule many_reads: severity 'urgent' is not one of: low, medium, high"
        ),
        RuleProblem(
            str(path),
            14,
            "rule many_reads: condition: unknown feature 'recordz_touched' (column 1)",
        ),
        RuleProblem(str(path), 23, "rule many_reads: test 2: 'expect' must be true or false"),
    ]


def test_a_file_whose_only_problem_is_a_failing_test_case_still_loads():
    # Test cases run in `check`, not at every load: a failing case is a check problem.
    assert load_ruleset(BAD / "failing_test_case.toml").rules[0].id == "many_reads"
