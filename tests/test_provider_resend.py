"""The resend provider, driven by real ticks against a local server that speaks Resend's API."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest
from fakes.resend import FakeResend
from fakes.server import serve
from sqlalchemy import select

from launchkit import audience
from launchkit.errors import LaunchkitError
from launchkit.project import Project
from launchkit.runner import tick
from launchkit.store import outbox
from launchkit.store.tables import outbox as outbox_table

KEY = "re_123456789_abcdefghijklmnop"
WAITLIST_OPENS = "2030-01-02 09:05"  # the example launch's welcome email is due at 09:00
WAITLIST = ["ada@example.com", "grace@example.com", "linus@example.org"]  # tagged waitlist in audience.csv
IMPATIENT = "timeout = 0.3"  # seconds: for the tests where the fake answers late on purpose


def at(root: Path, moment: str) -> Project:
    return Project.open(root, now=moment)


def add_settings(root: Path, *lines: str) -> None:
    """More keys for [delivery.resend], the last table of launchkit.toml."""
    config = root / "launchkit.toml"
    config.write_text(config.read_text() + "".join(f"{line}\n" for line in lines))


def outbox_rows(root: Path) -> dict[str, outbox.Row]:
    """The welcome email's outbox rows, by address."""
    with at(root, WAITLIST_OPENS).store.connect() as conn:
        return {row.address: row for row in outbox.listing(conn, outbox.STATUSES, limit=0) if row.email_id == "welcome"}


def delivered(resend: FakeResend) -> list[str]:
    return sorted(address for email in resend.accepted for address in email.to)


@pytest.fixture
def resend() -> FakeResend:
    return FakeResend(api_key=KEY)


@pytest.fixture
def root(use_provider: Callable[..., Path], resend: FakeResend, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("RESEND_API_KEY", KEY)
    with serve(resend.app) as url:
        table = f'[delivery.resend]\napi_key = "${{RESEND_API_KEY}}"\nbase_url = "{url}"\n'
        root = use_provider("resend", table, tracking="https://go.example.com")
        audience.import_csv(at(root, "2030-01-01 10:00"), root / "audience.csv")
        yield root


def test_each_message_is_posted_with_the_bearer_key_and_its_own_idempotency_key(root: Path, resend: FakeResend) -> None:
    report = tick(at(root, WAITLIST_OPENS))

    assert report.sent == 3
    assert delivered(resend) == sorted(WAITLIST)
    assert {s.path for s in resend.seen} == {"/emails"}
    keys = [s.idempotency_key or "" for s in resend.seen]
    assert len(set(keys)) == 3 and all(k.startswith("launchkit/example-launch/welcome/") for k in keys)
    [ada] = resend.to("ada@example.com")
    assert ada.email["from"] == "Your Name <you@example.com>"
    assert ada.email["to"] == ["Ada Lovelace <ada@example.com>"]
    assert ada.email["subject"] == "You're on the list, Ada!"
    assert "Hi Ada," in ada.email["text"] and "Hi Ada," in ada.email["html"]
    assert ada.email["reply_to"] == "you@example.com"
    assert ada.email["headers"]["List-Unsubscribe"].startswith("<https://go.example.com/u/")
    assert ada.email["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert ada.email["tags"] == [{"name": "launch", "value": "example-launch"}, {"name": "email", "value": "welcome"}]
    with at(root, WAITLIST_OPENS).store.connect() as conn:
        recorded = set(conn.execute(select(outbox_table.c.provider_message_id).where(outbox_table.c.status == "sent")).scalars())
    assert recorded == {email.id for email in resend.accepted}


def test_a_wrong_api_key_stops_the_tick_with_resends_message_and_the_next_tick_sends_everything_once(
    root: Path, resend: FakeResend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RESEND_API_KEY", "re_revoked")

    with pytest.raises(LaunchkitError, match=r"provider 'resend' cannot send: resend: HTTP 403: API key is invalid\. Nothing was sent"):
        tick(at(root, WAITLIST_OPENS))

    assert resend.accepted == [] and len(resend.seen) == 1  # the first message alone: nothing ran beside it
    assert {row.status for row in outbox_rows(root).values()} == {"scheduled"}
    monkeypatch.setenv("RESEND_API_KEY", KEY)  # fixed
    assert tick(at(root, "2030-01-02 09:10")).sent == 3
    assert delivered(resend) == sorted(WAITLIST)


def test_an_address_resend_refuses_fails_alone_and_the_others_are_sent(root: Path, resend: FakeResend) -> None:
    resend.reject["grace@example.com"] = "The `to` address is on your suppression list."

    report = tick(at(root, WAITLIST_OPENS))

    assert (report.sent, report.failed) == (2, 1)
    assert delivered(resend) == ["ada@example.com", "linus@example.org"]
    grace = outbox_rows(root)["grace@example.com"]
    assert grace.status == "failed" and "suppression list" in (grace.reason or "")


def test_a_429_with_a_long_retry_after_is_retried_by_a_later_tick_and_delivered_once(root: Path, resend: FakeResend) -> None:
    resend.fail_next(3, status=429, retry_after=120)

    report = tick(at(root, WAITLIST_OPENS))
    assert report.retried == 3 and resend.accepted == []

    tick(at(root, "2030-01-02 09:06"))  # sooner than Resend asked
    assert resend.accepted == [] and len(resend.seen) == 3

    report = tick(at(root, "2030-01-02 09:08"))
    assert report.sent == 3 and delivered(resend) == sorted(WAITLIST)


def test_a_429_with_a_short_retry_after_is_waited_out_within_the_tick(root: Path, resend: FakeResend) -> None:
    add_settings(root, "concurrency = 1")
    resend.fail_next(2, status=429, retry_after=1)

    report = tick(at(root, WAITLIST_OPENS))

    assert report.sent == 3 and delivered(resend) == sorted(WAITLIST)
    assert [s.status for s in resend.seen] == [429, 429, 200, 200, 200]


def test_a_timeout_after_resend_took_the_message_is_replayed_with_the_same_key_and_sent_once(root: Path, resend: FakeResend) -> None:
    add_settings(root, "concurrency = 1", IMPATIENT)
    resend.slow_next(1, seconds=1.0)  # Resend takes the first message; its answer is lost

    report = tick(at(root, WAITLIST_OPENS))

    assert report.sent == 3 and report.in_doubt == 0
    assert delivered(resend) == sorted(WAITLIST)  # each once
    first, replay = resend.seen[0], resend.seen[1]
    assert first.idempotency_key == replay.idempotency_key and replay.status == 200
    assert resend.replays == 1


def test_a_replay_that_arrives_while_resend_is_still_working_waits_for_the_first_answer(root: Path, resend: FakeResend) -> None:
    add_settings(root, "concurrency = 1", IMPATIENT)
    resend.slow_next(1, seconds=1.0, while_processing=True)  # longer than the timeout and the first pause

    report = tick(at(root, WAITLIST_OPENS))

    assert report.sent == 3 and delivered(resend) == sorted(WAITLIST)
    # The first request is answered after launchkit stopped waiting; the replay finds it
    # still in progress (409), the next one gets the first answer again.
    assert [s.status for s in resend.seen[:3]] == [200, 409, 200] and resend.replays == 1
    assert len({s.idempotency_key for s in resend.seen[:3]}) == 1


def test_when_no_replay_is_answered_a_later_tick_retries_the_same_key_and_resend_sends_once(root: Path, resend: FakeResend) -> None:
    add_settings(root, "concurrency = 1", IMPATIENT)
    resend.slow_next(3, seconds=0.6)  # the first message and both its replays: no answer this tick

    report = tick(at(root, WAITLIST_OPENS))
    assert (report.sent, report.retried, report.in_doubt) == (2, 1, 0)  # idempotent: retried, not in doubt

    report = tick(at(root, "2030-01-02 09:07"))
    assert report.sent == 1
    assert delivered(resend) == sorted(WAITLIST)  # Resend answered from its idempotency store
    assert resend.replays == 3
    assert {row.status for row in outbox_rows(root).values()} == {"sent"}


def test_a_retry_whose_content_changed_meanwhile_is_left_in_doubt_not_sent_twice(root: Path, resend: FakeResend) -> None:
    (root / "plugins" / "stamp.py").write_text(
        "import time\n"
        "from launchkit import hookimpl\n\n"
        "@hookimpl\n"
        "def before_send(message):\n"
        "    message.headers['X-Rendered-At'] = str(time.time_ns())\n"
    )
    add_settings(root, "concurrency = 1", IMPATIENT)
    resend.slow_next(3, seconds=0.6)

    tick(at(root, WAITLIST_OPENS))
    report = tick(at(root, "2030-01-02 09:07"))

    assert report.in_doubt == 1
    assert delivered(resend) == sorted(WAITLIST)  # the doubtful one too, once
    [doubtful] = [row for row in outbox_rows(root).values() if row.status == "in_doubt"]
    assert "HTTP 409" in (doubtful.reason or "") and "most likely went out" in (doubtful.reason or "")


class TestBatchMode:
    @pytest.fixture(autouse=True)
    def batches(self, root: Path) -> None:
        config = root / "launchkit.toml"
        config.write_text(config.read_text().replace('rate = "50/s"', 'rate = "1000/s"', 1))
        add_settings(root, "batch = true")

    def test_up_to_100_emails_go_in_one_call_and_a_refused_one_fails_alone(self, root: Path, resend: FakeResend) -> None:
        readers = [f"reader{i:03}@example.com" for i in range(120)]
        for address in readers:
            audience.add(at(root, "2030-01-01 11:00"), address, tags=["newsletter", "waitlist"])
        resend.reject["reader007@example.com"] = "The `to` address is on your suppression list."

        report = tick(at(root, WAITLIST_OPENS))

        assert (report.sent, report.failed) == (122, 1)
        assert [s.path for s in resend.seen] == ["/emails/batch", "/emails/batch"]
        assert all(s.batch_validation == "permissive" and (s.idempotency_key or "").startswith("launchkit-batch/") for s in resend.seen)
        assert delivered(resend) == sorted(set(readers + WAITLIST) - {"reader007@example.com"})
        reader7 = outbox_rows(root)["reader007@example.com"]
        assert reader7.status == "failed" and "suppression list" in (reader7.reason or "")
        with at(root, WAITLIST_OPENS).store.connect() as conn:
            recorded = set(conn.execute(select(outbox_table.c.provider_message_id).where(outbox_table.c.status == "sent")).scalars())
        assert recorded == {email.id for email in resend.accepted}

    def test_a_batch_whose_answer_was_lost_is_replayed_with_the_same_key_and_stored_once(self, root: Path, resend: FakeResend) -> None:
        add_settings(root, IMPATIENT)
        resend.slow_next(1, seconds=1.0)

        report = tick(at(root, WAITLIST_OPENS))

        assert report.sent == 3
        assert delivered(resend) == sorted(WAITLIST)
        assert [s.status for s in resend.seen] == [0, 200] and resend.replays == 1
        assert resend.seen[0].idempotency_key == resend.seen[1].idempotency_key

    def test_a_batch_never_answered_is_left_in_doubt_because_a_later_batch_key_would_differ(self, root: Path, resend: FakeResend) -> None:
        add_settings(root, IMPATIENT)
        resend.slow_next(3, seconds=0.6)

        report = tick(at(root, WAITLIST_OPENS))
        assert report.in_doubt == 3 and report.retried == 0

        tick(at(root, "2030-01-02 12:00"))
        assert len(resend.seen) == 3  # nothing is resent on a guess
        assert delivered(resend) == sorted(WAITLIST)  # Resend did take them, once


def test_importing_the_plugin_does_not_load_httpx() -> None:
    code = "import sys, launchkit_plugins.resend; print('httpx' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
