"""Rule sets: loading, evaluation over a feature table, reasons, allowlists, test cases."""

import ipaddress
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from detector.errors import DetectorError, RuleProblem, RuleSetError
from detector.rules import (
    Allowlist,
    builtin_rulesets,
    check_ruleset,
    format_value,
    load_ruleset,
)

FEATURES = {"reads", "median_reads", "night_share", "logins"}

GOOD = """\
[ruleset]
name = "tiny"
description = "two rules for tests"

[allowlist]
accounts = ["svc-backup-01"]
networks = ["10.20.0.0/16", "2001:db8::/32"]

[[rules]]
id = "many_reads"
title = "Many reads"
severity = "high"
technique = "T1213"
condition = "reads > 10 * max(median_reads, 5)"
reason = "read {reads} records; own median {median_reads}"

[[rules.tests]]
features = { reads = 1240, median_reads = 3 }
expect = true

[[rules.tests]]
features = { reads = 20, median_reads = 3 }
expect = false

[[rules]]
id = "night_logins"
title = "Logins at night"
severity = "low"
technique = "T1078.003"
status = "experimental"
description = "any login mostly at night"
condition = "logins >= 1 and night_share > 0.5"
reason = "{night_share:.0%} of events at night"

[[rules.tests]]
features = { logins = 1, night_share = 0.9 }
expect = true

[[rules.tests]]
features = { logins = 1, night_share = nan }
expect = false
"""


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(GOOD)
    return path


def test_load_builds_frozen_objects_with_lines(tiny):
    ruleset = load_ruleset(tiny, features=FEATURES)
    assert (ruleset.name, ruleset.path, ruleset.description) == (
        "tiny",
        str(tiny),
        "two rules for tests",
    )
    first, second = ruleset.rules
    assert (first.id, first.severity, first.technique, first.line, first.status) == (
        "many_reads",
        "high",
        "T1213",
        9,
        "stable",
    )
    assert (second.status, second.description, second.line) == (
        "experimental",
        "any login mostly at night",
        25,
    )
    assert [test.line for test in first.tests] == [17, 21]
    assert [test.expect for test in second.tests] == [True, False]
    assert np.isnan(second.tests[1].values["night_share"])
    assert str(first.condition) == "reads > 10 * max(median_reads, 5)"
    assert ruleset.features_used() == FEATURES
    with pytest.raises(AttributeError):
        first.id = "other"


def test_evaluate_gives_one_bool_column_per_rule_on_the_table_index(tiny):
    ruleset = load_ruleset(tiny, features=FEATURES)
    table = pd.DataFrame(
        {
            "reads": [1240, 20, np.nan, 60],
            "median_reads": [3, 3, 3, np.nan],
            "logins": pd.array([1, 0, 2, None], dtype="Int64"),
            "night_share": [0.9, 0.9, 0.6, 1.0],
            "unrelated": ["x", "y", "z", "w"],
        },
        index=[10, 11, 12, 13],
    )
    fired = ruleset.evaluate(table)
    expected = pd.DataFrame(
        {"many_reads": [True, False, False, False], "night_logins": [True, False, True, False]},
        index=[10, 11, 12, 13],
    )
    pd.testing.assert_frame_equal(fired, expected)


def test_evaluate_accepts_a_mapping_of_arrays(tiny):
    ruleset = load_ruleset(tiny, features=FEATURES)
    columns = {"reads": np.array([100.0, 1.0]), "median_reads": np.array([1.0, 1.0])}
    columns |= {"logins": np.array([0, 3]), "night_share": np.array([0.0, 0.7])}
    fired = ruleset.evaluate(columns)
    assert fired.to_dict("list") == {"many_reads": [True, False], "night_logins": [False, True]}


def test_evaluate_names_every_missing_column(tiny):
    ruleset = load_ruleset(tiny, features=FEATURES)
    with pytest.raises(DetectorError) as caught:
        ruleset.evaluate(pd.DataFrame({"reads": [1.0], "logins": [1]}))
    assert str(caught.value) == (
        "rule set 'tiny' needs feature column(s) missing from the table: 'median_reads', 'night_share'"
    )


def test_evaluate_rejects_columns_of_different_lengths(tiny):
    ruleset = load_ruleset(tiny, features=FEATURES)
    columns = {"reads": [1.0, 2.0], "median_reads": [1.0], "logins": [1, 1], "night_share": [0, 0]}
    with pytest.raises(DetectorError, match=r"differ in length: \[1, 2\]"):
        ruleset.evaluate(columns)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1240.0, "1,240"),
        (3, "3"),
        (0.85, "0.85"),
        (12.5, "12.5"),
        (0.123456, "0.12"),
        (np.nan, "n/a"),
        (-2.0, "-2"),
    ],
)
def test_default_value_format(value, text):
    assert format_value(value) == text


def test_render_reason_fills_the_template(tiny):
    many_reads, night_logins = load_ruleset(tiny, features=FEATURES).rules
    assert many_reads.render_reason({"reads": 1240.0, "median_reads": np.nan}) == (
        "read 1,240 records; own median n/a"
    )
    assert night_logins.render_reason({"night_share": 0.875}) == "88% of events at night"
    with pytest.raises(DetectorError, match="rule many_reads: reason needs feature 'median_reads'"):
        many_reads.render_reason({"reads": 3.0})


def test_allowlist_matches_accounts_vectorised(tiny):
    allowlist = load_ruleset(tiny, features=FEATURES).allowlist
    assert allowlist.accounts == frozenset({"svc-backup-01"})
    ids = np.array(["svc-backup-01", "adv-1", None], dtype=object)
    np.testing.assert_array_equal(allowlist.allows_account(ids), [True, False, False])


def test_allowlist_matches_ipv4_ipv6_and_rejects_invalid_addresses(tiny):
    allowlist = load_ruleset(tiny, features=FEATURES).allowlist
    assert allowlist.networks == (
        ipaddress.ip_network("10.20.0.0/16"),
        ipaddress.ip_network("2001:db8::/32"),
    )
    addresses = [
        "10.20.3.4",
        "10.21.0.1",
        "2001:db8::1",
        "2001:db9::1",
        "",
        None,
        "not-an-ip",
        "10.20.3.4",
    ]
    expected = [True, False, True, False, False, False, False, True]
    np.testing.assert_array_equal(allowlist.allows_address(addresses), expected)
    np.testing.assert_array_equal(allowlist.allows_address(pd.Series(addresses)), expected)


def test_empty_allowlist_allows_nothing():
    assert Allowlist().allows_address(["10.0.0.1"]).tolist() == [False]
    assert Allowlist().allows_account(["a"]).tolist() == [False]


def test_check_reports_a_failing_test_case_on_its_line(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(GOOD.replace("reads = 20,", "reads = 200,"))
    assert check_ruleset(path, features=FEATURES) == [
        RuleProblem(str(path), 21, "rule many_reads test 2: expected false, got true"),
    ]


def test_unknown_builtin_name_lists_the_builtins():
    with pytest.raises(RuleSetError) as caught:
        load_ruleset("no_such_set")
    known = ", ".join(builtin_rulesets())
    assert caught.value.problems == [
        RuleProblem("no_such_set", None, f"no rule set named 'no_such_set'; built-in: {known}")
    ]


def test_missing_file_is_a_ruleset_error(tmp_path):
    missing = tmp_path / "nope.toml"
    with pytest.raises(RuleSetError) as caught:
        load_ruleset(missing)
    assert str(caught.value) == f"{missing}: file not found"


def test_builtins_include_default_and_strict():
    assert {"default", "strict"} <= set(builtin_rulesets())


# The whole shipped corpus: every file loads against the catalogue and its test cases pass.
SHIPPED = sorted((Path(__file__).parents[1] / "detector" / "rulesets").glob("*.toml"))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_every_shipped_rule_set_is_sound(path):
    problems = check_ruleset(path)
    assert problems == [], f"{path.name}:\n" + "\n".join(str(p) for p in problems)


@pytest.mark.parametrize("name", ["default", "strict"])
def test_builtin_names_load_the_shipped_files(name):
    ruleset = load_ruleset(name)
    assert ruleset.name == name
    assert Path(ruleset.path).name == f"{name}.toml"
    for rule in ruleset.rules:
        assert {test.expect for test in rule.tests} == {True, False}, rule.id
