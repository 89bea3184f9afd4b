"""`detector rules check`, `list` and `features`: exact output lines and exit codes."""

from pathlib import Path

from click.testing import CliRunner

from detector.cli import main
from detector.rules import builtin_rulesets, load_ruleset

BAD = Path(__file__).parent / "fixtures" / "rulesets_bad"


def run(*args: str):
    return CliRunner().invoke(main, ["rules", *args])


def test_check_good_builtin_prints_ok_with_counts():
    ruleset = load_ruleset("default")
    tests = sum(len(rule.tests) for rule in ruleset.rules)
    result = run("check", "default")
    assert result.exit_code == 0, result.output
    assert result.output == f"{ruleset.path}: OK ({len(ruleset.rules)} rules, {tests} test cases)\n"


def test_check_bad_and_good_files_prints_every_problem_and_exits_1():
    ruleset = load_ruleset("strict")
    tests = sum(len(rule.tests) for rule in ruleset.rules)
    unknown, failing = BAD / "unknown_feature.toml", BAD / "failing_test_case.toml"
    result = run("check", str(unknown), "strict", str(failing))
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"{unknown}:14: rule many_reads: condition: unknown feature 'recordz_touched' (column 1)",
        f"{ruleset.path}: OK ({len(ruleset.rules)} rules, {tests} test cases)",
        f"{failing}:21: rule many_reads test 2: expected false, got true",
    ]


def test_check_unknown_name_and_missing_file():
    known = ", ".join(builtin_rulesets())
    result = run("check", "nosuch", "missing/rules.toml")
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"nosuch: no rule set named 'nosuch'; built-in: {known}",
        "missing/rules.toml: file not found",
    ]


def test_check_needs_an_argument():
    result = run("check")
    assert result.exit_code == 2
    assert "Missing argument 'NAME_OR_FILE...'" in result.output


def test_list_one_set_prints_a_header_and_one_line_per_rule():
    ruleset = load_ruleset("strict")
    result = run("list", "strict")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"strict ({len(ruleset.rules)} rules): {ruleset.description}"
    assert len(lines) == 1 + len(ruleset.rules)
    first = ruleset.rules[0]
    assert lines[1].split(None, 3) == [first.id, first.severity, first.technique, first.title]


def test_list_without_argument_lists_every_builtin_set():
    result = run("list")
    assert result.exit_code == 0, result.output
    headers = [
        line.split(" ")[0] for line in result.output.splitlines() if not line.startswith(" ")
    ]
    assert headers == builtin_rulesets()


def test_list_a_bad_file_is_a_one_line_error():
    path = BAD / "bad_severity.toml"
    result = run("list", str(path))
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {path}:12: rule many_reads: severity 'critical' is not one of: low, medium, high\n"
    )


def test_rules_help_has_examples():
    for args in (["--help"], ["check", "--help"], ["list", "--help"]):
        result = run(*args)
        assert result.exit_code == 0
        assert "detector rules" in result.output


def test_features_lists_the_catalogue_a_rule_writer_may_name():
    from detector.features.catalogue import FEATURES

    result = run("features")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split()[0] for line in lines] == list(FEATURES)
    width = max(map(len, FEATURES))
    assert lines[0] == f"{'events':<{width}}  count  events in the window"


def test_features_with_words_lists_the_matching_names_only():
    from detector.features.catalogue import FEATURES

    result = run("features", "caseload_size", "night_share")
    assert result.exit_code == 0, result.output
    assert result.output == (
        f"caseload_size  count  {FEATURES['caseload_size'].doc}\n"
        f"night_share    share  {FEATURES['night_share'].doc}\n"
    )


def test_features_with_a_word_no_name_holds_is_one_error_line():
    result = run("features", "colour")
    assert result.exit_code == 1
    assert result.output == "Error: no feature name contains 'colour'\n"
