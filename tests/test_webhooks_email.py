"""Email event webhooks of the postmark, sendgrid, mailgun and resend plugins.

Every request here is signed for real, the way each service documents it: SendGrid's ECDSA
P-256 signature over timestamp + body (a key pair made for the test), Mailgun's HMAC of
timestamp + token, Resend's Svix HMAC of id.timestamp.body, Postmark's Basic credentials.
The payloads follow the services' documented examples.

Two levels: the handlers built by the plugins' registered factories and called directly,
then whole requests through launchkit's HTTP server (``launchkit.server``), checked in the
database.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import launchkit_plugins.mailgun as mailgun_plugin
import launchkit_plugins.postmark as postmark_plugin
import launchkit_plugins.resend as resend_plugin
import launchkit_plugins.sendgrid as sendgrid_plugin
import pytest

from launchkit.types import (
    Event,
    Webhook,
    WebhookContext,
    WebhookRejected,
    WebhookRequest,
)
from tests.backends import Database

# The end-to-end tests (a project and its database) run on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.every_backend

RECEIVED = datetime(2030, 1, 9, 9, 5, 30, tzinfo=UTC)  #: when the requests of part (a) arrive
NOW = int(RECEIVED.timestamp())


def build(plugin: ModuleType, name: str, settings: dict[str, Any], project_dir: Path = Path(".")) -> Webhook:
    """The handler the plugin's ``register_webhooks`` factory builds from ``settings``."""
    registered: dict[str, Callable[[WebhookContext], Webhook]] = {}
    plugin.register_webhooks(register=registered.__setitem__)
    assert list(registered) == [name]
    return registered[name](WebhookContext(name=name, settings=settings, project_dir=project_dir))


def request(body: bytes, headers: dict[str, str], *, at: datetime = RECEIVED, first_seen: Callable[[str], bool] | None = None) -> WebhookRequest:
    extra = {"first_seen": first_seen} if first_seen else {}
    return WebhookRequest(body=body, headers={k.lower(): v for k, v in headers.items()}, query={}, received_at=at, **extra)


def dumps(value: Any) -> bytes:
    return json.dumps(value, indent=2).encode()


def one(events: list[Event]) -> Event:
    assert len(events) == 1, events
    return events[0]


# =========================================================================================
# (a) The handlers, called directly
# =========================================================================================

# --- Postmark ----------------------------------------------------------------------------

PM_USER, PM_PASSWORD = "launchkit", "Zq7-long-random-password-0b1c"
PM_MESSAGE = "883953f4-6105-42a2-a16a-77a8eac79483"
PM_METADATA = {"launch": "spring-course", "email": "doors-open", "key": "spring-course/doors-open/42"}


def basic(user: str = PM_USER, password: str = PM_PASSWORD) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode(), "Content-Type": "application/json"}


@pytest.fixture
def postmark() -> Webhook:
    return build(postmark_plugin, "postmark", {"username": PM_USER, "password": PM_PASSWORD})


def pm_delivery(**changes: Any) -> dict[str, Any]:
    return {
        "RecordType": "Delivery", "ServerID": 23, "MessageStream": "broadcast", "MessageID": PM_MESSAGE,
        "Recipient": "Ada@Example.com", "Tag": "doors-open", "DeliveredAt": "2030-01-09T09:01:54.9070259Z",
        "Details": "smtp;250 2.0.0 OK 1480624905 l186si10190883ite.73 - gsmtp", "Metadata": PM_METADATA, **changes,
    }


def pm_bounce(**changes: Any) -> dict[str, Any]:
    return {
        "RecordType": "Bounce", "MessageStream": "broadcast", "ID": 4323372036854775807, "Type": "HardBounce",
        "TypeCode": 1, "Name": "Hard bounce", "Tag": "doors-open", "MessageID": PM_MESSAGE, "Metadata": PM_METADATA,
        "ServerID": 23, "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": "grace@example.com", "From": "you@example.com", "BouncedAt": "2030-01-09T09:02:10.2390219Z",
        "DumpAvailable": True, "Inactive": True, "CanActivate": True, "Subject": "Doors are open", "Content": "Return-Path:...",
        **changes,
    }


def pm_post(handler: Webhook, record: dict[str, Any]) -> list[Event]:
    return list(handler.handle(request(dumps(record), basic())))


def test_postmark_delivery(postmark: Webhook) -> None:
    event = one(pm_post(postmark, pm_delivery()))
    assert event.kind == "delivered"
    assert event.email == "ada@example.com"
    assert event.occurred_at == datetime(2030, 1, 9, 9, 1, 54, 907025, tzinfo=UTC)
    assert event.provider_message_id == PM_MESSAGE  # the MessageID the batch API answered
    assert (event.launch, event.email_id) == ("spring-course", "doors-open")
    assert event.id == f"Delivery:{PM_MESSAGE}:2030-01-09T09:01:54.9070259Z"
    assert event.data == {"details": "smtp;250 2.0.0 OK 1480624905 l186si10190883ite.73 - gsmtp"}


def test_postmark_hard_bounce_carries_postmarks_bounce_id(postmark: Webhook) -> None:
    event = one(pm_post(postmark, pm_bounce()))
    assert event.kind == "bounced"
    assert event.email == "grace@example.com"
    assert event.id == "Bounce:4323372036854775807"
    assert event.occurred_at == datetime(2030, 1, 9, 9, 2, 10, 239021, tzinfo=UTC)
    assert event.data["type"] == "HardBounce" and event.data["type_code"] == 1
    assert event.data["details"].startswith("smtp;550 5.1.1")
    assert event.provider_message_id == PM_MESSAGE


@pytest.mark.parametrize(
    ("changes", "kind"),
    [
        ({"Type": "BadEmailAddress", "TypeCode": 100000, "Inactive": False}, "bounced"),
        ({"Type": "ManuallyDeactivated", "TypeCode": 100002}, "bounced"),
        ({"Type": "SoftBounce", "TypeCode": 4096, "Inactive": False}, "soft_bounced"),
        ({"Type": "Transient", "TypeCode": 2, "Inactive": False}, "soft_bounced"),
        ({"Type": "DnsError", "TypeCode": 256, "Inactive": False}, "soft_bounced"),
        ({"Type": "Blocked", "TypeCode": 100006, "Inactive": False}, "soft_bounced"),
        ({"Type": "SoftBounce", "TypeCode": 4096, "Inactive": True}, "bounced"),  # Postmark stopped sending there
        ({"Type": None, "TypeCode": 100000, "Inactive": False}, "bounced"),  # read by its code
        ({"Type": "SpamComplaint", "TypeCode": 100001}, "complained"),
        ({"Type": "Unsubscribe", "TypeCode": 16, "Inactive": False}, "unsubscribed"),
        ({"Type": "AutoResponder", "TypeCode": 64, "Inactive": False}, None),
        ({"Type": "ChallengeVerification", "TypeCode": 16384, "Inactive": False}, None),
    ],
)
def test_postmark_bounce_types(postmark: Webhook, changes: dict[str, Any], kind: str | None) -> None:
    events = pm_post(postmark, pm_bounce(**changes))
    assert [e.kind for e in events] == ([kind] if kind else [])


def test_postmark_spam_complaint_record(postmark: Webhook) -> None:
    record = pm_bounce(RecordType="SpamComplaint", ID=42, Type="SpamComplaint", TypeCode=100001, Name="Spam complaint",
                       Details="Test spam complaint details", Email="linus@example.org", CanActivate=False)
    event = one(pm_post(postmark, record))
    assert (event.kind, event.email, event.id) == ("complained", "linus@example.org", "SpamComplaint:42")


def test_postmark_open_and_click(postmark: Webhook) -> None:
    common = {"MessageStream": "broadcast", "MessageID": PM_MESSAGE, "Recipient": "ada@example.com", "Tag": "doors-open",
              "Metadata": PM_METADATA, "Platform": "Desktop", "UserAgent": "Mozilla/5.0 (Macintosh) Chrome/117.0",
              "Client": {"Name": "Chrome 117", "Company": "Google", "Family": "Chrome"}, "OS": {"Name": "macOS", "Family": "OS X"},
              "Geo": {"CountryISOCode": "FR", "City": "Lyon"}}
    opened = one(pm_post(postmark, {"RecordType": "Open", "FirstOpen": True, "ReadSeconds": 5, "ReceivedAt": "2030-01-09T10:00:00.0000000Z", **common}))
    assert opened.kind == "opened"
    assert opened.data == {"first_open": True, "platform": "Desktop", "user_agent": "Mozilla/5.0 (Macintosh) Chrome/117.0"}
    assert opened.id == f"Open:{PM_MESSAGE}:2030-01-09T10:00:00.0000000Z"

    def click(link: str) -> Event:
        return one(pm_post(postmark, {"RecordType": "Click", "ClickLocation": "HTML", "OriginalLink": link,
                                      "ReceivedAt": "2030-01-09T10:01:00.0000000Z", **common}))

    sales, faq = click("https://example.com/course?utm_source=launch"), click("https://example.com/faq")
    assert sales.kind == "clicked" and sales.data["url"] == "https://example.com/course?utm_source=launch"
    assert sales.occurred_at == datetime(2030, 1, 9, 10, 1, tzinfo=UTC)
    assert sales.id != faq.id  # Postmark sends one event per link: two links clicked at once are two events


@pytest.mark.parametrize(
    ("suppress", "reason", "kind"),
    [(True, "ManualSuppression", "unsubscribed"), (True, "HardBounce", "bounced"), (True, "SpamComplaint", "complained"), (False, None, None)],
)
def test_postmark_subscription_change(postmark: Webhook, suppress: bool, reason: str | None, kind: str | None) -> None:
    record = {"RecordType": "SubscriptionChange", "MessageID": PM_MESSAGE, "ServerID": 23, "MessageStream": "broadcast",
              "ChangedAt": "2030-01-09T11:53:34.416071Z", "Recipient": "ada@example.com", "Origin": "Recipient",
              "SuppressSending": suppress, "SuppressionReason": reason, "Tag": "doors-open", "Metadata": PM_METADATA}
    events = pm_post(postmark, record)
    assert [e.kind for e in events] == ([kind] if kind else [])
    if kind == "unsubscribed":
        assert events[0].data == {"reason": "ManualSuppression", "origin": "Recipient"}
        assert events[0].occurred_at == datetime(2030, 1, 9, 11, 53, 34, 416071, tzinfo=UTC)


def test_postmark_suppression_made_in_postmark_has_no_message_but_a_stable_id(postmark: Webhook) -> None:
    record = {"RecordType": "SubscriptionChange", "MessageID": None, "ChangedAt": "2030-01-09T11:53:34Z", "Recipient": "Ada@example.com",
              "Origin": "Customer", "SuppressSending": True, "SuppressionReason": "ManualSuppression", "Tag": None, "Metadata": {}}
    first, again = pm_post(postmark, record), pm_post(postmark, record)
    assert first[0].id == again[0].id == "SubscriptionChange:ada@example.com:2030-01-09T11:53:34Z"
    assert first[0].provider_message_id is None and first[0].launch is None


def test_postmark_ignores_inbound_and_unknown_records(postmark: Webhook) -> None:
    assert pm_post(postmark, {"RecordType": "Inbound", "From": "x@example.com"}) == []
    assert pm_post(postmark, {"RecordType": "SomethingNew", "Recipient": "ada@example.com"}) == []


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer abc"},
        {"Authorization": "Basic"},
        {"Authorization": "Basic !!!not-base64!!!"},
        basic(password="wrong"),
        basic(user="someone"),
        basic(password=PM_PASSWORD + "x"),
    ],
    ids=["absent", "bearer", "empty", "not-base64", "wrong-password", "wrong-user", "longer-password"],
)
def test_postmark_refuses_missing_or_wrong_basic_credentials(postmark: Webhook, headers: dict[str, str]) -> None:
    with pytest.raises(WebhookRejected):
        postmark.handle(request(dumps(pm_delivery()), headers))


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"\xff\xfe\x00garbage",
        dumps([pm_delivery()]),
        dumps({"MessageID": PM_MESSAGE}),  # no RecordType
        dumps(pm_delivery(Recipient=None)),
        dumps(pm_delivery(DeliveredAt="yesterday")),
        dumps(pm_bounce(Email="")),
    ],
    ids=["not-json", "not-utf8", "array", "no-record-type", "no-recipient", "bad-time", "empty-email"],
)
def test_postmark_refuses_malformed_records(postmark: Webhook, body: bytes) -> None:
    with pytest.raises(WebhookRejected):
        postmark.handle(request(body, basic()))


@pytest.mark.parametrize(("settings", "key"), [({"password": "p"}, "username"), ({"username": "u"}, "password"), ({"username": "u", "password": ""}, "password")])
def test_postmark_settings_name_the_missing_key(settings: dict[str, str], key: str) -> None:
    with pytest.raises(ValueError, match=rf"\[webhooks.postmark\] needs {key}"):
        build(postmark_plugin, "postmark", settings)


# --- SendGrid ----------------------------------------------------------------------------

SG_MESSAGE = "W86EgYT6SQKk0lRflfLRsA"  #: an X-Message-Id as the Mail Send API answers it
SG_ARGS = {"launch": "spring-course", "key": "spring-course/doors-open/42"}


class SendGridKeys:
    """A P-256 key pair standing in for the one SendGrid makes for a signed event webhook."""

    def __init__(self) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        self.private = ec.generate_private_key(ec.SECP256R1())
        der = self.private.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.public_b64 = base64.b64encode(der).decode()  #: what SendGrid shows as the verification key

    def sign(self, body: bytes, timestamp: int | str) -> dict[str, str]:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        signature = self.private.sign(str(timestamp).encode() + body, ec.ECDSA(hashes.SHA256()))
        return {
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": str(timestamp),
            "Content-Type": "application/json",
        }


@pytest.fixture(scope="module")
def sg_keys() -> SendGridKeys:
    return SendGridKeys()


@pytest.fixture
def sendgrid(sg_keys: SendGridKeys) -> Webhook:
    return build(sendgrid_plugin, "sendgrid", {"public_key": sg_keys.public_b64})


def sg_event(event: str, email: str = "ada@example.com", **fields: Any) -> dict[str, Any]:
    # sg_event_id: base64 of an opaque string, unique per event; derived here from the event itself.
    event_id = base64.urlsafe_b64encode(hashlib.sha256(f"{event}{email}{sorted(fields.items())}".encode()).digest()[:16]).decode().rstrip("=")
    return {
        "email": email, "timestamp": NOW - 60, "smtp-id": f"<{SG_MESSAGE}@geopod-ismtpd-5>", "event": event,
        "category": ["doors-open"], "sg_event_id": event_id, "sg_message_id": f"{SG_MESSAGE}.filterdrecv-5bf99c48d-sdxvg-19-5B0C87EE-4.0",
        **SG_ARGS, **fields,
    }


SG_BATCH = [
    sg_event("processed"),
    sg_event("delivered", response="250 2.0.0 OK 1513299569 l186si10190883ite.73 - gsmtp", ip="168.1.1.1", tls=1),
    sg_event("open", useragent="Mozilla/4.0 (compatible; MSIE 6.1; Windows XP)", ip="255.255.255.255", sg_machine_open=False),
    sg_event("click", useragent="Mozilla/5.0 (Windows NT 10.0)", url="https://example.com/course?utm_source=launch", url_offset={"index": 0, "type": "html"}),
    sg_event("bounce", "Grace@Example.com", reason="550 5.1.1 The email account that you tried to reach does not exist.",
             status="5.1.1", type="bounce", bounce_classification="Invalid Address"),
    sg_event("bounce", "linus@example.org", reason="550 5.7.1 blocked by policy", status="5.7.1", type="blocked", bounce_classification="Reputation"),
    sg_event("deferred", "linus@example.org", response="400 try again later", attempt="5"),
    sg_event("dropped", "old@example.com", reason="Bounced Address", status="5.0.0"),
    sg_event("dropped", "spam@example.com", reason="Spam Content (if spam checker app enabled)", status="5.0.0"),
    sg_event("spamreport", "ken@example.com"),
    sg_event("unsubscribe", "barbara@example.com"),
    sg_event("group_unsubscribe", "edsger@example.com", asm_group_id=10, useragent="Mozilla/5.0", url="https://example.com/unsub"),
    sg_event("group_resubscribe", "edsger@example.com", asm_group_id=10),
]


def sg_post(handler: Webhook, keys: SendGridKeys, batch: Any, *, at: datetime = RECEIVED) -> list[Event]:
    body = dumps(batch)
    return list(handler.handle(request(body, keys.sign(body, NOW), at=at)))


def test_sendgrid_maps_a_batch(sendgrid: Webhook, sg_keys: SendGridKeys) -> None:
    events = sg_post(sendgrid, sg_keys, SG_BATCH)
    assert [(e.kind, e.email) for e in events] == [
        ("delivered", "ada@example.com"),
        ("opened", "ada@example.com"),
        ("clicked", "ada@example.com"),
        ("bounced", "grace@example.com"),
        ("soft_bounced", "linus@example.org"),  # blocked: refused for now, not a bad address
        ("soft_bounced", "linus@example.org"),  # deferred
        ("bounced", "old@example.com"),  # dropped: on SendGrid's bounce list
        ("complained", "ken@example.com"),
        ("unsubscribed", "barbara@example.com"),
        ("unsubscribed", "edsger@example.com"),
    ]
    by_kind: dict[str, Event] = {}
    for event in events:
        by_kind.setdefault(event.kind, event)  # the first of each kind
        assert event.provider_message_id == SG_MESSAGE  # sg_message_id up to its first dot: the stored X-Message-Id
        assert event.occurred_at == datetime.fromtimestamp(NOW - 60, UTC)
        assert (event.launch, event.email_id) == ("spring-course", "doors-open")
    ignored = {0, 8, 12}  # processed, a drop for the content, group_resubscribe
    assert [e.id for e in events] == [item["sg_event_id"] for i, item in enumerate(SG_BATCH) if i not in ignored]
    assert by_kind["clicked"].data == {"url": "https://example.com/course?utm_source=launch", "user_agent": "Mozilla/5.0 (Windows NT 10.0)"}
    assert by_kind["opened"].data == {"user_agent": "Mozilla/4.0 (compatible; MSIE 6.1; Windows XP)", "machine_open": False}
    assert by_kind["bounced"].data == {
        "type": "bounce", "reason": "550 5.1.1 The email account that you tried to reach does not exist.",
        "status": "5.1.1", "classification": "Invalid Address",
    }
    assert by_kind["delivered"].data == {"response": "250 2.0.0 OK 1513299569 l186si10190883ite.73 - gsmtp"}


def test_sendgrid_email_id_falls_back_on_the_category(sendgrid: Webhook, sg_keys: SendGridKeys) -> None:
    bare = {k: v for k, v in sg_event("delivered").items() if k not in ("launch", "key")}
    event = one(sg_post(sendgrid, sg_keys, [{**bare, "category": "welcome"}]))
    assert (event.launch, event.email_id) == (None, "welcome")


def test_sendgrid_event_without_an_id_gets_a_stable_one(sendgrid: Webhook, sg_keys: SendGridKeys) -> None:
    item = {k: v for k, v in sg_event("delivered").items() if k != "sg_event_id"}
    first, again = one(sg_post(sendgrid, sg_keys, [item])), one(sg_post(sendgrid, sg_keys, [item]))
    assert first.id == again.id and SG_MESSAGE in first.id


def test_sendgrid_accepts_a_pem_key_and_its_own_tolerance(sg_keys: SendGridKeys) -> None:
    from cryptography.hazmat.primitives import serialization

    pem = sg_keys.private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    handler = build(sendgrid_plugin, "sendgrid", {"public_key": pem, "tolerance": 3600})
    body = dumps([sg_event("delivered")])
    assert len(handler.handle(request(body, sg_keys.sign(body, NOW - 1800)))) == 1  # 30 minutes old, within an hour


def test_sendgrid_verifies_sendgrids_own_test_vector() -> None:
    # A request signed by SendGrid, as published with its Python library's event webhook tests
    # (key, signature, timestamp and body byte for byte, trailing CRLF included).
    public_key = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g=="
    signature = "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM="
    body = (
        b'[{"email":"hello@world.com","event":"dropped","reason":"Bounced Address",'
        b'"sg_event_id":"ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA",'
        b'"sg_message_id":"LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0",'
        b'"smtp-id":"<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>","timestamp":1600112492}]\r\n'
    )
    headers = {"X-Twilio-Email-Event-Webhook-Signature": signature, "X-Twilio-Email-Event-Webhook-Timestamp": "1600112502"}
    handler = build(sendgrid_plugin, "sendgrid", {"public_key": public_key})
    event = one(list(handler.handle(request(body, headers, at=datetime.fromtimestamp(1600112502 + 20, UTC)))))
    assert (event.kind, event.email, event.provider_message_id) == ("bounced", "hello@world.com", "LRzXl_NHStOGhQ4kofSm_A")
    assert event.id == "ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA"
    assert event.occurred_at == datetime(2020, 9, 14, 19, 41, 32, tzinfo=UTC)
    with pytest.raises(WebhookRejected, match="signature"):
        handler.handle(request(body.replace(b"hello@", b"hullo@"), headers, at=datetime.fromtimestamp(1600112502, UTC)))


def test_sendgrid_refuses_a_signature_from_another_key(sendgrid: Webhook) -> None:
    body = dumps(SG_BATCH)
    with pytest.raises(WebhookRejected, match="signature"):
        sendgrid.handle(request(body, SendGridKeys().sign(body, NOW)))


@pytest.mark.parametrize("offset", [-301, -3600, 301], ids=["just-too-old", "an-hour-old", "in-the-future"])
def test_sendgrid_refuses_a_timestamp_outside_the_tolerance(sendgrid: Webhook, sg_keys: SendGridKeys, offset: int) -> None:
    body = dumps(SG_BATCH)
    with pytest.raises(WebhookRejected, match="tolerance"):
        sendgrid.handle(request(body, sg_keys.sign(body, NOW + offset)))
    assert sendgrid.handle(request(body, sg_keys.sign(body, NOW - 299)))  # within it: accepted


def test_sendgrid_refuses_a_tampered_body(sendgrid: Webhook, sg_keys: SendGridKeys) -> None:
    body = dumps([sg_event("delivered")])
    headers = sg_keys.sign(body, NOW)
    tampered = body.replace(b'"delivered"', b'"spamreport"')
    with pytest.raises(WebhookRejected, match="signature"):
        sendgrid.handle(request(tampered, headers))
    with pytest.raises(WebhookRejected, match="signature"):  # the timestamp is signed too
        sendgrid.handle(request(body, {**headers, "X-Twilio-Email-Event-Webhook-Timestamp": str(NOW - 1)}))


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Twilio-Email-Event-Webhook-Timestamp": str(NOW)},
        {"X-Twilio-Email-Event-Webhook-Signature": "MEUCIQ==", "X-Twilio-Email-Event-Webhook-Timestamp": "not-a-time"},
        {"X-Twilio-Email-Event-Webhook-Signature": "%%%", "X-Twilio-Email-Event-Webhook-Timestamp": str(NOW)},
    ],
    ids=["none", "no-signature", "bad-timestamp", "not-base64"],
)
def test_sendgrid_refuses_missing_or_malformed_headers(sendgrid: Webhook, headers: dict[str, str]) -> None:
    with pytest.raises(WebhookRejected):
        sendgrid.handle(request(dumps(SG_BATCH), headers))


@pytest.mark.parametrize(
    "body",
    [b"[{", b"{}", b'"events"', dumps([42]), dumps([{"email": "ada@example.com"}]), dumps([sg_event("delivered", email="")]),
     dumps([{**sg_event("delivered"), "timestamp": "yesterday"}]), dumps([{**sg_event("open"), "timestamp": 1e300}])],
    ids=["not-json", "object", "string", "not-an-event", "no-event-field", "no-recipient", "bad-timestamp", "huge-timestamp"],
)
def test_sendgrid_refuses_malformed_batches_signed_or_not(sendgrid: Webhook, sg_keys: SendGridKeys, body: bytes) -> None:
    with pytest.raises(WebhookRejected):
        sendgrid.handle(request(body, sg_keys.sign(body, NOW)))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, r"\[webhooks.sendgrid\] needs public_key"),
        ({"public_key": "  "}, r"\[webhooks.sendgrid\] needs public_key"),
        ({"public_key": "bm90IGEga2V5"}, "public_key is not"),
        ({"public_key": "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE"}, "public_key is not"),  # cut short
        ("rsa", "public_key is not"),
        ("ok", "tolerance must be"),
    ],
)
def test_sendgrid_settings_are_checked_when_the_webhook_is_built(sg_keys: SendGridKeys, settings: Any, message: str) -> None:
    if settings == "rsa":
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        der = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        settings = {"public_key": base64.b64encode(der).decode()}
    elif settings == "ok":
        settings = {"public_key": sg_keys.public_b64, "tolerance": "soon"}
    with pytest.raises(ValueError, match=message):
        build(sendgrid_plugin, "sendgrid", settings)


def test_importing_the_sendgrid_plugin_does_not_load_cryptography() -> None:
    import subprocess
    import sys

    code = "import sys, launchkit_plugins.sendgrid; print('cryptography' in sys.modules, 'launchkit_plugins._sendgrid_webhook' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split() == ["False", "False"]


# --- Mailgun -----------------------------------------------------------------------------

MG_KEY = "3ee4a2b1c0d9e8f7a6b5c4d3e2f1a0b9-1b2c3d4e-5f6a7b8c"  #: an HTTP webhook signing key
MG_MESSAGE = "20300109090130.1.4f1a2b3c4d5e6f70@mg.example.com"
MG_VARIABLES = {"launch": "spring-course", "email": "doors-open", "key": "spring-course/doors-open/42"}


@pytest.fixture
def mailgun() -> Webhook:
    return build(mailgun_plugin, "mailgun", {"signing_key": MG_KEY})


def mg_signature(timestamp: int, token: str, key: str = MG_KEY) -> dict[str, str]:
    digest = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    return {"timestamp": str(timestamp), "token": token, "signature": digest}


def mg_data(event: str, recipient: str = "ada@example.com", **fields: Any) -> dict[str, Any]:
    return {
        "id": "CPgfbmQMTCKtHW6uIWtuVe", "timestamp": NOW - 30.908181, "log-level": "info", "event": event,
        "envelope": {"transport": "smtp", "sender": "you@mg.example.com", "sending-ip": "209.61.154.250", "targets": recipient},
        "flags": {"is-routed": False, "is-authenticated": True, "is-system-test": False, "is-test-mode": False},
        "message": {"headers": {"to": recipient, "message-id": MG_MESSAGE, "from": "You <you@mg.example.com>", "subject": "Doors are open"},
                    "attachments": [], "size": 111},
        "recipient": recipient, "recipient-domain": recipient.split("@")[-1], "storage": {"url": "https://se.api.mailgun.net/v3/domains/mg.example.com/messages/x", "key": "x"},
        "campaigns": [], "tags": ["spring-course", "spring-course/doors-open"], "user-variables": MG_VARIABLES,
        **fields,
    }


def mg_body(data: dict[str, Any], token: str = "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0", timestamp: int = NOW, **signature: str) -> bytes:
    return dumps({"signature": {**mg_signature(timestamp, token), **signature}, "event-data": data})


class Tokens:
    """``first_seen`` as launchkit backs it: True the first time a token is shown."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, token: str) -> bool:
        new = token not in self.seen
        self.seen.append(token)
        return new


def mg_post(handler: Webhook, body: bytes, tokens: Tokens | None = None, at: datetime = RECEIVED) -> list[Event]:
    return list(handler.handle(request(body, {"Content-Type": "application/json"}, at=at, first_seen=tokens or Tokens())))


DELIVERY_STATUS = {"tls": True, "mx-host": "aspmx.l.google.com", "code": 250, "description": "", "session-seconds": 0.43,
                   "message": "OK", "attempt-no": 1, "certificate-verified": True}


@pytest.mark.parametrize(
    ("data", "kind", "details"),
    [
        (mg_data("delivered", **{"delivery-status": DELIVERY_STATUS}), "delivered", {"code": 250, "message": "OK"}),
        (mg_data("failed", severity="permanent", reason="bounce", **{"delivery-status": {
            "code": 550, "message": "5.1.1 The email account that you tried to reach does not exist.", "description": "", "attempt-no": 1}}),
         "bounced", {"severity": "permanent", "reason": "bounce", "code": 550, "message": "5.1.1 The email account that you tried to reach does not exist."}),
        (mg_data("failed", severity="permanent", reason="suppress-bounce", **{"delivery-status": {
            "code": 605, "description": "Not delivering to previously bounced address", "message": ""}}),
         "bounced", {"severity": "permanent", "reason": "suppress-bounce", "code": 605, "message": "Not delivering to previously bounced address"}),
        (mg_data("failed", severity="permanent", reason="suppress-unsubscribe"), "unsubscribed", {"severity": "permanent", "reason": "suppress-unsubscribe"}),
        (mg_data("failed", severity="permanent", reason="suppress-complaint"), "complained", {"severity": "permanent", "reason": "suppress-complaint"}),
        (mg_data("failed", severity="temporary", reason="generic", **{"delivery-status": {
            "code": 452, "message": "4.2.2 The email account that you tried to reach is over quota.", "attempt-no": 1}}),
         "soft_bounced", {"severity": "temporary", "reason": "generic", "code": 452, "message": "4.2.2 The email account that you tried to reach is over quota."}),
        (mg_data("opened", ip="50.56.129.169", **{"client-info": {"client-type": "browser", "client-os": "Linux", "device-type": "desktop",
                                                                  "client-name": "Chrome", "user-agent": "Mozilla/5.0 (X11; Linux x86_64)"}}),
         "opened", {"user_agent": "Mozilla/5.0 (X11; Linux x86_64)"}),
        (mg_data("clicked", url="https://example.com/course?utm_source=launch", **{"client-info": {"user-agent": "Mozilla/5.0"}}),
         "clicked", {"url": "https://example.com/course?utm_source=launch", "user_agent": "Mozilla/5.0"}),
        (mg_data("unsubscribed"), "unsubscribed", {}),
        (mg_data("complained"), "complained", {}),
    ],
    ids=["delivered", "failed-bounce", "failed-suppress-bounce", "failed-suppress-unsubscribe", "failed-suppress-complaint",
         "failed-temporary", "opened", "clicked", "unsubscribed", "complained"],
)
def test_mailgun_events(mailgun: Webhook, data: dict[str, Any], kind: str, details: dict[str, Any]) -> None:
    event = one(mg_post(mailgun, mg_body(data)))
    assert event.kind == kind
    assert event.data == details
    assert event.email == "ada@example.com"
    assert event.id == "CPgfbmQMTCKtHW6uIWtuVe"
    assert event.occurred_at == datetime.fromtimestamp(NOW - 30.908181, UTC)
    assert event.provider_message_id == f"<{MG_MESSAGE}>"  # as the /messages answer gave it, brackets and all
    assert (event.launch, event.email_id) == ("spring-course", "doors-open")


def test_mailgun_ignores_events_it_does_not_map_but_still_uses_the_token(mailgun: Webhook) -> None:
    tokens = Tokens()
    assert mg_post(mailgun, mg_body(mg_data("accepted", method="HTTP")), tokens) == []
    assert len(tokens.seen) == 1


def test_mailgun_without_user_variables(mailgun: Webhook) -> None:
    data = {**mg_data("delivered", recipient="Grace@Example.com"), "user-variables": []}
    event = one(mg_post(mailgun, mg_body(data)))
    assert (event.email, event.launch, event.email_id) == ("grace@example.com", None, None)


def test_mailgun_accepts_a_subaccounts_parent_signature() -> None:
    parent_key = "parent-account-signing-key-0123456789abcdef"
    handler = build(mailgun_plugin, "mailgun", {"signing_key": parent_key})
    token = "c6e7d0a1b2f3e4d5c6b7a8f9e0d1c2b3a4f5e6d7c8b9a0f1e2"
    body = mg_body(mg_data("delivered"), token, **{"parent-signature": mg_signature(NOW, token, parent_key)["signature"]})
    assert len(mg_post(handler, body)) == 1


def test_mailgun_refuses_a_replayed_token(mailgun: Webhook) -> None:
    tokens = Tokens()
    body = mg_body(mg_data("delivered"))
    assert len(mg_post(mailgun, body, tokens)) == 1
    with pytest.raises(WebhookRejected, match="used before"):
        mg_post(mailgun, body, tokens)


def test_mailgun_refuses_a_wrong_signature_without_using_the_token(mailgun: Webhook) -> None:
    tokens = Tokens()
    token = "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0"
    for body in (
        dumps({"signature": mg_signature(NOW, token, key="another-key"), "event-data": mg_data("delivered")}),
        mg_body(mg_data("delivered"), token, signature="0" * 64),
        mg_body(mg_data("delivered"), token, signature="é" * 64),  # not hex, not even ASCII
    ):
        with pytest.raises(WebhookRejected, match="signature does not match"):
            mg_post(mailgun, body, tokens)
    assert tokens.seen == []  # a forged request does not burn the token of a real one


@pytest.mark.parametrize("offset", [-301, -86400, 301])
def test_mailgun_refuses_a_timestamp_outside_the_tolerance(mailgun: Webhook, offset: int) -> None:
    with pytest.raises(WebhookRejected, match="tolerance"):
        mg_post(mailgun, mg_body(mg_data("delivered"), timestamp=NOW + offset))
    assert mg_post(mailgun, mg_body(mg_data("delivered"), timestamp=NOW - 299))


def test_mailgun_refuses_a_tampered_body(mailgun: Webhook) -> None:
    body = json.loads(mg_body(mg_data("delivered")))
    # The signed fields: a changed timestamp or token breaks the signature.
    for field, value in (("timestamp", str(NOW - 1)), ("token", "b" * 50)):
        tampered = {**body, "signature": {**body["signature"], field: value}}
        with pytest.raises(WebhookRejected, match="signature does not match"):
            mg_post(mailgun, dumps(tampered))
    # Mailgun's signature does not cover event-data: a captured signature reused on other
    # event-data is caught by the one-time token instead.
    tokens = Tokens()
    assert mg_post(mailgun, dumps(body), tokens)[0].kind == "delivered"
    forged = {**body, "event-data": mg_data("complained", recipient="victim@example.com")}
    with pytest.raises(WebhookRejected, match="used before"):
        mg_post(mailgun, dumps(forged), tokens)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        dumps([1, 2]),
        dumps({"event-data": mg_data("delivered")}),
        dumps({"signature": "abc", "event-data": mg_data("delivered")}),
        dumps({"signature": mg_signature(NOW, "t" * 50)}),
        dumps({"signature": {"token": "t" * 50, "signature": "0" * 64}, "event-data": mg_data("delivered")}),
        mg_body({"recipient": "ada@example.com"}),
        mg_body(mg_data("delivered", recipient="not-an-address")),
        mg_body({**mg_data("delivered"), "timestamp": "soon"}),
        mg_body({**mg_data("delivered"), "timestamp": float("1e300")}),
    ],
    ids=["not-json", "array", "no-signature", "signature-not-object", "no-event-data", "no-timestamp", "no-event",
         "no-recipient", "bad-time", "huge-time"],
)
def test_mailgun_refuses_malformed_bodies(mailgun: Webhook, body: bytes) -> None:
    with pytest.raises(WebhookRejected):
        mg_post(mailgun, body)


@pytest.mark.parametrize(("settings", "message"), [({}, "needs signing_key"), ({"signing_key": ""}, "needs signing_key"),
                                                   ({"signing_key": "k", "tolerance": 0}, "tolerance must be")])
def test_mailgun_settings(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=rf"\[webhooks.mailgun\] {message}"):
        build(mailgun_plugin, "mailgun", settings)


# --- Resend ------------------------------------------------------------------------------

RS_KEY = bytes(range(7, 31))
RS_SECRET = "whsec_" + base64.b64encode(RS_KEY).decode()
RS_EMAIL = "4ef9a417-02e9-4d39-ad75-9611e0fcc33c"  #: the id POST /emails answered
RS_TAGS = {"launch": "spring-course", "email": "doors-open"}


@pytest.fixture
def resend() -> Webhook:
    return build(resend_plugin, "resend", {"signing_secret": RS_SECRET})


def svix(body: bytes, message_id: str = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", timestamp: int = NOW, key: bytes = RS_KEY, prefix: str = "svix") -> dict[str, str]:
    signature = base64.b64encode(hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()).decode()
    return {f"{prefix}-id": message_id, f"{prefix}-timestamp": str(timestamp), f"{prefix}-signature": f"v1,{signature}", "Content-Type": "application/json"}


def rs_event(kind: str, **data: Any) -> dict[str, Any]:
    return {
        "type": kind, "created_at": "2030-01-09T09:04:12.126Z",
        "data": {"broadcast_id": None, "created_at": "2030-01-09 09:01:00.577+00", "email_id": RS_EMAIL, "from": "You <you@example.com>",
                 "message_id": "<20300109090100.4ef9a417@example.com>", "to": ["Ada@example.com"], "subject": "Doors are open",
                 "tags": RS_TAGS, **data},
    }


def rs_post(handler: Webhook, payload: Any, **signing: Any) -> list[Event]:
    body = dumps(payload)
    return list(handler.handle(request(body, svix(body, **signing))))


@pytest.mark.parametrize(
    ("payload", "kind", "details"),
    [
        (rs_event("email.delivered"), "delivered", {}),
        (rs_event("email.bounced", bounce={"message": "The recipient's email address does not exist.", "subType": "General", "type": "Permanent"}),
         "bounced", {"type": "Permanent", "sub_type": "General", "message": "The recipient's email address does not exist."}),
        (rs_event("email.bounced", bounce={"message": "The recipient's inbox is full.", "subType": "MailboxFull", "type": "Transient"}),
         "soft_bounced", {"type": "Transient", "sub_type": "MailboxFull", "message": "The recipient's inbox is full."}),
        (rs_event("email.delivery_delayed"), "soft_bounced", {}),
        (rs_event("email.complained"), "complained", {}),
        (rs_event("email.opened"), "opened", {}),
        (rs_event("email.clicked", click={"ipAddress": "122.115.53.11", "link": "https://example.com/course?utm_source=launch",
                                          "timestamp": "2030-01-09T09:04:10.126Z", "userAgent": "Mozilla/5.0 (Macintosh)"}),
         "clicked", {"url": "https://example.com/course?utm_source=launch", "user_agent": "Mozilla/5.0 (Macintosh)"}),
    ],
    ids=["delivered", "bounced-permanent", "bounced-transient", "delivery-delayed", "complained", "opened", "clicked"],
)
def test_resend_events(resend: Webhook, payload: dict[str, Any], kind: str, details: dict[str, Any]) -> None:
    event = one(rs_post(resend, payload))
    assert event.kind == kind
    assert event.data == details
    assert event.email == "ada@example.com"
    assert event.id == "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"  # svix-id: the same on Resend's retries
    assert event.occurred_at == datetime(2030, 1, 9, 9, 4, 12, 126000, tzinfo=UTC)
    assert event.provider_message_id == RS_EMAIL
    assert (event.launch, event.email_id) == ("spring-course", "doors-open")


def test_resend_ignores_other_events(resend: Webhook) -> None:
    assert rs_post(resend, rs_event("email.sent")) == []
    assert rs_post(resend, rs_event("email.failed", failed={"reason": "reached_daily_quota"})) == []
    assert rs_post(resend, {"type": "contact.created", "created_at": "2030-01-09T09:04:12Z", "data": {"email": "x@example.com"}}) == []


def test_resend_reads_a_named_recipient_and_tags_as_a_list(resend: Webhook) -> None:
    payload = rs_event("email.delivered", to=["Ada Lovelace <ADA@example.com>"], tags=[{"name": "launch", "value": "spring-course"}, {"name": "email", "value": "welcome"}])
    event = one(rs_post(resend, payload))
    assert (event.email, event.launch, event.email_id) == ("ada@example.com", "spring-course", "welcome")


def test_resend_accepts_any_matching_signature_and_the_webhook_prefix(resend: Webhook) -> None:
    body = dumps(rs_event("email.delivered"))
    headers = svix(body)
    rolled = {**headers, "svix-signature": "v1,bm90IHRoaXMgb25l v1a,c29tZXRoaW5nIGVsc2U= " + headers["svix-signature"]}
    assert len(resend.handle(request(body, rolled))) == 1
    assert len(resend.handle(request(body, svix(body, prefix="webhook")))) == 1


def test_resend_signature_matches_svixs_published_example() -> None:
    # The example Svix documents for verifying by hand: its secret, headers and payload.
    handler = build(resend_plugin, "resend", {"signing_secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"})
    headers = {"svix-id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "svix-timestamp": "1614265330",
               "svix-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}
    body = b'{"test": 2432232314}'
    at = datetime.fromtimestamp(1614265330 + 60, UTC)
    assert handler.verify(request(body, headers, at=at)) == "msg_p5jXN8AQM9LWM0D4loKWxJek"  # type: ignore[attr-defined]
    with pytest.raises(WebhookRejected, match="no type"):  # authentic, but not a Resend event
        handler.handle(request(body, headers, at=at))
    with pytest.raises(WebhookRejected, match="signature"):
        handler.handle(request(b'{"test": 2432232315}', headers, at=at))


def test_resend_refuses_a_wrong_signature(resend: Webhook) -> None:
    body = dumps(rs_event("email.delivered"))
    for headers in (svix(body, key=b"another key"), {**svix(body), "svix-signature": "v2," + svix(body)["svix-signature"][3:]}):
        with pytest.raises(WebhookRejected, match="signature"):
            resend.handle(request(body, headers))


@pytest.mark.parametrize("offset", [-301, -7200, 301])
def test_resend_refuses_a_timestamp_outside_the_tolerance(resend: Webhook, offset: int) -> None:
    with pytest.raises(WebhookRejected, match="tolerance"):
        rs_post(resend, rs_event("email.delivered"), timestamp=NOW + offset)
    assert rs_post(resend, rs_event("email.delivered"), timestamp=NOW - 299)


def test_resend_refuses_a_tampered_body_or_id(resend: Webhook) -> None:
    body = dumps(rs_event("email.delivered"))
    headers = svix(body)
    with pytest.raises(WebhookRejected, match="signature"):
        resend.handle(request(body.replace(b"email.delivered", b"email.complained"), headers))
    with pytest.raises(WebhookRejected, match="signature"):  # the id is signed: a new id cannot make a new event
        resend.handle(request(body, {**headers, "svix-id": "msg_another"}))


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (b"{}", {}),
        (b"not json", None),
        (dumps(["email.delivered"]), None),
        (dumps({"data": {}}), None),
        (dumps({"type": "email.delivered", "created_at": "2030-01-09T09:04:12Z"}), None),
        (dumps(rs_event("email.delivered", to=[])), None),
        (dumps({**rs_event("email.delivered"), "created_at": "tuesday"}), None),
        (dumps({**rs_event("email.delivered"), "created_at": None}), None),
    ],
    ids=["no-headers", "not-json", "array", "no-type", "no-data", "no-recipient", "bad-time", "no-time"],
)
def test_resend_refuses_malformed_requests(resend: Webhook, body: bytes, headers: dict[str, str] | None) -> None:
    with pytest.raises(WebhookRejected):
        resend.handle(request(body, svix(body) if headers is None else headers))


@pytest.mark.parametrize(("settings", "message"), [({}, "needs signing_secret"), ({"signing_secret": "whsec_%%%"}, "signing_secret is not"),
                                                   ({"signing_secret": RS_SECRET, "tolerance": -5}, "tolerance must be")])
def test_resend_settings(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=rf"\[webhooks.resend\] {message}"):
        build(resend_plugin, "resend", settings)


# --- Whatever arrives, a handler answers with events or WebhookRejected --------------------

HOSTILE = [b"", b"null", b"0", b'""', b"[]", b"{}", b"[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]", b"[" * 100000, b"\x80\x81\x82",
           dumps({"RecordType": 5}), dumps({"signature": {}, "event-data": {}}), dumps({"type": None, "data": []}),
           dumps([{"event": None}]), dumps([{"event": "bounce", "email": 5, "timestamp": True}]),
           dumps({"RecordType": "Bounce", "Email": "a@b.c", "BouncedAt": 12, "TypeCode": "x"}),
           dumps({"type": "email.clicked", "created_at": 5, "data": {"to": [None], "click": "x", "tags": 7}})]


@pytest.mark.parametrize("body", HOSTILE, ids=range(len(HOSTILE)))
def test_bad_input_is_a_rejection_or_nothing_never_a_crash(body: bytes, sendgrid: Webhook, sg_keys: SendGridKeys, mailgun: Webhook,
                                                            resend: Webhook, postmark: Webhook) -> None:
    attempts: list[tuple[Webhook, WebhookRequest]] = [
        (postmark, request(body, basic())),
        (sendgrid, request(body, sg_keys.sign(body, NOW))),
        (resend, request(body, svix(body))),
        (mailgun, request(body, {}, first_seen=Tokens())),
    ]
    try:  # a Mailgun-shaped body with a valid signature and hostile event-data
        mg = json.loads(body)
        mg_signed = dumps({"signature": mg_signature(NOW, "t" * 50), "event-data": mg})
        attempts.append((mailgun, request(mg_signed, {}, first_seen=Tokens())))
    except (ValueError, RecursionError):
        pass
    for handler, req in attempts:
        try:
            result = handler.handle(req)
        except WebhookRejected:
            continue
        assert isinstance(result, list) and all(isinstance(e, Event) for e in result)


# =========================================================================================
# (b) Through launchkit's HTTP server
# =========================================================================================

ADA, GRACE, LINUS = "ada@example.com", "grace@example.com", "linus@example.org"


@pytest.fixture
def server(launchkit_project: Any, database: Database) -> Any:
    """A project with three contacts and ``create_app``; skipped while launchkit.server is missing."""
    server = pytest.importorskip("launchkit.server", reason="launchkit.server (launchkit serve) is not written yet")
    database.point(launchkit_project.root)
    launchkit_project.add_contacts([f"Ada Lovelace <{ADA}>", GRACE, LINUS])
    return server


class Site:
    """The project's server and database, seen from a test."""

    def __init__(self, launchkit_project: Any, server: Any, poster: Any, tables: str):
        from launchkit.project import Project

        self.root: Path = launchkit_project.root
        config = launchkit_project.config_file
        config.write_text(config.read_text(encoding="utf-8").rstrip("\n") + "\n\n" + tables, encoding="utf-8")
        self.project = Project.open(self.root)
        self.app = server.create_app(self.project)
        self.poster = poster
        self.now = int(self.project.now().timestamp())  # the clock launchkit_clock set

    def post(self, name: str, body: bytes, headers: dict[str, str]) -> Any:
        return self.poster(self.app, f"/hooks/{name}", body, headers)

    def events(self, source: str) -> list[tuple[str, str]]:
        from sqlalchemy import select

        from launchkit.store.tables import events

        with self.project.store.engine.connect() as conn:
            rows = conn.execute(select(events.c.external_id, events.c.kind).where(events.c.source == source).order_by(events.c.id))
            return [tuple(row) for row in rows]

    def statuses(self) -> dict[str, str]:
        from sqlalchemy import select

        from launchkit.store.tables import contacts

        with self.project.store.engine.connect() as conn:
            return dict(conn.execute(select(contacts.c.email, contacts.c.status)).all())


def assert_refused(response: Any) -> None:
    assert response.status_code == 400, response.text
    assert isinstance(response.json().get("error"), str) and response.json()["error"]


def test_server_sendgrid(server: Any, launchkit_project: Any, webhook_poster: Any, sg_keys: SendGridKeys) -> None:
    site = Site(launchkit_project, server, webhook_poster, f'[webhooks.sendgrid]\npublic_key = "{sg_keys.public_b64}"\n')
    batch = [
        {**sg_event("delivered", ADA, response="250 OK"), "timestamp": site.now - 5},
        {**sg_event("bounce", GRACE, reason="550 5.1.1 no such user", status="5.1.1", type="bounce"), "timestamp": site.now - 4},
        {**sg_event("processed", LINUS), "timestamp": site.now - 6},
    ]
    body = dumps(batch)
    signed = sg_keys.sign(body, site.now)

    for refused in (
        site.post("sendgrid", body, SendGridKeys().sign(body, site.now)),  # wrong signature
        site.post("sendgrid", body, sg_keys.sign(body, site.now - 301)),  # too old
        site.post("sendgrid", body.replace(b"delivered", b"spamreport"), signed),  # tampered
    ):
        assert_refused(refused)
    assert site.events("sendgrid") == [] and site.statuses()[GRACE] == "subscribed"

    first = site.post("sendgrid", body, signed)
    assert first.status_code == 200, first.text
    assert first.json() == {"stored": 2, "replayed": 0}
    assert site.events("sendgrid") == [(batch[0]["sg_event_id"], "delivered"), (batch[1]["sg_event_id"], "bounced")]
    assert site.statuses() == {ADA: "subscribed", GRACE: "bounced", LINUS: "subscribed"}

    again = site.post("sendgrid", body, signed)
    assert again.status_code == 200 and again.json() == {"stored": 0, "replayed": 2}
    assert len(site.events("sendgrid")) == 2


def test_server_mailgun(server: Any, launchkit_project: Any, webhook_poster: Any) -> None:
    site = Site(launchkit_project, server, webhook_poster, f'[webhooks.mailgun]\nsigning_key = "{MG_KEY}"\n')
    data = {**mg_data("complained", LINUS), "id": "Ase7i2zsRYeDXztHGENqRA", "timestamp": site.now - 2.5}
    body = mg_body(data, "d1" * 25, site.now)
    json_headers = {"Content-Type": "application/json"}

    for refused in (
        site.post("mailgun", dumps({"signature": mg_signature(site.now, "d1" * 25, "wrong-key"), "event-data": data}), json_headers),
        site.post("mailgun", mg_body(data, "d2" * 25, site.now - 301), json_headers),
        site.post("mailgun", body.replace(b"d1d1d1", b"e1e1e1", 1), json_headers),  # the signed token changed
    ):
        assert_refused(refused)
    assert site.events("mailgun") == []

    first = site.post("mailgun", body, json_headers)
    assert first.status_code == 200, first.text
    assert first.json() == {"stored": 1, "replayed": 0}
    assert site.events("mailgun") == [("Ase7i2zsRYeDXztHGENqRA", "complained")]
    assert site.statuses()[LINUS] == "complained"

    # The very same request again reuses its one-time token: refused, and nothing changes.
    assert_refused(site.post("mailgun", body, json_headers))
    # Mailgun signing the same event anew (another token): accepted, stored once.
    resent = site.post("mailgun", mg_body(data, "f3" * 25, site.now), json_headers)
    assert resent.status_code == 200 and resent.json() == {"stored": 0, "replayed": 1}
    assert len(site.events("mailgun")) == 1


def test_server_resend(server: Any, launchkit_project: Any, webhook_poster: Any) -> None:
    site = Site(launchkit_project, server, webhook_poster, f'[webhooks.resend]\nsigning_secret = "{RS_SECRET}"\n')
    payload = rs_event("email.bounced", to=[ADA], bounce={"message": "The recipient's email address does not exist.", "subType": "General", "type": "Permanent"})
    body = dumps(payload)
    signed = svix(body, "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", site.now)

    for refused in (
        site.post("resend", body, svix(body, "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", site.now, key=b"another key")),
        site.post("resend", body, svix(body, "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", site.now - 301)),
        site.post("resend", body.replace(b"Permanent", b"Transient"), signed),
    ):
        assert_refused(refused)
    assert site.events("resend") == []

    first = site.post("resend", body, signed)
    assert first.status_code == 200, first.text
    assert first.json() == {"stored": 1, "replayed": 0}
    assert site.events("resend") == [("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", "bounced")]
    assert site.statuses()[ADA] == "bounced"

    again = site.post("resend", body, signed)
    assert again.status_code == 200 and again.json() == {"stored": 0, "replayed": 1}
    assert len(site.events("resend")) == 1


def test_server_postmark(server: Any, launchkit_project: Any, webhook_poster: Any) -> None:
    site = Site(launchkit_project, server, webhook_poster, f'[webhooks.postmark]\nusername = "{PM_USER}"\npassword = "{PM_PASSWORD}"\n')
    changed_at = datetime.fromtimestamp(site.now - 10, UTC).isoformat().replace("+00:00", "Z")
    record = {"RecordType": "SubscriptionChange", "MessageID": PM_MESSAGE, "ServerID": 23, "MessageStream": "broadcast",
              "ChangedAt": changed_at, "Recipient": GRACE, "Origin": "Recipient", "SuppressSending": True,
              "SuppressionReason": "ManualSuppression", "Tag": "doors-open", "Metadata": PM_METADATA}
    body = dumps(record)

    assert_refused(site.post("postmark", body, {"Content-Type": "application/json"}))
    assert_refused(site.post("postmark", body, basic(password="guess")))
    assert site.events("postmark") == []

    first = site.post("postmark", body, basic())
    assert first.status_code == 200, first.text
    assert first.json() == {"stored": 1, "replayed": 0}
    assert site.statuses()[GRACE] == "unsubscribed"
    again = site.post("postmark", body, basic())
    assert again.status_code == 200 and again.json() == {"stored": 0, "replayed": 1}


def test_server_answers_404_for_a_service_without_its_table(server: Any, launchkit_project: Any, webhook_poster: Any) -> None:
    site = Site(launchkit_project, server, webhook_poster, f'[webhooks.postmark]\nusername = "{PM_USER}"\npassword = "{PM_PASSWORD}"\n')
    for name in ("sendgrid", "mailgun", "resend"):
        body = dumps(rs_event("email.delivered"))
        assert site.post(name, body, svix(body, timestamp=site.now)).status_code == 404
    assert site.events("resend") == []
