"""The example provider, driven through real launchkit ticks against a local Postbird.

The fixtures whose names start with ``launchkit_`` come from ``launchkit.testing``, a pytest
plugin installed with launchkit: no import needed.
"""

from __future__ import annotations

import json
from typing import Iterator

import pytest

from launchkit import hookimpl
from launchkit.errors import LaunchkitError
from launchkit.testing import Clock, LaunchkitProject, PluginRegistrar
from launchkit.types import OutgoingMessage

from fake_postbird import FakePostbird, serve  # tests/fake_postbird.py

API_KEY = "pb-test-key"
# The example launch's waitlist opens at 2030-01-02 09:00: its first email, `welcome`, is
# then due for every contact `add_contacts` adds.
WAITLIST_OPENS = "2030-01-02 09:05"


@pytest.fixture
def postbird() -> Iterator[FakePostbird]:
    fake = FakePostbird(api_key=API_KEY)
    with serve(fake.app) as url:
        fake.url = url
        yield fake


@pytest.fixture
def project(
    launchkit_project: LaunchkitProject, postbird: FakePostbird, monkeypatch: pytest.MonkeyPatch
) -> LaunchkitProject:
    """A new launchkit project that sends through the local Postbird."""
    monkeypatch.setenv("POSTBIRD_API_KEY", API_KEY)
    launchkit_project.use_provider("example", api_key="${POSTBIRD_API_KEY}", base_url=postbird.url)
    return launchkit_project


def test_the_plugin_is_installed_and_provides_example(launchkit_project: LaunchkitProject) -> None:
    result = launchkit_project.cli("plugins", "--json")
    assert result.exit_code == 0, result.output
    listing = json.loads(result.output)
    assert listing["providers"]["example"] == "example"
    [plugin] = [p for p in listing["plugins"] if p["name"] == "example"]
    assert (plugin["source"], plugin["version"], plugin["error"]) == ("installed", "0.1.0", None)


def test_launch_emails_are_posted_to_postbird_with_the_api_key(
    project: LaunchkitProject, postbird: FakePostbird, launchkit_clock: Clock
) -> None:
    project.add_contacts(["Ada Lovelace <ada@example.com>", "grace@example.com"])
    launchkit_clock.set(WAITLIST_OPENS)
    report = project.tick()
    assert (report.sent, report.failed) == (2, 0)
    assert postbird.requests == [(200, 2)]
    [ada] = postbird.to("ada@example.com")
    assert ada["to_name"] == "Ada Lovelace"
    assert ada["from"] == "Your Name <you@example.com>"
    assert ada["reply_to"] == "you@example.com"
    assert ada["subject"] == "You're on the list, Ada!"
    assert "Ada" in ada["text"] and "<html" in ada["html"]
    assert ada["ref"].startswith("example-launch/welcome/")
    assert ada["tags"] == {"launch": "example-launch", "email": "welcome"}
    assert "List-Unsubscribe" in ada["headers"] and ada["headers"]["Message-ID"].startswith("<")
    assert "category" not in ada


def test_the_category_setting_is_sent_with_every_message(
    project: LaunchkitProject, postbird: FakePostbird, launchkit_clock: Clock
) -> None:
    project.use_provider("example", api_key=API_KEY, base_url=postbird.url, category="launches")
    project.add_contacts(2)
    launchkit_clock.set(WAITLIST_OPENS)
    assert project.tick().sent == 2
    assert [message["category"] for message in postbird.accepted] == ["launches", "launches"]


def test_more_than_200_messages_go_in_several_requests(
    project: LaunchkitProject, postbird: FakePostbird, launchkit_clock: Clock
) -> None:
    project.add_contacts(450)
    launchkit_clock.set(WAITLIST_OPENS)
    assert project.tick().sent == 450
    assert postbird.requests == [(200, 200), (200, 200), (200, 50)]


def test_a_suppressed_address_fails_alone_and_is_never_sent_anything_again(
    project: LaunchkitProject, postbird: FakePostbird, launchkit_clock: Clock
) -> None:
    project.add_contacts(3)
    postbird.rejected = {"person2@example.com"}
    launchkit_clock.set(WAITLIST_OPENS)
    report = project.tick()
    assert (report.sent, report.failed) == (2, 1)
    assert report.failures == ["example: rejected by Postbird: the address is suppressed (hard bounce)"]
    bounced = project.cli("audience", "list", "--status", "bounced").output
    assert bounced.split()[0] == "person2@example.com"  # suppressed: the contact is marked bounced
    launchkit_clock.set("2030-01-04 09:30")  # the next email, behind-the-scenes, is due
    assert project.tick().sent == 2
    assert postbird.to("person2@example.com") == []


def test_a_retry_answer_is_sent_again_on_a_later_tick(
    project: LaunchkitProject, postbird: FakePostbird, launchkit_clock: Clock
) -> None:
    project.add_contacts(2)
    postbird.deferred = {"person1@example.com"}
    launchkit_clock.set(WAITLIST_OPENS)
    report = project.tick()
    assert (report.sent, report.retried) == (1, 1)
    postbird.deferred.clear()
    launchkit_clock.advance(minutes=2)  # Postbird asked for 60 seconds
    assert project.tick().sent == 1
    assert len(postbird.to("person1@example.com")) == 1


def test_a_429_is_retried_no_sooner_than_retry_after(
    project: LaunchkitProject, postbird: FakePostbird, launchkit_clock: Clock
) -> None:
    project.add_contacts(3)
    postbird.fail_next(429, retry_after=120)
    launchkit_clock.set(WAITLIST_OPENS)
    assert (project.tick().sent, len(postbird.accepted)) == (0, 0)
    launchkit_clock.advance(minutes=1)
    assert project.tick().sent == 0
    assert postbird.requests == [(429, 0)]  # too early: not even asked
    launchkit_clock.advance(minutes=2)
    assert project.tick().sent == 3
    assert postbird.requests == [(429, 0), (200, 3)]


def test_a_wrong_api_key_stops_the_tick_and_the_messages_wait_for_the_fix(
    project: LaunchkitProject, postbird: FakePostbird, launchkit_clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSTBIRD_API_KEY", "not-the-key")
    project.add_contacts(2)
    launchkit_clock.set(WAITLIST_OPENS)
    with pytest.raises(LaunchkitError, match="provider 'example' cannot send: example: HTTP 401: invalid API key"):
        project.tick()
    monkeypatch.setenv("POSTBIRD_API_KEY", API_KEY)  # fixed
    launchkit_clock.advance(minutes=1)
    assert project.tick().sent == 2
    assert postbird.requests == [(401, 0), (200, 2)]  # nothing lost, nothing twice


def test_a_line_break_in_a_header_fails_that_message_before_any_request(
    project: LaunchkitProject, postbird: FakePostbird, launchkit_clock: Clock, launchkit_plugin: PluginRegistrar
) -> None:
    @launchkit_plugin
    class HeaderInjection:
        @staticmethod
        @hookimpl
        def before_send(message: OutgoingMessage) -> None:
            if message.to == "person1@example.com":
                message.headers["X-Note"] = "hello\r\nBcc: everyone@example.com"

    project.add_contacts(2)
    launchkit_clock.set(WAITLIST_OPENS)
    report = project.tick()
    assert (report.sent, report.failed) == (1, 1)
    assert "line break" in report.failures[0]
    assert [message["to"] for message in postbird.accepted] == ["person2@example.com"]


def test_launchkit_check_says_which_setting_is_missing(launchkit_project: LaunchkitProject) -> None:
    launchkit_project.use_provider("example", base_url="http://127.0.0.1:9")
    result = launchkit_project.cli("check")
    assert result.exit_code == 1
    assert "[delivery.example] needs api_key" in result.output
    assert "Traceback" not in result.output
