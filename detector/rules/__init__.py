"""Declarative rule sets: TOML files of named conditions over catalogued features.

See docs/rules.md for the file format and the condition language. One module a job:
``expression`` (the condition language), ``objects`` (frozen rule sets and their
evaluation), ``validation`` (every problem of a file with its line), ``loading``
(names and paths to rule sets), ``check`` (what ``detector rules check`` and
``list`` print), ``lines`` (line numbers in TOML text).
"""

from detector.rules.check import (
    CheckOutcome,
    check_outcome,
    check_ruleset,
    check_rulesets,
    describe_rulesets,
)
from detector.rules.expression import Expr, parse_expression
from detector.rules.loading import builtin_rulesets, load_ruleset
from detector.rules.objects import Allowlist, Rule, RuleSet, RuleTest, format_value

__all__ = [
    "Allowlist",
    "CheckOutcome",
    "Expr",
    "Rule",
    "RuleSet",
    "RuleTest",
    "builtin_rulesets",
    "check_outcome",
    "check_ruleset",
    "check_rulesets",
    "describe_rulesets",
    "format_value",
    "load_ruleset",
    "parse_expression",
]
