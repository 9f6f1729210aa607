"""The report's per-email counts come from ``event_counts``, kept by triggers on ``events``:
whatever writes the events, and however, the counts stay what counting the events says.

``recount`` is the report's definition (distinct contacts per email, variant and kind; who
opened or clicked anything), computed from the events themselves the way the report did
before ``event_counts`` existed. Every test compares the two, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, distinct, func, select

from launchkit import audience, inbound
from launchkit.project import Project
from launchkit.store import Store, erasure, history, reports
from launchkit.store import tracking as tracking_store
from launchkit.store.tables import contacts, events
from launchkit.types import Event
from tests.backends import Database

pytestmark = pytest.mark.every_backend

LAUNCH = "example-launch"
NOW = datetime(2030, 1, 10, 9, tzinfo=timezone.utc)
PEOPLE = ("ada@example.com", "bob@example.com", "cy@example.com", "dee@example.com")


def recount(conn: Connection) -> tuple[dict[tuple[str, int | None, str], int], int]:
    per_email = select(events.c.email_id, events.c.variant, events.c.kind, func.count(distinct(events.c.contact_id))).where(
        events.c.launch_id == LAUNCH, events.c.kind.in_(reports.ENGAGEMENT), events.c.email_id.is_not(None)
    )
    engaged = select(func.count(distinct(events.c.contact_id))).where(events.c.launch_id == LAUNCH, events.c.kind.in_(("opened", "clicked")))
    rows = conn.execute(per_email.group_by(events.c.email_id, events.c.variant, events.c.kind))
    return {(e, v, k): n for e, v, k, n in rows}, int(conn.execute(engaged).scalar_one())


def counted(project: Project) -> tuple[dict[tuple[str, int | None, str], int], int]:
    """The report's counts, checked against counting the events."""
    with project.store.connect() as conn:
        found = reports.engagement(conn, LAUNCH), reports.engaged(conn, LAUNCH)
        assert found == recount(conn)
    return found


def with_people(project_dir: Path) -> Project:
    project = Project.open(project_dir, now=NOW.isoformat())
    for address in PEOPLE:
        audience.add(project, address, tags=["newsletter"])
    return project


def ids(project: Project) -> dict[str, int]:
    with project.store.connect() as conn:
        return {e: i for i, e in conn.execute(select(contacts.c.id, contacts.c.email))}


def store(project: Project, *found: Event) -> inbound.Stored:
    with project.store.begin() as conn:
        return inbound.store_events(conn, list(found), source="webhook", launches=project.launches.values(), now=NOW)


def click(contact_id: int, email_id: str, external_id: str, kind: str = "clicked") -> dict[str, Any]:
    return dict(kind=kind, contact_id=contact_id, launch_id=LAUNCH, email_id=email_id, variant=1, outbox_id=None,
                link="checkout", occurred_at=NOW, external_id=external_id, data={})


def test_the_counts_follow_webhooks_the_tracking_server_and_erasure(project_dir: Path) -> None:
    project = with_people(project_dir)
    ada, bob, cy, dee = (ids(project)[a] for a in PEOPLE)
    welcome = {"launch": LAUNCH, "email_id": "welcome"}
    webhooks = [
        Event("delivered", PEOPLE[0], NOW, id="d1", variant=0, **welcome),
        Event("opened", PEOPLE[0], NOW, id="o1", variant=0, **welcome),
        Event("opened", PEOPLE[0], NOW, id="o2", variant=0, **welcome),  # the same person again
        Event("opened", PEOPLE[1], NOW, id="o3", **welcome),  # no delivery: variant unknown
        Event("opened", "stranger@example.org", NOW, id="o4", **welcome),  # not a contact: nobody to count
        Event("bounced", PEOPLE[2], NOW, id="b1", launch=LAUNCH, email_id="doors-open", variant=0),
    ]
    assert len(store(project, *webhooks).new) == 6
    assert counted(project) == (
        {("welcome", 0, "delivered"): 1, ("welcome", 0, "opened"): 1, ("welcome", None, "opened"): 1, ("doors-open", 0, "bounced"): 1},
        2,
    )
    audience.add(project, "stranger@example.org")
    assert store(project, *webhooks).replayed == 6  # a replay counts nobody, not even who is a contact now
    assert counted(project)[0][("welcome", None, "opened")] == 1

    # The server stores a burst in one statement: Dee's two links of doors-open are one clicker.
    with project.store.begin() as conn:
        burst = [click(dee, "doors-open", "c1"), click(dee, "doors-open", "c2"), click(ada, "doors-open", "c3"), click(dee, "faq", "o5", "opened")]
        assert tracking_store.record_engagement(conn, burst) == 4
        tracking_store.unsubscribe(conn, bob, LAUNCH, "faq", NOW)
    per_email, engaged = counted(project)
    assert (per_email[("doors-open", 1, "clicked")], per_email[("faq", None, "unsubscribed")], engaged) == (2, 1, 3)

    # Ada is forgotten: her events stay, without her, so she is counted nowhere.
    with project.store.begin() as conn:
        assert erasure.forget(conn, PEOPLE[0], NOW)
    per_email, engaged = counted(project)
    assert (per_email[("welcome", 0, "opened")], per_email[("doors-open", 1, "clicked")], engaged) == (0, 1, 2)
    assert per_email[("welcome", 0, "delivered")] == 0  # delivery events still known for the email


def test_an_upgraded_database_counts_the_history_it_already_had(database: Database, tmp_path: Path) -> None:
    root = database.project(tmp_path / "old")
    url = database.point(root, empty=True)
    store = Store(url, root)
    config = Config()
    config.set_main_option("script_location", "launchkit:migrations")
    with store.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0003")
        for n, address in enumerate(PEOPLE, start=1):
            conn.execute(contacts.insert().values(id=n, email=address, fields={}, status="subscribed", created_at=NOW, updated_at=NOW, revision=1))
        conn.execute(events.insert(), [
            dict(kind=kind, contact_id=who, launch_id=LAUNCH, email_id=email_id, variant=variant, occurred_at=NOW, source="s", external_id=str(n), data={})
            for n, (kind, who, email_id, variant) in enumerate([
                ("opened", 1, "welcome", 0), ("opened", 1, "welcome", 0), ("opened", 2, "welcome", None), ("clicked", 3, "faq", 1),
                ("opened", None, "faq", 1), ("delivered", 4, "faq", 0), ("opened", 2, None, None),
            ])
        ])
    store.upgrade()
    project = Project.open(root, now=NOW.isoformat())
    assert counted(project) == (
        {("welcome", 0, "opened"): 1, ("welcome", None, "opened"): 1, ("faq", 1, "clicked"): 1, ("faq", 1, "opened"): 0, ("faq", 0, "delivered"): 1},
        3,
    )
    # The triggers keep counting from there.
    with project.store.begin() as conn:
        tracking_store.record_engagement(conn, [click(4, "faq", "k4")])
    assert counted(project)[0][("faq", 1, "clicked")] == 2


def test_two_transactions_storing_one_persons_opens_count_them_once(postgres: Database, tmp_path: Path) -> None:
    """Neither sees the other's uncommitted open: the triggers' lock makes the second wait for
    the first to commit, and then it sees that person counted."""
    project = with_people(postgres.project(tmp_path / "p"))
    first, second = project.store.engine.connect(), project.store.engine.connect()
    stored = threading.Event()

    def open_from(conn: Connection, source: str) -> None:
        history.record_event(conn, kind="opened", email=PEOPLE[0], occurred_at=NOW, source=source, external_id="o1", launch_id=LAUNCH, email_id="faq")

    try:
        open_from(first, "tracking")  # the first transaction begins, and holds the lock
        waiting = threading.Thread(target=lambda: (open_from(second, "postmark"), stored.set()))
        waiting.start()
        assert not stored.wait(1), "the second open was stored while the first was not committed"
        first.commit()
        waiting.join(10)
        assert stored.is_set()
        second.commit()
    finally:
        first.close()
        second.close()
    assert counted(project) == ({("faq", None, "opened"): 1}, 1)
