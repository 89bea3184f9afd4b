"""Rule sets: load and validate TOML files into frozen objects, evaluate them over a feature table.

A rule set is data (see docs/rules.md): named rules, each a condition over catalogued
features, a severity, an ATT&CK technique, a reason template and its own test cases;
plus an allowlist of accounts and address ranges. Loading collects every problem
(file and line each) before raising one ``RuleSetError``.
"""

from __future__ import annotations

import bisect
import ipaddress
import math
import re
import string
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from detector.errors import DetectorError, RuleProblem, RuleSetError
from detector.rules.expression import Expr, parse_expression
from detector.rules.lines import SourceLines
from detector.textsafe import visible

SEVERITIES = ("low", "medium", "high")
STATUSES = ("experimental", "stable")
# Used with fullmatch and ASCII only: "$" would accept a trailing newline, "\d" any script's digits.
_RULE_ID = re.compile(r"^[a-z][a-z0-9_]*$", re.ASCII)
_TECHNIQUE = re.compile(r"^T[0-9]{4}(\.[0-9]{3})?$", re.ASCII)
_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)|\s*\(at end of document\)")

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

# Rule files are small (the shipped ones are under 20 kB, 12 rules); these caps keep a
# wrong or hostile file from costing seconds and gigabytes (50 MB took 51 s and 1.5 GB).
MAX_FILE_BYTES = 1024 * 1024
MAX_RULES = 500
# A reason is one line: a width or precision past these is a mistake, and a huge one
# ("{events:>999999999999}") would exhaust memory when formatted.
MAX_FORMAT_WIDTH = 100
MAX_FORMAT_PRECISION = 20
_FORMAT_SPEC = re.compile(
    r"(?:(?P<fill>.)?[<>=^])?[-+ ]?z?\#?0?(?P<width>[0-9]+)?[,_]?(?:\.(?P<precision>[0-9]+))?"
    r"[A-Za-z%]?",  # the type: format() names an unknown one
    re.ASCII | re.DOTALL,
)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


# ------------------------------------------------------------------------- objects


def format_value(value: float, spec: str = "") -> str:
    """A feature value for a reason: ``1,240``, ``0.85``, ``12.5``; NaN as ``n/a``."""
    value = float(value)
    if math.isnan(value):
        return "n/a"
    if spec:
        return format(value, spec)
    if value.is_integer():
        return f"{int(value):,}"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


@dataclass(frozen=True)
class RuleTest:
    """One test case of a rule: feature values and whether the rule must fire."""

    values: Mapping[str, float]
    expect: bool
    line: int


@dataclass(frozen=True)
class Rule:
    """One named detection rule."""

    id: str
    title: str
    severity: str
    technique: str
    condition: Expr
    reason: str
    tests: tuple[RuleTest, ...]
    line: int
    description: str = ""
    status: str = "stable"

    def evaluate(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """Where the rule fires: a bool array as long as the columns. Missing data never fires."""
        fired = self.condition.evaluate(columns)
        length = len(next(iter(columns[name] for name in self.condition.features())))
        return np.broadcast_to(fired, (length,)).copy()

    def reason_features(self) -> frozenset[str]:
        """The features the reason template shows."""
        return frozenset(name for _, name, _ in _template_fields(self.reason) if name is not None)

    def features(self) -> frozenset[str]:
        """Every feature the rule reads, in its condition or its reason."""
        return self.condition.features() | self.reason_features()

    def render_reason(self, values: Mapping[str, float]) -> str:
        """The reason for one row: the template filled with that row's feature values."""
        parts = []
        for literal, name, spec in _template_fields(self.reason):
            parts.append(literal)
            if name is not None:
                if name not in values:
                    raise DetectorError(f"rule {self.id}: reason needs feature '{name}'")
                parts.append(format_value(values[name], spec))
        return "".join(parts)


@dataclass(frozen=True)
class Allowlist:
    """Accounts and address ranges whose activity a rule set never alerts on."""

    accounts: frozenset[str] = frozenset()
    networks: tuple[Network, ...] = ()

    def allows_account(self, account_ids: Any) -> np.ndarray:
        """Bool array: which account ids are allowlisted."""
        return np.asarray(pd.Series(account_ids, dtype=object).isin(self.accounts), dtype=bool)

    def allows_address(self, addresses: Any) -> np.ndarray:
        """Bool array: which addresses fall in an allowlisted network.

        Each distinct address is parsed once; invalid, empty or missing ones are False.
        """
        series = pd.Series(addresses, dtype=object)
        if not self.networks or series.empty:
            return np.zeros(len(series), dtype=bool)
        codes, uniques = pd.factorize(series)  # missing values get code -1
        allowed = np.array([self._allows_one(a) for a in uniques] + [False], dtype=bool)
        return allowed[codes]

    def _allows_one(self, address: object) -> bool:
        try:
            parsed = ipaddress.ip_address(str(address).strip())
        except ValueError:
            return False
        starts, ends = self._ranges[parsed.version]
        position = bisect.bisect_right(starts, int(parsed)) - 1
        return position >= 0 and int(parsed) <= ends[position]

    @cached_property
    def _ranges(self) -> dict[int, tuple[list[int], list[int]]]:
        """Per IP version, the networks merged into sorted, disjoint (first, last) ranges.

        A bisection per address instead of a test per network: a 1 MiB rule file can
        list ~70,000 networks (2,000 addresses x 10,000 networks took 14 s one by one).
        """
        ranges = {}
        for version in (4, 6):
            merged = ipaddress.collapse_addresses(n for n in self.networks if n.version == version)
            pairs = [(int(n.network_address), int(n.broadcast_address)) for n in merged]
            ranges[version] = ([a for a, _ in pairs], [b for _, b in pairs])
        return ranges


@dataclass(frozen=True)
class RuleSet:
    """A loaded, validated rule set."""

    name: str
    path: str
    description: str
    rules: tuple[Rule, ...]
    allowlist: Allowlist = field(default_factory=Allowlist)

    def features_used(self) -> frozenset[str]:
        """Every feature the rules read (conditions and reasons)."""
        return frozenset().union(*(rule.features() for rule in self.rules))

    def rule(self, rule_id: str) -> Rule:
        """The rule with this id; DetectorError when there is none."""
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise DetectorError(f"rule set '{self.name}' has no rule '{rule_id}'")

    def evaluate(self, table: pd.DataFrame | Mapping[str, Any]) -> pd.DataFrame:
        """One bool column per rule id, aligned with ``table``'s rows.

        Only the columns the conditions use must be present; a missing one raises
        ``DetectorError`` naming it. NaN never makes a rule fire. The allowlist is
        not applied here (it needs account ids and addresses): see ``allowlist``.
        """
        needed = sorted(frozenset().union(*(r.condition.features() for r in self.rules)))
        columns = _numeric_columns(table, needed, self.name)
        index = table.index if isinstance(table, pd.DataFrame) else None
        fired = {rule.id: rule.evaluate(columns) for rule in self.rules}
        length = len(index) if index is not None else _common_length(columns)
        return pd.DataFrame(fired, index=index if index is not None else pd.RangeIndex(length))

    def test_problems(self) -> list[RuleProblem]:
        """Run every rule's test cases; one problem per failing case, on its line."""
        problems = []
        for rule in self.rules:
            if not rule.tests:
                continue
            names = rule.condition.features()
            columns = {n: np.array([t.values.get(n, np.nan) for t in rule.tests]) for n in names}
            fired = rule.evaluate(columns)
            for number, (test, got) in enumerate(zip(rule.tests, fired, strict=True), start=1):
                if bool(got) != test.expect:
                    problems.append(
                        RuleProblem(
                            self.path,
                            test.line,
                            f"rule {rule.id} test {number}: expected {_bool(test.expect)}, got {_bool(got)}",
                        )
                    )
        return problems


def _bool(value: object) -> str:
    return "true" if value else "false"


def _common_length(columns: Mapping[str, np.ndarray]) -> int:
    lengths = {len(c) for c in columns.values()}
    if len(lengths) > 1:
        raise DetectorError(f"feature columns differ in length: {sorted(lengths)}")
    return lengths.pop() if lengths else 0


def _numeric_columns(
    table: pd.DataFrame | Mapping[str, Any], names: list[str], ruleset: str
) -> dict[str, np.ndarray]:
    """The named columns as float64 arrays (NA -> NaN); DetectorError names what is missing."""
    present = table.columns if isinstance(table, pd.DataFrame) else table.keys()
    missing = [name for name in names if name not in present]
    if missing:
        listed = ", ".join(f"'{m}'" for m in missing)
        raise DetectorError(
            f"rule set '{ruleset}' needs feature column(s) missing from the table: {listed}"
        )
    columns = {}
    for name in names:
        try:
            columns[name] = pd.Series(table[name]).to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError) as error:
            raise DetectorError(f"feature column '{name}' is not numeric: {error}") from None
    _common_length(columns)
    return columns


# ---------------------------------------------------------------- reason templates


def _template_fields(template: str) -> list[tuple[str, str | None, str]]:
    """(literal text, field name or None, format spec) of a validated template, in order."""
    return [
        (literal, name, spec or "") for literal, name, spec, _ in string.Formatter().parse(template)
    ]


def _template_problems(template: str, features: Collection[str]) -> list[str]:
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


# --------------------------------------------------------------------- validation


class _Validator:
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
        if name is not None and not _RULE_ID.fullmatch(name):
            self.problem(
                self.lines.table("ruleset", "name"),
                f"[ruleset]: name '{name}' must match {_RULE_ID.pattern}",
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
        values = {
            key: self.string(entry, key, where, line(key), required=False)
            for key in (
                "id",
                "title",
                "severity",
                "technique",
                "condition",
                "reason",
                "description",
                "status",
            )
        }
        if values["id"] is not None and not _RULE_ID.fullmatch(values["id"]):
            self.problem(line("id"), f"{where}id must match {_RULE_ID.pattern}")
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
            for message in _template_problems(values["reason"], self.features):
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


# ------------------------------------------------------------------------- loading


def builtin_rulesets() -> list[str]:
    """Names of the rule sets shipped in ``detector/rulesets``."""
    folder = resources.files("detector.rulesets")
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def _locate(name_or_path: str | Path) -> tuple[str, str]:
    """(path shown in problems, file text) for a built-in name or a file path."""
    text = str(name_or_path)
    is_path = (
        isinstance(name_or_path, Path) or "/" in text or "\\" in text or text.endswith(".toml")
    )
    if is_path:
        return text, _read_capped(text)
    resource = resources.files("detector.rulesets") / f"{text}.toml"
    if not _RULE_ID.fullmatch(text) or not resource.is_file():
        known = ", ".join(builtin_rulesets())
        raise RuleSetError(
            [RuleProblem(text, None, f"no rule set named '{visible(text)}'; built-in: {known}")]
        )
    return str(resource), resource.read_text(encoding="utf-8")


def _read_capped(path: str) -> str:
    """A rule file's text; ``RuleSetError`` when missing, unreadable or over ``MAX_FILE_BYTES``.

    Reads at most one byte past the cap, so a huge file (or ``/dev/zero``) costs nothing.
    """
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise RuleSetError([RuleProblem(path, None, "file not found")]) from None
    except OSError as error:
        raise RuleSetError([RuleProblem(path, None, f"cannot read: {error}")]) from None
    if len(data) > MAX_FILE_BYTES:
        raise RuleSetError(
            [
                RuleProblem(
                    path,
                    None,
                    f"file is larger than {MAX_FILE_BYTES:,} bytes (1 MiB), the limit for "
                    "a rule file",
                )
            ]
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RuleSetError([RuleProblem(path, None, f"cannot read: {error}")]) from None


def _parse(
    path: str, text: str, features: Collection[str]
) -> tuple[RuleSet | None, list[RuleProblem]]:
    """The rule set built from every valid rule, and every problem found."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        message = str(error)
        position = _TOML_POSITION.search(message)
        line = len(text.splitlines()) or 1
        if position and position.group(1):
            line = int(position.group(1))
            message = f"{_TOML_POSITION.sub('', message)} (column {position.group(2)})"
        elif position:
            message = f"{_TOML_POSITION.sub('', message)} (at end of file)"
        return None, [RuleProblem(path, line, f"invalid TOML: {message}")]
    except RecursionError:  # tomllib recurses once per nested array or inline table
        return None, [RuleProblem(path, None, "invalid TOML: arrays or tables nested too deeply")]
    except ValueError as error:  # Python refuses integers of over 4,300 digits
        message = str(error)
        if "integer string conversion" in message:
            message = "an integer has more than 4,300 digits"
        return None, [RuleProblem(path, None, f"invalid TOML: {message}")]
    rules = document.get("rules")
    if isinstance(rules, list) and len(rules) > MAX_RULES:
        line = SourceLines(text).rule(MAX_RULES)
        message = f"too many rules: {len(rules):,}; a rule file holds at most {MAX_RULES}"
        return None, [RuleProblem(path, line, message)]
    validator = _Validator(path, text, features)
    ruleset = validator.ruleset(document)
    problems = sorted(validator.problems, key=lambda p: p.line or 0)
    return ruleset, problems


def _features(features: Collection[str] | None) -> Collection[str]:
    if features is not None:
        return features
    from detector.features.catalogue import FEATURES

    return FEATURES


def load_ruleset(name_or_path: str | Path, features: Collection[str] | None = None) -> RuleSet:
    """Load a built-in rule set by name (``default``, ``strict``...) or a TOML file by path.

    ``features`` are the names a rule may use (default: the catalogue). Raises
    ``RuleSetError`` with every problem found, each with file and line. Test cases
    are checked for shape here but run by ``check_ruleset``.
    """
    path, text = _locate(name_or_path)
    ruleset, problems = _parse(path, text, _features(features))
    if problems or ruleset is None:
        raise RuleSetError(problems)
    return ruleset


@dataclass(frozen=True)
class CheckOutcome:
    """What ``check`` found in one rule set file."""

    path: str
    rules: int
    test_cases: int
    problems: tuple[RuleProblem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        """``PATH: OK (N rules, M test cases)``, or one ``path:line: message`` per problem."""
        if self.ok:
            return [f"{self.path}: OK ({self.rules} rules, {self.test_cases} test cases)"]
        return [str(problem) for problem in self.problems]


def check_outcome(
    name_or_path: str | Path, features: Collection[str] | None = None
) -> CheckOutcome:
    """Load a rule set and run its test cases, collecting every problem."""
    try:
        path, text = _locate(name_or_path)
    except RuleSetError as error:
        return CheckOutcome(str(name_or_path), 0, 0, tuple(error.problems))
    ruleset, problems = _parse(path, text, _features(features))
    if ruleset is None:
        return CheckOutcome(path, 0, 0, tuple(problems))
    problems = sorted(problems + ruleset.test_problems(), key=lambda p: p.line or 0)
    test_cases = sum(len(rule.tests) for rule in ruleset.rules)
    return CheckOutcome(path, len(ruleset.rules), test_cases, tuple(problems))


def check_ruleset(
    name_or_path: str | Path, features: Collection[str] | None = None
) -> list[RuleProblem]:
    """Every problem of a rule set, failing test cases included (empty when it is sound)."""
    return list(check_outcome(name_or_path, features).problems)


def check_rulesets(
    names_or_paths: Collection[str | Path], features: Collection[str] | None = None
) -> list[CheckOutcome]:
    """``check_outcome`` for each file or name, in order (what ``detector rules check`` prints)."""
    return [check_outcome(name, features) for name in names_or_paths]


def describe_rulesets(names_or_paths: Collection[str | Path] = ()) -> list[str]:
    """Lines listing each rule (id, severity, technique, title) under a header per set.

    With no argument, every built-in set. Raises ``RuleSetError`` on an invalid set.
    """
    lines = []
    for name in names_or_paths or builtin_rulesets():
        ruleset = load_ruleset(name)
        description = f": {visible(ruleset.description)}" if ruleset.description else ""
        lines.append(f"{ruleset.name} ({len(ruleset.rules)} rules){description}")
        width = max(len(rule.id) for rule in ruleset.rules)
        lines.extend(
            f"  {rule.id:<{width}}  {rule.severity:<6}  {rule.technique:<9}  {rule.title}"
            for rule in ruleset.rules
        )
    return lines
