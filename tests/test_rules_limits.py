"""Limits of rule files (issue 10, items 6-8 and 10): every hostile input is one located error.

The reproducers of the issue (90 nested parentheses, 2,000 `and` terms, a
`{events:>999999999999}` reason, a huge integer in a test case, a 50 MB file,
`events > ٥`) each gave a traceback or took seconds; here each is a problem
with file and line, from the library and from the CLI.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.cli import main
from detector.errors import RuleProblem, RuleSetError
from detector.rules import Allowlist, check_ruleset, load_ruleset, parse_expression
from detector.rules.expression import MAX_DEPTH, MAX_TOKENS
from detector.rules.loading import MAX_FILE_BYTES, MAX_RULES
from detector.rules.validation import MAX_FORMAT_PRECISION, MAX_FORMAT_WIDTH
from synthetic_logs.errors import ScenarioError
from synthetic_logs.scenario import MAX_SCENARIO_BYTES, builtin_dir, load_scenario

FEATURES = {"events", "records_touched", "own_median_records_touched"}
CONDITION = "records_touched > 10 * max(own_median_records_touched, 5)"
RULE_FILE = f"""[ruleset]
name = "limits"

[[rules]]
id = "many_reads"
title = "Many reads"
severity = "high"
technique = "T1213"
condition = "{CONDITION}"
reason = "touched {{records_touched}} records; own median {{own_median_records_touched}}"

[[rules.tests]]
features = {{ records_touched = 1240, own_median_records_touched = 3 }}
expect = true

[[rules.tests]]
features = {{ records_touched = 20, own_median_records_touched = 3 }}
expect = false
"""


def _write(tmp_path: Path, text: str, name: str = "rules.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _problems(text: str) -> list[str]:
    try:
        parse_expression(text, features=FEATURES)
    except RuleSetError as error:
        return [problem.message for problem in error.problems]
    return []


def _check(tmp_path: Path, text: str) -> list[str]:
    return [str(p) for p in check_ruleset(_write(tmp_path, text))]


def test_the_base_file_is_sound(tmp_path):
    assert _check(tmp_path, RULE_FILE) == []


# ------------------------------------------------------------------ item 6: depth and size


def test_ninety_nested_parentheses_are_one_located_error_in_rules_check(tmp_path):
    deep = "records_touched > " + "(" * 90 + "1" + ")" * 90
    path = _write(tmp_path, RULE_FILE.replace(CONDITION, deep))
    result = CliRunner().invoke(main, ["rules", "check", str(path)])
    assert result.exit_code == 1
    assert result.output == (
        f"{path}:9: rule many_reads: condition: nested too deeply: more than {MAX_DEPTH} levels "
        "of parentheses, function calls, 'not' or unary '-' (column 39)\n"
    )


def test_two_thousand_and_terms_are_one_located_error_in_rules_check(tmp_path):
    chain = " and ".join(["records_touched > 1"] * 2000)
    path = _write(tmp_path, RULE_FILE.replace(CONDITION, chain))
    result = CliRunner().invoke(main, ["rules", "check", str(path)])
    assert result.exit_code == 1
    # 64 terms of 3 tokens and 64 'and's make 256 tokens: the 65th term is one too many.
    column = len(" and ".join(["records_touched > 1"] * 65)) - len("records_touched > 1") + 1
    assert result.output == (
        f"{path}:9: rule many_reads: condition: too long: more than {MAX_TOKENS} tokens "
        f"(numbers, names, operators) (column {column})\n"
    )


def test_a_deep_rule_file_is_one_error_line_in_score(tmp_path, small_log):
    deep = "records_touched > " + "(" * 90 + "1" + ")" * 90
    path = _write(tmp_path, RULE_FILE.replace(CONDITION, deep))
    result = CliRunner().invoke(
        main,
        ["score", str(small_log), "--rules", str(path), "--mode", "rules"]
        + ["--out", str(tmp_path / "alerts.parquet")],
    )
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == (
        f"Error: {path}:9: rule many_reads: condition: nested too deeply: more than {MAX_DEPTH} "
        "levels of parentheses, function calls, 'not' or unary '-' (column 39)"
    )
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "opening, closing",
    [("(", ")"), ("abs(", ")"), ("-", ""), ("max(1, ", ")")],
)
def test_nesting_up_to_the_limit_parses_and_one_more_level_does_not(opening, closing):
    def nested(levels: int) -> str:
        return "events > " + opening * levels + "1" + closing * levels

    assert _problems(nested(MAX_DEPTH)) == []
    (message,) = _problems(nested(MAX_DEPTH + 1))
    assert message.startswith(f"condition: nested too deeply: more than {MAX_DEPTH} levels")


def test_not_counts_as_a_level():
    assert _problems("not " * MAX_DEPTH + "events > 1") == []
    (message,) = _problems("not " * (MAX_DEPTH + 1) + "events > 1")
    assert "nested too deeply" in message


def test_a_condition_of_max_tokens_parses_and_one_more_token_does_not():
    # "events > 1" is 3 tokens, each "+ 1" two more.
    at_limit = "events > 1" + " + 1" * ((MAX_TOKENS - 3) // 2)
    assert len(at_limit.split()) == MAX_TOKENS - (MAX_TOKENS - 3) % 2
    assert _problems(at_limit) == []
    over = "events > 1" + " + 1" * (MAX_TOKENS // 2)
    (message,) = _problems(over)
    assert message.startswith(f"condition: too long: more than {MAX_TOKENS} tokens")


def test_long_chains_within_the_limit_evaluate_and_print():
    # A left-deep chain as long as the token limit allows must survive every tree walk.
    import numpy as np

    chain = " or ".join(["events > 1"] * (MAX_TOKENS // 4))
    expression = parse_expression(chain, features=FEATURES)
    assert str(expression) == chain
    assert expression.evaluate({"events": np.array([0.0, 2.0])}).tolist() == [False, True]
    assert expression.features() == {"events"}


def test_a_huge_condition_is_refused_without_reading_all_of_it():
    (message,) = _problems("events > 1" + " + 1" * 1_000_000)
    assert message.startswith("condition: too long")


# ------------------------------------------------------------- item 10: ASCII digits and names


@pytest.mark.parametrize(
    "digit", ["\u0665", "\u096b", "\uff15", "\u00b2", "\u2464", "\U0001d7d3", "\u0f25"]
)
def test_only_ascii_digits_make_numbers(digit):
    (message,) = _problems(f"events > {digit}")
    assert message == (
        f"condition: unexpected character '{digit}' (U+{ord(digit):04X}); "
        "numbers are written with ASCII digits 0-9 (column 10)"
    )


def test_a_non_ascii_digit_inside_a_number_is_refused():
    (message,) = _problems("events > 1\u0665")
    assert message.startswith("condition: unexpected character '\u0665' (U+0665)")


@pytest.mark.parametrize(
    "name, column",
    [("\u00e9vents", 1), ("\u0435vents", 1), ("event\u0455", 6), ("ev\u200bents", 3)],
)
def test_identifiers_are_ascii_only(name, column):
    # Cyrillic look-alikes and zero-width characters never name a feature.
    (message,) = _problems(f"{name} > 1")
    assert message.startswith("condition: unexpected character")
    assert message.endswith(f"(column {column})")


def test_only_ascii_spaces_separate_tokens():
    (message,) = _problems("events\u00a0> 1")
    assert message == (
        "condition: unexpected character '\u00a0' (U+00A0); separate with ordinary spaces "
        "(column 7)"
    )
    assert _problems("events\t>\n1") == []


@pytest.mark.parametrize("char", ["\x1b", "\u202e", "\x00"])
def test_control_characters_in_a_condition_are_shown_escaped(char):
    (message,) = _problems(f"events > {char}1")
    assert char not in message
    assert message.startswith("condition: unexpected character '\\")


def test_rule_ids_and_techniques_are_ascii_and_whole(tmp_path):
    text = RULE_FILE.replace('technique = "T1213"', 'technique = "T\u0661\u0662\u0661\u0663"')
    assert _check(tmp_path, text) == [
        f"{tmp_path / 'rules.toml'}:8: rule many_reads: technique 'T\u0661\u0662\u0661\u0663' "
        "is not an ATT&CK id like T1078 or T1567.002"
    ]
    text = RULE_FILE.replace('id = "many_reads"', 'id = "many_reads\\n"')
    assert _check(tmp_path, text) == [
        f"{tmp_path / 'rules.toml'}:5: rule many_reads\\n: 'id' must be one line without "
        "control or bidirectional characters"
    ]


@pytest.mark.parametrize("key", ["title", "reason"])
@pytest.mark.parametrize("char", ["\\n", "\\u001b", "\\u202e", "\\u0000"])
def test_titles_and_reasons_are_one_line_without_controls(tmp_path, key, char):
    line = {"title": 6, "reason": 10}[key]
    # char is a TOML escape (backslash and letters), put inside the string as it is.
    text = re.sub(f'^{key} = "', lambda m: m.group() + char, RULE_FILE, flags=re.MULTILINE)
    assert _check(tmp_path, text) == [
        f"{tmp_path / 'rules.toml'}:{line}: rule many_reads: '{key}' must be one line without "
        "control or bidirectional characters"
    ]


def test_rules_list_shows_a_description_with_controls_escaped(tmp_path):
    text = RULE_FILE.replace('name = "limits"', 'name = "limits"\ndescription = "a\\u001b[2Jb"')
    path = _write(tmp_path, text)
    result = CliRunner().invoke(main, ["rules", "list", str(path)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "limits (1 rules): a\\x1b[2Jb"


def test_quoted_keys_with_controls_are_shown_escaped(tmp_path):
    # (An escaped key is not mapped to its line: the [ruleset] header's line is given.)
    text = RULE_FILE.replace('name = "limits"', 'name = "limits"\n"x\\u001b[2J" = 1')
    assert _check(tmp_path, text) == [
        f"{tmp_path / 'rules.toml'}:1: [ruleset]: unknown key 'x\\x1b[2J'; "
        "allowed: name, description"
    ]


# ---------------------------------------------------------------- item 7: reason templates


def _reason(tmp_path: Path, field: str) -> list[str]:
    text = RULE_FILE.replace("{records_touched}", field)
    return _check(tmp_path, text)


def test_the_issues_memory_error_template_is_a_located_error(tmp_path):
    assert _reason(tmp_path, "{records_touched:>999999999999}") == [
        f"{tmp_path / 'rules.toml'}:10: rule many_reads: reason: bad format spec "
        "'>999999999999' for 'records_touched': width 999999999999 is over 100"
    ]


@pytest.mark.parametrize(
    "spec, message",
    [
        (f">{MAX_FORMAT_WIDTH + 1}", f"width {MAX_FORMAT_WIDTH + 1} is over 100"),
        (f".{MAX_FORMAT_PRECISION + 1}f", f"precision {MAX_FORMAT_PRECISION + 1} is over 20"),
        (".999999999f", "precision 999999999 is over 20"),
        ("9" * 5000, "width 999999999999... is over 100"),  # past int()'s own digit limit
        ("\u0665", "not a format spec for numbers (e.g. '.0%', ',.1f', '>8')"),
        (">\u0665\u0665\u0665\u0665\u0665\u0665\u0665\u0665\u0665\u0665\u0665\u0665",
         "not a format spec for numbers (e.g. '.0%', ',.1f', '>8')"),
        ("{events}", "not a format spec for numbers (e.g. '.0%', ',.1f', '>8')"),
        (".2d", "Unknown format code 'd' for object of type 'float'"),
        ("s", "Unknown format code 's' for object of type 'float'"),
    ],
)  # fmt: skip
def test_format_specs_past_the_limits_or_not_for_numbers_are_refused(tmp_path, spec, message):
    (problem,) = _reason(tmp_path, f"{{records_touched:{spec}}}")
    shown = spec if len(spec) <= 24 else spec[:21] + "..."  # a long spec is cut
    assert problem == (
        f"{tmp_path / 'rules.toml'}:10: rule many_reads: reason: bad format spec '{shown}' "
        f"for 'records_touched': {message}"
    )


@pytest.mark.parametrize(
    "spec", [f">{MAX_FORMAT_WIDTH}", f".{MAX_FORMAT_PRECISION}f", ",.0f", ".0%", "*^+12,.3e", "_"]
)
def test_format_specs_within_the_limits_load_and_render(tmp_path, spec):
    path = _write(tmp_path, RULE_FILE.replace("{records_touched}", f"{{records_touched:{spec}}}"))
    rule = load_ruleset(path, features=FEATURES).rules[0]
    for value in (1240.0, -3.5, 1e300, float("inf")):
        reason = rule.render_reason({"records_touched": value, "own_median_records_touched": 3})
        assert reason.startswith("touched ")


@pytest.mark.parametrize(
    "field, message",
    [
        ("{records_touched.__class__}", "'{records_touched.__class__}' is not a feature name"),
        ("{records_touched[0]}", "'{records_touched[0]}' is not a feature name"),
        ("{records_touched.real}", "'{records_touched.real}' is not a feature name"),
        ("{0}", "'{0}' is not a feature name"),
        ("{}", "'{}' is not a feature name"),
        ("{r\u00e9cords}", "'{r\u00e9cords}' is not a feature name"),
        ("{records_touched!r}", "'{records_touched!r}': conversions are not supported"),
    ],
)
def test_attribute_index_and_conversion_fields_are_refused(tmp_path, field, message):
    assert _reason(tmp_path, field) == [
        f"{tmp_path / 'rules.toml'}:10: rule many_reads: reason: {message}"
    ]


def test_a_huge_integer_in_a_test_case_is_a_located_error(tmp_path):
    text = RULE_FILE.replace("records_touched = 20,", f"records_touched = 1{'0' * 400},")
    assert _check(tmp_path, text) == [
        f"{tmp_path / 'rules.toml'}:17: rule many_reads: test 2: feature 'records_touched' "
        "is too large for a number (over 1.8e308)"
    ]


@pytest.mark.parametrize("literal", ["1e999", "1" * 400, "9" * 309 + ".0"])
def test_a_number_literal_past_float64_is_refused(literal):
    shown = literal if len(literal) <= 40 else literal[:37] + "..."
    assert _problems(f"events > {literal}") == [
        f"condition: number '{shown}' is too large (column 10)"
    ]


def test_long_tokens_are_cut_in_messages():
    (message,) = _problems("events > 1 + " + "x" * 100_000)
    assert message == f"condition: unknown feature '{'x' * 37}...' (column 14)"


# ---------------------------------------------------------------- item 8: file size and count


def test_a_rule_file_over_the_size_cap_is_refused_before_parsing(tmp_path):
    padding = "#" * (MAX_FILE_BYTES - len(RULE_FILE.encode()) - 1) + "\n"
    at_cap = _write(tmp_path, RULE_FILE + padding, "at_cap.toml")
    assert at_cap.stat().st_size == MAX_FILE_BYTES
    assert check_ruleset(at_cap, features=FEATURES) == []
    over = _write(tmp_path, RULE_FILE + padding + "\n", "over.toml")
    expected = RuleProblem(
        str(over), None, "file is larger than 1,048,576 bytes (1 MiB), the limit for a rule file"
    )
    assert check_ruleset(over) == [expected]
    with pytest.raises(RuleSetError) as caught:
        load_ruleset(over)
    assert caught.value.problems == [expected]
    result = CliRunner().invoke(main, ["rules", "check", str(over)])
    assert (result.exit_code, result.output) == (1, f"{expected}\n")


def test_a_fifty_megabyte_rule_file_costs_one_megabyte_read(tmp_path):
    # Sparse: 50 MB on disk costs nothing to make; only the first MiB + 1 byte is read.
    path = tmp_path / "huge.toml"
    with path.open("wb") as file:
        file.truncate(50 * 1024 * 1024)
    (problem,) = check_ruleset(path)
    assert problem.message.startswith("file is larger than 1,048,576 bytes")


def test_more_than_max_rules_are_refused_before_any_rule_is_read(tmp_path):
    rule = RULE_FILE.split("[[rules]]")[1]
    header = '[ruleset]\nname = "many"\n'
    at_cap = _write(tmp_path, header + "".join(f"[[rules]]{rule}" for _ in range(MAX_RULES)))
    # At the cap the file is read (duplicate ids are then reported, not the count).
    assert "too many rules" not in " ".join(_check(tmp_path, at_cap.read_text()))
    over = header + "".join(f"[[rules]]{rule}" for _ in range(MAX_RULES + 1))
    (problem,) = _check(tmp_path, over)
    line = 3 + MAX_RULES * rule.count("\n")  # the header of rule number MAX_RULES + 1
    assert problem == (
        f"{tmp_path / 'rules.toml'}:{line}: too many rules: {MAX_RULES + 1}; "
        f"a rule file holds at most {MAX_RULES}"
    )


def test_a_scenario_file_over_the_size_cap_is_one_error_line(tmp_path):
    builtin = (builtin_dir() / "kairos_infostealer.toml").read_text(encoding="utf-8")
    padding = "#" * (MAX_SCENARIO_BYTES - len(builtin.encode()) - 1) + "\n"
    at_cap = _write(tmp_path, builtin + padding, "at_cap.toml")
    assert load_scenario(at_cap).name == load_scenario("kairos_infostealer").name
    over = _write(tmp_path, builtin + padding + "\n", "over.toml")
    message = f"{over}: file is larger than 1,048,576 bytes (1 MiB), the limit for a scenario file"
    with pytest.raises(ScenarioError) as caught:
        load_scenario(over)
    assert str(caught.value) == message
    result = CliRunner().invoke(
        main, ["generate", "--out", str(tmp_path / "l.parquet"), "--scenario", str(over)]
    )
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == f"Error: {message}"


# ------------------------------------------------------- allowlist of many networks


_V4 = st.builds(ipaddress.IPv4Address, st.integers(0, 2**32 - 1))
_V6 = st.builds(ipaddress.IPv6Address, st.integers(0, 2**128 - 1))


def _network(address, prefix) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(f"{address}/{prefix}", strict=False)


_NETWORKS = st.one_of(
    st.builds(_network, _V4, st.integers(0, 32)), st.builds(_network, _V6, st.integers(0, 128))
)


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(
    st.lists(_NETWORKS, max_size=12),
    st.lists(st.one_of(_V4.map(str), _V6.map(str), st.sampled_from(["x", "", " 10.0.0.1 "]))),
)
def test_allowlist_bisection_agrees_with_testing_each_network(networks, addresses):
    # A 1 MiB file can list ~70,000 networks: addresses are found by bisection over
    # merged ranges, which must say exactly what testing every network says.
    def naive(address: str) -> bool:
        try:
            parsed = ipaddress.ip_address(address.strip())
        except ValueError:
            return False
        return any(parsed in network for network in networks)

    allowlist = Allowlist(frozenset(), tuple(networks))
    assert allowlist.allows_address(addresses).tolist() == [naive(a) for a in addresses]


def test_an_allowlist_of_many_networks_loads_and_matches(tmp_path):
    networks = ", ".join(f'"10.{i // 256}.{i % 256}.0/24"' for i in range(20_000))
    text = RULE_FILE.replace(
        'name = "limits"\n', f'name = "limits"\n\n[allowlist]\nnetworks = [{networks}]\n', 1
    )
    allowlist = load_ruleset(_write(tmp_path, text), features=FEATURES).allowlist
    assert len(allowlist.networks) == 20_000
    assert allowlist.allows_address(["10.78.31.200", "10.79.0.1", "11.0.0.1"]).tolist() == [
        True,
        False,
        False,
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            b"x = " + b"[" * 2000 + b"]" * 2000 + b"\n",
            "invalid TOML: arrays or tables nested too deeply",
        ),
        (b"x = " + b"9" * 5000 + b"\n", "invalid TOML: an integer has more than 4,300 digits"),
        (b'name = "caf\xe9"\n', "not UTF-8 text: invalid continuation byte at byte 11"),
    ],
    ids=["deep_nesting", "huge_integer", "not_utf8"],
)
def test_a_hostile_scenario_file_is_one_error_line(tmp_path, content, message):
    path = tmp_path / "hostile.toml"
    path.write_bytes(content)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert str(caught.value).startswith(f"{path}: {message}")
    result = CliRunner().invoke(
        main, ["generate", "--out", str(tmp_path / "l.parquet"), "--scenario", str(path)]
    )
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {path}: {message}")
    assert result.output.count("\n") == 1
