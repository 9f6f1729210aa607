"""Reading a test project's outbox: the rows of one email by status, and their reasons."""

from __future__ import annotations

from pathlib import Path

from launchkit.project import Project
from launchkit.store import outbox


def statuses(root: Path, email_id: str = "welcome") -> dict[str, int]:
    """Status -> rows of ``email_id``."""
    with Project.open(root).store.connect() as conn:
        return {s: n for (_, e, s), n in outbox.counts(conn).items() if e == email_id}


def reasons(root: Path, status: str, email_id: str = "welcome") -> dict[str, str | None]:
    """Address -> reason of the ``email_id`` rows in ``status``."""
    with Project.open(root).store.connect() as conn:
        return {row.address: row.reason for row in outbox.listing(conn, [status], limit=0) if row.email_id == email_id}
