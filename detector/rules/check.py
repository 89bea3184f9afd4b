"""What `detector rules check` and `detector rules list` print: outcomes and listings."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from detector.errors import RuleProblem, RuleSetError
from detector.rules.loading import (
    builtin_rulesets,
    known_features,
    load_ruleset,
    locate,
    parse_ruleset,
)
from detector.textsafe import visible


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
        path, text = locate(name_or_path)
    except RuleSetError as error:
        return CheckOutcome(str(name_or_path), 0, 0, tuple(error.problems))
    ruleset, problems = parse_ruleset(path, text, known_features(features))
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
