"""`launchkit init`: a new project from the skeleton shipped with launchkit."""

from __future__ import annotations

import shutil
from datetime import date, datetime, time, timedelta
from importlib import resources
from pathlib import Path

from launchkit.location import CONFIG_FILE
from launchkit.errors import LaunchkitError

DATE_FORMAT = "%Y-%m-%d %H:%M"


def skeleton_dates(today: date) -> dict[str, str]:
    """The example launch's dates, so that it is ahead of the creator when they read it."""
    def at(days: int, hour: int, minute: int = 0) -> str:
        return datetime.combine(today + timedelta(days=days), time(hour, minute)).strftime(DATE_FORMAT)

    return {
        "@WAITLIST_STARTS@": at(1, 9),
        "@CART_OPENS@": at(8, 9),
        "@CART_CLOSES@": at(12, 23, 59),
        "@CLOSE_STARTS@": at(13, 8),
    }


def init_project(folder: Path, today: date) -> list[Path]:
    """Copy the skeleton into ``folder`` (created if needed); returns the files written."""
    if (folder / CONFIG_FILE).exists():
        raise LaunchkitError(f"{folder / CONFIG_FILE} already exists; `launchkit init` never overwrites a project")
    skeleton = resources.files("launchkit") / "skeleton"
    written: list[Path] = []
    with resources.as_file(skeleton) as source:
        for path in sorted(Path(source).rglob("*")):
            if path.is_dir() or "__pycache__" in path.parts:
                continue
            target = folder / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            if path.suffix == ".toml":
                text = path.read_text(encoding="utf-8")
                for token, value in skeleton_dates(today).items():
                    text = text.replace(token, value)
                target.write_text(text, encoding="utf-8")
            else:
                shutil.copyfile(path, target)
            written.append(target)
    return written
