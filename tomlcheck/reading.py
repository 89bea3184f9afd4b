"""Reading a small TOML file: a size cap, UTF-8, and parse errors as located problems."""

from __future__ import annotations

import re
import tomllib
from typing import Any

from tomlcheck.problems import Problem

_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)|\s*\(at end of document\)")


def read_capped(path: str, limit: int, what: str) -> tuple[str | None, Problem | None]:
    """A file's text, or the problem that stops it being read.

    Reads at most one byte past ``limit``, so a huge file (or ``/dev/zero``) costs
    nothing; ``what`` names the kind of file in the message ("a rule file").
    """
    try:
        with open(path, "rb") as file:
            data = file.read(limit + 1)
    except FileNotFoundError:
        return None, Problem(path, None, "file not found")
    except OSError as error:
        return None, Problem(path, None, f"cannot read: {error}")
    if len(data) > limit:
        size = f"{limit:,} bytes ({limit / 2**20:g} MiB)"
        return None, Problem(path, None, f"file is larger than {size}, the limit for {what}")
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as error:
        return None, Problem(path, None, f"not UTF-8 text: {error.reason} at byte {error.start}")


def parse_toml(path: str, text: str) -> tuple[dict[str, Any] | None, Problem | None]:
    """The parsed document, or the problem with its line (tomllib says where in its message)."""
    try:
        return tomllib.loads(text), None
    except tomllib.TOMLDecodeError as error:
        message = str(error)
        position = _TOML_POSITION.search(message)
        line = len(text.splitlines()) or 1
        if position and position.group(1):
            line = int(position.group(1))
            message = f"{_TOML_POSITION.sub('', message)} (column {position.group(2)})"
        elif position:
            message = f"{_TOML_POSITION.sub('', message)} (at end of file)"
        return None, Problem(path, line, f"invalid TOML: {message}")
    except RecursionError:  # tomllib recurses once per nested array or inline table
        return None, Problem(path, None, "invalid TOML: arrays or tables nested too deeply")
    except ValueError as error:  # Python refuses integers of over 4,300 digits
        message = str(error)
        if "integer string conversion" in message:
            message = "an integer has more than 4,300 digits"
        return None, Problem(path, None, f"invalid TOML: {message}")
