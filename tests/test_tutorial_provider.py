"""docs/tutorial-provider.md shows the example package's real code, block by block."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PACKAGE = ROOT / "examples" / "launchkit-example-provider"
TUTORIAL = (ROOT / "docs" / "tutorial-provider.md").read_text(encoding="utf-8")
FILES = ["pyproject.toml", "launchkit_example_provider/__init__.py", "tests/fake_postbird.py", "tests/test_example_provider.py"]


def blocks_per_file() -> dict[str, list[str]]:
    """Each python or toml block is introduced by its file name in italics: *`path`*."""
    found: dict[str, list[str]] = {}
    for tag, path, language, text in re.findall(r"(\*`(\S+)`\*\n\n)?```(\w+)\n(.*?)\n```", TUTORIAL, re.S):
        if language in ("python", "toml"):
            assert tag, f"a {language} block of the tutorial names no file: {text[:60]!r}"
            found.setdefault(path, []).append(text)
    return found


def nonblank(text: str) -> list[str]:
    return [line for line in text.split("\n") if line.strip()]


@pytest.mark.parametrize("path", FILES)
def test_the_tutorial_shows_the_whole_file_in_order(path: str) -> None:
    blocks = blocks_per_file().get(path)
    assert blocks, f"the tutorial never shows {path}"
    assert nonblank("\n".join(blocks)) == nonblank((PACKAGE / path).read_text(encoding="utf-8"))
