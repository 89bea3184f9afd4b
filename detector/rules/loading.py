"""Rule sets from files: built-in names or paths, size-capped, parsed, validated.

Loading collects every problem (file and line each) before raising one
``RuleSetError``.
"""

from __future__ import annotations

from collections.abc import Collection
from importlib import resources
from pathlib import Path

from detector.errors import RuleProblem, RuleSetError
from detector.rules.lines import SourceLines
from detector.rules.objects import RuleSet
from detector.rules.validation import RULE_ID, RuleFileValidator
from detector.textsafe import visible
from tomlcheck import by_line, parse_toml, read_capped

# Rule files are small (the shipped ones are under 20 kB, 12 rules); these caps keep a
# wrong or hostile file from costing seconds and gigabytes (50 MB took 51 s and 1.5 GB).
MAX_FILE_BYTES = 1024 * 1024
MAX_RULES = 500


def builtin_rulesets() -> list[str]:
    """Names of the rule sets shipped in ``detector/rulesets``."""
    folder = resources.files("detector.rulesets")
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def locate(name_or_path: str | Path) -> tuple[str, str]:
    """(path shown in problems, file text) for a built-in name or a file path."""
    text = str(name_or_path)
    is_path = (
        isinstance(name_or_path, Path) or "/" in text or "\\" in text or text.endswith(".toml")
    )
    if is_path:
        return text, _read_capped(text)
    resource = resources.files("detector.rulesets") / f"{text}.toml"
    if not RULE_ID.fullmatch(text) or not resource.is_file():
        known = ", ".join(builtin_rulesets())
        raise RuleSetError(
            [RuleProblem(text, None, f"no rule set named '{visible(text)}'; built-in: {known}")]
        )
    return str(resource), resource.read_text(encoding="utf-8")


def _read_capped(path: str) -> str:
    """A rule file's text; ``RuleSetError`` when missing, unreadable or over ``MAX_FILE_BYTES``."""
    text, problem = read_capped(path, MAX_FILE_BYTES, "a rule file")
    if problem is not None:
        raise RuleSetError([problem])
    return text


def parse_ruleset(
    path: str, text: str, features: Collection[str]
) -> tuple[RuleSet | None, list[RuleProblem]]:
    """The rule set built from every valid rule, and every problem found."""
    document, problem = parse_toml(path, text)
    if problem is not None:
        return None, [problem]
    rules = document.get("rules")
    if isinstance(rules, list) and len(rules) > MAX_RULES:
        line = SourceLines(text).rule(MAX_RULES)
        message = f"too many rules: {len(rules):,}; a rule file holds at most {MAX_RULES}"
        return None, [RuleProblem(path, line, message)]
    validator = RuleFileValidator(path, text, features)
    ruleset = validator.ruleset(document)
    problems = by_line(validator.problems)
    return ruleset, problems


def known_features(features: Collection[str] | None) -> Collection[str]:
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
    path, text = locate(name_or_path)
    ruleset, problems = parse_ruleset(path, text, known_features(features))
    if problems or ruleset is None:
        raise RuleSetError(problems)
    return ruleset
