"""The sendgrid provider, driven through real ticks against a local server speaking SendGrid's v3 Mail Send API."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest
from click.testing import CliRunner
from sqlalchemy import select

import launchkit_plugins.sendgrid as sendgrid_plugin
from launchkit.cli import cli
from launchkit.engine import TickReport
from launchkit.errors import LaunchkitError
from launchkit.project import Project
from launchkit.runner import tick
from launchkit.store.tables import contacts as contacts_table
from launchkit.store.tables import outbox as outbox_table
from launchkit.types import OutgoingMessage, ProviderContext, SendStatus
from tests.fakes.sendgrid import FakeSendGrid
from tests.fakes.server import serve
from tests.outbox_views import reasons, statuses

API_KEY = "SG.launchkit-test"
# init_project(…, 2030-01-01): the waitlist opens 2030-01-02 09:00, and `welcome` (when = "join")
# is then due for everyone tagged waitlist.
WAITLIST_OPENS = "2030-01-02 09:05"

MakeProject = Callable[..., Path]


@pytest.fixture
def sendgrid() -> FakeSendGrid:
    return FakeSendGrid(api_key=API_KEY, keep_bodies=True)


@pytest.fixture
def sendgrid_url(sendgrid: FakeSendGrid) -> Iterator[str]:
    with serve(sendgrid.app) as url:
        yield url


@pytest.fixture
def make_project(waitlist_project: Callable[..., Path], sendgrid_url: str, monkeypatch: pytest.MonkeyPatch) -> MakeProject:
    """A project from `launchkit init` sending through the fake, with ``contacts`` on the waitlist."""
    monkeypatch.setenv("SENDGRID_API_KEY", API_KEY)

    def make(contacts: int = 3, *, settings: str = "", section: str | None = None, people: list[tuple[str, str, str]] | None = None) -> Path:
        if section is None:
            section = f'[delivery.sendgrid]\napi_key = "${{SENDGRID_API_KEY}}"\nbase_url = "{sendgrid_url}"\n{settings}'
        return waitlist_project("sendgrid", section, people or [(f"p{i}@example.com", f"P{i}", "") for i in range(contacts)])

    return make


def run(root: Path, moment: str = WAITLIST_OPENS) -> TickReport:
    return tick(Project.open(root, now=moment))


def test_each_message_is_its_own_request_with_the_bearer_key_and_its_own_content(make_project: MakeProject, sendgrid: FakeSendGrid) -> None:
    root = make_project(people=[("ada@example.com", "Ada", "Lovelace"), ("grace@example.com", "Grace", "Hopper, Jr."), ("linus@example.org", "", "")])
    report = run(root)
    assert (report.sent, report.failed) == (3, 0)
    assert len(sendgrid.requests) == 3
    assert {r.headers["authorization"] for r in sendgrid.requests} == {f"Bearer {API_KEY}"}
    assert {r.headers["content-type"] for r in sendgrid.requests} == {"application/json"}
    assert {m.to: m.to_name for m in sendgrid.accepted} == {
        "ada@example.com": "Ada Lovelace",
        "grace@example.com": "Grace Hopper Jr.",  # SendGrid refuses "," and ";" in a name
        "linus@example.org": None,
    }
    [ada] = sendgrid.to("ada@example.com")
    body = ada.body
    assert body is not None
    assert len(body["personalizations"]) == 1
    assert body["from"] == {"email": "you@example.com", "name": "Your Name"}
    assert body["reply_to"] == {"email": "you@example.com"}
    assert body["subject"] == "You're on the list, Ada!"
    [text, html] = body["content"]
    assert text["type"] == "text/plain" and "Ada" in text["value"]
    assert html["type"] == "text/html" and "<html" in html["value"]
    assert body["headers"]["List-Unsubscribe"].startswith("<mailto:you@example.com")
    [grace] = sendgrid.to("grace@example.com")
    assert grace.body is not None and grace.body["subject"] == "You're on the list, Grace!"
    assert statuses(root) == {"sent": 3}


def test_custom_args_carry_the_launch_the_email_and_the_outbox_key(make_project: MakeProject, sendgrid: FakeSendGrid) -> None:
    root = make_project(contacts=3)
    run(root)
    with Project.open(root).store.connect() as conn:
        ids = dict(conn.execute(select(contacts_table.c.email, contacts_table.c.id)).all())
        message_ids = dict(conn.execute(select(outbox_table.c.contact_id, outbox_table.c.provider_message_id).where(outbox_table.c.email_id == "welcome")).all())
    assert len(sendgrid.accepted) == 3
    for message in sendgrid.accepted:
        contact_id = ids[message.to]
        assert message.custom_args == {"launch": "example-launch", "email": "welcome", "key": f"example-launch/welcome/{contact_id}"}
        assert message.categories == ["welcome"]
        assert message_ids[contact_id] == message.message_id  # the X-Message-Id of its own request
    assert len(set(message_ids.values())) == 3


def test_a_wrong_api_key_stops_launchkit_run_with_sendgrids_words_and_the_next_tick_sends_everything_once(
    make_project: MakeProject, sendgrid: FakeSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project(contacts=3)
    sendgrid.api_key = "SG.the-real-key"
    result = CliRunner().invoke(cli, ["--project", str(root), "run", "--now", WAITLIST_OPENS, "--quiet"])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert (
        "provider 'sendgrid' cannot send: sendgrid: HTTP 401: The provided authorization grant is invalid, expired, or revoked. "
        "Nothing was sent; the messages stay scheduled: fix [delivery.sendgrid] and run again."
    ) in " ".join(result.output.split())
    assert sendgrid.accepted == [] and len(sendgrid.requests) == 1  # the first message alone: nothing ran beside it
    assert statuses(root) == {"scheduled": 3}
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.the-real-key")  # fixed
    assert run(root, "2030-01-02 09:10").sent == 3
    assert sorted(m.to for m in sendgrid.accepted) == [f"p{i}@example.com" for i in range(3)]
    assert statuses(root) == {"sent": 3}


def test_an_unverified_sender_stops_the_tick_with_sendgrids_words_and_everything_scheduled(make_project: MakeProject, sendgrid: FakeSendGrid) -> None:
    root = make_project(contacts=2)
    sendgrid.verified_senders = {"launch@example.com"}
    with pytest.raises(LaunchkitError, match="sendgrid: HTTP 403: from: The from address does not match a verified Sender Identity"):
        run(root)
    assert statuses(root) == {"scheduled": 2} and len(sendgrid.requests) == 1  # the first message alone
    sendgrid.verified_senders = None
    assert run(root, "2030-01-02 09:10").sent == 2


def test_an_invalid_address_fails_alone_and_the_others_are_sent(make_project: MakeProject, sendgrid: FakeSendGrid) -> None:
    root = make_project(contacts=4)
    sendgrid.reject = {"p1@example.com"}
    report = run(root)
    assert (report.sent, report.failed) == (3, 1)
    assert sorted(m.to for m in sendgrid.accepted) == ["p0@example.com", "p2@example.com", "p3@example.com"]
    assert reasons(root, "failed") == {"p1@example.com": "sendgrid: HTTP 400: personalizations.0.to.0.email: Does not contain a valid address."}


def test_a_429_waits_for_the_rate_limit_reset_and_delivers_once(make_project: MakeProject, sendgrid: FakeSendGrid) -> None:
    root = make_project(contacts=3, settings="concurrency = 1\n")
    sendgrid.retry_after = 120
    sendgrid.fail_next("429", times=3)
    report = run(root)  # X-RateLimit-Reset two minutes ahead
    assert (report.sent, report.retried) == (0, 3)
    assert set(reasons(root, "scheduled").values()) == {"sendgrid: HTTP 429: too many requests"}
    assert run(root, "2030-01-02 09:06").sent == 0
    assert len(sendgrid.requests) == 3
    assert run(root, "2030-01-02 09:08").sent == 3
    run(root, "2030-01-02 09:30")
    assert [r.status for r in sendgrid.requests] == [429, 429, 429, 202, 202, 202]
    assert sorted(m.to for m in sendgrid.accepted) == [f"p{i}@example.com" for i in range(3)]
    assert statuses(root) == {"sent": 3}


@pytest.mark.parametrize("fault", ["500", "503"])
def test_a_server_error_is_retried_on_a_later_tick(make_project: MakeProject, sendgrid: FakeSendGrid, fault: str) -> None:
    root = make_project(contacts=3)
    sendgrid.fail_next(fault)
    report = run(root)
    assert (report.sent, report.retried, report.failed) == (2, 1, 0)
    assert run(root, "2030-01-02 09:07").sent == 1  # the first backoff is at most a minute
    assert sorted(r.status for r in sendgrid.requests) == [202, 202, 202, int(fault)]
    assert sorted(m.to for m in sendgrid.accepted) == [f"p{i}@example.com" for i in range(3)]


def test_a_connection_cut_leaves_only_that_message_in_doubt_and_never_resends_it(make_project: MakeProject, sendgrid: FakeSendGrid) -> None:
    root = make_project(contacts=3, settings="concurrency = 1\n")
    sendgrid.fail_next("drop")
    report = run(root)
    assert (report.sent, report.in_doubt) == (2, 1)
    assert len(sendgrid.accepted) == 3  # SendGrid did take it: resending would send twice
    run(root, "2030-01-02 12:00")
    assert len(sendgrid.requests) == 3
    assert statuses(root) == {"sent": 2, "in_doubt": 1}


def test_requests_overlap_up_to_the_concurrency_setting_with_one_result_per_message(make_project: MakeProject, sendgrid: FakeSendGrid) -> None:
    root = make_project(contacts=12, settings="concurrency = 3\n")
    sendgrid.latency = 0.2
    report = run(root)
    assert report.sent == 12
    assert sendgrid.max_in_flight == 3
    assert len({m.to for m in sendgrid.accepted}) == 12
    assert statuses(root) == {"sent": 12}


def test_a_launch_larger_than_max_batch_is_sent_in_full_one_request_each(make_project: MakeProject, sendgrid: FakeSendGrid) -> None:
    contacts = sendgrid_plugin.MAX_BATCH * 2 + 17
    root = make_project(contacts=contacts)
    sendgrid.keep_bodies = False
    report = run(root)
    assert report.sent == contacts
    assert len(sendgrid.requests) == contacts
    assert len({m.to for m in sendgrid.accepted}) == contacts


def test_a_line_break_in_a_header_fails_that_message_without_sending_it(sendgrid: FakeSendGrid, sendgrid_url: str, tmp_path: Path) -> None:
    provider = sendgrid_plugin.SendGridProvider(ProviderContext("sendgrid", {"api_key": API_KEY, "base_url": sendgrid_url}, tmp_path))

    def message(key: str, subject: str) -> OutgoingMessage:
        return OutgoingMessage(key, f"<{key}@x>", "Me <me@example.com>", f"{key}@example.com", None, subject, "text", "<p>html</p>", launch="l", email="e")

    try:
        results = {r.key: r for r in provider.send([message("good", "Hi"), message("evil", "Hi\r\nBcc: everyone@example.com")])}
    finally:
        provider.close()
    assert results["good"].status == SendStatus.ACCEPTED
    assert results["evil"].status == SendStatus.PERMANENT
    assert "line break" in (results["evil"].reason or "")
    assert [m.to for m in sendgrid.accepted] == ["good@example.com"]


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ("[delivery.sendgrid]\nconcurrency = 2\n", "[delivery.sendgrid] needs api_key"),
        ('[delivery.sendgrid]\napi_key = "${SENDGRID_UNSET_KEY}"\n', "SENDGRID_UNSET_KEY"),
        ('[delivery.sendgrid]\napi_key = "k"\nconcurrency = 50\n', "concurrency must be a whole number from 1 to 8; found 50"),
    ],
    ids=["absent", "unset-variable", "bad-concurrency"],
)
def test_check_fails_clearly_when_the_settings_are_wrong(make_project: MakeProject, monkeypatch: pytest.MonkeyPatch, section: str, expected: str) -> None:
    monkeypatch.delenv("SENDGRID_UNSET_KEY", raising=False)
    root = make_project(contacts=1, section=section)
    result = CliRunner().invoke(cli, ["--project", str(root), "check"])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "launchkit.toml" in result.output
    assert expected in result.output
    assert "Traceback" not in result.output
