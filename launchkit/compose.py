"""Turning an email of a launch and a contact into an ``OutgoingMessage``.

Bodies and subjects are compiled once per email (Markdown rendered once, not per contact);
each message is then a compiled-template render with the contact's context.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from markupsafe import escape

from launchkit import tracking
from launchkit.config import Config
from launchkit.errors import ConfigError, LaunchkitError, Problem
from launchkit.plugins import where_raised
from launchkit.spec import Email, Launch, Phase
from launchkit.templates import CompiledBody, TemplateError, compile_body, compile_layout, compile_subject, render_subject, specialize
from launchkit.types import OutgoingMessage

LAYOUT = "layout"
#: Messages composed with one shared context before its templates are specialised for it:
#: specialising compiles them again (~6 ms for a typical email), which a few hundred messages repay.
SPECIALIZE_AFTER = 100
SHARED_KEPT = 16  #: shared contexts kept, the latest used
UNSUBSCRIBE_TEXT = {
    "en": "Unsubscribe",
    "fr": "Se désinscrire",
    "de": "Abmelden",
    "es": "Darse de baja",
    "it": "Annulla l'iscrizione",
    "pt": "Cancelar inscrição",
    "nl": "Uitschrijven",
}


class RenderError(LaunchkitError):
    """A template failed while rendering for one contact (a filter given a bad value…)."""


class MissingFooter(RenderError):
    """A rendered message lacks its unsubscribe link or postal address; it must not go out."""


@dataclass
class CompiledEmail:
    subjects: list[jinja2.Template]
    body: CompiledBody

    def specialize(self, values: dict[str, Any]) -> CompiledEmail:
        return CompiledEmail([specialize(s, values) for s in self.subjects], self.body.specialize(values))


@dataclass
class _Shared:
    """The context values one (email, window, now) gives every contact, and its templates
    specialised for them once enough messages share them."""

    values: dict[str, Any]
    uses: int = 0
    email: CompiledEmail | None = None


@dataclass(frozen=True)
class PhaseView:
    """``phase`` in templates: its name, start and end (launch time) and the time left."""

    name: str
    starts: datetime
    ends: datetime | None
    now: datetime

    @property
    def hours_left(self) -> int | None:
        return None if self.ends is None else max(0, int((self.ends - self.now).total_seconds() // 3600))

    @property
    def days_left(self) -> int | None:
        return None if self.ends is None else max(0, (self.ends - self.now).days)


@dataclass(frozen=True)
class SenderView:
    name: str
    address: str
    postal_address: str


class Composer:
    """Renders one launch's emails for contacts."""

    def __init__(self, config: Config, launch: Launch, project_dir: Path, secret: str, hook: Any = None):
        self.config = config
        self.launch = launch
        self.project_dir = project_dir
        self.secret = secret
        self.hook = hook
        self._compiled: dict[str, CompiledEmail] = {}
        self._layouts: tuple[str | None, str | None] | None = None
        self._extra_context = bool(hook and hook.template_context.get_hookimpls())
        sender = config.sender
        self.sender = SenderView(sender.name, sender.address, sender.postal_address)
        self.domain = sender.address.rsplit("@", 1)[-1]
        self._postal_html = str(escape(sender.postal_address))
        self._named_links = {url: name for name, url in launch.spec.links.items()}
        #: The latest (email, window, now)s and what follows from each alone: a send composes
        #: one email for many contacts at the same moment (a batch may hold a few emails).
        self._shared: dict[tuple[Any, ...], _Shared] = {}

    def compiled(self, email: Email) -> CompiledEmail:
        """Compile an email's subjects and body once; template errors name the file and line."""
        if email.id not in self._compiled:
            self._compiled[email.id] = self._compile(email)
        return self._compiled[email.id]

    def _compile(self, email: Email) -> CompiledEmail:
        layout_html, layout_text = self.layouts()
        path = email.body
        try:
            source = path.read_text(encoding="utf-8")
            text_path = path.with_suffix(".txt")
            body = compile_body(
                source,
                kind="md" if path.suffix == ".md" else "html",
                text_source=text_path.read_text(encoding="utf-8") if path.suffix == ".html" and text_path.exists() else None,
                layout_html=layout_html,
                layout_text=layout_text,
            )
        except TemplateError as exc:
            raise ConfigError([Problem(path, exc.message, line=exc.line)]) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError([Problem(path, f"cannot be read: {exc}")]) from None
        sources = email.subjects or _as_list(body.front_matter.get("subject"))
        if not sources:
            message = f"email {email.id!r} has no subject: set `subject` here, or in the front matter of {path.name}"
            raise ConfigError([Problem(self.launch.path, message, key=email.key, line=email.line)])
        try:
            subjects = [compile_subject(s) for s in sources]
        except TemplateError as exc:
            where = path if not email.subjects else self.launch.path
            raise ConfigError([Problem(where, exc.message, key=f"{email.key}.subject", line=exc.line if where == path else email.line)]) from None
        return CompiledEmail(subjects, body)

    def layouts(self) -> tuple[str | None, str | None]:
        """The launch's (or else the project's) layout.html and layout.txt, checked once."""
        if self._layouts is None:
            found: list[str | None] = []
            for suffix in (".html", ".txt"):
                path = next((f / (LAYOUT + suffix) for f in (self.launch.body_dir, self.project_dir) if (f / (LAYOUT + suffix)).is_file()), None)
                source = path.read_text(encoding="utf-8") if path else None
                if path and source is not None:
                    try:
                        compile_layout(source, html=suffix == ".html")
                    except TemplateError as exc:
                        raise ConfigError([Problem(path, exc.message, line=exc.line)]) from None
                found.append(source)
            self._layouts = (found[0], found[1])
        return self._layouts

    def unsubscribe_url(self, contact_id: int, email_id: str) -> str:
        base = self.config.tracking.base_url
        if base is None:
            # Without a tracking server, a reply asking to unsubscribe is the honest way out.
            address = self.config.sender.reply_to or self.sender.address
            return f"mailto:{address}?subject={quote('unsubscribe ' + self.launch.id)}"
        return tracking.unsubscribe_url(base, self.secret, contact_id, self.launch.id, email_id)

    def compose(
        self,
        email: Email,
        contact: Any,
        window: tuple[datetime, datetime | None],
        now: datetime,
        link_ids: tracking.LinkIds | None = None,
    ) -> OutgoingMessage:
        """The message ``email`` makes for ``contact``; raises MissingFooter if a footer is lost.

        With ``link_ids`` (a send, not a preview) and a ``[tracking] base_url``, links are
        tracked and the open pixel added as ``[tracking]`` says.
        """
        shared = self._shared_context(email.phase, email, window, now)
        compiled = self._templates(email, shared)
        key = f"{self.launch.id}/{email.id}/{contact.id}"
        variant = zlib.crc32(key.encode()) % len(compiled.subjects)
        unsubscribe = self.unsubscribe_url(contact.id, email.id)
        context = self._context(shared.values, email.phase, email, contact, unsubscribe)
        try:
            subject = context["subject"] = render_subject(compiled.subjects[variant], context)
            html, text = compiled.body.render(context)
        except (jinja2.TemplateError, TypeError, ValueError, ArithmeticError, AttributeError) as exc:
            raise RenderError(f"email {email.id!r} could not be rendered for {contact.email}: {exc}") from None
        postal = self.sender.postal_address
        # Searched from the end, where layouts put the footer: ``in`` reads the whole message,
        # and with one emoji a message's characters are four bytes each.
        if min(text.rfind(unsubscribe), text.rfind(postal), html.rfind(str(escape(unsubscribe))), html.rfind(self._postal_html)) < 0:
            raise MissingFooter(
                f"the rendered email {email.id!r} lacks the unsubscribe link or the postal address "
                f"(a custom layout must contain {{{{ unsubscribe_url }}}} and {{{{ sender.postal_address }}}})"
            )
        tracking_settings = self.config.tracking
        if link_ids is not None and tracking_settings.base_url and (tracking_settings.clicks or tracking_settings.opens):
            html = tracking.rewrite(
                html,
                base=tracking_settings.base_url,
                secret=self.secret,
                contact_id=contact.id,
                launch_id=self.launch.id,
                email_id=email.id,
                variant=variant,
                link_ids=link_ids if tracking_settings.clicks else None,
                named=self._named_links,
                opens=tracking_settings.opens,
                keep=unsubscribe,
            )
        headers = {"List-Unsubscribe": f"<{unsubscribe}>"}
        if unsubscribe.startswith("http"):
            headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        digest = format(zlib.crc32(f"{key}/{self.domain}".encode()), "08x")
        return OutgoingMessage(
            key=key,
            message_id=f"<{self.launch.id}.{email.id}.{contact.id}.{digest}@{self.domain}>",
            sender=self.config.sender.from_,
            to=contact.email,
            to_name=contact.name or None,
            subject=subject,
            text=text,
            html=html,
            reply_to=self.config.sender.reply_to,
            headers=headers,
            launch=self.launch.id,
            email=email.id,
            variant=variant,
            contact_id=contact.id,
            metadata={"launch": self.launch.id, "email": email.id},
        )

    def _context(self, shared: dict[str, Any], phase: Phase, email: Email, contact: Any, unsubscribe: str) -> dict[str, Any]:
        context = {**shared, "contact": contact, "unsubscribe_url": unsubscribe}
        if self._extra_context:
            try:
                extras = self.hook.template_context(launch=self.launch, phase=phase, email=email, contact=contact)
            except Exception as exc:  # a plugin's bug: this message cannot be rendered, the send goes on
                raise RenderError(f"a template_context plugin raised {exc!r}{where_raised(exc)} for {contact.email}") from None
            for extra in extras:
                if extra:
                    context.update(extra)
        return context

    def _templates(self, email: Email, shared: _Shared) -> CompiledEmail:
        """The email's templates, specialised for ``shared`` once it has served ``SPECIALIZE_AFTER`` messages.

        Not with ``template_context`` plugins: their values, per contact, may replace shared ones.
        """
        if shared.email is not None:
            return shared.email
        shared.uses += 1
        if shared.uses >= SPECIALIZE_AFTER and not self._extra_context:
            shared.email = self.compiled(email).specialize(shared.values)
            return shared.email
        return self.compiled(email)

    def _shared_context(self, phase: Phase, email: Email, window: tuple[datetime, datetime | None], now: datetime) -> _Shared:
        """The context values that do not depend on the contact, built once per (email, window, now).

        Sharing them between contacts is safe: templates render in an immutable sandbox,
        and each message's context is a new dict over these values.
        """
        key = (phase.name, email.id, window, now)
        found = self._shared.get(key)
        if found is not None:
            return found
        tz = self.launch.tz
        start, end = window
        lang = self.launch.lang
        shared: dict[str, Any] = {
            "launch": self.launch.spec,
            "phase": PhaseView(phase.name, start.astimezone(tz), end.astimezone(tz) if end else None, now.astimezone(tz)),
            "email": {"id": email.id},
            "links": dict(self.launch.spec.links),
            "sender": self.sender,
            "unsubscribe_text": UNSUBSCRIBE_TEXT.get(lang.split("-")[0], UNSUBSCRIBE_TEXT["en"]),
            "lang": lang,
            "now": now.astimezone(tz),
        }
        if len(self._shared) >= SHARED_KEPT:  # an evergreen launch's windows differ per contact
            del self._shared[next(iter(self._shared))]
        found = self._shared[key] = _Shared(shared)
        return found


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]
