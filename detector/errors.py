"""One exception tree for the detector: the CLI turns these into `Error: ...` lines."""

from __future__ import annotations


class DetectorError(Exception):
    """Root of every error the detector raises on purpose (bad input, bad rule file...)."""


class InputError(DetectorError):
    """The log, caseload table or another input file cannot be used."""


class RuleSetError(DetectorError):
    """A rule set file is invalid. Carries every problem found, each with file and line."""

    def __init__(self, problems: list[RuleProblem]):
        self.problems = list(problems)
        super().__init__("; ".join(str(p) for p in self.problems))


class RuleProblem:
    """One problem in a rule set file: where it is and what is wrong."""

    __slots__ = ("path", "line", "message")

    def __init__(self, path: str, line: int | None, message: str):
        self.path = path
        self.line = line
        self.message = message

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.message}"

    def __repr__(self) -> str:
        return f"RuleProblem({self.path!r}, {self.line!r}, {self.message!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RuleProblem) and (self.path, self.line, self.message) == (
            other.path,
            other.line,
            other.message,
        )


class ModelError(DetectorError):
    """A saved model cannot be loaded or does not fit the feature table."""
