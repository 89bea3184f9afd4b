"""Line numbers for a TOML rule file: tomllib gives none, so scan the raw text.

Only the layout that docs/rules.md prescribes is mapped precisely: ``[table]`` and
``[[array]]`` headers on their own line and ``key = value`` lines inside them.
Anything else (inline tables, dotted keys) falls back to the enclosing header's line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Words separated by required spaces: one way only to match a run of spaces, so a header
# with a long run of them ("[a      . b]", valid TOML) is scanned in linear time (the
# former "[...\- ]+?\s*" took 9 s for 32,000 spaces, hours for a 1 MiB line).
_HEADER = re.compile(
    r"^[ \t]*(\[\[?)[ \t]*([A-Za-z0-9_.\-]+(?:[ \t]+[A-Za-z0-9_.\-]+)*)[ \t]*\]\]?[ \t]*(#.*)?$"
)
_KEY = re.compile(r"""^\s*("[^"]*"|'[^']*'|[A-Za-z0-9_\-]+)\s*[=.]""")


@dataclass(frozen=True)
class Block:
    """One table or array-of-tables entry: its header line and the first line of each key."""

    name: str  # "" for the top of the file, else the header's dotted name
    line: int
    keys: dict[str, int] = field(default_factory=dict)

    def line_of(self, key: str | None = None) -> int:
        """The line of ``key`` in this block, or the header's line when absent."""
        return self.keys.get(key, self.line) if key else self.line


def scan_blocks(text: str) -> list[Block]:
    """Every header of the file in order, preceded by the top-level block (line 1)."""
    blocks = [Block("", 1)]
    in_multiline = False
    for number, line in enumerate(text.splitlines(), start=1):
        # Lines inside a multi-line string are data, not keys or headers.
        quotes = line.count('"""') + line.count("'''")
        if in_multiline:
            in_multiline = quotes % 2 == 0
            continue
        header = _HEADER.match(line)
        if header:
            blocks.append(Block(re.sub(r"[ \t]+", "", header.group(2)), number))
        else:
            key = _KEY.match(line)
            if key:
                blocks[-1].keys.setdefault(key.group(1).strip("\"'"), number)
        in_multiline = quotes % 2 == 1
    return blocks


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
