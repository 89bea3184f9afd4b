"""Rule sets as frozen objects, and their evaluation over a feature table.

A rule set is data (see docs/rules.md): named rules, each a condition over catalogued
features, a severity, an ATT&CK technique, a reason template and its own test cases;
plus an allowlist of accounts and address ranges. Files become these objects in
:mod:`detector.rules.loading`.
"""

from __future__ import annotations

import bisect
import ipaddress
import math
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from detector.errors import DetectorError, RuleProblem
from detector.rules.expression import Expr

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


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
        return frozenset(name for _, name, _ in template_fields(self.reason) if name is not None)

    def features(self) -> frozenset[str]:
        """Every feature the rule reads, in its condition or its reason."""
        return self.condition.features() | self.reason_features()

    def render_reason(self, values: Mapping[str, float]) -> str:
        """The reason for one row: the template filled with that row's feature values."""
        parts = []
        for literal, name, spec in template_fields(self.reason):
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


def template_fields(template: str) -> list[tuple[str, str | None, str]]:
    """(literal text, field name or None, format spec) of a validated template, in order."""
    return [
        (literal, name, spec or "") for literal, name, spec, _ in string.Formatter().parse(template)
    ]
