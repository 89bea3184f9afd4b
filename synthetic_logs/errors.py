"""Errors the generator raises on purpose; the CLI prints them as one `Error: ...` line."""

from __future__ import annotations

from tomlcheck import Problem, format_problems


class GeneratorError(Exception):
    """Root of the generator's errors."""


class ScenarioError(GeneratorError):
    """A scenario file is invalid. Carries every problem found, each with file and line."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__(format_problems(self.problems))
