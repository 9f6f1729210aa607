"""Overlapping `launchkit run` processes never send an email twice (on SQLite and on PostgreSQL)."""

from __future__ import annotations

import email
import subprocess
import sys
from collections import Counter
from email import policy
from pathlib import Path

import pytest

from launchkit import audience
from launchkit.project import Project
from tests.backends import Database

pytestmark = pytest.mark.every_backend


def test_four_runs_started_at_once_send_each_due_email_exactly_once(tmp_path: Path, database: Database) -> None:
    root = database.project(tmp_path / "project")  # waitlist starts 2030-01-02 09:00
    people = [f"person{i}@example.com" for i in range(300)]
    for address in people:
        audience.add(Project.open(root, now="2029-12-20 10:00"), address, tags=["newsletter", "waitlist"])

    command = [sys.executable, "-m", "launchkit", "--project", str(root), "run", "--now", "2030-01-02 09:05"]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0, 0], outputs

    files = list((root / "mail" / "new").glob("*.eml"))
    recipients = Counter(
        email.message_from_bytes(path.read_bytes(), policy=policy.default)["To"].addresses[0].addr_spec for path in files
    )
    assert len(files) == len(people)  # the waitlist welcome, once each
    assert set(recipients) == set(people)
    assert set(recipients.values()) == {1}

    # And the next tick finds nothing left to send.
    again = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0
    assert len(list((root / "mail" / "new").glob("*.eml"))) == len(people)
