"""Errors the generator raises on purpose; the CLI prints them as one `Error: ...` line."""

from __future__ import annotations


class GeneratorError(Exception):
    """Root of the generator's errors."""


class ScenarioError(GeneratorError):
    """A scenario file is invalid: names the file and the offending key."""

    def __init__(self, path: str, key: str | None, message: str):
        self.path = path
        self.key = key
        self.message = message
        where = f"{path}: {key}" if key else path
        super().__init__(f"{where}: {message}")
