"""Errors meant for people: the CLI prints them as one paragraph and exits 1, no traceback."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class LaunchkitError(Exception):
    """A problem the user can fix; its message says what and where."""


@dataclass
class Problem:
    """One thing wrong in a file: where it is (file, key path, line) and what is wrong."""

    file: Path | None
    message: str
    key: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = str(self.file) if self.file else ""
        if self.line:
            where += f", line {self.line}"
        if self.key:
            where += f", {self.key}" if where else self.key
        return f"{where}: {self.message}" if where else self.message


class ConfigError(LaunchkitError):
    """One or more problems in the project's files."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))
