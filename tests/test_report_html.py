"""The HTML report of the demo launch, opened in a real headless Chromium.

The demo is replayed exactly as `make demo` does (the commands are read from the Makefile),
the report is written, and Chromium loads it: no console message, the headline figures and
the charts on the page, and a screenshot. `LAUNCHKIT_UPDATE_SCREENSHOT=1` also copies the
screenshot to docs/report.png, the picture the README shows.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from launchkit.cli import cli

REPO = Path(__file__).resolve().parent.parent
SCREENSHOT = REPO / "docs" / "report.png"


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: .ci/run installs Debian's chromium package")
        pytest.skip("chromium is not installed (apt-get install chromium); CI installs it and runs this test")
    return found


def demo_commands() -> list[tuple[dict[str, str], list[str]]]:
    """The launchkit commands of the Makefile's `demo` target: (environment, arguments)."""
    recipe = re.search(r"^demo:.*?\n((?:\t.*\n|#.*\n|\s*\n)+)", (REPO / "Makefile").read_text(), re.M)
    assert recipe, "the Makefile has no demo target"
    commands = []
    for line in recipe.group(1).splitlines():
        if "$(LAUNCHKIT)" not in line or line.strip().startswith(("@", "#")):
            continue
        words = shlex.split(line.strip())
        env = dict(w.split("=", 1) for w in words[: words.index("$(LAUNCHKIT)")])
        commands.append((env, words[words.index("$(LAUNCHKIT)") + 1 :]))
    return commands


@pytest.fixture
def demo_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    project = tmp_path / "demo"
    project.mkdir()
    shutil.copy(REPO / "launchkit.toml", project)
    shutil.copytree(REPO / "sequences", project / "sequences")
    for data in REPO.glob("demo-*.csv"):
        shutil.copy(data, project)
    monkeypatch.chdir(project)
    for name in ("LAUNCHKIT_NOW", "LAUNCHKIT_PROJECT", "LAUNCHKIT_LOAD_PLUGINS", "LAUNCHKIT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    runner = CliRunner()
    commands = demo_commands()
    assert any(args[:1] == ["report"] and "-o" in args for _, args in commands), "make demo writes report.html"
    for env, args in commands:
        result = runner.invoke(cli, ["--project", str(project), *args], env=env)
        assert result.exit_code == 0, (args, result.output)
    return project / "report.html"


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", header[16:24])


def test_the_demo_report_opens_in_chromium_with_its_figures_and_charts(demo_report: Path, tmp_path: Path) -> None:
    browser = chromium()
    html = demo_report.read_text()
    assert "<script" not in html and "http://" not in html.split("<footer")[0].replace('xmlns="http://www.w3.org/2000/svg"', "")
    base = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--enable-logging=stderr", "--v=0"]
    url = demo_report.as_uri()

    dump = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dump.returncode == 0, dump.stderr[-2000:]
    console = [line for line in dump.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console
    page = dump.stdout
    for figure in ("57", "5.3 %", "891.00 EUR", "15.63 EUR", "above the 2–4 % benchmark", "doors-open", "last-call"):
        assert figure in page, f"{figure!r} is not on the page"
    assert page.count("<svg") >= 3  # the benchmark gauge, sales per day, the waitlist
    assert "Sales per day across the cart window" in page and "<rect" in page

    shot = tmp_path / "report.png"
    taken = subprocess.run([*base, "--window-size=900,1600", f"--screenshot={shot}", url], capture_output=True, text=True, timeout=120)
    assert taken.returncode == 0 and shot.exists(), taken.stderr[-2000:]
    assert png_size(shot) == (900, 1600)
    assert shot.stat().st_size > 30_000, "a blank page compresses to almost nothing"
    if os.environ.get("LAUNCHKIT_UPDATE_SCREENSHOT"):
        shutil.copy(shot, SCREENSHOT)
