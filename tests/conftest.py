"""Shared fixtures: a real project on disk made by `launchkit init`, and the CLI to drive it."""

from __future__ import annotations

import csv
import email
import email.policy
from datetime import date
from pathlib import Path
from typing import Callable

import pytest
from click.testing import CliRunner, Result

from launchkit import audience
from launchkit.cli import cli
from launchkit.project import Project
from launchkit.scaffold import init_project

# init_project(…, 2030-01-01) dates the example launch: waitlist 2030-01-02 09:00,
# open cart 2030-01-09 09:00 → 2030-01-13 23:59, close 2030-01-14 08:00.
EXAMPLE_LAUNCH_DAY = date(2030, 1, 1)


@pytest.fixture
def project_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh project from `launchkit init` (the example launch dated from 2030-01-01).

    The environment variables that change what a command does are cleared, so a developer's
    shell cannot change a test's outcome.
    """
    for name in ("LAUNCHKIT_NOW", "LAUNCHKIT_PROJECT", "LAUNCHKIT_LOAD_PLUGINS", "LAUNCHKIT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    folder = tmp_path / "p"
    init_project(folder, EXAMPLE_LAUNCH_DAY)
    return folder


@pytest.fixture
def launchkit(project_dir: Path) -> Callable[..., Result]:
    """Run a launchkit command on ``project_dir``: ``launchkit("audience", "list")``."""
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(cli, ["--project", str(project_dir), *args])

    return invoke


@pytest.fixture
def sent_mail(project_dir: Path) -> Callable[[], list[email.message.EmailMessage]]:
    """The messages the project's maildir provider has written, parsed."""

    def messages() -> list[email.message.EmailMessage]:
        folder = project_dir / "mail" / "new"
        if not folder.is_dir():
            return []
        return [
            email.message_from_bytes(path.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
            for path in sorted(folder.iterdir())
        ]

    return messages


@pytest.fixture
def use_provider(project_dir: Path) -> Callable[..., Path]:
    """Send ``project_dir``'s mail through provider ``name``, ``table`` (its ``[delivery.NAME]``) appended.

    ``rate`` replaces the skeleton's ``[delivery] rate`` (None removes the throttle, which
    would cut batches to a tenth of a second's worth); ``tracking`` sets ``[tracking]
    base_url``, which turns on tracked links and one-click unsubscribe headers.
    """

    def use(name: str, table: str, *, rate: str | None = "50/s", tracking: str = "") -> Path:
        config = project_dir / "launchkit.toml"
        text = config.read_text()
        edits = [
            ('provider = "maildir"', f'provider = "{name}"'),
            ('rate = "50/s"', f'rate = "{rate}"' if rate else ""),
            ('base_url = ""', f'base_url = "{tracking}"'),
        ]
        for old, new in edits:
            assert old in text, f"the skeleton's launchkit.toml no longer has {old}"
            text = text.replace(old, new, 1)
        config.write_text(f"{text}\n{table}")
        return project_dir

    return use


@pytest.fixture
def waitlist_project(use_provider: Callable[..., Path], tmp_path: Path) -> Callable[..., Path]:
    """``project_dir`` sending through provider ``name`` (its ``table`` appended), with
    ``people`` — (address, first name, last name) — imported on the waitlist on 2029-12-20."""

    def make(name: str, table: str, people: list[tuple[str, str, str]]) -> Path:
        root = use_provider(name, table, rate=None)
        path = tmp_path / "audience.csv"
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["email", "first_name", "last_name", "tags"])
            writer.writerows([(address, first, last, "newsletter, waitlist") for address, first, last in people])
        audience.import_csv(Project.open(root, now="2029-12-20 10:00"), path)
        return root

    return make
