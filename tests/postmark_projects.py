"""Projects that deliver through the fake Postmark (tests/fakes/postmark.py), with a waitlist to send to."""

from __future__ import annotations

import csv
from pathlib import Path

from launchkit import audience
from launchkit.project import Project


def deliver_through_postmark(root: Path, url: str, token: str, *, rate: str | None = None, delivery: str = "") -> None:
    """Point the project made by ``launchkit init`` at ``root`` at the fake Postmark at ``url``.

    Unpaced unless ``rate`` is given; ``delivery`` adds lines to ``[delivery]``.
    """
    config = root / "launchkit.toml"
    text = config.read_text().replace('provider = "maildir"', f'provider = "postmark"\n{delivery}')
    text = text.replace('rate = "50/s"', f'rate = "{rate}"' if rate else "")
    config.write_text(text + f'\n[delivery.postmark]\nserver_token = "{token}"\nbase_url = "{url}"\n')


def import_waitlist(root: Path, contacts: int) -> None:
    """``contacts`` people tagged ``newsletter, waitlist`` (the example launch's audience), before it starts."""
    people = root / "people.csv"
    with people.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "tags"])
        writer.writerows((f"person{i}@example.com", "newsletter, waitlist") for i in range(contacts))
    audience.import_csv(Project.open(root, now="2029-12-20 10:00"), people)
