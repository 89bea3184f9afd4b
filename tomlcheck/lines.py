"""Line numbers for a TOML file: tomllib gives none, so scan the raw text.

Only the plain layout is mapped precisely: ``[table]`` and ``[[array]]`` headers
on their own line and ``key = value`` lines inside them. Anything else (inline
tables, dotted keys) falls back to the enclosing header's line.
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


class KeyLines:
    """The line of a key path in a file of top-level tables and arrays of tables.

    A path is ``("name",)``, ``("parameters", "victims")`` or ``("steps", 2, "scope")``
    (the third ``[[steps]]``). A key not written gives its table's header line; a table
    written inline (``steps = [{...}]``) gives the line of its top-level key.
    """

    def __init__(self, text: str):
        self.blocks = scan_blocks(text)

    def line(self, *path: str | int) -> int:
        top = self.blocks[0]
        if not path:
            return top.line
        table, rest = str(path[0]), path[1:]
        entries = [block for block in self.blocks if block.name == table]
        if rest and isinstance(rest[0], int):
            index, rest = rest[0], rest[1:]
            entries = entries[index : index + 1]
        if not entries:  # written inline, or not at all: the line of its top-level key
            return top.line_of(table.split(".")[0])
        key = rest[0] if rest and isinstance(rest[0], str) else None
        return entries[0].line_of(key)
