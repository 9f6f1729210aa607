"""Every command's --help ends with an example, as the README promises."""

from __future__ import annotations

from typing import Iterator

import click
from click.testing import CliRunner

from launchkit.cli import cli


def commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in group.commands.items():
        yield (*path, name)
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))


def test_every_command_and_group_has_an_example() -> None:
    found = list(commands(cli))
    assert ("audience", "import") in found and ("db",) in found
    runner = CliRunner()
    missing = [" ".join(path) for path in found if "Example" not in runner.invoke(cli, [*path, "--help"]).output]
    assert missing == []
