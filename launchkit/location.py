"""Where the project is: kept free of heavy imports, because every command starts here."""

from __future__ import annotations

import os
from pathlib import Path

from launchkit.errors import LaunchkitError

CONFIG_FILE = "launchkit.toml"
PROJECT_ENV = "LAUNCHKIT_PROJECT"


def find_project_dir(start: Path | None = None) -> Path:
    """The folder holding launchkit.toml: ``start``, LAUNCHKIT_PROJECT, or the nearest parent."""
    if start is None and os.environ.get(PROJECT_ENV):
        start = Path(os.environ[PROJECT_ENV])
    if start is not None:
        if not (start / CONFIG_FILE).is_file():
            raise LaunchkitError(f"no {CONFIG_FILE} in {start}; create a project there with `launchkit init {start}`")
        return start.resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_FILE).is_file():
            return folder
    raise LaunchkitError(
        f"no {CONFIG_FILE} here or in any parent folder; run `launchkit init DIR` to create a project, "
        f"or pass --project DIR"
    )
