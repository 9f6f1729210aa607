"""A report format from an installed plugin: found through the `launchkit` entry-point group."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any, Callable

import pytest

PLUGIN = '''
from launchkit import hookimpl
from launchkit.types import Reporter


class Markdown(Reporter):
    description = "a Markdown summary for a newsletter archive"

    def __init__(self, context):
        self.heading = context.settings.get("heading", "Launch results")

    def write(self, report, out):
        out.write(f"# {self.heading}\\n\\n")
        for launch in report.launches:
            out.write(f"- **{launch.id}**: {launch.buyers} buyers of {launch.audience}\\n")


@hookimpl
def register_reporters(register):
    register("markdown", Markdown)
'''


@pytest.fixture
def installed_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A distribution installed on sys.path, as pip would leave it: a module and its dist-info."""
    site = tmp_path / "site"
    (site / "launchkit_markdown_report.py").parent.mkdir(parents=True)
    (site / "launchkit_markdown_report.py").write_text(PLUGIN)
    info = site / "launchkit_markdown_report-1.2.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: launchkit-markdown-report\nVersion: 1.2.0\n")
    (info / "entry_points.txt").write_text("[launchkit]\nmarkdown = launchkit_markdown_report\n")
    monkeypatch.syspath_prepend(str(site))


def test_an_installed_reporter_is_listed_and_used(installed_plugin: None, project_dir: Path, launchkit: Callable[..., Any]) -> None:
    listed = json.loads(launchkit("plugins", "--json").output)
    assert {"name": "markdown", "source": "installed", "version": "1.2.0"}.items() <= next(
        p for p in listed["plugins"] if p["name"] == "markdown"
    ).items()
    assert listed["reporters"]["markdown"] == "markdown"

    config = project_dir / "launchkit.toml"
    config.write_text(config.read_text() + '\n[reporters.markdown]\nheading = "Spring results"\n')
    result = launchkit("report", "--format", "markdown")
    assert result.exit_code == 0, result.output
    assert result.output == textwrap.dedent("""\
        # Spring results

        - **example-launch**: 0 buyers of 0
        """)
