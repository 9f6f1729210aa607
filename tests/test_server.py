"""`launchkit serve` driven over HTTP: opens, clicks, unsubscribes, signups, bad input.

The app runs in this process behind httpx's ASGI transport; emails are sent by real ticks
into the maildir, and the links tests follow are the ones in those emails. On SQLite and on
PostgreSQL (tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest
from sqlalchemy import func, select, update

from launchkit import tracking
from launchkit.project import Project
from launchkit.runner import tick
from launchkit.server import create_app
from launchkit.store import tables
from launchkit.testing import RecordingProvider

pytestmark = pytest.mark.every_backend

BASE = "https://go.example.com"
PEOPLE = [("ada@example.com", "Ada", "Lovelace"), ("grace@example.com", "Grace", "Hopper"), ("alan@example.com", "Alan", "Turing")]
#: A link whose query a redirect must not re-encode: a bare flag, an encoded space, its own utm_source.
PROGRAMME = "https://example.com/p?flag&utm_source=keep&q=a%20b#frag"


def request(app: Any, method: str, url: str, **options: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 5555))
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            return await client.request(method, url, **options)

    response = asyncio.run(go())
    server = getattr(app.state, "server", None)
    if server is not None:
        server.relay.wait()  # on_event hooks are told in a thread of their own: done by now
    return response


def path_of(url: str) -> str:
    assert url.startswith(BASE), url
    return url[len(BASE):]


def spare_bit_flipped(encoded: str) -> str:
    """The same base64url text but for a bit of the last character that carries no data."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return encoded[:-1] + alphabet[alphabet.index(encoded[-1]) ^ 1]


def counts(project: Project) -> dict[str, int]:
    """Rows in every table the server may write: 'writes nothing' means these do not move."""
    with project.store.connect() as conn:
        found = {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one() for t in
                 (tables.events, tables.contacts, tables.contact_tags, tables.conversions, tables.rate_limits, tables.nonces)}
        found["unsubscribed"] = conn.execute(select(func.count()).where(tables.contacts.c.status != "subscribed")).scalar_one()
    return found


def events_of(project: Project, kind: str) -> list[Any]:
    with project.store.connect() as conn:
        return list(conn.execute(select(tables.events).where(tables.events.c.kind == kind)))


@pytest.fixture
def tracked(waitlist_project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Project, Any, RecordingProvider]]:
    """The example launch's welcome email sent, tracked, to three people; and the server app."""
    root = waitlist_project("maildir", "", PEOPLE)
    config = root / "launchkit.toml"
    config.write_text(config.read_text().replace('base_url = ""', f'base_url = "{BASE}"') + '\n[webhooks.stripe]\nsigning_secret = "whsec_test"\n')
    welcome = root / "sequences" / "example-launch" / "welcome.md"
    welcome.write_text(welcome.read_text() + "\nSee [the course]({{ links.sales_page }}), or [write to me](mailto:you@example.com).\n"
                       f"\nThe [programme]({PROGRAMME}).\n")
    monkeypatch.setenv("LAUNCHKIT_NOW", "2030-01-02 09:05")
    provider = RecordingProvider()
    project = Project.open(root)
    report = tick(project, provider=provider)
    assert report.sent == 3
    app = create_app(Project.open(root))
    yield root, project, app, provider
    app.state.server.writer.close()


def links_in(html: str) -> list[str]:
    return re.findall(r'href="([^"]+)"', html)


def test_emails_carry_tracked_links_an_open_pixel_and_a_signed_unsubscribe_link(tracked: Any) -> None:
    _, _, _, provider = tracked
    message = provider.sent[0]
    hrefs = links_in(message.html)
    clicks = [h for h in hrefs if h.startswith(f"{BASE}/c/")]
    assert clicks, hrefs
    assert not [h for h in hrefs if h.startswith("https://example.com")], "every web link goes through the click endpoint"
    assert "mailto:you@example.com" in hrefs, "mailto links are left alone"
    assert re.search(rf'<img src="{re.escape(BASE)}/o/[^"]+\.gif"', message.html)
    assert message.headers["List-Unsubscribe"].startswith(f"<{BASE}/u/")
    assert message.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_an_open_is_recorded_once_and_answers_a_gif(tracked: Any) -> None:
    _, project, app, provider = tracked
    pixel = re.search(r'<img src="([^"]+)"', provider.sent[0].html).group(1)  # type: ignore[union-attr]
    for _ in range(2):
        response = request(app, "GET", path_of(pixel))
        assert response.status_code == 200 and response.headers["content-type"] == "image/gif"
        assert response.content.startswith(b"GIF89a")
    opened = events_of(project, "opened")
    assert len(opened) == 1
    assert (opened[0].launch_id, opened[0].email_id) == ("example-launch", "welcome")


def test_a_click_records_the_link_and_redirects_to_it(tracked: Any) -> None:
    _, project, app, provider = tracked
    message = provider.sent[0]
    click = next(h for h in links_in(message.html) if h.startswith(f"{BASE}/c/"))
    response = request(app, "GET", path_of(click))
    assert response.status_code == 302
    assert response.headers["location"].startswith("https://example.com/")
    clicked = events_of(project, "clicked")
    assert len(clicked) == 1
    assert clicked[0].email_id == "welcome" and clicked[0].data["url"] == response.headers["location"]
    with project.store.connect() as conn:
        contact = conn.execute(select(tables.contacts.c.email).where(tables.contacts.c.id == clicked[0].contact_id)).scalar()
    assert contact == message.to


def test_utm_parameters_of_the_launch_are_added_on_the_way_out(tracked: Any) -> None:
    root, _, _, provider = tracked
    launch_file = root / "sequences" / "example-launch.toml"
    launch_file.write_text(launch_file.read_text().replace("[launch.links]", '[launch.utm]\nsource = "newsletter"\nmedium = "email"\n\n[launch.links]'))
    app = create_app(Project.open(root))
    click = next(h for h in links_in(provider.sent[0].html) if h.startswith(f"{BASE}/c/"))
    location = request(app, "GET", path_of(click)).headers["location"]
    assert "utm_source=newsletter" in location and "utm_medium=email" in location and "utm_content=welcome" in location
    app.state.server.writer.close()


def test_utm_parameters_are_appended_to_the_query_as_written(tracked: Any) -> None:
    root, project, _, provider = tracked
    launch_file = root / "sequences" / "example-launch.toml"
    launch_file.write_text(launch_file.read_text().replace("[launch.links]", '[launch.utm]\nsource = "newsletter"\nmedium = "email"\n\n[launch.links]'))
    app = create_app(Project.open(root))
    clicks = [h for h in links_in(provider.sent[0].html) if h.startswith(f"{BASE}/c/")]
    locations = [request(app, "GET", path_of(c)).headers["location"] for c in clicks]
    assert "https://example.com/p?flag&utm_source=keep&q=a%20b&utm_medium=email&utm_content=welcome#frag" in locations, locations
    app.state.server.writer.close()


def test_unsubscribe_get_changes_nothing_and_one_click_post_unsubscribes(tracked: Any) -> None:
    root, project, app, provider = tracked
    message = next(m for m in provider.sent if m.to == "ada@example.com")
    link = message.headers["List-Unsubscribe"].strip("<>")
    before = counts(project)
    page = request(app, "GET", path_of(link))
    assert page.status_code == 200 and "<form" in page.text and "a***@example.com" in page.text
    assert counts(project) == before, "a GET (a mail scanner following the link) must not unsubscribe"

    response = request(app, "POST", path_of(link), content=b"List-Unsubscribe=One-Click",
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200
    with project.store.connect() as conn:
        status = conn.execute(select(tables.contacts.c.status).where(tables.contacts.c.email == "ada@example.com")).scalar()
    assert status == "unsubscribed"
    assert len(events_of(project, "unsubscribed")) == 1

    # The next tick, at the next email's moment, sends to the two others only.
    later = RecordingProvider()
    tick(Project.open(root, now="2030-01-04 09:05"), provider=later)
    assert later.sent and "ada@example.com" not in {m.to for m in later.sent}


def test_forged_edited_and_unknown_tokens_get_404_and_write_nothing(tracked: Any) -> None:
    _, project, app, provider = tracked
    message = provider.sent[0]
    click = path_of(next(h for h in links_in(message.html) if h.startswith(f"{BASE}/c/")))
    secret = project.secret()
    payload, mac = click.rsplit("/", 1)[1].split(".")
    edited_payload = tracking.tokens._b64(b"c:999:1:0")  # another link, same signature
    unknown_link = tracking.tokens.sign(secret, "c", 424242, 1, 0)  # signed, but no such link
    before = counts(project)
    for path in [
        "/c/not-a-token", f"/c/{edited_payload}.{mac}", f"/c/{unknown_link}", f"/c/{payload}.{mac[:-2]}{'AQ' if mac[-2:] != 'AQ' else 'AA'}",
        f"/c/{payload}.{spare_bit_flipped(mac)}",  # decodes to the same bytes, but is not the token signed
        "/o/forged.gif", f"/o/{payload}.{mac}.gif",  # a click token is not an open token
        "/u/forged", f"/u/{tracking.tokens.sign('wrong secret', 'u', 1, 'example-launch', 'welcome')}",
        f"/u/{tracking.tokens.sign(secret, 'u', 999999, 'example-launch', 'welcome')}",
        "/confirm/forged",
    ]:
        method = "POST" if path.startswith("/u/") else "GET"
        response = request(app, method, path)
        assert 400 <= response.status_code < 500, (path, response.status_code)
    assert counts(project) == before


def test_bodies_too_big_or_malformed_get_4xx_and_write_nothing(tracked: Any) -> None:
    _, project, app, provider = tracked
    link = path_of(provider.sent[0].headers["List-Unsubscribe"].strip("<>"))
    before = counts(project)
    huge = b"x" * (10 * 1024 * 1024)
    assert request(app, "POST", "/hooks/stripe", content=huge).status_code == 413
    assert request(app, "POST", "/subscribe", content=huge, headers={"Content-Type": "application/json"}).status_code == 413
    assert request(app, "POST", link, content=huge).status_code == 413
    for body, content_type in [
        (b"{not json", "application/json"), (b"[1, 2]", "application/json"), (b"\xff\xfe", "application/x-www-form-urlencoded"),
        (b"email=not-an-address", "application/x-www-form-urlencoded"), (b"", "application/x-www-form-urlencoded"),
        (b'{"email": "x@example.com", "tags": "vip"}', "application/json"),
    ]:
        response = request(app, "POST", "/subscribe", content=body, headers={"Content-Type": content_type})
        assert response.status_code == 400, (body, response.status_code)
    for body in [b"{not json", b"\x00\x01", b'{"type": "checkout.session.completed"}']:
        assert request(app, "POST", "/hooks/stripe", content=body, headers={"Stripe-Signature": "t=1,v1=00"}).status_code == 400
    assert request(app, "POST", "/hooks/nowhere", content=b"{}").status_code == 404
    assert counts(project) == before


# --- Signups -----------------------------------------------------------------------


def signup_settings(root: Path, extra: str = "") -> None:
    config = root / "launchkit.toml"
    config.write_text(config.read_text() + f'\n[signup]\ntags = ["waitlist", "newsletter"]\nallowed_tags = ["vip-list"]\nper_ip = "20/h"\nper_address = "3/h"\n{extra}')


def test_a_form_signup_creates_a_pending_contact_with_consent_and_sends_the_confirmation(tracked: Any, sent_mail: Any) -> None:
    root, project, _, _ = tracked
    signup_settings(root, 'consent_text = "I agree to receive the newsletter (v2)"\nthank_you_url = "https://example.com/thanks"\n')
    app = create_app(Project.open(root))
    before = len(sent_mail())
    response = request(app, "POST", "/subscribe", content=b"email=Lin%40Example.com&first_name=Lin&tags=vip-list&website=",
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 303 and response.headers["location"] == "https://example.com/thanks"
    with project.store.connect() as conn:
        contact = conn.execute(select(tables.contacts).where(tables.contacts.c.email == "lin@example.com")).one()
        consent = conn.execute(select(tables.events.c.data).where(tables.events.c.kind == "subscribed")).scalar_one()
    assert contact.status == "pending" and contact.consent_source == "signup form"
    assert consent["consent"] == "I agree to receive the newsletter (v2)" and consent["ip"] != "203.0.113.7"

    mails = sent_mail()[before:]
    assert [m["To"] for m in mails] == ["Lin <lin@example.com>"]
    confirm = re.search(rf"{re.escape(BASE)}/confirm/[\w.-]+", mails[0].get_body(("plain",)).get_content()).group(0)  # type: ignore[union-attr]
    response = request(app, "GET", path_of(confirm))
    assert response.status_code == 200 and "l***@example.com" in response.text
    with project.store.connect() as conn:
        status = conn.execute(select(tables.contacts.c.status).where(tables.contacts.c.email == "lin@example.com")).scalar()
        tags = set(conn.execute(select(tables.contact_tags.c.tag).where(tables.contact_tags.c.contact_id == contact.id)).scalars())
    assert status == "subscribed" and tags == {"waitlist", "newsletter", "vip-list"}
    app.state.server.writer.close()


def test_the_honeypot_and_the_rate_limit_stop_a_burst_of_100_bot_posts(tracked: Any, sent_mail: Any) -> None:
    root, project, _, _ = tracked
    signup_settings(root)
    app = create_app(Project.open(root))
    before_mail, before = len(sent_mail()), counts(project)["contacts"]
    statuses = []
    for n in range(100):
        honeypot = "http://spam.example" if n % 2 else ""
        body = json.dumps({"email": f"bot{n}@example.net", "website": honeypot})
        statuses.append(request(app, "POST", "/subscribe", content=body, headers={"Content-Type": "application/json"}).status_code)
    created = counts(project)["contacts"] - before
    assert created == 20, "the per-IP limit lets 20 an hour through"
    assert statuses.count(429) == 30 and statuses.count(200) == 70  # bots with the honeypot are told nothing
    assert len(sent_mail()) - before_mail == 20
    # One address hammered from many places: three confirmations an hour at most.
    async def many() -> list[int]:
        codes = []
        for n in range(10):
            transport = httpx.ASGITransport(app=app, client=(f"198.51.100.{n}", 1000))
            async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
                codes.append((await client.post("/subscribe", json={"email": "victim@example.org"})).status_code)
        return codes
    codes = asyncio.run(many())
    assert codes.count(200) == 3 and codes.count(429) == 7
    app.state.server.writer.close()


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def signed_up(app: Any, sent_mail: Any, body: bytes) -> tuple[str, str]:
    """Post the signup form; the confirmation link and the unsubscribe link of the email it sent."""
    before = len(sent_mail())
    assert request(app, "POST", "/subscribe", content=body, headers=FORM).status_code == 200
    [mail] = sent_mail()[before:]
    confirm = re.search(rf"{re.escape(BASE)}/confirm/[\w.-]+", mail.get_body(("plain",)).get_content()).group(0)  # type: ignore[union-attr]
    return path_of(confirm), path_of(mail["List-Unsubscribe"].strip("<>"))


def contact_of(project: Project, address: str) -> Any:
    with project.store.connect() as conn:
        return conn.execute(select(tables.contacts).where(tables.contacts.c.email == address)).one()


def test_an_old_confirmation_link_does_not_undo_an_unsubscribe(tracked: Any, sent_mail: Any) -> None:
    root, project, _, _ = tracked
    signup_settings(root)
    app = create_app(Project.open(root))
    confirm, unsubscribe = signed_up(app, sent_mail, b"email=lin%40example.com")
    assert request(app, "GET", confirm).status_code == 200
    assert request(app, "POST", unsubscribe, content=b"List-Unsubscribe=One-Click", headers=FORM).status_code == 200
    before = counts(project)

    again = request(app, "GET", confirm)
    assert again.status_code == 200 and "You are unsubscribed" in again.text and "l***@example.com" in again.text
    assert "on the list" not in again.text
    assert counts(project) == before and contact_of(project, "lin@example.com").status == "unsubscribed"
    app.state.server.writer.close()

    # Signing up again is asking again: the link that signup sends puts them back.
    later = create_app(Project.open(root, now="2030-01-02 10:00"))
    fresh, _ = signed_up(later, sent_mail, b"email=lin%40example.com")
    assert "on the list" in request(later, "GET", fresh).text
    assert contact_of(project, "lin@example.com").status == "subscribed"
    later.state.server.writer.close()


def test_a_head_request_or_a_second_click_on_a_confirmation_link_writes_nothing(tracked: Any, sent_mail: Any) -> None:
    root, project, _, _ = tracked
    signup_settings(root)
    app = create_app(Project.open(root))
    confirm, _ = signed_up(app, sent_mail, b"email=lin%40example.com&tags=vip-list")
    before = counts(project)
    head = request(app, "HEAD", confirm)
    assert head.status_code == 200
    assert counts(project) == before and contact_of(project, "lin@example.com").status == "pending", "a link checker must not confirm"

    get = request(app, "GET", confirm)
    assert get.status_code == 200 and head.headers["content-length"] == get.headers["content-length"], "HEAD answers as GET does"
    confirmed = contact_of(project, "lin@example.com")
    assert confirmed.status == "subscribed" and len(events_of(project, "confirmed")) == 1
    app.state.server.writer.close()

    later = create_app(Project.open(root, now="2030-01-03 09:00"))
    before = counts(project)
    second = request(later, "GET", confirm)
    assert second.status_code == 200 and "l***@example.com is on the list" in second.text
    assert counts(project) == before and len(events_of(project, "confirmed")) == 1
    assert contact_of(project, "lin@example.com").updated_at == confirmed.updated_at
    later.state.server.writer.close()


def test_a_confirmation_link_leaves_a_bounced_contact_alone(tracked: Any, sent_mail: Any) -> None:
    root, project, _, _ = tracked
    signup_settings(root)
    app = create_app(Project.open(root))
    confirm, _ = signed_up(app, sent_mail, b"email=lin%40example.com")
    with project.store.begin() as conn:
        conn.execute(update(tables.contacts).where(tables.contacts.c.email == "lin@example.com").values(status="bounced"))
    bounced, before = contact_of(project, "lin@example.com"), counts(project)
    head, get = request(app, "HEAD", confirm), request(app, "GET", confirm)
    assert head.status_code == get.status_code == 200 and head.headers["content-length"] == get.headers["content-length"]
    assert "You are unsubscribed" in get.text and "on the list" not in get.text
    assert counts(project) == before and contact_of(project, "lin@example.com") == bounced
    app.state.server.writer.close()


def test_a_signup_that_is_not_one_clear_person_gets_400_and_writes_nothing(tracked: Any) -> None:
    root, project, _, _ = tracked
    signup_settings(root)
    app = create_app(Project.open(root))
    before = counts(project)
    nested = b'{"email": "lin@example.com", "first_name": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    for body, content_type, reason in [
        (nested, "application/json", "could not be read"),
        (b"email=lin%40example.com&email=eve%40example.net", "application/x-www-form-urlencoded", "`email` field is repeated"),
        (b'{"email": "lin@example.com", "email": "eve@example.net"}', "application/json", "`email` field is repeated"),
        (b'{"email": "lin@example.com", "tags": [1, 2]}', "application/json", "`tags` must be a list of strings"),
        (b'{"email": "lin@example.com", "tags": 5}', "application/json", "`tags` must be a list of strings"),
    ]:
        response = request(app, "POST", "/subscribe", content=body, headers={"Content-Type": content_type})
        assert response.status_code == 400, (body[:60], response.status_code)
        assert reason in response.text, response.text
    assert counts(project) == before
    app.state.server.writer.close()


def test_a_honeypot_filled_with_any_json_value_is_a_bot(tracked: Any, sent_mail: Any) -> None:
    root, project, _, _ = tracked
    signup_settings(root)
    app = create_app(Project.open(root))
    before, before_mail = counts(project), len(sent_mail())
    for n, honeypot in enumerate([["x"], 1, 0, True, {"url": "x"}, "http://spam.example"]):
        body = {"email": f"bot{n}@example.net", "website": honeypot}
        response = request(app, "POST", "/subscribe", json=body)
        assert response.status_code == 200 and response.json() == {"status": "pending"}, "a bot is told what a person is"
    assert counts(project) == before and len(sent_mail()) == before_mail
    for n, empty in enumerate(["", " ", None, [], {}]):
        assert request(app, "POST", "/subscribe", json={"email": f"person{n}@example.org", "website": empty}).status_code == 200
    assert counts(project)["contacts"] == before["contacts"] + 5
    app.state.server.writer.close()


def test_retry_after_says_when_the_signup_limit_lifts(tracked: Any) -> None:
    root, _, _, _ = tracked
    signup_settings(root)
    app = create_app(Project.open(root))  # 09:05: the hour's window starts with the first signup
    for _ in range(3):
        assert request(app, "POST", "/subscribe", json={"email": "lin@example.com"}).status_code == 200
    app.state.server.writer.close()
    later = create_app(Project.open(root, now="2030-01-02 09:45"))
    response = request(later, "POST", "/subscribe", json={"email": "lin@example.com"})
    assert response.status_code == 429 and response.headers["Retry-After"] == str(20 * 60)
    page = request(later, "POST", "/subscribe", content=b"email=lin%40example.com", headers=FORM)
    assert page.status_code == 429 and "<title>Please try again later" in page.text and "missing" not in page.text
    later.state.server.writer.close()


# --- Webhooks --------------------------------------------------------------------------


@pytest.mark.parametrize("table, problem", [
    ('[webhooks.stripe]\nsigning_secret = "${STRIPE_WEBHOOK_SECRET}"\n', "STRIPE_WEBHOOK_SECRET"),
    ('[webhooks.resend]\nsigning_secret = "whsec_not*base64"\n', "webhooks.resend"),
])
def test_a_webhook_that_cannot_be_built_stops_serve_with_the_message_check_gives(
    tracked: Any, launchkit: Any, monkeypatch: pytest.MonkeyPatch, table: str, problem: str
) -> None:
    root, _, _, _ = tracked
    config = root / "launchkit.toml"
    config.write_text(config.read_text().replace('[webhooks.stripe]\nsigning_secret = "whsec_test"\n', table))
    monkeypatch.delenv("STRIPE_WEBHOOK_SECRET", raising=False)
    import uvicorn

    started: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **options: started.append(args))
    checked, served = launchkit("check"), launchkit("serve")
    assert checked.exit_code == 1 and problem in checked.output
    assert served.exit_code == 1 and not started, "serve must not start with a webhook it cannot build"
    message = next(line for line in checked.output.splitlines() if problem in line)
    assert message.strip() in served.output


# --- Purchases through the Stripe webhook --------------------------------------------


def stripe_event(event_id: str, email: str, at: int, *, product: str = "course", amount: int = 9900) -> bytes:
    return json.dumps({
        "id": event_id, "object": "event", "type": "checkout.session.completed", "created": at,
        "data": {"object": {
            "id": f"cs_{event_id}", "object": "checkout.session", "payment_status": "paid", "status": "complete",
            "payment_intent": f"pi_{event_id}", "amount_total": amount, "currency": "usd",
            "customer_details": {"email": email}, "metadata": {"product": product},
        }},
    }).encode()


def stripe_signature(body: bytes, secret: str, at: int) -> str:
    mac = hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={at},v1={mac}"


def test_buyers_through_the_stripe_webhook_mid_cart_get_no_later_unless_converted_email(waitlist_project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> None:
    people = [(f"p{n}@example.com", f"P{n}", "Doe") for n in range(10)]
    root = waitlist_project("maildir", "", people)
    config = root / "launchkit.toml"
    config.write_text(config.read_text().replace('base_url = ""', f'base_url = "{BASE}"') + '\n[webhooks.stripe]\nsigning_secret = "whsec_test"\n')
    provider = RecordingProvider()
    for moment in ("2030-01-02 09:05", "2030-01-04 09:05", "2030-01-09 09:05"):
        tick(Project.open(root, now=moment), provider=provider)
    doors = [m for m in provider.sent if m.email == "doors-open"]
    assert len(doors) == 10

    # Mid-cart, three people click the checkout link of doors-open, then buy.
    monkeypatch.setenv("LAUNCHKIT_NOW", "2030-01-09 12:00")
    app = create_app(Project.open(root))
    buyers = ["p1@example.com", "p4@example.com", "p7@example.com"]
    for n, address in enumerate(buyers):
        message = next(m for m in doors if m.to == address)
        click = next(h for h in links_in(message.html) if h.startswith(f"{BASE}/c/"))
        assert request(app, "GET", path_of(click)).status_code == 302
        at = int(datetime(2030, 1, 9, 12, 0, n, tzinfo=timezone.utc).timestamp())
        body = stripe_event(f"evt_{n}", address, at)
        response = request(app, "POST", "/hooks/stripe", content=body, headers={"Stripe-Signature": stripe_signature(body, "whsec_test", at), "Content-Type": "application/json"})
        assert response.status_code == 200 and response.json() == {"stored": 1, "replayed": 0}
    with Project.open(root).store.connect() as conn:
        sales = list(conn.execute(select(tables.conversions)))
    assert sorted(s.email for s in sales) == buyers
    assert {(s.launch_id, s.email_id, s.product) for s in sales} == {("example-launch", "doors-open", "course")}
    app.state.server.writer.close()

    # The rest of the cart and the close: no buyer gets an `unless = "converted"` email.
    later = RecordingProvider()
    for moment in ("2030-01-10 10:05", "2030-01-11 10:05", "2030-01-13 20:59", "2030-01-13 21:05", "2030-01-14 08:05", "2030-01-15 10:05"):
        tick(Project.open(root, now=moment), provider=later)
    launch = Project.open(root).launch("example-launch")
    unless_converted = {e.id for e in launch.emails if e.unless is not None and "converted" in e.unless.source}
    only_converted = {e.id for e in launch.emails if e.only is not None and "converted" in e.only.source}
    assert unless_converted and only_converted
    sent_to_buyers = {(m.email, m.to) for m in later.sent if m.to in buyers}
    assert not {e for e, _ in sent_to_buyers} & unless_converted
    assert {m.to for m in later.sent if m.email in only_converted} == set(buyers)
    assert {m.to for m in later.sent if m.email in unless_converted} == {a for a, _, _ in people} - set(buyers)
