"""The tick's rules: re-planning after edits, dry runs, hooks, failures and crashes.

Each test runs on SQLite and on PostgreSQL (tests/conftest.py).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Sequence

import pytest
from sqlalchemy import update

from launchkit import audience, compose, conversions
from launchkit.errors import LaunchkitError
from launchkit.project import Project
from launchkit.runner import tick
from launchkit.store import outbox
from launchkit.store.tables import outbox as outbox_table
from launchkit.testing import RecordingProvider
from launchkit.types import OutgoingMessage, ProviderUnavailable, SendResult, SendStatus
from tests.backends import Database

pytestmark = pytest.mark.every_backend

# init_project(…, 2030-01-01): waitlist 2030-01-02 09:00, cart 2030-01-09 09:00 → 2030-01-13 23:59,
# close 2030-01-14 08:00. Emails: welcome (join, catch_up), behind-the-scenes (start + 2d at 09:00),
# doors-open, faq, last-call, welcome-buyers, next-time.
WAITLIST_OPENS = "2030-01-02 09:05"
DOORS_OPEN = "2030-01-09 09:05"


@pytest.fixture
def root(tmp_path: Path, database: Database) -> Path:
    folder = database.project(tmp_path / "project")
    for i in range(5):
        audience.add(Project.open(folder, now="2029-12-20 10:00"), f"p{i}@example.com", first_name=f"P{i}", tags=["newsletter", "waitlist"])
    return folder


def at(root: Path, moment: str) -> Project:
    return Project.open(root, now=moment)


def statuses(root: Path, email_id: str) -> dict[str, int]:
    with at(root, DOORS_OPEN).store.connect() as conn:
        return {s: n for (_, e, s), n in outbox.counts(conn).items() if e == email_id}


def test_nothing_is_sent_twice_when_ticks_repeat(root: Path) -> None:
    provider = RecordingProvider()
    for _ in range(3):
        tick(at(root, WAITLIST_OPENS), provider=provider)
    assert sorted(m.to for m in provider.sent) == [f"p{i}@example.com" for i in range(5)]


def test_dry_run_renders_what_is_due_and_changes_nothing(root: Path) -> None:
    report = tick(at(root, WAITLIST_OPENS), dry_run=True)
    assert len(report.would_send) == 5
    assert {m.email for m in report.would_send} == {"welcome"}
    assert not (root / "mail").exists()
    assert statuses(root, "welcome") == {}  # not even planned
    provider = RecordingProvider()
    tick(at(root, WAITLIST_OPENS), provider=provider)
    assert len(provider.sent) == 5


def test_editing_an_email_time_moves_its_scheduled_rows_but_not_sent_ones(root: Path) -> None:
    provider = RecordingProvider()
    tick(at(root, WAITLIST_OPENS), provider=provider)
    launch_file = root / "sequences" / "example-launch.toml"
    text = launch_file.read_text()
    launch_file.write_text(text.replace('when = "start + 2d at 09:00"', 'when = "start + 1d at 07:00"'))
    tick(at(root, "2030-01-03 07:10"), provider=provider)
    assert provider.to("p0@example.com") == ["welcome", "behind-the-scenes"]
    assert statuses(root, "welcome") == {"sent": 5}


def test_removing_an_email_skips_its_scheduled_rows(root: Path) -> None:
    tick(at(root, WAITLIST_OPENS), provider=RecordingProvider())
    launch_file = root / "sequences" / "example-launch.toml"
    text = launch_file.read_text()
    start = text.index('  [[phase.email]]\n  id = "behind-the-scenes"')
    end = text.index("# ----", start)
    launch_file.write_text(text[:start] + text[end:])
    provider = RecordingProvider()
    tick(at(root, "2030-01-04 09:05"), provider=provider)
    assert provider.sent == []
    assert statuses(root, "behind-the-scenes") == {"skipped": 5}


def test_a_purchase_recorded_before_send_time_stops_an_unless_converted_email(root: Path) -> None:
    tick(at(root, DOORS_OPEN), provider=RecordingProvider())
    conversions.record(at(root, "2030-01-10 09:59"), [conversions.Purchase("p1@example.com", "course", 99)], source="test")
    provider = RecordingProvider()
    tick(at(root, "2030-01-10 10:00"), provider=provider)  # faq: start + 1d at 10:00, unless converted
    assert sorted(m.to for m in provider.sent if m.email == "faq") == ["p0@example.com", "p2@example.com", "p3@example.com", "p4@example.com"]


def test_transient_failures_are_retried_later_and_permanent_ones_recorded(root: Path) -> None:
    def answer(message):  # type: ignore[no-untyped-def]
        if message.to == "p1@example.com":
            return SendResult(message.key, SendStatus.TRANSIENT, reason="421 try later", retry_after=120)
        if message.to == "p2@example.com":
            return SendResult(message.key, SendStatus.PERMANENT, reason="550 no such mailbox")
        return None

    provider = RecordingProvider(answer=answer)
    report = tick(at(root, WAITLIST_OPENS), provider=provider)
    assert (report.sent, report.retried, report.failed) == (3, 1, 1)
    provider.answer = None
    tick(at(root, "2030-01-02 09:06"), provider=provider)  # too soon: Retry-After was 120 s
    assert provider.to("p1@example.com") == []
    tick(at(root, "2030-01-02 09:10"), provider=provider)
    assert provider.to("p1@example.com") == ["welcome"]
    assert provider.to("p2@example.com") == []
    assert statuses(root, "welcome") == {"sent": 4, "failed": 1}


def test_a_provider_that_raises_leaves_its_batch_in_doubt_not_resent(root: Path) -> None:
    provider = RecordingProvider(raises=ConnectionResetError("peer went away"))
    report = tick(at(root, WAITLIST_OPENS), provider=provider)
    assert report.in_doubt == 5
    tick(at(root, "2030-01-02 09:10"), provider=provider)
    assert provider.sent == []
    assert statuses(root, "welcome") == {"in_doubt": 5}


class LockedOutProvider(RecordingProvider):
    """A service that refuses the API key: nothing can go until the setting is fixed."""

    max_batch = 2  # type: ignore[misc]  # several chunks: the refused one and those never handed over

    def send(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        self.calls.append(len(messages))
        raise ProviderUnavailable("recording: HTTP 401: invalid API key")


def test_a_provider_that_cannot_send_stops_the_tick_and_every_message_stays_scheduled(root: Path) -> None:
    locked_out = LockedOutProvider()
    with pytest.raises(LaunchkitError, match=r"provider 'recording' cannot send: recording: HTTP 401: invalid API key\. Nothing was sent"):
        tick(at(root, WAITLIST_OPENS), provider=locked_out)
    assert locked_out.calls == [2]  # the tick stopped at the first refusal
    assert statuses(root, "welcome") == {"scheduled": 5}

    provider = RecordingProvider()
    report = tick(at(root, "2030-01-02 09:10"), provider=provider)  # the key fixed
    assert report.sent == 5
    assert sorted(m.to for m in provider.sent) == [f"p{i}@example.com" for i in range(5)]
    assert statuses(root, "welcome") == {"sent": 5}


def test_after_a_crash_claimed_rows_are_sent_and_sending_rows_are_in_doubt(root: Path) -> None:
    project = at(root, WAITLIST_OPENS)
    tick(at(root, "2030-01-01 10:00"), provider=RecordingProvider())  # plans, sends nothing yet
    with project.store.begin() as conn:
        ids = [row.id for row in outbox.claim(conn, project.now(), limit=2, token="dead", lease_until=project.now())]
        conn.execute(update(outbox_table).where(outbox_table.c.id == ids[0]).values(status="sending"))
    project.store.close()  # the crash: on PostgreSQL the dead worker's session, and its claims' lock, end with it
    provider = RecordingProvider()
    report = tick(project, provider=provider)
    assert report.in_doubt == 1 and report.recovered == 1
    assert len(provider.sent) == 4
    assert statuses(root, "welcome") == {"sent": 4, "in_doubt": 1}
    with project.store.connect() as conn:  # `outbox --in-doubt` shows when it was found so, not when it was planned
        [doubt] = outbox.listing(conn, ["in_doubt"])
    assert doubt.updated_at > datetime.now(timezone.utc) - timedelta(minutes=5)


def test_a_before_send_plugin_can_change_or_veto_a_message(root: Path) -> None:
    (root / "plugins" / "redirect.py").write_text(
        "from launchkit import hookimpl\n"
        "from launchkit.types import SkipMessage\n\n"
        "@hookimpl\n"
        "def before_send(message):\n"
        "    if message.to == 'p3@example.com':\n"
        "        raise SkipMessage('test address')\n"
        "    message.headers['X-Campaign'] = message.launch\n\n"
        "@hookimpl\n"
        "def template_context(launch, phase, email, contact):\n"
        "    return {'coupon': 'EARLY-' + contact.email.split('@')[0].upper()}\n"
    )
    body = root / "sequences" / "example-launch" / "welcome.md"
    body.write_text(body.read_text() + "\nCode: {{ coupon }}\n")
    provider = RecordingProvider()
    report = tick(at(root, WAITLIST_OPENS), provider=provider)
    assert report.skipped == 1 and len(provider.sent) == 4
    message = provider.sent[0]
    assert message.headers["X-Campaign"] == "example-launch"
    assert f"Code: EARLY-{message.to.split('@')[0].upper()}" in message.text


def test_a_plugin_that_raises_fails_its_message_and_the_send_goes_on(root: Path) -> None:
    (root / "plugins" / "buggy.py").write_text(
        "from launchkit import hookimpl\n\n"
        "@hookimpl\n"
        "def before_send(message):\n"
        "    if message.to == 'p3@example.com':\n"
        "        raise RuntimeError('no CRM entry')\n\n"
        "@hookimpl\n"
        "def template_context(launch, phase, email, contact):\n"
        "    return {'initial': contact.email[0] if contact.email != 'p1@example.com' else None.upper()}\n"
    )
    provider = RecordingProvider()
    report = tick(at(root, WAITLIST_OPENS), provider=provider)
    assert report.failed == 2 and sorted(m.to for m in provider.sent) == ["p0@example.com", "p2@example.com", "p4@example.com"]
    with at(root, WAITLIST_OPENS).store.connect() as conn:
        reasons = [r.reason or "" for r in outbox.listing(conn, ["failed"])]
    assert any("a before_send plugin raised RuntimeError('no CRM entry') at " in r and "buggy.py, line 6" in r for r in reasons), reasons
    assert any("a template_context plugin raised AttributeError" in r and "buggy.py, line 10" in r and "p1@example.com" in r for r in reasons), reasons


def test_templates_specialised_for_a_send_compose_the_same_messages(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Doors open: links, price, dates and the sender are shared; first names are not.
    tick(at(root, WAITLIST_OPENS), provider=RecordingProvider())
    messages = {}
    for after in (10**9, 1):
        monkeypatch.setattr(compose, "SPECIALIZE_AFTER", after)
        messages[after] = tick(at(root, DOORS_OPEN), dry_run=True).would_send
    assert len(messages[1]) == 5 and messages[1] == messages[10**9]
    assert len({m.text for m in messages[1]}) == 5


def test_a_template_context_plugin_still_sets_its_values_per_contact(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Its values may replace shared ones (``links`` here): templates are then not specialised.
    (root / "plugins" / "links.py").write_text(
        "from launchkit import hookimpl\n\n"
        "@hookimpl\n"
        "def template_context(launch, phase, email, contact):\n"
        "    return {'links': {'checkout': 'https://buy.example.com/' + contact.first_name, 'sales_page': 'https://example.com'}}\n"
    )
    monkeypatch.setattr(compose, "SPECIALIZE_AFTER", 1)
    tick(at(root, WAITLIST_OPENS), provider=RecordingProvider())
    sent = tick(at(root, DOORS_OPEN), dry_run=True).would_send
    assert sorted(m.html.count(f"https://buy.example.com/P{m.to[1]}") for m in sent) == [1] * 5


def test_a_contact_who_leaves_the_audience_is_skipped_at_send_time(root: Path) -> None:
    tick(at(root, "2030-01-01 10:00"), provider=RecordingProvider())
    audience.untag(at(root, "2030-01-02 08:00"), ["p0@example.com"], ["newsletter"])
    provider = RecordingProvider()
    tick(at(root, WAITLIST_OPENS), provider=provider)
    assert "p0@example.com" not in {m.to for m in provider.sent}
    assert len(provider.sent) == 4


@pytest.mark.sqlite_only  # on PostgreSQL two ticks share the outbox: tests/test_postgres.py
def test_a_second_tick_while_one_runs_does_nothing(root: Path) -> None:
    project = at(root, WAITLIST_OPENS)
    with project.store.tick_lock() as acquired:
        assert acquired
        report = tick(at(root, WAITLIST_OPENS), provider=RecordingProvider())
    assert report.locked and report.sent == 0


def test_a_template_mistake_stops_the_tick_and_loses_nothing(root: Path) -> None:
    from launchkit.errors import ConfigError

    body = root / "sequences" / "example-launch" / "welcome.md"
    good = body.read_text()
    body.write_text(good + "\n{% if contact.first_name %}unclosed\n")
    with pytest.raises(ConfigError, match="welcome.md"):
        tick(at(root, WAITLIST_OPENS), provider=RecordingProvider())
    assert statuses(root, "welcome") == {"scheduled": 5}  # nothing failed, nothing claimed
    body.write_text(good)
    provider = RecordingProvider()
    tick(at(root, "2030-01-02 09:30"), provider=provider)
    assert len(provider.sent) == 5


def test_an_address_the_provider_says_is_dead_is_never_sent_anything_again(root: Path) -> None:
    def answer(message):  # type: ignore[no-untyped-def]
        if message.to == "p4@example.com":
            return SendResult(message.key, SendStatus.PERMANENT, reason="550 5.1.1 no such user", suppress=True)
        return None

    tick(at(root, WAITLIST_OPENS), provider=RecordingProvider(answer=answer))
    provider = RecordingProvider()
    tick(at(root, DOORS_OPEN), provider=provider)
    assert "p4@example.com" not in {m.to for m in provider.sent}
    assert statuses(root, "doors-open") == {"sent": 4, "skipped": 1}


def test_a_tick_with_nothing_new_plans_nothing_again(root: Path) -> None:
    first = tick(at(root, "2030-01-01 10:00"), provider=RecordingProvider())
    assert first.planned == 5 * 7  # five contacts, seven emails each
    assert tick(at(root, "2030-01-01 10:01"), provider=RecordingProvider()).planned == 0
    audience.tag(at(root, "2030-01-01 10:02"), ["p0@example.com"], ["vip"])
    assert tick(at(root, "2030-01-01 10:03"), provider=RecordingProvider()).planned == 7  # only the changed contact
    assert tick(at(root, "2030-01-01 10:04"), provider=RecordingProvider()).planned == 0
