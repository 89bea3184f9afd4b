"""The condition language: parsing, precedence, typing, vectorised three-valued evaluation."""

import numpy as np
import pytest

from detector.errors import DetectorError, RuleProblem, RuleSetError
from detector.rules import parse_expression

NAMES = {"a", "b", "c", "d"}


def parse(text: str, boolean: bool = True):
    return parse_expression(text, features=NAMES, boolean=boolean)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("a + b * c > 1", "a + b * c > 1"),
        ("(a + b) * c > 1", "(a + b) * c > 1"),
        ("a - b - c > 1", "a - b - c > 1"),
        ("a - (b - c) > 1", "a - (b - c) > 1"),
        ("a / b / c > 1", "a / b / c > 1"),
        ("a / (b * c) > 1", "a / (b * c) > 1"),
        ("-a * -b > 1_000", "-a * -b > 1000"),
        ("-(a + b) >= 1e3", "-(a + b) >= 1000"),
        ("a > 0.5 or b > 1 and c > 2", "a > 0.5 or b > 1 and c > 2"),
        ("(a > 0.5 or b > 1) and c > 2", "(a > 0.5 or b > 1) and c > 2"),
        ("not a > 1 and b > 1", "not a > 1 and b > 1"),
        ("not (a > 1 and b > 1)", "not (a > 1 and b > 1)"),
        ("a > 1 and (b > 1 and c > 1)", "a > 1 and (b > 1 and c > 1)"),
        ("max(a,b,  3) > abs(min(c, -d))", "max(a, b, 3) > abs(min(c, -d))"),
    ],
)
def test_canonical_text_shows_precedence_and_round_trips(text, canonical):
    expr = parse(text)
    assert str(expr) == canonical
    assert parse(str(expr)) == expr


def test_arithmetic_is_left_associative():
    assert str(parse("a - b - c", boolean=False).left) == "a - b"
    assert str(parse("a / b * c", boolean=False).left) == "a / b"


RNG = np.random.default_rng(7)
COLUMNS = {name: RNG.normal(0, 10, 200) for name in sorted(NAMES)}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a + b * c - d / 2", lambda a, b, c, d: a + b * c - d / 2),
        ("-(a - b) * 3", lambda a, b, c, d: -(a - b) * 3),
        (
            "max(a, b, c) - min(c, d)",
            lambda a, b, c, d: np.maximum(np.maximum(a, b), c) - np.minimum(c, d),
        ),
        ("abs(a) / 4", lambda a, b, c, d: np.abs(a) / 4),
    ],
)
def test_numeric_evaluation_matches_numpy(text, expected):
    np.testing.assert_allclose(parse(text, boolean=False).evaluate(COLUMNS), expected(**COLUMNS))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a > b and not c <= 0 or d == d", lambda a, b, c, d: ((a > b) & ~(c <= 0)) | (d == d)),
        ("a < 1 or b >= 2 and c != 3", lambda a, b, c, d: (a < 1) | ((b >= 2) & (c != 3))),
        ("a * 2 > b + c", lambda a, b, c, d: a * 2 > b + c),
    ],
)
def test_boolean_evaluation_matches_numpy(text, expected):
    result = parse(text).evaluate(COLUMNS)
    assert result.dtype == bool
    np.testing.assert_array_equal(result, expected(**COLUMNS))


def test_division_by_zero_gives_inf_and_nan_without_warnings():
    columns = {"a": np.array([1.0, 0.0, -1.0]), "b": np.zeros(3)}
    with np.errstate(all="raise"):
        values = parse("a / b", boolean=False).evaluate(columns)
    np.testing.assert_array_equal(values, [np.inf, np.nan, -np.inf])


NAN = np.nan


@pytest.mark.parametrize(
    ("text", "a", "expected"),
    [
        ("a > 1", [NAN, 2.0, 0.0], [False, True, False]),
        ("a != 1", [NAN, 2.0, 1.0], [False, True, False]),
        ("not a > 1", [NAN, 2.0, 0.0], [False, False, True]),
        ("not (a > 1 and b > 0)", [NAN, 2.0, 0.0], [False, False, True]),
        # Kleene: a known-true side decides an "or", a known-false side an "and".
        ("a > 1 or b > 0", [NAN, NAN, 0.0], [True, True, True]),
        ("a > 1 and b < 0", [NAN, NAN, 5.0], [False, False, False]),
        ("not (a > 1 and b < 0)", [NAN, NAN, 5.0], [True, True, True]),
        ("not (a > 1 or b < 0)", [NAN, NAN, 5.0], [False, False, False]),
        # max/min propagate a missing value instead of falling back to the floor.
        ("max(a, 5) > 1", [NAN, 2.0, 0.0], [False, True, True]),
        ("a / 0 > 1", [1.0, 0.0, -1.0], [True, False, False]),
    ],
)
def test_missing_data_never_fires(text, a, expected):
    columns = {"a": np.array(a), "b": np.ones(3), "c": np.ones(3), "d": np.ones(3)}
    np.testing.assert_array_equal(parse(text).evaluate(columns), expected)


def test_features_lists_every_name_once():
    assert parse("a > 1 and max(b, a) < abs(c)").features() == frozenset({"a", "b", "c"})


def test_missing_column_at_evaluation_names_it():
    with pytest.raises(DetectorError, match="the feature table has no column 'b'"):
        parse("a > b").evaluate({"a": np.ones(2)})


def test_catalogue_is_the_default_vocabulary():
    assert parse_expression("records_read > 2 * caseload_size").features() == {
        "records_read",
        "caseload_size",
    }
    with pytest.raises(RuleSetError, match="unknown feature 'a'"):
        parse_expression("a > 1")


@pytest.mark.parametrize(
    ("text", "messages"),
    [
        ("", ["is empty (column 1)"]),
        (
            "a < b < c",
            ["comparisons do not chain: '<' follows '<'; write 'a < b and b < c' (column 7)"],
        ),
        ("a > 1 and", ["dangling operator 'and': nothing follows it (column 7)"]),
        ("a +", ["dangling operator '+': nothing follows it (column 3)"]),
        ("a > * 2", ["unexpected '*'; expected a number, a feature name or '(' (column 5)"]),
        ("(a > 1", ["unbalanced parenthesis: '(' at column 1 is never closed (column 7)"]),
        ("a > 1)", ["unbalanced parenthesis: ')' has no matching '(' (column 6)"]),
        ("max(a, b > 1", ["unbalanced parenthesis: '(' at column 4 is never closed (column 13)"]),
        ("a > 1 $ 2", ["unexpected character '$' (column 7)"]),
        ("a = 1", ["unexpected character '='; use '==' to compare (column 3)"]),
        ("a > 1 && b > 1", ["unexpected character '&'; use 'and' (column 7)"]),
        (
            "a > 1 AND b > 1",
            ["unexpected 'AND' after a complete expression; write 'and' (column 7)"],
        ),
        ("a > 1__0", ["malformed number '1__0' (column 5)"]),
        ("a > 3x", ["malformed number '3x' (column 5)"]),
        (
            "zz > 1 and yy < 2",
            ["unknown feature 'zz' (column 1)", "unknown feature 'yy' (column 12)"],
        ),
        ("log(a) > 1", ["unknown function 'log'; functions: abs, max, min (column 1)"]),
        ("abs(a, b) > 1", ["abs() takes 1 argument, got 2 (column 1)"]),
        ("max(a) > 1", ["max() needs at least 2 arguments, got 1 (column 1)"]),
        ("a + (b > 1) > 2", ["'+' needs a number, got a condition 'b > 1' (column 8)"]),
        ("a and b > 1", ["'and' needs a condition, got a number 'a' (column 1)"]),
        ("not a", ["'not' needs a condition, got a number 'a' (column 5)"]),
        ("max(a, b > 1) > 0", ["max() needs a number, got a condition 'b > 1' (column 10)"]),
        (
            "a * 2",
            ["must be a comparison or a combination of comparisons, got a number (column 1)"],
        ),
        ("1 < 2", ["names no feature: it would be constant (column 1)"]),
    ],
)
def test_each_error_is_reported_with_file_line_and_column(text, messages):
    with pytest.raises(RuleSetError) as caught:
        parse_expression(
            text, path="rules.toml", line=12, features=NAMES, context="rule x: condition"
        )
    assert caught.value.problems == [
        RuleProblem("rules.toml", 12, f"rule x: condition: {message}") for message in messages
    ]
