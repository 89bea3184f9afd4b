"""Line numbers for a TOML rule file: rule sets, rules and their test cases.

The generic scan (headers and keys of the raw text) is :mod:`tomlcheck.lines`, shared
with scenario files; this module maps a rule file's layout onto it.
"""

from __future__ import annotations

from tomlcheck.lines import Block, scan_blocks

__all__ = ["Block", "SourceLines", "scan_blocks"]


class SourceLines:
    """Finds the line of a rule set's tables, rules, test cases and their keys."""

    def __init__(self, text: str):
        self.blocks = scan_blocks(text)
        self._rules: list[tuple[Block, list[Block]]] = []
        for block in self.blocks:
            if block.name == "rules":
                self._rules.append((block, []))
            elif block.name == "rules.tests" and self._rules:
                self._rules[-1][1].append(block)

    def table(self, name: str, key: str | None = None) -> int:
        """Line of ``[name]`` (or of its ``key``); ``""`` is the top of the file.

        A top-level ``key`` written as a table (``[key]``, ``[[key]]``) gives its header's line.
        """
        for block in self.blocks:
            if block.name == name:
                if name == "" and key and key not in block.keys:
                    return self.table(key)
                return block.line_of(key)
        for block in self.blocks:  # only sub-tables ([name.sub]) were written
            if name and block.name.startswith(name + "."):
                return block.line
        return 1

    def rule(self, index: int, key: str | None = None) -> int:
        """Line of the ``index``-th (0-based) ``[[rules]]`` header or of its ``key``."""
        if index < len(self._rules):
            return self._rules[index][0].line_of(key)
        return self.table("rules")

    def test(self, rule_index: int, test_index: int, key: str | None = None) -> int:
        """Line of a rule's ``test_index``-th ``[[rules.tests]]`` or of its ``key``;
        the rule's ``tests =`` line when the cases are written inline."""
        if rule_index < len(self._rules):
            tests = self._rules[rule_index][1]
            if test_index < len(tests):
                return tests[test_index].line_of(key)
        return self.rule(rule_index, "tests")
