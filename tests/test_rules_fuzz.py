"""Property-based fuzzing of the rule language (issue 10, Testing).

Whatever the text, `parse_expression` gives a typed tree or raises `RuleSetError`
whose problems are each one located line (`path:line: ... (column N)`), never
another exception and never a raw control character, within the per-case
`deadline`. A parsed tree prints as text that parses back to the same tree and
evaluates on columns holding NaN and infinities. Whole rule files built around
fuzzed conditions, reasons and test values give only `RuleProblem`s too.

The default suite runs a few hundred derandomised examples per property (a few
seconds); the `slow` variants run many more, randomly (`pytest -m slow`).
"""

from __future__ import annotations

import json
import re
from datetime import timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detector.errors import RuleProblem, RuleSetError
from detector.rules import check_ruleset, parse_expression
from detector.rules.expression import Expr
from detector.rules.lines import scan_blocks

FEATURES = ("events", "records_touched", "own_median_records_touched", "night_share")
_LOCATED = re.compile(r"^<fuzz>:7: condition: [^\n]+ \(column (\d+)\)$")
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")

# Generous for a 2-core machine shared by several sessions: a case takes milliseconds;
# the deadline catches a blow-up (seconds, unbounded recursion or memory), not jitter.
DEADLINE = timedelta(seconds=2)
FAST = settings(
    max_examples=250,
    deadline=DEADLINE,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
THOROUGH = settings(
    max_examples=5000,
    deadline=DEADLINE,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# ---------------------------------------------------------------------- strategies

_NUMBERS = st.one_of(
    st.integers(0, 10**6).map(str),
    st.floats(0, 1e6, allow_nan=False).map(repr),
    st.sampled_from(
        ["0", "1_000", "1e3", ".5", "1.", "1e", "1e+", "1e999", "1" * 400, "0x1f", "1__0",
         "1.2.3", "nan", "inf", "١", "٥", "５", "²", "1٥", "9" * 5000, "1e-999", "00"]
    ),
)  # fmt: skip
_NAMES = st.one_of(
    st.sampled_from(FEATURES),
    st.sampled_from(["recordz", "évents", "еvents", "_", "min", "max", "abs", "and", "AND",
                     "Not", "maxi", "x" * 300]),
)  # fmt: skip
_OPERATORS = st.sampled_from(
    ["+", "-", "*", "/", "<", "<=", ">", ">=", "==", "!=", "=", "&", "|", "!", "and", "or"]
)
_ODD = st.sampled_from(
    ["(", ")", ",", "\x1b", "\u202e", "\x00", "\n", "\u00a0", "\u200b", "'", '"', "{", "$"]
)


def _atom() -> st.SearchStrategy[str]:
    return st.one_of(_NUMBERS, _NAMES)


def _expression() -> st.SearchStrategy[str]:
    """Near-valid conditions: arithmetic, comparisons, logic, calls, with a few odd parts."""

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.tuples(inner, _OPERATORS, inner).map(" ".join),
            inner.map(lambda e: f"({e})"),
            inner.map(lambda e: f"not {e}"),
            inner.map(lambda e: f"-{e}"),
            st.tuples(
                st.sampled_from(["min", "max", "abs", "maxi"]), st.lists(inner, max_size=4)
            ).map(lambda c: f"{c[0]}({', '.join(c[1])})"),
            st.tuples(inner, _ODD, inner).map("".join),
        )

    return st.recursive(_atom(), extend, max_leaves=40)


def _nested() -> st.SearchStrategy[str]:
    """Deep nesting of every recursive form, balanced or not, around a comparison."""
    return st.tuples(
        st.sampled_from(["(", "not ", "-", "abs(", "max(1, ", "(not "]),
        st.integers(0, 300),
        st.integers(0, 300),
    ).map(lambda t: "events > " + t[0] * t[1] + "1" + ")" * t[2])


def _chain() -> st.SearchStrategy[str]:
    """Long and/or chains, up to the issue's 2,000 terms and beyond."""
    return st.tuples(
        st.sampled_from([" and ", " or ", " + ", " * ", " and not "]),
        st.integers(1, 3000),
        st.sampled_from(["events > 1", "(events > 1)", "events", "1"]),
    ).map(lambda t: t[0].join([t[2]] * t[1]) + (" > 0" if t[0] in (" + ", " * ") else ""))


def _mutated() -> st.SearchStrategy[str]:
    """A valid condition with one slice replaced by random text."""
    base = "records_touched > 10 * max(own_median_records_touched, 5) and not (night_share < 0.5)"
    return st.tuples(st.integers(0, len(base)), st.integers(0, 10), st.text(max_size=8)).map(
        lambda t: base[: t[0]] + t[2] + base[t[0] + t[1] :]
    )


# ---------------------------------------------------------------------- properties


def _columns() -> dict[str, np.ndarray]:
    values = np.array([0.0, 1.0, -2.5, 1e300, np.inf, -np.inf, np.nan])
    return {name: values for name in FEATURES}


def _check_condition(text: str) -> None:
    """Parsed and sound, or refused with located one-line problems; nothing else."""
    try:
        tree = parse_expression(text, path="<fuzz>", line=7, features=FEATURES)
    except RuleSetError as error:
        assert error.problems
        for problem in error.problems:
            assert isinstance(problem, RuleProblem)
            shown = str(problem)
            match = _LOCATED.match(shown)
            assert match, shown
            assert 1 <= int(match.group(1)) <= len(text) + 1, shown
            assert not _UNSAFE.search(shown), shown
        return
    assert isinstance(tree, Expr) and tree.is_boolean
    assert tree.features() <= set(FEATURES)
    assert parse_expression(str(tree), features=FEATURES) == tree
    fired = tree.evaluate(_columns())
    assert fired.dtype == bool and fired.shape in ((), (7,))


_ANY_TEXT = st.text(max_size=300)
_STRUCTURED = st.one_of(_expression(), _nested(), _chain(), _mutated())


@FAST
@given(_ANY_TEXT)
def test_any_text_parses_or_gives_located_problems(text):
    _check_condition(text)


@FAST
@given(_STRUCTURED)
def test_near_valid_conditions_parse_or_give_located_problems(text):
    _check_condition(text)


@pytest.mark.slow
@THOROUGH
@given(st.one_of(_ANY_TEXT, _STRUCTURED))
def test_conditions_thoroughly(text):
    _check_condition(text)


# ------------------------------------------------------------- whole rule files


def _toml_string(text: str) -> str:
    """A TOML basic string holding ``text`` exactly (JSON's escapes, minus surrogate pairs)."""
    body = json.dumps(text, ensure_ascii=False)[1:-1]
    return '"' + body.replace("\x7f", "\\u007f") + '"'


_SPECS = st.one_of(
    st.text(max_size=12),
    st.tuples(
        st.sampled_from(["", "<", ">", "*^", "0=", "\x1b>", "٥>"]),
        st.sampled_from(["", "+", " ", "z", "#", "0"]),
        st.one_of(st.just(""), st.integers(0, 10**15).map(str), st.just("9" * 5000)),
        st.sampled_from(["", ",", "_"]),
        st.one_of(st.just(""), st.integers(0, 10**12).map(lambda p: f".{p}")),
        st.sampled_from(["", "f", "e", "g", "%", "d", "s", "n", "c", "x", "q"]),
    ).map("".join),
)
_REASONS = st.one_of(
    st.text(max_size=60),
    st.tuples(st.sampled_from([*FEATURES, "x.y", "events[0]", "", "0", "events!r"]), _SPECS).map(
        lambda t: f"saw {{{t[0]}:{t[1]}}} here"
    ),
)
_VALUES = st.one_of(
    st.integers(-(10**400), 10**400).map(str),
    st.floats().map(lambda v: "nan" if v != v else repr(v).replace("inf", "inf")),
    st.sampled_from(["1" + "0" * 5000, "true", '"12"', "[1]", "{a = 1}", "1979-05-27"]),
)


def _rule_file(condition: str, reason: str, value: str) -> str:
    return f"""[ruleset]
name = "fuzz"

[[rules]]
id = "fuzzed"
title = "Fuzzed"
severity = "high"
technique = "T1213"
condition = {_toml_string(condition)}
reason = {_toml_string(reason)}

[[rules.tests]]
features = {{ events = {value}, records_touched = 1, own_median_records_touched = 1, night_share = 0 }}
expect = true

[[rules.tests]]
features = {{ events = 0, records_touched = 0, own_median_records_touched = 0, night_share = 0 }}
expect = false
"""


@pytest.fixture(scope="module")
def rule_path(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz") / "fuzz.toml"


def _check_file(path, condition: str, reason: str, value: str) -> None:
    path.write_text(_rule_file(condition, reason, value), encoding="utf-8")
    for problem in check_ruleset(path, features=FEATURES):
        assert isinstance(problem, RuleProblem)
        shown = str(problem)
        assert shown.startswith(f"{path}") and "\n" not in shown and "\r" not in shown
        assert not _UNSAFE.search(shown), shown


@FAST
@given(st.one_of(_STRUCTURED, _ANY_TEXT), _REASONS, _VALUES)
def test_fuzzed_rule_files_give_only_rule_problems(rule_path, condition, reason, value):
    _check_file(rule_path, condition, reason, value)


@pytest.mark.slow
@THOROUGH
@given(st.one_of(_STRUCTURED, _ANY_TEXT), _REASONS, _VALUES)
def test_fuzzed_rule_files_thoroughly(rule_path, condition, reason, value):
    _check_file(rule_path, condition, reason, value)


# ------------------------------------------------------------- line scanning


@settings(max_examples=30, deadline=DEADLINE, derandomize=True, database=None)
@given(st.integers(0, 60_000), st.sampled_from([" ", "\t"]), st.sampled_from([". x]", "!"]))
def test_headers_with_long_runs_of_spaces_are_scanned_in_linear_time(spaces, space, end):
    # "[ruleset      . x]" is valid TOML; the former header pattern backtracked
    # quadratically on the run of spaces (9 s for 32,000; the deadline catches that).
    text = f"[ruleset{space * spaces}{end}\nname = 1\n"
    expected = (
        [("", 1, {}), ("ruleset.x", 1, {"name": 2})] if end != "!" else [("", 1, {"name": 2})]
    )
    assert [(b.name, b.line, b.keys) for b in scan_blocks(text)] == expected
