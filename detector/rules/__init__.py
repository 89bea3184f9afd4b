"""Declarative rule sets: TOML files of named conditions over catalogued features.

See docs/rules.md for the file format and the condition language.
"""

from detector.rules.expression import Expr, parse_expression
from detector.rules.ruleset import (
    Allowlist,
    CheckOutcome,
    Rule,
    RuleSet,
    RuleTest,
    builtin_rulesets,
    check_outcome,
    check_ruleset,
    check_rulesets,
    describe_rulesets,
    format_value,
    load_ruleset,
)

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
