"""The postmark provider, driven through real ticks against a local server speaking Postmark's batch API."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest
from click.testing import CliRunner
from sqlalchemy import select

import launchkit_plugins.postmark as postmark_plugin
from launchkit.cli import cli
from launchkit.engine import TickReport
from launchkit.errors import LaunchkitError
from launchkit.project import Project
from launchkit.runner import tick
from launchkit.store.tables import contacts as contacts_table
from launchkit.store.tables import outbox as outbox_table
from launchkit.types import OutgoingMessage, ProviderContext, SendStatus
from tests.fakes.postmark import FakePostmark
from tests.fakes.server import serve
from tests.outbox_views import reasons, statuses

TOKEN = "pm-server-token"
# init_project(…, 2030-01-01): the waitlist opens 2030-01-02 09:00, and `welcome` (when = "join")
# is then due for everyone tagged waitlist.
WAITLIST_OPENS = "2030-01-02 09:05"

MakeProject = Callable[..., Path]


@pytest.fixture
def postmark() -> FakePostmark:
    return FakePostmark(token=TOKEN, keep_bodies=True)


@pytest.fixture
def postmark_url(postmark: FakePostmark) -> Iterator[str]:
    with serve(postmark.app) as url:
        yield url


@pytest.fixture
def make_project(waitlist_project: Callable[..., Path], postmark_url: str, monkeypatch: pytest.MonkeyPatch) -> MakeProject:
    """A project from `launchkit init` sending through the fake, with ``contacts`` on the waitlist."""
    monkeypatch.setenv("POSTMARK_TOKEN", TOKEN)

    def make(contacts: int = 3, *, section: str | None = None, people: list[tuple[str, str, str]] | None = None) -> Path:
        if section is None:
            section = f'[delivery.postmark]\nserver_token = "${{POSTMARK_TOKEN}}"\nbase_url = "{postmark_url}"\n'
        return waitlist_project("postmark", section, people or [(f"p{i}@example.com", f"P{i}", "") for i in range(contacts)])

    return make


def run(root: Path, moment: str = WAITLIST_OPENS) -> TickReport:
    return tick(Project.open(root, now=moment))


def test_a_batch_is_posted_to_postmark_with_the_server_token_and_every_field(make_project: MakeProject, postmark: FakePostmark) -> None:
    root = make_project(people=[("ada@example.com", "Ada", "Lovelace"), ("grace@example.com", "Grace", "Hopper, Jr."), ("linus@example.org", "", "")])
    report = run(root)
    assert (report.sent, report.failed) == (3, 0)
    [request] = postmark.requests
    assert request.headers["x-postmark-server-token"] == TOKEN
    assert request.headers["accept"] == "application/json"
    assert request.headers["content-type"] == "application/json"
    assert request.messages == 3
    by_address = {m.to: m.body for m in postmark.accepted}
    assert set(by_address) == {"Ada Lovelace <ada@example.com>", '"Grace Hopper, Jr." <grace@example.com>', "linus@example.org"}
    ada = by_address["Ada Lovelace <ada@example.com>"]
    assert ada is not None
    assert ada["From"] == "Your Name <you@example.com>"
    assert ada["ReplyTo"] == "you@example.com"
    assert ada["Subject"] == "You're on the list, Ada!"
    assert "Ada" in ada["TextBody"] and "<html" in ada["HtmlBody"]
    assert ada["MessageStream"] == "broadcast"
    headers = {h["Name"]: h["Value"] for h in ada["Headers"]}
    assert headers["List-Unsubscribe"].startswith("<mailto:you@example.com")
    assert statuses(root) == {"sent": 3}


def test_tag_and_metadata_carry_the_launch_the_email_and_the_outbox_key(make_project: MakeProject, postmark: FakePostmark) -> None:
    root = make_project(contacts=3)
    run(root)
    with Project.open(root).store.connect() as conn:
        ids = dict(conn.execute(select(contacts_table.c.email, contacts_table.c.id)).all())
        message_ids = dict(conn.execute(select(outbox_table.c.contact_id, outbox_table.c.provider_message_id).where(outbox_table.c.email_id == "welcome")).all())
    assert len(postmark.accepted) == 3
    for message in postmark.accepted:
        contact_id = ids[message.to.split("<")[1].rstrip(">")]
        assert message.tag == "welcome"
        assert message.metadata == {"launch": "example-launch", "email": "welcome", "key": f"example-launch/welcome/{contact_id}"}
        assert message_ids[contact_id] == message.message_id  # webhooks find the row by Postmark's MessageID too


def test_a_wrong_server_token_stops_the_tick_with_postmarks_words_and_the_next_tick_sends_everything_once(
    make_project: MakeProject, postmark: FakePostmark, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project(contacts=3)
    postmark.token = "the-real-token"
    with pytest.raises(LaunchkitError, match=r"provider 'postmark' cannot send: postmark: HTTP 401: ErrorCode 10: The Server Token you provided"):
        run(root)
    assert postmark.accepted == [] and len(postmark.requests) == 1
    assert statuses(root) == {"scheduled": 3}
    monkeypatch.setenv("POSTMARK_TOKEN", "the-real-token")  # fixed
    assert run(root, "2030-01-02 09:10").sent == 3
    assert len(postmark.accepted) == 3 and len(postmark.requests) == 2
    assert statuses(root) == {"sent": 3}


def test_an_inactive_recipient_fails_alone_and_the_rest_of_the_batch_is_sent(make_project: MakeProject, postmark: FakePostmark) -> None:
    root = make_project(contacts=4)
    postmark.reject = {"p1@example.com"}
    report = run(root)
    assert (report.sent, report.failed) == (3, 1)
    assert len(postmark.requests) == 1
    assert sorted(m.to for m in postmark.accepted) == ["P0 <p0@example.com>", "P2 <p2@example.com>", "P3 <p3@example.com>"]
    [(address, reason)] = reasons(root, "failed").items()
    assert address == "p1@example.com"
    assert reason.startswith("postmark: ErrorCode 406: You tried to send to recipient(s) that have been marked as inactive")
    run(root, "2030-01-02 12:00")
    assert len(postmark.requests) == 1
    with Project.open(root).store.connect() as conn:  # Postmark will refuse every later email too
        assert conn.execute(select(contacts_table.c.status).where(contacts_table.c.email == "p1@example.com")).scalar() == "bounced"


def test_a_429_is_retried_after_its_retry_after_and_delivered_once(make_project: MakeProject, postmark: FakePostmark) -> None:
    root = make_project(contacts=3)
    postmark.retry_after = 120
    postmark.fail_next("429")
    report = run(root)  # 09:05:00, so not before 09:07:00
    assert (report.sent, report.retried) == (0, 3)
    assert reasons(root, "scheduled") == {f"p{i}@example.com": "postmark: HTTP 429: ErrorCode 429: Rate limit exceeded." for i in range(3)}
    assert run(root, "2030-01-02 09:06").sent == 0
    assert [r.status for r in postmark.requests] == [429]
    assert run(root, "2030-01-02 09:08").sent == 3
    run(root, "2030-01-02 09:30")
    assert [r.status for r in postmark.requests] == [429, 200]
    assert sorted(m.to for m in postmark.accepted) == [f"P{i} <p{i}@example.com>" for i in range(3)]
    assert statuses(root) == {"sent": 3}


@pytest.mark.parametrize("fault", ["500", "503"])
def test_a_server_error_is_retried_on_a_later_tick(make_project: MakeProject, postmark: FakePostmark, fault: str) -> None:
    root = make_project(contacts=3)
    postmark.fail_next(fault)
    report = run(root)
    assert (report.sent, report.retried, report.failed) == (0, 3, 0)
    assert run(root, "2030-01-02 09:07").sent == 3  # the first backoff is at most a minute
    assert [r.status for r in postmark.requests] == [int(fault), 200]
    assert len(postmark.accepted) == 3


def test_an_account_out_of_credits_is_retried_not_failed(make_project: MakeProject, postmark: FakePostmark) -> None:
    root = make_project(contacts=2)
    postmark.message_errors = {"p0@example.com": (405, "You ran out of credits.")}
    report = run(root)
    assert (report.sent, report.retried, report.failed) == (1, 1, 0)
    assert reasons(root, "scheduled") == {"p0@example.com": "postmark: ErrorCode 405: You ran out of credits."}
    postmark.message_errors = {}
    assert run(root, "2030-01-02 09:07").sent == 1
    assert sorted(m.to for m in postmark.accepted) == ["P0 <p0@example.com>", "P1 <p1@example.com>"]


@pytest.mark.parametrize("code", [405, 412, 413])
def test_a_batch_refused_for_the_account_state_stops_the_tick_with_everything_scheduled(
    make_project: MakeProject, postmark: FakePostmark, code: int
) -> None:
    # Retrying each message would wear out its attempts while a card stays expired.
    root = make_project(contacts=2)
    postmark.account_error = (code, "Your account cannot send.")
    with pytest.raises(LaunchkitError, match=f"HTTP 422: ErrorCode {code}: Your account cannot send\\. Nothing was sent; the messages stay scheduled"):
        run(root)
    assert statuses(root) == {"scheduled": 2}
    postmark.account_error = None
    assert run(root, "2030-01-02 09:07").sent == 2
    assert [r.status for r in postmark.requests] == [422, 200]


def test_more_than_500_messages_go_in_several_batch_requests(make_project: MakeProject, postmark: FakePostmark) -> None:
    root = make_project(contacts=1203)
    postmark.keep_bodies = False
    report = run(root)
    assert report.sent == 1203
    assert [r.messages for r in postmark.requests] == [500, 500, 203]
    assert len({m.to for m in postmark.accepted}) == 1203


def test_a_batch_over_postmarks_size_limit_is_split(make_project: MakeProject, postmark: FakePostmark, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_project(contacts=5)
    monkeypatch.setattr(postmark_plugin, "BATCH_BYTES", 10_000)  # each welcome is ~4 KB of JSON
    report = run(root)
    assert report.sent == 5
    assert [r.messages for r in postmark.requests] == [2, 2, 1]
    assert all(r.size <= 10_000 for r in postmark.requests)
    assert len({m.to for m in postmark.accepted}) == 5


def test_a_connection_cut_after_sending_leaves_the_batch_in_doubt_and_never_resends_it(make_project: MakeProject, postmark: FakePostmark) -> None:
    root = make_project(contacts=3)
    postmark.fail_next("drop")
    report = run(root)
    assert (report.sent, report.in_doubt) == (0, 3)
    assert len(postmark.accepted) == 3  # Postmark did take them: resending would send twice
    run(root, "2030-01-02 12:00")
    assert len(postmark.requests) == 1
    assert statuses(root) == {"in_doubt": 3}


def test_a_line_break_in_a_header_fails_that_message_without_sending_it(postmark: FakePostmark, postmark_url: str, tmp_path: Path) -> None:
    provider = postmark_plugin.PostmarkProvider(ProviderContext("postmark", {"server_token": TOKEN, "base_url": postmark_url}, tmp_path))

    def message(key: str, to_name: str) -> OutgoingMessage:
        return OutgoingMessage(key, f"<{key}@x>", "Me <me@example.com>", f"{key}@example.com", to_name, "Hi", "text", "<p>html</p>", launch="l", email="e")

    try:
        results = {r.key: r for r in provider.send([message("good", "Good"), message("evil", "Eve\r\nBcc: everyone@example.com")])}
    finally:
        provider.close()
    assert results["good"].status == SendStatus.ACCEPTED
    assert results["evil"].status == SendStatus.PERMANENT
    assert "line break" in (results["evil"].reason or "")
    assert [m.to for m in postmark.accepted] == ["Good <good@example.com>"]


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ('[delivery.postmark]\nmessage_stream = "broadcast"\n', "[delivery.postmark] needs server_token"),
        ('[delivery.postmark]\nserver_token = "${POSTMARK_UNSET_TOKEN}"\n', "POSTMARK_UNSET_TOKEN"),
    ],
    ids=["absent", "unset-variable"],
)
def test_check_fails_clearly_when_the_server_token_is_missing(make_project: MakeProject, monkeypatch: pytest.MonkeyPatch, section: str, expected: str) -> None:
    monkeypatch.delenv("POSTMARK_UNSET_TOKEN", raising=False)
    root = make_project(contacts=1, section=section)
    result = CliRunner().invoke(cli, ["--project", str(root), "check"])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "launchkit.toml" in result.output
    assert expected in result.output
    assert "Traceback" not in result.output
