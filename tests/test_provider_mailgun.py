"""The mailgun provider, driven by real ticks against a local server that speaks Mailgun's API."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest
from fakes.mailgun import FakeMailgun, Fault
from fakes.server import serve
from sqlalchemy import select

from launchkit import audience
from launchkit.errors import LaunchkitError
from launchkit.project import Project
from launchkit.runner import tick
from launchkit.store import outbox
from launchkit.store.tables import outbox as outbox_table

KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"
WAITLIST_OPENS = "2030-01-02 09:05"  # the example launch's welcome email is due at 09:00
WAITLIST = ["ada@example.com", "grace@example.com", "linus@example.org"]  # tagged waitlist in audience.csv


def at(root: Path, moment: str) -> Project:
    return Project.open(root, now=moment)


def outbox_rows(root: Path) -> dict[str, outbox.Row]:
    """The welcome email's outbox rows, by address."""
    with at(root, WAITLIST_OPENS).store.connect() as conn:
        return {row.address: row for row in outbox.listing(conn, outbox.STATUSES, limit=0) if row.email_id == "welcome"}


@pytest.fixture
def mailgun() -> FakeMailgun:
    return FakeMailgun(api_key=KEY, domain="mg.example.com")


@pytest.fixture
def root(use_provider: Callable[..., Path], mailgun: FakeMailgun, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("MAILGUN_API_KEY", KEY)
    with serve(mailgun.app) as url:
        table = f'[delivery.mailgun]\napi_key = "${{MAILGUN_API_KEY}}"\ndomain = "mg.example.com"\nbase_url = "{url}"\n'
        root = use_provider("mailgun", table, tracking="https://go.example.com")
        audience.import_csv(at(root, "2030-01-01 10:00"), root / "audience.csv")
        yield root


def test_each_message_is_one_authenticated_request_with_its_headers_variables_and_tags(root: Path, mailgun: FakeMailgun) -> None:
    report = tick(at(root, WAITLIST_OPENS))

    assert report.sent == 3 and mailgun.requests == 3
    assert sorted(m.to for m in mailgun.accepted) == sorted(WAITLIST)
    [ada] = mailgun.to("ada@example.com")
    assert ada["from"] == "Your Name <you@example.com>"
    assert ada["to"] == "Ada Lovelace <ada@example.com>"
    assert ada["subject"] == "You're on the list, Ada!"
    assert "Hi Ada," in ada["text"] and "Hi Ada," in ada["html"]
    assert ada["h:Reply-To"] == "you@example.com"
    assert ada["h:List-Unsubscribe"].startswith("<https://go.example.com/u/")
    assert ada["h:List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert ada["v:launch"] == "example-launch" and ada["v:email"] == "welcome"
    assert ada["v:key"].startswith("example-launch/welcome/")
    assert ada.fields["o:tag"] == ["example-launch", "example-launch/welcome"]
    with at(root, WAITLIST_OPENS).store.connect() as conn:
        recorded = set(conn.execute(select(outbox_table.c.provider_message_id).where(outbox_table.c.status == "sent")).scalars())
    assert recorded == {m.id for m in mailgun.accepted}
    assert ada["h:Message-Id"].startswith("<example-launch.welcome.")  # launchkit's Message-ID, the same on every attempt


def test_a_wrong_api_key_stops_the_tick_with_mailguns_words_and_the_next_tick_sends_everything_once(
    root: Path, mailgun: FakeMailgun, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILGUN_API_KEY", "key-revoked")

    with pytest.raises(LaunchkitError, match=r"provider 'mailgun' cannot send: mailgun: HTTP 401: Invalid private key\. Nothing was sent"):
        tick(at(root, WAITLIST_OPENS))

    assert mailgun.accepted == [] and mailgun.requests == 1  # the first message alone: nothing ran beside it
    assert {row.status for row in outbox_rows(root).values()} == {"scheduled"}
    monkeypatch.setenv("MAILGUN_API_KEY", KEY)  # fixed
    assert tick(at(root, "2030-01-02 09:10")).sent == 3
    assert sorted(m.to for m in mailgun.accepted) == sorted(WAITLIST)
    assert {row.status for row in outbox_rows(root).values()} == {"sent"}


def test_an_address_mailgun_refuses_fails_alone_and_the_others_are_sent(root: Path, mailgun: FakeMailgun) -> None:
    mailgun.reject["grace@example.com"] = "'grace@example.com' is on the domain's complaint list"

    report = tick(at(root, WAITLIST_OPENS))

    assert (report.sent, report.failed) == (2, 1)
    assert sorted(m.to for m in mailgun.accepted) == ["ada@example.com", "linus@example.org"]
    rows = outbox_rows(root)
    assert rows["grace@example.com"].status == "failed"
    assert "complaint list" in (rows["grace@example.com"].reason or "")


def test_a_429_with_retry_after_is_retried_after_that_delay_and_delivered_once(root: Path, mailgun: FakeMailgun) -> None:
    mailgun.fail_next(3, status=429, retry_after=120)

    report = tick(at(root, WAITLIST_OPENS))
    assert report.retried == 3 and mailgun.accepted == []

    tick(at(root, "2030-01-02 09:06"))  # sooner than Mailgun asked
    assert mailgun.accepted == [] and mailgun.requests == 3

    report = tick(at(root, "2030-01-02 09:08"))
    assert report.sent == 3
    assert sorted(m.to for m in mailgun.accepted) == sorted(WAITLIST)


def test_random_outages_end_with_every_message_sent_exactly_once(root: Path, mailgun: FakeMailgun) -> None:
    people = [f"reader{i}@example.com" for i in range(30)]
    for address in people:
        audience.add(at(root, "2030-01-01 11:00"), address, tags=["newsletter", "waitlist"])
    mailgun.fault_rate = 0.3
    mailgun.fault = Fault(503)

    moments = ["2030-01-02 09:05", "2030-01-02 10:06", "2030-01-02 11:07", "2030-01-02 12:08", "2030-01-02 13:09"]
    for moment in moments:
        tick(at(root, moment))

    delivered = sorted(m.to for m in mailgun.accepted)
    assert delivered == sorted(people + WAITLIST)  # everyone, and nobody twice
    assert mailgun.requests > len(delivered)  # faults did happen
    assert {row.status for row in outbox_rows(root).values()} == {"sent"}


def test_a_request_whose_answer_never_comes_is_left_in_doubt_and_not_resent(root: Path, mailgun: FakeMailgun) -> None:
    config = root / "launchkit.toml"
    config.write_text(config.read_text() + "concurrency = 1\ntimeout = 0.5\n")
    mailgun.slow_next(1, seconds=1.5)  # the first message is queued, but the answer is lost

    report = tick(at(root, WAITLIST_OPENS))

    assert (report.sent, report.in_doubt) == (2, 1)
    in_doubt = [row for row in outbox_rows(root).values() if row.status == "in_doubt"]
    assert len(in_doubt) == 1 and "no answer after sending" in (in_doubt[0].reason or "")
    tick(at(root, "2030-01-02 12:00"))
    assert len(mailgun.to(in_doubt[0].address)) == 1  # Mailgun has it once; launchkit did not guess


def test_a_header_that_would_inject_other_headers_is_refused_before_mailgun_sees_it(root: Path, mailgun: FakeMailgun) -> None:
    (root / "plugins" / "campaign.py").write_text(
        "from launchkit import hookimpl\n\n"
        "@hookimpl\n"
        "def before_send(message):\n"
        "    if message.to == 'ada@example.com':\n"
        "        message.headers['X-Campaign'] = 'spring\\r\\nBcc: everyone@example.com'\n"
    )

    report = tick(at(root, WAITLIST_OPENS))

    assert (report.sent, report.failed) == (2, 1)
    assert mailgun.to("ada@example.com") == [] and mailgun.requests == 2
    assert "line break" in (outbox_rows(root)["ada@example.com"].reason or "")


def test_the_region_chooses_mailguns_us_or_eu_endpoint(root: Path) -> None:
    config = root / "launchkit.toml"
    text = config.read_text()
    base_url = next(line for line in text.splitlines() if line.startswith("base_url = \"http://127.0.0.1"))
    config.write_text(text.replace(base_url, 'region = "eu"'))
    provider = at(root, WAITLIST_OPENS).provider()
    assert str(provider.client.base_url) == "https://api.eu.mailgun.net"  # type: ignore[attr-defined]
    provider.close()

    config.write_text(text.replace(base_url, 'region = "mars"'))
    with pytest.raises(LaunchkitError, match='region must be "us" or "eu"'):
        at(root, WAITLIST_OPENS).provider()


def test_a_missing_domain_is_a_clear_configuration_error(root: Path) -> None:
    config = root / "launchkit.toml"
    config.write_text(config.read_text().replace('domain = "mg.example.com"\n', ""))
    with pytest.raises(LaunchkitError, match=r"\[delivery.mailgun\] needs domain"):
        at(root, WAITLIST_OPENS).provider()


def test_importing_the_plugin_does_not_load_httpx() -> None:
    code = "import sys, launchkit_plugins.mailgun; print('httpx' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
