"""launchkit.testing: the pytest fixtures plugin authors get with launchkit."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import sys
from pathlib import Path
from typing import Callable

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import launchkit.plugins
from launchkit import hookimpl
from launchkit.testing import Clock, LaunchkitProject, PluginRegistrar, RecordingProvider, WebhookPoster, hmac_signer
from launchkit.types import OutgoingMessage, SendResult, SendStatus

# launchkit.testing reaches every test run through its pytest11 entry point. An install made
# before that entry point existed needs it loaded here; loading it both ways is an error.
INSTALLED = any(ep.value == "launchkit.testing" for ep in importlib.metadata.entry_points(group="pytest11"))
pytest_plugins = ["pytester"] if INSTALLED else ["pytester", "launchkit.testing"]
INNER_RUN = [] if INSTALLED else ["-p", "launchkit.testing"]

WAITLIST_OPENS = "2030-01-02 09:05"


# launchkit_clock


def test_the_clock_starts_the_morning_the_project_is_made(launchkit_clock: Clock, launchkit_project: LaunchkitProject) -> None:
    assert str(launchkit_clock) == "2030-01-01 09:00:00"
    assert launchkit_project.project().now().isoformat() == "2030-01-01T09:00:00+00:00"


def test_the_clock_is_set_and_advanced_through_launchkit_now(launchkit_clock: Clock) -> None:
    launchkit_clock.set("2030-01-02 09:05")
    assert launchkit_clock.now.isoformat() == "2030-01-02T09:05:00"
    launchkit_clock.advance(days=1, hours=2, minutes=30, seconds=15)
    assert os.environ["LAUNCHKIT_NOW"] == "2030-01-03 11:35:15"
    launchkit_clock.set("2030-01-02T09:05:00+01:00")
    assert os.environ["LAUNCHKIT_NOW"] == "2030-01-02 09:05:00+01:00"


def test_the_clock_refuses_a_moment_it_cannot_read(launchkit_clock: Clock) -> None:
    with pytest.raises(ValueError, match="expected a moment like '2030-01-02 09:05'"):
        launchkit_clock.set("next tuesday")


def test_the_project_acts_at_the_clocks_moment_unless_told_otherwise(launchkit_project: LaunchkitProject, launchkit_clock: Clock, recording_provider: RecordingProvider) -> None:
    launchkit_project.add_contacts(2)
    assert launchkit_project.tick(provider=recording_provider).sent == 0  # 2030-01-01 09:00: nothing due yet
    assert launchkit_project.tick(WAITLIST_OPENS, provider=recording_provider).sent == 2
    assert str(launchkit_clock) == "2030-01-01 09:00:00"  # `now` is for that call only
    launchkit_clock.set(launchkit_project.dates["cart_opens"])
    report = launchkit_project.tick(provider=recording_provider)
    assert (report.sent, report.missed) == (2, 2)  # behind-the-scenes is days late: missed, never sent late
    assert recording_provider.to("person1@example.com") == ["welcome", "doors-open"]


# launchkit_project


def test_the_project_is_what_launchkit_init_makes_without_a_rate(launchkit_project: LaunchkitProject) -> None:
    root = launchkit_project.root
    assert (root / "launchkit.toml").is_file() and (root / "sequences" / "example-launch.toml").is_file()
    config = launchkit_project.project().config
    assert config.delivery.provider == "maildir"
    assert config.delivery.rate is None
    assert launchkit_project.dates == {
        "waitlist_starts": "2030-01-02 09:00",
        "cart_opens": "2030-01-09 09:00",
        "cart_closes": "2030-01-13 23:59",
        "close_starts": "2030-01-14 08:00",
    }


def test_the_project_ignores_the_developers_environment(monkeypatch: pytest.MonkeyPatch, pytester: pytest.Pytester) -> None:
    monkeypatch.setenv("LAUNCHKIT_LOAD_PLUGINS", "")
    monkeypatch.setenv("LAUNCHKIT_PROJECT", "/nowhere")
    pytester.makepyfile(
        """
        import os

        def test_cleared(launchkit_project):
            assert "LAUNCHKIT_LOAD_PLUGINS" not in os.environ and "LAUNCHKIT_PROJECT" not in os.environ
            assert "maildir" in launchkit_project.project().plugins.providers().items
        """
    )
    pytester.runpytest(*INNER_RUN).assert_outcomes(passed=1)


def test_contacts_are_numbered_on_or_given_with_their_names(launchkit_project: LaunchkitProject, recording_provider: RecordingProvider) -> None:
    assert launchkit_project.add_contacts(2) == ["person1@example.com", "person2@example.com"]
    assert launchkit_project.add_contacts(1, tags=["newsletter"]) == ["person3@example.com"]
    assert launchkit_project.add_contacts(["Ada Lovelace <Ada@Example.com>", "grace@example.com"]) == ["ada@example.com", "grace@example.com"]
    assert launchkit_project.add_contacts("linus@example.org", tags=[]) == ["linus@example.org"]
    launchkit_project.tick(WAITLIST_OPENS, provider=recording_provider)
    names = {m.to: m.to_name for m in recording_provider.sent}
    assert names == {"person1@example.com": None, "person2@example.com": None, "ada@example.com": "Ada Lovelace", "grace@example.com": None}
    listing = launchkit_project.cli("audience", "list", "--tag", "waitlist").output
    assert "person3@example.com" not in listing  # tagged newsletter only: not on the waitlist


def test_use_provider_chooses_the_provider_and_writes_its_table(launchkit_project: LaunchkitProject) -> None:
    launchkit_project.use_provider("postmark", server_token="${POSTMARK_TOKEN}", base_url="http://127.0.0.1:9", timeout=2.5, concurrency=2)
    launchkit_project.use_provider("maildir", path="sent mail")
    launchkit_project.use_provider("postmark", server_token="t", message_stream="outbound")
    config = launchkit_project.project().config
    assert config.delivery.provider == "postmark"
    assert config.delivery.provider_settings("postmark") == {"server_token": "t", "message_stream": "outbound"}
    assert config.delivery.provider_settings("maildir") == {"path": "sent mail"}


def test_tick_sends_through_the_configured_provider(launchkit_project: LaunchkitProject) -> None:
    launchkit_project.use_provider("maildir", path="sent mail")
    launchkit_project.add_contacts(3)
    report = launchkit_project.tick(WAITLIST_OPENS)
    assert (report.sent, report.failed) == (3, 0)
    assert len(list((launchkit_project.root / "sent mail" / "new").iterdir())) == 3


def test_set_delivery_sets_and_removes_delivery_keys(launchkit_project: LaunchkitProject, recording_provider: RecordingProvider) -> None:
    launchkit_project.set_delivery(rate="20/s", daily_cap=2)
    delivery = launchkit_project.project().config.delivery
    assert delivery.rate is not None and delivery.daily_cap == 2
    launchkit_project.add_contacts(3)
    report = launchkit_project.tick(WAITLIST_OPENS, provider=recording_provider)
    assert (report.sent, report.capped) == (2, True)
    assert recording_provider.calls == [2]  # a tenth of a second's worth at 20/s
    launchkit_project.set_delivery(rate=None, daily_cap=None)
    delivery = launchkit_project.project().config.delivery
    assert (delivery.rate, delivery.daily_cap) == (None, None)


def test_without_a_rate_a_provider_gets_full_batches(launchkit_project: LaunchkitProject, recording_provider: RecordingProvider) -> None:
    launchkit_project.add_contacts(250)
    assert launchkit_project.tick(WAITLIST_OPENS, provider=recording_provider).sent == 250
    assert recording_provider.calls == [100, 100, 50]


def test_cli_runs_commands_on_the_project(launchkit_project: LaunchkitProject) -> None:
    launchkit_project.add_contacts(["ada@example.com"])
    result = launchkit_project.cli("audience", "list")
    assert result.exit_code == 0 and "ada@example.com" in result.output
    assert launchkit_project.cli("check").exit_code == 0


# recording_provider


def test_the_recording_provider_keeps_what_it_accepts_and_answers_as_told(launchkit_project: LaunchkitProject, recording_provider: RecordingProvider) -> None:
    recording_provider.answer = lambda m: SendResult(m.key, SendStatus.PERMANENT, reason="no") if m.to == "person2@example.com" else None
    launchkit_project.add_contacts(3)
    report = launchkit_project.tick(WAITLIST_OPENS, provider=recording_provider)
    assert (report.sent, report.failed) == (2, 1)
    assert [m.to for m in recording_provider.sent] == ["person1@example.com", "person3@example.com"]
    assert recording_provider.closed == 0  # a provider passed in is the caller's to close


# launchkit_plugin


def test_a_registered_plugin_changes_messages_for_this_test(launchkit_project: LaunchkitProject, launchkit_plugin: PluginRegistrar, recording_provider: RecordingProvider) -> None:
    @launchkit_plugin
    class Campaign:
        @staticmethod
        @hookimpl
        def before_send(message: OutgoingMessage) -> None:
            message.headers["X-Campaign"] = message.launch

    launchkit_project.add_contacts(1)
    launchkit_project.tick(WAITLIST_OPENS, provider=recording_provider)
    assert recording_provider.sent[0].headers["X-Campaign"] == "example-launch"
    assert launchkit_plugin.names == ["Campaign"]


def test_a_registered_plugin_can_provide_the_configured_provider(launchkit_project: LaunchkitProject, launchkit_plugin: PluginRegistrar) -> None:
    recorder = RecordingProvider()

    class Recording:
        @staticmethod
        @hookimpl
        def register_providers(register: Callable[..., None]) -> None:
            register("recorder", lambda context: recorder)

    launchkit_plugin(Recording, name="recorder-plugin")
    launchkit_project.use_provider("recorder")
    launchkit_project.add_contacts(2)
    assert launchkit_project.tick(WAITLIST_OPENS).sent == 2
    assert recorder.closed == 1  # the configured provider is closed at the end of the tick
    listing = json.loads(launchkit_project.cli("plugins", "--json").output)
    assert listing["providers"]["recorder"] == "recorder-plugin"
    assert {"name": "recorder-plugin", "source": "default", "version": None, "hooks": ["register_providers"], "error": None} in listing["plugins"]


def test_a_registered_plugin_adds_commands_for_this_test_only(launchkit_project: LaunchkitProject, launchkit_plugin: PluginRegistrar, tmp_path: Path) -> None:
    module = tmp_path / "hello_plugin.py"
    module.write_text(
        "import click\nfrom launchkit import hookimpl\n\n"
        "@hookimpl\ndef register_commands(cli):\n"
        "    @cli.command()\n    def hello():\n        click.echo('hello from a plugin')\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        import hello_plugin  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(tmp_path))
    launchkit_plugin(hello_plugin)
    assert launchkit_project.cli("hello").output == "hello from a plugin\n"
    from launchkit.cli import cli

    assert "hello" not in cli.commands  # the test's commands do not leak into launchkit's


def test_two_plugins_with_one_name_are_refused(launchkit_plugin: PluginRegistrar) -> None:
    launchkit_plugin(object(), name="same")
    with pytest.raises(ValueError, match="already registered"):
        launchkit_plugin(object(), name="same")


def test_registered_plugins_are_gone_after_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import sys
        import launchkit.plugins
        from launchkit import hookimpl

        BEFORE = launchkit.plugins.DEFAULT_PLUGINS

        class Tagger:
            @staticmethod
            @hookimpl
            def before_send(message):
                message.headers["X-Test"] = "1"

        def test_registers(launchkit_plugin):
            launchkit_plugin(Tagger)
            assert launchkit.plugins.DEFAULT_PLUGINS == BEFORE + ("launchkit_testing_plugins.Tagger",)

        def test_then_gone():
            assert launchkit.plugins.DEFAULT_PLUGINS == BEFORE
            assert "launchkit_testing_plugins.Tagger" not in sys.modules
        """
    )
    pytester.runpytest(*INNER_RUN).assert_outcomes(passed=2)


def test_the_default_plugins_are_untouched_outside_the_fixture() -> None:
    assert not any(name.startswith("launchkit_testing_plugins.") for name in launchkit.plugins.DEFAULT_PLUGINS)


# webhook_poster


def signed_receiver(secret: str) -> Starlette:
    """A webhook receiver as a service's docs describe one: HMAC-SHA256 of the body, hex."""

    async def receive(request: Request) -> JSONResponse:
        body = await request.body()
        expected = hmac_signer(secret, "X-Signature")(body)["X-Signature"]
        if request.headers.get("x-signature") != expected:
            return JSONResponse({"error": "bad signature"}, status_code=401)
        return JSONResponse({"type": request.headers.get("content-type"), "events": json.loads(body)})

    return Starlette(routes=[Route("/hooks/postbird", receive, methods=["POST"])])


def test_the_webhook_poster_signs_and_posts_to_an_asgi_app(webhook_poster: WebhookPoster) -> None:
    app = signed_receiver("whsec")
    events = [{"type": "delivered", "id": "pb_000001"}]
    response = webhook_poster(app, "/hooks/postbird", events, sign=hmac_signer("whsec", "X-Signature"))
    assert response.status_code == 200
    assert response.json() == {"type": "application/json", "events": events}
    unsigned = webhook_poster(app, "/hooks/postbird", json.dumps(events), {"Content-Type": "text/plain"})
    assert unsigned.status_code == 401


def test_the_webhook_poster_sends_bytes_as_they_are(webhook_poster: WebhookPoster) -> None:
    raw = b'[{"type": "bounced"}]'
    signer = hmac_signer(b"whsec", "X-Signature")
    response = webhook_poster(signed_receiver("whsec"), "/hooks/postbird", raw, {"Content-Type": "application/json"}, sign=signer)
    assert response.status_code == 200
    assert response.json()["events"] == [{"type": "bounced"}]
    assert signer(raw) == hmac_signer("whsec", "X-Signature")(raw)  # a secret as bytes or text


def test_the_webhook_poster_works_inside_a_running_event_loop(webhook_poster: WebhookPoster) -> None:
    async def from_async_code() -> int:
        return webhook_poster(signed_receiver("s"), "/hooks/postbird", [], sign=hmac_signer("s")).status_code

    assert asyncio.run(from_async_code()) == 200


def test_hmac_signer_prefixes_like_github() -> None:
    import hashlib
    import hmac

    signature = hmac_signer("key", "X-Hub-Signature-256", prefix="sha256=")(b"body")
    assert signature == {"X-Hub-Signature-256": "sha256=" + hmac.new(b"key", b"body", hashlib.sha256).hexdigest()}


# The plugin itself


def test_every_fixture_is_documented_for_pytest_fixtures(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--fixtures", *INNER_RUN)
    text = result.stdout.str()
    for fixture, words in [
        ("launchkit_project", "A new project, as ``launchkit init`` makes it"),
        ("launchkit_clock", "The moment launchkit thinks it is"),
        ("recording_provider", "A provider that accepts every message"),
        ("launchkit_plugin", "Register a plugin for this test only"),
        ("webhook_poster", "Post to an ASGI app in this process"),
    ]:
        assert fixture in text and words in text, fixture


def test_importing_launchkit_testing_imports_nothing_heavy() -> None:
    import subprocess

    code = "import sys, launchkit.testing; print(sorted(m for m in ('httpx', 'sqlalchemy', 'click', 'starlette', 'jinja2', 'launchkit.project') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
