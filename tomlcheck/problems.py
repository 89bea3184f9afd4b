"""One problem in a checked file: where it is and what is wrong."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    """A problem at ``path:line`` (``line`` is None when it concerns the whole file)."""

    path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.message}"


def format_problems(problems: Iterable[Problem]) -> str:
    """Every problem on one line, in order: ``a.toml:3: ...; a.toml:9: ...``."""
    return "; ".join(str(problem) for problem in problems)


def by_line(problems: Iterable[Problem]) -> list[Problem]:
    """Problems in file order; those about the whole file first (stable otherwise)."""
    return sorted(problems, key=lambda problem: problem.line or 0)
