"""Rule files checked key by key: every problem collected with its line, valid parts built.

:class:`RuleFileValidator` walks a parsed TOML document and builds the frozen
objects of :mod:`detector.rules.objects` from every valid part, recording a
:class:`~detector.errors.RuleProblem` (file, line, message) for each fault.
"""

from __future__ import annotations

import ipaddress
import math
import re
import string
from collections.abc import Collection, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from detector.errors import RuleProblem, RuleSetError
from detector.rules.expression import Expr, parse_expression
from detector.rules.lines import SourceLines
from detector.rules.objects import Allowlist, Rule, RuleSet, RuleTest
from detector.textsafe import visible
from detector.vocabulary import SEVERITIES

STATUSES = ("experimental", "stable")
# Used with fullmatch and ASCII only: "$" would accept a trailing newline, "\d" any script's digits.
RULE_ID = re.compile(r"^[a-z][a-z0-9_]*$", re.ASCII)
_TECHNIQUE = re.compile(r"^T[0-9]{4}(\.[0-9]{3})?$", re.ASCII)

TOP_KEYS = ("ruleset", "allowlist", "rules")
RULESET_KEYS = ("name", "description")
ALLOWLIST_KEYS = ("accounts", "networks")
RULE_KEYS = (
    "id",
    "title",
    "severity",
    "technique",
    "condition",
    "reason",
    "tests",
    "description",
    "status",
)
REQUIRED_RULE_KEYS = ("id", "title", "severity", "technique", "condition", "reason", "tests")
TEST_KEYS = ("features", "expect")

# A reason is one line: a width or precision past these is a mistake, and a huge one
# ("{events:>999999999999}") would exhaust memory when formatted.
MAX_FORMAT_WIDTH = 100
MAX_FORMAT_PRECISION = 20
_FORMAT_SPEC = re.compile(
    r"(?:(?P<fill>.)?[<>=^])?[-+ ]?z?\#?0?(?P<width>[0-9]+)?[,_]?(?:\.(?P<precision>[0-9]+))?"
    r"[A-Za-z%]?",  # the type: format() names an unknown one
    re.ASCII | re.DOTALL,
)


def template_problems(template: str, features: Collection[str]) -> list[str]:
    """What is wrong with a reason template, as messages."""
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError as error:
        return [f"malformed template: {error}"]
    problems = []
    for _, name, spec, conversion in fields:
        if name is None:
            continue
        if name == "" or not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            problems.append(f"'{{{name}}}' is not a feature name")
        elif name not in features:
            problems.append(f"unknown feature '{name}'")
        if conversion:
            problems.append(f"'{{{name}!{conversion}}}': conversions are not supported")
        if spec:
            message = _spec_problem(spec)
            if message:
                shown = spec if len(spec) <= 24 else spec[:21] + "..."
                problems.append(f"bad format spec '{visible(shown)}' for '{name}': {message}")
    return problems


def _spec_problem(spec: str) -> str | None:
    """What is wrong with a format spec for a feature value, or None.

    Python's own parser accepts any script's digits and any width (formatting
    ``{x:>999999999999}`` is a MemoryError), so the spec must first match the
    ASCII form of the mini-language within the width and precision limits.
    """
    match = _FORMAT_SPEC.fullmatch(spec)
    if match is None:
        return "not a format spec for numbers (e.g. '.0%', ',.1f', '>8')"
    for part, limit in (("width", MAX_FORMAT_WIDTH), ("precision", MAX_FORMAT_PRECISION)):
        digits = match.group(part)
        # Compared as text first: int() of thousands of digits is itself refused.
        if digits and (len(digits) > len(str(limit)) or int(digits) > limit):
            return f"{part} {digits[:12]}{'...' if len(digits) > 12 else ''} is over {limit}"
    for value in (1.5, -2.0, 1e300, math.inf):  # every value a feature can take
        try:
            format(value, spec)
        except (ValueError, OverflowError) as error:
            return str(error)
    return None


class RuleFileValidator:
    """Walks the parsed TOML, building frozen objects and collecting every problem."""

    def __init__(self, path: str, text: str, features: Collection[str]):
        self.path = path
        self.lines = SourceLines(text)
        self.features = features
        self.problems: list[RuleProblem] = []

    def problem(self, line: int | None, message: str) -> None:
        # Messages quote keys and values from the file: controls in them are shown escaped.
        self.problems.append(RuleProblem(self.path, line, visible(message)))

    def unknown_keys(
        self, table: Mapping[str, Any], allowed: tuple[str, ...], where: str, line_of
    ) -> None:
        for key in table:
            if key not in allowed:
                self.problem(
                    line_of(key), f"{where}unknown key '{key}'; allowed: {', '.join(allowed)}"
                )

    def string(
        self, table: Mapping[str, Any], key: str, where: str, line: int, *, required: bool
    ) -> str | None:
        if key not in table:
            if required:
                self.problem(line, f"{where}missing required key '{key}'")
            return None
        value = table[key]
        if not isinstance(value, str) or not value.strip():
            self.problem(line, f"{where}'{key}' must be a non-empty string")
            return None
        # Every string but a description is one line shown to analysts (alerts, rules list).
        if key != "description" and visible(value) != value:
            self.problem(
                line, f"{where}'{key}' must be one line without control or bidirectional characters"
            )
            return None
        return value

    def ruleset(self, document: Mapping[str, Any]) -> RuleSet:
        self.unknown_keys(document, TOP_KEYS, "", lambda key: self.lines.table("", key))
        name, description = self.header(document)
        allowlist = self.allowlist(document.get("allowlist", {}))
        rules = self.rules(document.get("rules"))
        return RuleSet(name or Path(self.path).stem, self.path, description, rules, allowlist)

    def header(self, document: Mapping[str, Any]) -> tuple[str | None, str]:
        table = document.get("ruleset")
        if not isinstance(table, dict):
            message = "missing [ruleset] table" if table is None else "'ruleset' must be a table"
            self.problem(self.lines.table("", "ruleset"), message)
            return None, ""
        line = self.lines.table("ruleset")
        self.unknown_keys(
            table, RULESET_KEYS, "[ruleset]: ", lambda key: self.lines.table("ruleset", key)
        )
        name = self.string(
            table,
            "name",
            "[ruleset]: ",
            self.lines.table("ruleset", "name") if "name" in table else line,
            required=True,
        )
        if name is not None and not RULE_ID.fullmatch(name):
            self.problem(
                self.lines.table("ruleset", "name"),
                f"[ruleset]: name '{name}' must match {RULE_ID.pattern}",
            )
        description = self.string(
            table,
            "description",
            "[ruleset]: ",
            self.lines.table("ruleset", "description"),
            required=False,
        )
        return name, description or ""

    def allowlist(self, table: Any) -> Allowlist:
        def line(key: str | None = None) -> int:
            return self.lines.table("allowlist", key)

        if not isinstance(table, dict):
            self.problem(self.lines.table("", "allowlist"), "'allowlist' must be a table")
            return Allowlist()
        self.unknown_keys(table, ALLOWLIST_KEYS, "[allowlist]: ", line)
        accounts = table.get("accounts", [])
        if not isinstance(accounts, list) or not all(isinstance(a, str) and a for a in accounts):
            self.problem(
                line("accounts"), "[allowlist]: 'accounts' must be a list of non-empty strings"
            )
            accounts = []
        networks = []
        raw_networks = table.get("networks", [])
        if not isinstance(raw_networks, list):
            self.problem(
                line("networks"), "[allowlist]: 'networks' must be a list of address ranges"
            )
            raw_networks = []
        for raw in raw_networks:
            try:
                networks.append(ipaddress.ip_network(raw))
            except (TypeError, ValueError) as error:
                self.problem(line("networks"), f"[allowlist]: invalid network {raw!r}: {error}")
        return Allowlist(frozenset(accounts), tuple(networks))

    def rules(self, entries: Any) -> tuple[Rule, ...]:
        if entries is None:
            self.problem(None, "no rules: add at least one [[rules]] table")
            return ()
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            self.problem(
                self.lines.table("rules"), "'rules' must be an array of tables: write [[rules]]"
            )
            return ()
        rules: list[Rule] = []
        first_line: dict[str, int] = {}
        for index, entry in enumerate(entries):
            rule = self.rule(index, entry)
            rule_id = entry.get("id")
            if isinstance(rule_id, str):
                if rule_id in first_line:
                    self.problem(
                        self.lines.rule(index, "id"),
                        f"duplicate rule id '{rule_id}' (first at line {first_line[rule_id]})",
                    )
                    continue
                first_line[rule_id] = self.lines.rule(index, "id")
            if rule is not None:
                rules.append(rule)
        return tuple(rules)

    def rule(self, index: int, entry: Mapping[str, Any]) -> Rule | None:
        """One rule, or None when it has problems (they are recorded)."""
        before = len(self.problems)

        def line(key: str | None = None) -> int:
            return self.lines.rule(index, key)

        rule_id = entry.get("id")
        where = f"rule {rule_id}: " if isinstance(rule_id, str) else f"rule #{index + 1}: "
        self.unknown_keys(entry, RULE_KEYS, where, line)
        for key in REQUIRED_RULE_KEYS:
            if key not in entry:
                self.problem(line(), f"{where}missing required key '{key}'")
        # Every key but the tests is a string.
        values = {
            key: self.string(entry, key, where, line(key), required=False)
            for key in RULE_KEYS
            if key != "tests"
        }
        if values["id"] is not None and not RULE_ID.fullmatch(values["id"]):
            self.problem(line("id"), f"{where}id must match {RULE_ID.pattern}")
        if values["severity"] is not None and values["severity"] not in SEVERITIES:
            self.problem(
                line("severity"),
                f"{where}severity '{values['severity']}' is not one of: {', '.join(SEVERITIES)}",
            )
        if values["status"] is not None and values["status"] not in STATUSES:
            self.problem(
                line("status"),
                f"{where}status '{values['status']}' is not one of: {', '.join(STATUSES)}",
            )
        if values["technique"] is not None and not _TECHNIQUE.fullmatch(values["technique"]):
            self.problem(
                line("technique"),
                f"{where}technique '{values['technique']}' is not an ATT&CK id like T1078 or T1567.002",
            )
        condition = None
        if values["condition"] is not None:
            try:
                condition = parse_expression(
                    values["condition"],
                    path=self.path,
                    line=line("condition"),
                    features=self.features,
                    context=f"{where}condition",
                )
            except RuleSetError as error:
                self.problems.extend(error.problems)
        if values["reason"] is not None:
            for message in template_problems(values["reason"], self.features):
                self.problem(line("reason"), f"{where}reason: {message}")
        tests = self.tests(index, entry.get("tests"), where, condition)
        if len(self.problems) > before or condition is None:
            return None
        return Rule(
            id=values["id"], title=values["title"], severity=values["severity"],
            technique=values["technique"], condition=condition, reason=values["reason"],
            tests=tests, line=line(), description=values["description"] or "",
            status=values["status"] or "stable",
        )  # fmt: skip

    def tests(
        self, rule_index: int, entries: Any, where: str, condition: Expr | None
    ) -> tuple[RuleTest, ...]:
        if entries is None:
            return ()  # already reported as a missing key
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            self.problem(
                self.lines.rule(rule_index, "tests"),
                f"{where}'tests' must be an array of tables: write [[rules.tests]]",
            )
            return ()
        tests = []
        for index, entry in enumerate(entries):

            def line(key: str | None = None, index: int = index) -> int:
                return self.lines.test(rule_index, index, key)

            here = f"{where}test {index + 1}: "
            self.unknown_keys(entry, TEST_KEYS, here, line)
            expect = entry.get("expect")
            if not isinstance(expect, bool):
                self.problem(line("expect"), f"{here}'expect' must be true or false")
            values = entry.get("features")
            if not isinstance(values, dict):
                self.problem(
                    line("features"), f"{here}'features' must be a table of feature values"
                )
                continue
            clean = {}
            for name, value in values.items():
                if name not in self.features:
                    self.problem(line("features"), f"{here}unknown feature '{name}'")
                elif isinstance(value, bool) or not isinstance(value, int | float):
                    self.problem(
                        line("features"), f"{here}feature '{name}' must be a number (nan allowed)"
                    )
                else:
                    try:
                        clean[name] = float(value)
                    except OverflowError:  # an integer past float64's range
                        self.problem(
                            line("features"),
                            f"{here}feature '{name}' is too large for a number (over 1.8e308)",
                        )
            if condition is not None:
                for name in sorted(condition.features() - values.keys()):
                    self.problem(
                        line("features"), f"{here}missing feature '{name}' used by the condition"
                    )
            if isinstance(expect, bool):
                tests.append(RuleTest(MappingProxyType(clean), expect, line()))
        outcomes = {test.expect for test in tests}
        if len(tests) == len(entries) and outcomes != {True, False}:
            self.problem(
                self.lines.rule(rule_index),
                f"{where}needs at least one test case with expect = true and one with expect = false",
            )
        return tuple(tests)
