"""One exception tree for the detector: the CLI turns these into `Error: ...` lines."""

from __future__ import annotations

from tomlcheck import Problem, format_problems


class DetectorError(Exception):
    """Root of every error the detector raises on purpose (bad input, bad rule file...)."""


class InputError(DetectorError):
    """The log, caseload table or another input file cannot be used."""


class RuleSetError(DetectorError):
    """A rule set file is invalid. Carries every problem found, each with file and line."""

    def __init__(self, problems: list[RuleProblem]):
        self.problems = list(problems)
        super().__init__(format_problems(self.problems))


#: One problem in a rule set file (file, line, message): the type scenario files share.
RuleProblem = Problem


class ModelError(DetectorError):
    """A saved model cannot be loaded or does not fit the feature table."""
