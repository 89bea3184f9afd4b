"""TOML files checked with every problem on its line, for both packages.

Rule files (``detector.rules``) and scenario files (``synthetic_logs.scenario``)
are checked the same way: read with a size cap, parsed, then walked key by key,
every problem collected as a :class:`Problem` (file, line, message). Data flows
one way (``synthetic_logs`` imports nothing of ``detector``), so this generic
part lives in its own small package, which imports only the standard library.
"""

from tomlcheck.lines import Block, KeyLines, scan_blocks
from tomlcheck.problems import Problem, by_line, format_problems
from tomlcheck.reading import parse_toml, read_capped

__all__ = [
    "Block",
    "KeyLines",
    "Problem",
    "by_line",
    "format_problems",
    "parse_toml",
    "read_capped",
    "scan_blocks",
]
