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


def test_the_output_suffix_picks_an_installed_format_and_the_list_shows_its_description(
    installed_plugin: None, project_dir: Path, launchkit: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = project_dir / "results.markdown"
    assert launchkit("report", "-o", str(out)).exit_code == 0
    assert out.read_text().startswith("# Launch results")
    monkeypatch.setenv("COLUMNS", "200")  # one line per plugin
    assert "report --format markdown (a Markdown summary for a newsletter archive)" in launchkit("plugins").output


BROKEN = '''
from launchkit import hookimpl
from launchkit.types import Reporter


class Broken(Reporter):
    def __init__(self, context):
        self.url = context.settings["url"] if context.settings.get("needs_url") else None

    def write(self, report, out):
        out.write("partial")
        raise RuntimeError("the archive is down")


@hookimpl
def register_reporters(register):
    register("broken", Broken)
'''


def test_a_reporter_that_fails_says_so_in_one_line_and_leaves_no_file(project_dir: Path, launchkit: Callable[..., Any]) -> None:
    (project_dir / "plugins" / "broken.py").write_text(BROKEN)
    old = project_dir / "report.broken"
    old.write_text("last week's")

    result = launchkit("report", "-o", str(old))

    assert result.exit_code == 1 and "report format 'broken' failed: RuntimeError('the archive is down') at " in result.output
    assert "broken.py, line 12" in result.output and "Traceback" not in result.output
    assert old.read_text() == "last week's" and [p.name for p in project_dir.glob(".*partial")] == []
    config = project_dir / "launchkit.toml"
    config.write_text(config.read_text() + "\n[reporters.broken]\nneeds_url = true\n")
    built = launchkit("report", "--format", "broken")
    assert built.exit_code == 1 and "report format 'broken' could not be built: KeyError('url')" in built.output


def test_check_reports_plugins_that_fail_in_their_own_way(project_dir: Path, launchkit: Callable[..., Any]) -> None:
    (project_dir / "plugins" / "shop.py").write_text(
        "from launchkit import hookimpl\n\n"
        "@hookimpl\n"
        "def register_webhooks(register):\n"
        "    register('shop', lambda context: context.settings['token'])\n\n"
        "@hookimpl\n"
        "def register_reporters(register):\n"
        "    raise RuntimeError('no reporters today')\n\n"
        "@hookimpl\n"
        "def template_context(launch, phase, email, contact):\n"
        "    return {'city': contact.city.upper()}\n"
    )
    config = project_dir / "launchkit.toml"
    config.write_text(config.read_text() + "\n[webhooks.shop]\nsecret = \"x\"\n")

    result = launchkit("check")

    assert result.exit_code == 1 and "Traceback" not in result.output
    output = " ".join(result.output.split())
    assert "webhook 'shop' could not be built: KeyError('token')" in output
    assert "plugin 'project:shop' failed in register_reporters: RuntimeError('no reporters today')" in output
    assert "a template_context plugin raised AttributeError" in output
