"""Signups from a form on the creator's site: checks, consent, and the confirmation email.

Bots are turned away quietly: a filled honeypot field gets the same answer a person would
and writes nothing; rate limits per address and per client IP (counted in the database, so
every server process shares them) answer 429. An erased address (``audience forget``) is
answered like any other and never stored again.
"""

from __future__ import annotations

import hashlib
import logging
import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Mapping

from sqlalchemy import Connection

from launchkit import tracking
from launchkit.csvfiles import normalize_email
from launchkit.project import Project
from launchkit.store import erasure, signups
from launchkit.store import tracking as tracking_store
from launchkit.templates import compile_body, compile_subject, render_subject
from launchkit.types import OutgoingMessage, ProviderUnavailable, SendStatus

log = logging.getLogger("launchkit")

CONFIRM_BODY = "confirm.md"  #: in the project folder: the confirmation email, Markdown with Jinja
DEFAULT_CONFIRM = {
    "en": ("Please confirm your subscription to {{ project }}", "Hello{{ ' ' ~ contact.first_name if contact.first_name }},\n\n"
           "Please confirm that you want to hear from {{ project }}:\n\n[Yes, subscribe me]({{ confirm_url }})\n\n"
           "If you did not ask for this, ignore this email: nothing more will be sent."),
    "fr": ("Confirme ton inscription à {{ project }}", "Bonjour{{ ' ' ~ contact.first_name if contact.first_name }},\n\n"
           "Confirme que tu veux recevoir les emails de {{ project }} :\n\n[Oui, je m'inscris]({{ confirm_url }})\n\n"
           "Si tu n'as rien demandé, ignore cet email : tu ne recevras rien d'autre."),
}


class SignupRejected(ValueError):
    """The submission cannot be accepted as sent (no address, an invalid one, a tag not allowed)."""


@dataclass(frozen=True)
class Submission:
    email: str
    first_name: str | None
    last_name: str | None
    tags: list[str]
    consent: str | None
    is_bot: bool  #: the honeypot field was filled in


@dataclass(frozen=True)
class Outcome:
    status: str  #: pending (confirmation sent), subscribed, ignored (bot or erased), limited
    contact_id: int | None = None
    retry_after: int | None = None  #: seconds, when limited
    event_id: str | None = None  #: the ``subscribed`` event stored, for ``on_event`` (None: none was, or ignored)


def parse(project: Project, fields: Mapping[str, Any]) -> Submission:
    """A form's or a JSON body's fields, checked against ``[signup]``."""
    settings = project.config.signup
    raw = fields.get("email")
    if not isinstance(raw, str) or not raw.strip():
        raise SignupRejected("an email address is required")
    try:
        address = normalize_email(raw)
    except ValueError as exc:
        raise SignupRejected(f"{raw.strip()!r} is not a valid email address: {exc}") from None
    asked = _tags(fields.get("tags"))
    refused = [t for t in asked if t not in settings.allowed_tags]
    if refused:
        raise SignupRejected(f"tag {refused[0]!r} cannot be chosen on this form")

    def text(name: str) -> str | None:
        value = fields.get(name)
        return value.strip()[:200] or None if isinstance(value, str) else None

    return Submission(
        email=address,
        first_name=text("first_name"),
        last_name=text("last_name"),
        tags=sorted({*settings.tags, *asked}),
        consent=text("consent") or settings.consent_text,
        is_bot=_filled(fields.get(settings.honeypot)),
    )


def _tags(asked: Any) -> list[str]:
    """The tags asked for: comma-separated text (a form) or a list of strings (JSON)."""
    if asked is None:
        return []
    if isinstance(asked, str):
        asked = asked.split(",")
    # Anything else is refused, not dropped: the person would believe they got those tags.
    if not isinstance(asked, list) or not all(isinstance(t, str) for t in asked):
        raise SignupRejected('`tags` must be a list of strings, like ["vip"], or comma-separated text')
    return [t.strip() for t in asked if t.strip()]


def _filled(honeypot: Any) -> bool:
    """Whether the hidden field was filled in: by a bot, whatever JSON type it used."""
    if isinstance(honeypot, str):
        return bool(honeypot.strip())
    return honeypot not in (None, [], {})


def record(conn: Connection, project: Project, submission: Submission, *, client: str, now: datetime, user_agent: str = "") -> Outcome:
    """Count the signup against the limits and store it, in the caller's transaction."""
    settings = project.config.signup
    if submission.is_bot:
        return Outcome("ignored")
    for key, rate in ((f"ip:{_digest(client)}", settings.per_ip), (f"address:{_digest(submission.email)}", settings.per_address)):
        window = timedelta(hours=1)
        allowed = max(1, round(rate * window.total_seconds()))
        if tracking_store.count_hit(conn, key, now, window) > allowed:
            # The window is fixed, so the limit lifts when it ends, often sooner than a window from now.
            left = signups.limit_lifts_at(conn, key, window) - now
            return Outcome("limited", retry_after=max(1, math.ceil(left.total_seconds())))
    if erasure.is_suppressed(conn, submission.email):
        return Outcome("ignored")
    consent = {
        "source": "signup form",
        "consent": submission.consent,
        "ip": _digest(client),  # who asked, provably, without keeping the address itself
        "user_agent": user_agent[:200],
        "tags": submission.tags,
    }
    signup = signups.sign_up(
        conn, email=submission.email, first_name=submission.first_name, last_name=submission.last_name,
        tags=submission.tags, double_opt_in=settings.double_opt_in, consent=consent, now=now,
    )
    if signup.status in ("bounced", "complained"):
        return Outcome("ignored")
    if settings.double_opt_in:
        return Outcome("pending", signup.contact_id, event_id=signup.event_id)
    return Outcome(signup.status, signup.contact_id, event_id=signup.event_id)


def send_confirmation(project: Project, contact_id: int, submission: Submission, now: datetime) -> bool:
    """Email the confirmation link through the configured provider; False if it did not go."""
    base = project.config.tracking.base_url
    if base is None:
        log.error("signup of %s: no [tracking] base_url, so no confirmation link can be made", submission.email)
        return False
    message = confirmation_message(project, contact_id, submission, now)
    provider = project.provider()
    try:
        results = provider.send([message])
    except ProviderUnavailable as exc:
        log.error("the confirmation to %s was not sent: %s", submission.email, exc)
        return False
    finally:
        provider.close()
    ok = bool(results) and results[0].status == SendStatus.ACCEPTED
    if not ok:
        log.error("the confirmation to %s was not sent: %s", submission.email, results[0].reason if results else "no result")
    return ok


def confirmation_message(project: Project, contact_id: int, submission: Submission, now: datetime) -> OutgoingMessage:
    config = project.config
    base = config.tracking.base_url or ""
    secret = project.secret()
    lang = config.project.lang.split("-")[0]
    default_subject, default_body = DEFAULT_CONFIRM.get(lang, DEFAULT_CONFIRM["en"])
    custom = project.root / CONFIRM_BODY
    body = compile_body(custom.read_text(encoding="utf-8") if custom.is_file() else default_body, kind="md")
    unsubscribe = tracking.unsubscribe_url(base, secret, contact_id, "", "confirm")
    sender = config.sender
    context = {
        "project": config.project.name,
        "contact": {"email": submission.email, "first_name": submission.first_name, "last_name": submission.last_name},
        "confirm_url": tracking.confirm_url(base, secret, contact_id, submission.tags, now),
        "unsubscribe_url": unsubscribe,
        "sender": {"name": sender.name, "address": sender.address, "postal_address": sender.postal_address},
        "lang": lang,
    }
    subject = render_subject(compile_subject(config.signup.confirm_subject or default_subject), context)
    html, text = body.render(context)
    domain = sender.address.rsplit("@", 1)[-1]
    return OutgoingMessage(
        key=f"confirm/{contact_id}/{uuid.uuid4().hex}",
        message_id=f"<confirm.{contact_id}.{uuid.uuid4().hex[:12]}@{domain}>",
        sender=sender.from_,
        to=submission.email,
        to_name=" ".join(p for p in (submission.first_name, submission.last_name) if p) or None,
        subject=subject,
        text=text,
        html=html,
        reply_to=sender.reply_to,
        headers={"List-Unsubscribe": f"<{unsubscribe}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
        launch="",
        email="confirm",
        contact_id=contact_id,
        metadata={"email": "confirm"},
    )


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]
