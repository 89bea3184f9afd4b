"""The condition language of rule sets: tokenizer, recursive-descent parser, vectorised evaluation.

Grammar, loosest binding first (no ``eval``, no ``ast``)::

    condition  := or_expr
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | comparison
    comparison := sum (("<" | "<=" | ">" | ">=" | "==" | "!=") sum)?     # never chained
    sum        := product (("+" | "-") product)*
    product    := unary (("*" | "/") unary)*
    unary      := "-" unary | primary
    primary    := NUMBER | FEATURE | FUNCTION "(" or_expr ("," or_expr)* ")" | "(" or_expr ")"

Every node is typed: numeric (float64 arrays) or boolean. Arithmetic is float64 with
numpy's warnings silenced: x/0 is inf, 0/0 is nan.

Missing data never fires a rule. Boolean nodes use three-valued logic: a comparison
involving NaN is *unknown*; ``not unknown`` is unknown; ``and``/``or`` follow Kleene
(``False and unknown`` is False, ``True or unknown`` is True). A condition fires only
where it is known to be true, i.e. where it would be true whatever the missing values
were. ``min`` and ``max`` propagate NaN for the same reason (a missing baseline in
``max(own_median_x, 5)`` stays missing instead of becoming the floor).
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

import numpy as np

from detector.errors import DetectorError, RuleProblem, RuleSetError
from detector.textsafe import visible

KEYWORDS = frozenset({"and", "or", "not"})
FUNCTIONS = {"min": np.minimum, "max": np.maximum, "abs": np.abs}
COMPARISONS = {
    "<": np.less,
    "<=": np.less_equal,
    ">": np.greater,
    ">=": np.greater_equal,
    "==": np.equal,
    "!=": np.not_equal,
}
ARITHMETIC = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide}

# Binding strength, used by __str__ to print only the parentheses the tree needs.
_PRECEDENCE = {"or": 1, "and": 2, "not": 3, "compare": 4, "+": 5, "-": 5, "*": 6, "/": 6}
_UNARY_MINUS, _ATOM = 7, 8

Truth = tuple[np.ndarray, np.ndarray]  # (known true, known false); neither means unknown


# --------------------------------------------------------------------------- nodes


@dataclass(frozen=True)
class Expr:
    """Base of the expression tree. ``column`` is 1-based in the condition text."""

    column: int = field(default=0, compare=False, kw_only=True)

    is_boolean = False
    precedence = _ATOM

    def evaluate(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """Float64 values for numeric nodes; for boolean nodes, where it is known true."""
        if self.is_boolean:
            return self.truth(columns)[0]
        return self.values(columns)

    def values(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def truth(self, columns: Mapping[str, np.ndarray]) -> Truth:
        raise NotImplementedError

    def features(self) -> frozenset[str]:
        """The feature names this expression reads."""
        return frozenset().union(*(child.features() for child in self.children()))

    def children(self) -> tuple[Expr, ...]:
        return ()


def _wrap(child: Expr, parent_precedence: int, *, strict: bool = False) -> str:
    """The child's text, parenthesised when it binds more loosely than its parent."""
    needs = (
        child.precedence <= parent_precedence if strict else child.precedence < parent_precedence
    )
    return f"({child})" if needs else str(child)


@dataclass(frozen=True)
class Number(Expr):
    value: float

    def values(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        return np.asarray(self.value, dtype=np.float64)

    def __str__(self) -> str:
        if self.value.is_integer():
            return str(int(self.value))
        return repr(self.value)


@dataclass(frozen=True)
class Feature(Expr):
    name: str

    def values(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        try:
            column = columns[self.name]
        except KeyError:
            raise DetectorError(f"the feature table has no column '{self.name}'") from None
        return np.asarray(column, dtype=np.float64)

    def features(self) -> frozenset[str]:
        return frozenset({self.name})

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Negate(Expr):
    operand: Expr
    precedence = _UNARY_MINUS

    def values(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        return np.negative(self.operand.values(columns))

    def children(self) -> tuple[Expr, ...]:
        return (self.operand,)

    def __str__(self) -> str:
        return f"-{_wrap(self.operand, self.precedence)}"


@dataclass(frozen=True)
class Arithmetic(Expr):
    op: str
    left: Expr
    right: Expr

    @property
    def precedence(self) -> int:  # type: ignore[override]
        return _PRECEDENCE[self.op]

    def values(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        with np.errstate(all="ignore"):
            return ARITHMETIC[self.op](self.left.values(columns), self.right.values(columns))

    def children(self) -> tuple[Expr, ...]:
        return (self.left, self.right)

    def __str__(self) -> str:
        p = self.precedence
        return f"{_wrap(self.left, p)} {self.op} {_wrap(self.right, p, strict=True)}"


@dataclass(frozen=True)
class Call(Expr):
    function: str
    arguments: tuple[Expr, ...]

    def values(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        values = [argument.values(columns) for argument in self.arguments]
        if self.function == "abs":
            return np.abs(values[0])
        combine = FUNCTIONS[self.function]
        result = values[0]
        for value in values[1:]:  # over the few arguments, not over rows
            result = combine(result, value)
        return result

    def children(self) -> tuple[Expr, ...]:
        return self.arguments

    def __str__(self) -> str:
        return f"{self.function}({', '.join(str(a) for a in self.arguments)})"


@dataclass(frozen=True)
class Compare(Expr):
    op: str
    left: Expr
    right: Expr
    is_boolean = True
    precedence = _PRECEDENCE["compare"]

    def truth(self, columns: Mapping[str, np.ndarray]) -> Truth:
        left, right = self.left.values(columns), self.right.values(columns)
        known = ~(np.isnan(left) | np.isnan(right))
        holds = COMPARISONS[self.op](left, right)
        return holds & known, ~holds & known

    def children(self) -> tuple[Expr, ...]:
        return (self.left, self.right)

    def __str__(self) -> str:
        p = self.precedence
        return f"{_wrap(self.left, p, strict=True)} {self.op} {_wrap(self.right, p, strict=True)}"


@dataclass(frozen=True)
class Not(Expr):
    operand: Expr
    is_boolean = True
    precedence = _PRECEDENCE["not"]

    def truth(self, columns: Mapping[str, np.ndarray]) -> Truth:
        true, false = self.operand.truth(columns)
        return false, true

    def children(self) -> tuple[Expr, ...]:
        return (self.operand,)

    def __str__(self) -> str:
        return f"not {_wrap(self.operand, self.precedence)}"


@dataclass(frozen=True)
class Logical(Expr):
    op: str  # "and" | "or"
    left: Expr
    right: Expr
    is_boolean = True

    @property
    def precedence(self) -> int:  # type: ignore[override]
        return _PRECEDENCE[self.op]

    def truth(self, columns: Mapping[str, np.ndarray]) -> Truth:
        left_true, left_false = self.left.truth(columns)
        right_true, right_false = self.right.truth(columns)
        if self.op == "and":
            return left_true & right_true, left_false | right_false
        return left_true | right_true, left_false & right_false

    def children(self) -> tuple[Expr, ...]:
        return (self.left, self.right)

    def __str__(self) -> str:
        p = self.precedence
        return f"{_wrap(self.left, p)} {self.op} {_wrap(self.right, p, strict=True)}"


# ----------------------------------------------------------------------- tokenizer


@dataclass(frozen=True)
class Token:
    kind: str  # "number", "name", "op", "(", ")", ",", "end"
    text: str
    column: int


# ASCII only: Python's \d, \s and float() also accept other scripts' digits ("٥")
# and spaces, which a reader of the rule would not take for what they mean.
_TOKEN = re.compile(
    r"""
    (?P<space>[ \t\r\n]+)
    | (?P<number>(?:[0-9]|\.[0-9])(?:[eE][+-]|[0-9A-Za-z_.])*)   # validated by float() below
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<op><=|>=|==|!=|[<>+\-*/])
    | (?P<punct>[(),])
    """,
    re.VERBOSE | re.ASCII,
)

# Limits that keep parsing and every walk over the tree far from Python's recursion
# limit (a RecursionError traceback at ~90 nested parentheses without them), and the
# cost of a hostile condition small. Shipped rules use under 70 tokens and 4 levels.
MAX_TOKENS = 256
MAX_DEPTH = 20

_HINTS = {"=": "; use '==' to compare", "&": "; use 'and'", "|": "; use 'or'", "!": "; use 'not'"}


class _Syntax(Exception):
    """A problem that stops parsing; carries the column it was found at."""

    def __init__(self, message: str, column: int):
        super().__init__(message)
        self.message, self.column = message, column


def _clip(text: str, limit: int = 40) -> str:
    """A token for an error message: at most ``limit`` characters, so the message stays a line."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(char: str) -> str:
    """A character for an error message, visible even when it is a control or a look-alike."""
    if char.isascii():
        return f"'{visible(char)}'{_HINTS.get(char, '')}"
    shown = f"'{visible(char)}' (U+{ord(char):04X})"
    if char.isdigit() or char.isnumeric():
        return f"{shown}; numbers are written with ASCII digits 0-9"
    if char.isspace():
        return f"{shown}; separate with ordinary spaces"
    return shown


def tokenize(text: str) -> list[Token]:
    """Split a condition into tokens, ending with an ``end`` token.

    Stops at the first problem: an unexpected character, a malformed number, or more
    than ``MAX_TOKENS`` tokens (so a huge condition costs no more than a long one).
    """
    tokens: list[Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        column = position + 1
        if match is None:
            char = text[position]
            raise _Syntax(f"unexpected character {_describe(char)}", column)
        kind, value = match.lastgroup, match.group()
        if kind == "number":
            try:
                number = float(value)
            except ValueError:
                raise _Syntax(f"malformed number '{_clip(value)}'", column) from None
            if not math.isfinite(number):
                raise _Syntax(f"number '{_clip(value)}' is too large", column)
        if kind == "punct":
            kind = value
        if kind != "space":
            if len(tokens) == MAX_TOKENS:
                raise _Syntax(
                    f"too long: more than {MAX_TOKENS} tokens (numbers, names, operators)",
                    column,
                )
            tokens.append(Token(kind, value, column))
        position = match.end()
    tokens.append(Token("end", "", len(text) + 1))
    return tokens


# -------------------------------------------------------------------------- parser


class _Parser:
    """Recursive descent over the token list. Syntax errors stop it (raised as ``_Syntax``);
    unknown names and type errors are collected so one pass reports them all."""

    def __init__(self, tokens: list[Token], features: Collection[str]):
        self.tokens = tokens
        self.position = 0
        self.features = features
        self.problems: list[tuple[str, int]] = []
        self.depth = 0  # open parentheses, calls, 'not' and unary '-' around the position

    # token helpers
    def peek(self) -> Token:
        return self.tokens[self.position]

    def advance(self) -> Token:
        token = self.tokens[self.position]
        self.position += 1
        return token

    def at_op(self, *ops: str) -> bool:
        token = self.peek()
        return token.kind in ("op", "name") and token.text in ops

    def enter(self, token: Token) -> None:
        """One level deeper (at ``token``); a ``_Syntax`` past ``MAX_DEPTH``."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _Syntax(
                f"nested too deeply: more than {MAX_DEPTH} levels of parentheses, "
                "function calls, 'not' or unary '-'",
                token.column,
            )

    def expect_type(self, node: Expr, boolean: bool, what: str) -> None:
        if node.is_boolean != boolean:
            wanted, got = ("a condition", "a number") if boolean else ("a number", "a condition")
            self.problems.append((f"{what} needs {wanted}, got {got} '{node}'", node.column))

    # grammar
    def parse(self) -> Expr:
        if self.peek().kind == "end":
            raise _Syntax("is empty", 1)
        node = self.or_expr()
        token = self.peek()
        if token.kind == ")":
            raise _Syntax("unbalanced parenthesis: ')' has no matching '('", token.column)
        if token.kind != "end":
            hint = f"; write '{token.text.lower()}'" if token.text.lower() in KEYWORDS else ""
            raise _Syntax(
                f"unexpected '{_clip(token.text)}' after a complete expression{hint}", token.column
            )
        return node

    def binary_logical(self, op: str, operand) -> Expr:
        node = operand()
        while self.at_op(op):
            token = self.advance()
            right = operand()
            self.expect_type(node, True, f"'{op}'")
            self.expect_type(right, True, f"'{op}'")
            node = Logical(op, node, right, column=token.column)
        return node

    def or_expr(self) -> Expr:
        return self.binary_logical("or", self.and_expr)

    def and_expr(self) -> Expr:
        return self.binary_logical("and", self.not_expr)

    def not_expr(self) -> Expr:
        if self.at_op("not"):
            token = self.advance()
            self.enter(token)
            operand = self.not_expr()
            self.depth -= 1
            self.expect_type(operand, True, "'not'")
            return Not(operand, column=token.column)
        return self.comparison()

    def comparison(self) -> Expr:
        node = self.sum()
        if self.peek().kind == "op" and self.peek().text in COMPARISONS:
            token = self.advance()
            right = self.sum()
            for side in (node, right):
                self.expect_type(side, False, f"'{token.text}'")
            node = Compare(token.text, node, right, column=token.column)
            if self.peek().kind == "op" and self.peek().text in COMPARISONS:
                raise _Syntax(
                    f"comparisons do not chain: '{self.peek().text}' follows '{token.text}'; "
                    "write 'a < b and b < c'",
                    self.peek().column,
                )
        return node

    def binary_arithmetic(self, ops: tuple[str, ...], operand) -> Expr:
        node = operand()
        while self.peek().kind == "op" and self.peek().text in ops:
            token = self.advance()
            right = operand()
            for side in (node, right):
                self.expect_type(side, False, f"'{token.text}'")
            node = Arithmetic(token.text, node, right, column=token.column)
        return node

    def sum(self) -> Expr:
        return self.binary_arithmetic(("+", "-"), self.product)

    def product(self) -> Expr:
        return self.binary_arithmetic(("*", "/"), self.unary)

    def unary(self) -> Expr:
        if self.at_op("-"):
            token = self.advance()
            self.enter(token)
            operand = self.unary()
            self.depth -= 1
            self.expect_type(operand, False, "unary '-'")
            return Negate(operand, column=token.column)
        return self.primary()

    def primary(self) -> Expr:
        token = self.advance()
        if token.kind == "number":
            return Number(float(token.text), column=token.column)
        if token.kind == "(":
            self.enter(token)
            node = self.or_expr()
            if self.peek().kind != ")":
                raise self.unclosed(token)
            self.advance()
            self.depth -= 1
            return node
        if token.kind == "name" and token.text not in KEYWORDS:
            if self.peek().kind == "(":
                return self.call(token)
            if token.text not in self.features:
                self.problems.append((f"unknown feature '{_clip(token.text)}'", token.column))
            return Feature(token.text, column=token.column)
        raise self.missing_operand(token)

    def call(self, name: Token) -> Expr:
        opening = self.advance()
        self.enter(opening)
        # Arguments parse as full expressions so that a condition there is a type error.
        arguments = [self.or_expr()]
        while self.peek().kind == ",":
            self.advance()
            arguments.append(self.or_expr())
        if self.peek().kind != ")":
            raise self.unclosed(opening)
        self.advance()
        self.depth -= 1
        function = name.text
        if function not in FUNCTIONS:
            known = ", ".join(sorted(FUNCTIONS))
            self.problems.append(
                (f"unknown function '{_clip(function)}'; functions: {known}", name.column)
            )
        elif function == "abs" and len(arguments) != 1:
            self.problems.append((f"abs() takes 1 argument, got {len(arguments)}", name.column))
        elif function != "abs" and len(arguments) < 2:
            self.problems.append(
                (f"{function}() needs at least 2 arguments, got {len(arguments)}", name.column)
            )
        for argument in arguments:
            self.expect_type(argument, False, f"{function}()")
        return Call(function, tuple(arguments), column=name.column)

    def unclosed(self, opening: Token) -> _Syntax:
        token = self.peek()
        if token.kind == "end":
            return _Syntax(
                f"unbalanced parenthesis: '(' at column {opening.column} is never closed",
                token.column,
            )
        return _Syntax(f"unexpected '{_clip(token.text)}'; expected ')' or ','", token.column)

    def missing_operand(self, token: Token) -> _Syntax:
        previous = self.tokens[self.position - 2] if self.position >= 2 else None
        if token.kind == "end" and previous is not None:
            return _Syntax(
                f"dangling operator '{previous.text}': nothing follows it", previous.column
            )
        if token.kind == ")":
            return _Syntax("unbalanced parenthesis or missing value before ')'", token.column)
        return _Syntax(
            f"unexpected '{_clip(token.text)}'; expected a number, a feature name or '('",
            token.column,
        )


def parse_expression(
    text: str,
    *,
    path: str = "<string>",
    line: int = 1,
    features: Collection[str] | None = None,
    context: str = "condition",
    boolean: bool = True,
) -> Expr:
    """Parse a condition into a typed expression tree.

    ``features`` are the known feature names (default: the catalogue). Raises
    ``RuleSetError`` listing every problem, each on ``path:line`` with the column
    in the message, prefixed by ``context``. ``boolean=False`` accepts a numeric
    top level (for tests and notebooks); conditions must be boolean.
    """
    if features is None:
        from detector.features.catalogue import FEATURES

        features = FEATURES
    problems: list[tuple[str, int]] = []
    parser: _Parser | None = None
    try:
        parser = _Parser(tokenize(text), features)
        node = parser.parse()
        problems = parser.problems
        if boolean and not node.is_boolean:
            problems.append(
                ("must be a comparison or a combination of comparisons, got a number", 1)
            )
        elif not node.features():
            problems.append(("names no feature: it would be constant", 1))
    except _Syntax as error:
        problems = (parser.problems if parser else []) + [(error.message, error.column)]
    if problems:
        raise RuleSetError(
            [
                RuleProblem(path, line, f"{context}: {message} (column {col})")
                for message, col in problems
            ]
        )
    return node
