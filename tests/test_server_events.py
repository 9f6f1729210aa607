"""`launchkit serve` tells `on_event` plugins what it stored: opens, clicks, unsubscribes,
signups and confirmations, once each, after answering.

Driven over HTTP like tests/test_server.py (whose fixtures and helpers these are), with a
plugin registered through `launchkit.testing`'s `launchkit_plugin`. On SQLite and on
PostgreSQL.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from typing import Any, Callable

import httpx
import pytest
from sqlalchemy import select

from launchkit import audience, hookimpl
from launchkit.project import Project
from launchkit.server import create_app
from launchkit.store import tables
from launchkit.store import tracking as tracking_store
from launchkit.testing import PluginRegistrar
from launchkit.types import Event
from tests import test_server
from tests.test_server import BASE, FORM, PROGRAMME, counts, events_of, links_in, path_of, request, signed_up, signup_settings

pytestmark = pytest.mark.every_backend

tracked = test_server.tracked  # the fixture: the welcome email sent, tracked, to three people
ONE_CLICK = {"content": b"List-Unsubscribe=One-Click", "headers": FORM}


@pytest.fixture
def heard(launchkit_plugin: PluginRegistrar) -> list[Event]:
    """Every event an `on_event` plugin is given, in order; the plugin is loaded by every project opened from now on."""
    seen: list[Event] = []

    class Listener:
        @staticmethod
        @hookimpl
        def on_event(event: Event) -> None:
            seen.append(event)

    launchkit_plugin(Listener, name="listener")
    return seen


@pytest.fixture
def serve(tracked: Any) -> Callable[..., Any]:
    """A server app for the `tracked` project, opened now (so with the plugins registered so far); closed at the end."""
    root = tracked[0]
    apps: list[Any] = []

    def make(**options: Any) -> Any:
        app = create_app(Project.open(root, **options))
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.state.server.writer.close()


def pixel_of(message: Any) -> str:
    return path_of(re.search(r'<img src="([^"]+)"', message.html).group(1))  # type: ignore[union-attr]


def message_to(provider: Any, address: str) -> Any:
    return next(m for m in provider.sent if m.to == address)


def stored(project: Project, kind: str) -> list[Any]:
    """The events of ``kind`` stored, with the contact's address."""
    with project.store.connect() as conn:
        query = select(tables.events, tables.contacts.c.email.label("address")).join(tables.contacts, tables.contacts.c.id == tables.events.c.contact_id)
        return list(conn.execute(query.where(tables.events.c.kind == kind)))


# --- Opens and clicks ---------------------------------------------------------------------


def test_the_first_open_tells_on_event_once_and_a_repeat_open_tells_nothing(tracked: Any, heard: list[Event], serve: Any) -> None:
    _, project, _, provider = tracked
    app = serve()
    message = message_to(provider, "ada@example.com")
    for _ in range(3):
        response = request(app, "GET", pixel_of(message))
        assert response.status_code == 200 and response.content.startswith(b"GIF89a")
    [row] = stored(project, "opened")
    assert heard == [Event(
        "opened", "ada@example.com", project.now(), launch="example-launch", email_id="welcome", data={},
        id=row.external_id, source="tracking", variant=row.variant,
    )]
    assert row.address == "ada@example.com" and heard[0].occurred_at == row.occurred_at


def test_on_event_sees_the_open_stored_and_a_slow_hook_never_holds_the_answer(tracked: Any, launchkit_plugin: PluginRegistrar, serve: Any) -> None:
    _, project, _, provider = tracked
    seen_then: list[int] = []
    release = threading.Event()

    class Watcher:
        @staticmethod
        @hookimpl
        def on_event(event: Event) -> None:
            seen_then.append(len(events_of(project, "opened")))
            release.wait(10)  # a slow hook: a chat message per open

    launchkit_plugin(Watcher, name="watcher")
    app = serve()

    async def call() -> httpx.Response:  # not test_server.request, which waits for the hooks
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
            return await client.get(pixel_of(provider.sent[0]))

    began = time.perf_counter()
    response = asyncio.run(call())
    assert response.status_code == 200 and time.perf_counter() - began < 5, "the pixel does not wait for the hook"
    release.set()
    app.state.server.relay.wait()
    assert seen_then == [1], "the hook runs once the open is stored"


def test_concurrent_opens_of_one_email_tell_on_event_once_each(tracked: Any, heard: list[Event], serve: Any) -> None:
    _, project, _, provider = tracked
    app = serve()
    pixels = [pixel_of(m) for m in provider.sent]

    async def burst() -> list[int]:
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 5555))
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            # Several requests for one pixel land in one group commit: only the first is new.
            answers = await asyncio.gather(*(client.get(p) for p in pixels * 5))
        return [a.status_code for a in answers]

    assert set(asyncio.run(burst())) == {200}
    assert len(stored(project, "opened")) == 3
    assert sorted(e.email for e in heard) == ["ada@example.com", "alan@example.com", "grace@example.com"]
    assert {e.id for e in heard} == {r.external_id for r in stored(project, "opened")}


def test_a_click_tells_on_event_the_url_and_the_link_name_once(tracked: Any, heard: list[Event], serve: Any) -> None:
    _, project, _, provider = tracked
    app = serve()
    message = message_to(provider, "grace@example.com")
    clicks = [h for h in links_in(message.html) if h.startswith(f"{BASE}/c/")]
    for click in clicks * 2:
        assert request(app, "GET", path_of(click)).status_code == 302
    rows = {r.external_id: r for r in stored(project, "clicked")}
    assert len(heard) == len(clicks) == len(rows) >= 2
    for event in heard:
        row = rows[event.id]  # type: ignore[index]
        assert (event.kind, event.email, event.occurred_at, event.source) == ("clicked", "grace@example.com", project.now(), "tracking")
        assert (event.launch, event.email_id, event.variant) == ("example-launch", "welcome", row.variant)
        assert event.data["url"] == row.data["url"] and event.data.get("link") == row.link
    by_url = {e.data["url"]: e.data for e in heard}
    assert by_url["https://example.com/course"] == {"url": "https://example.com/course", "link": "sales_page"}
    assert by_url[PROGRAMME] == {"url": PROGRAMME}, "a link not named in [launch.links] has no name"


def test_an_open_or_a_click_from_an_erased_contact_tells_nothing(tracked: Any, heard: list[Event], serve: Any) -> None:
    _, project, _, provider = tracked
    audience.forget(project, "alan@example.com")
    app = serve()
    for address in ("alan@example.com", "ada@example.com"):
        message = message_to(provider, address)
        assert request(app, "GET", pixel_of(message)).status_code == 200
        click = next(h for h in links_in(message.html) if h.startswith(f"{BASE}/c/"))
        assert request(app, "GET", path_of(click)).status_code == 302
    assert [(e.kind, e.email) for e in heard] == [("opened", "ada@example.com"), ("clicked", "ada@example.com")]
    assert len(events_of(project, "opened")) == len(events_of(project, "clicked")) == 1


# --- Unsubscribes ---------------------------------------------------------------------------


def test_an_unsubscribe_tells_on_event_once(tracked: Any, heard: list[Event], serve: Any) -> None:
    _, project, _, provider = tracked
    app = serve()
    link = path_of(message_to(provider, "ada@example.com").headers["List-Unsubscribe"].strip("<>"))
    assert request(app, "GET", link).status_code == 200
    assert heard == [], "the page alone unsubscribes no one"
    for _ in range(2):
        assert request(app, "POST", link, **ONE_CLICK).status_code == 200
    [row] = stored(project, "unsubscribed")
    assert heard == [Event("unsubscribed", "ada@example.com", project.now(), launch="example-launch", email_id="welcome", id=row.external_id, source="tracking")]


def test_a_second_unsubscribe_later_tells_nothing(tracked: Any, heard: list[Event], serve: Any) -> None:
    _, _, _, provider = tracked
    link = path_of(message_to(provider, "grace@example.com").headers["List-Unsubscribe"].strip("<>"))
    assert request(serve(), "POST", link, **ONE_CLICK).status_code == 200
    assert request(serve(now="2030-01-03 12:00"), "POST", link, **ONE_CLICK).status_code == 200
    assert [e.kind for e in heard] == ["unsubscribed"]


# --- Signups and confirmations --------------------------------------------------------------


def test_a_signup_and_its_confirmation_each_tell_on_event_once(tracked: Any, heard: list[Event], serve: Any, sent_mail: Any) -> None:
    root, project, _, _ = tracked
    signup_settings(root)
    app = serve()
    confirm, _ = signed_up(app, sent_mail, b"email=Lin%40Example.com&tags=vip-list")
    [signup] = stored(project, "subscribed")
    assert heard == [Event("subscribed", "lin@example.com", project.now(), data={"tags": ["newsletter", "vip-list", "waitlist"], "status": "pending"},
                           id=signup.external_id, source="signup")]

    assert request(app, "HEAD", confirm).status_code == 200
    assert len(heard) == 1, "a HEAD request confirms nothing"
    for _ in range(2):
        assert request(app, "GET", confirm).status_code == 200
    [confirmation] = stored(project, "confirmed")
    assert heard[1:] == [Event("confirmed", "lin@example.com", project.now(), data={"tags": ["newsletter", "vip-list", "waitlist"]},
                               id=confirmation.external_id, source="signup")]
    assert request(serve(now="2030-01-03 09:00"), "GET", confirm).status_code == 200
    assert len(heard) == 2, "a second click on the link stores nothing and tells nothing"


def test_a_signup_without_double_opt_in_tells_on_event_it_subscribed(tracked: Any, heard: list[Event], serve: Any) -> None:
    root, project, _, _ = tracked
    signup_settings(root, "double_opt_in = false\n")
    response = request(serve(), "POST", "/subscribe", json={"email": "lin@example.com"})
    assert response.status_code == 200 and response.json() == {"status": "subscribed"}
    [signup] = stored(project, "subscribed")
    assert [(e.kind, e.email, e.id, e.data) for e in heard] == [
        ("subscribed", "lin@example.com", signup.external_id, {"tags": ["newsletter", "waitlist"], "status": "subscribed"})
    ]


def test_bots_rate_limited_and_erased_signups_tell_nothing(tracked: Any, heard: list[Event], serve: Any) -> None:
    root, project, _, _ = tracked
    signup_settings(root)
    app = serve()
    bot = request(app, "POST", "/subscribe", json={"email": "bot@example.net", "website": "http://spam.example"})
    assert bot.status_code == 200 and heard == []

    audience.forget(project, "grace@example.com")
    assert request(app, "POST", "/subscribe", json={"email": "grace@example.com"}).status_code == 200
    assert heard == []

    # Three an hour per address: the first stores a signup event; the same address again in
    # the same instant stores none (so tells nothing), and the fourth is refused.
    answers = [request(app, "POST", "/subscribe", json={"email": "lin@example.com"}).status_code for _ in range(4)]
    assert answers == [200, 200, 200, 429]
    assert len(stored(project, "subscribed")) == 1
    assert [(e.kind, e.email) for e in heard] == [("subscribed", "lin@example.com")]
    limited = request(serve(now="2030-01-02 09:30"), "POST", "/subscribe", json={"email": "lin@example.com"})
    assert limited.status_code == 429 and len(heard) == 1


# --- Plugins that fail, and servers with no plugin listening ---------------------------------


def test_a_plugin_that_raises_changes_neither_the_answers_nor_what_is_stored(
    tracked: Any, launchkit_plugin: PluginRegistrar, heard: list[Event], serve: Any, sent_mail: Any, caplog: pytest.LogCaptureFixture
) -> None:
    root, project, _, provider = tracked

    class Broken:
        @staticmethod
        @hookimpl
        def on_event(event: Event) -> None:
            raise RuntimeError("the chat service is down")

    launchkit_plugin(Broken, name="broken")
    signup_settings(root)
    app = serve()
    message = message_to(provider, "ada@example.com")
    click = next(h for h in links_in(message.html) if h.startswith(f"{BASE}/c/"))
    unsubscribe = path_of(message.headers["List-Unsubscribe"].strip("<>"))
    with caplog.at_level(logging.ERROR, logger="launchkit"):
        opened = request(app, "GET", pixel_of(message))
        clicked = request(app, "GET", path_of(click))
        confirm, _ = signed_up(app, sent_mail, b"email=lin%40example.com")
        confirmed = request(app, "GET", confirm)
        left = request(app, "POST", unsubscribe, **ONE_CLICK)
    assert opened.status_code == 200 and opened.content.startswith(b"GIF89a")
    assert clicked.status_code == 302 and clicked.headers["location"].startswith("https://example.com/")
    assert confirmed.status_code == 200 and "l***@example.com" in confirmed.text
    assert left.status_code == 200 and "a***@example.com" in left.text
    assert {k: len(events_of(project, k)) for k in ("opened", "clicked", "subscribed", "confirmed", "unsubscribed")} == dict.fromkeys(
        ("opened", "clicked", "subscribed", "confirmed", "unsubscribed"), 1
    )
    with project.store.connect() as conn:
        statuses = dict(conn.execute(select(tables.contacts.c.email, tables.contacts.c.status)).all())
    assert statuses["ada@example.com"] == "unsubscribed" and statuses["lin@example.com"] == "subscribed"
    assert [e.kind for e in heard] == ["opened", "clicked", "subscribed", "confirmed", "unsubscribed"], "the other plugins are still told"
    failures = [r for r in caplog.records if "failed in on_event" in r.getMessage()]
    assert len(failures) == 5 and all("broken" in r.getMessage() for r in failures)


def test_without_an_on_event_plugin_opens_and_clicks_take_the_plain_path(
    tracked: Any, serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, project, _, provider = tracked
    monkeypatch.setenv("LAUNCHKIT_LOAD_PLUGINS", "maildir,stripe")  # not sale_ping, the installed plugin with on_event

    def unwanted(conn: Any, rows: Any) -> Any:
        raise AssertionError("with no on_event plugin, nothing asks which rows were new")

    monkeypatch.setattr(tracking_store, "record_new_engagement", unwanted)
    app = serve()
    assert app.state.server.notifying is False
    message = provider.sent[0]
    before = counts(project)
    assert request(app, "GET", pixel_of(message)).status_code == 200
    click = next(h for h in links_in(message.html) if h.startswith(f"{BASE}/c/"))
    response = request(app, "GET", path_of(click))
    assert response.status_code == 302
    assert counts(project)["events"] == before["events"] + 2
