"""Tracked links, open pixels and unsubscribe links: their token formats and the HTML rewrite.

Every token is signed with the project secret (``launchkit.tokens``) and names stored rows,
never a URL: a click token carries a link id from the ``links`` table, so editing it cannot
turn the server into an open redirect, and no one can guess another person's unsubscribe
link. The formats below are the only place these payloads are built and read.
"""

from __future__ import annotations

import html as htmllib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable, Sequence

from launchkit import tokens

CLICK, OPEN, UNSUBSCRIBE, CONFIRM = "c", "o", "u", "s"

#: A signup confirmation link stays valid this long.
CONFIRM_FOR = timedelta(days=7)

_HREF = re.compile(r"""(<a\b[^>]*?\bhref\s*=\s*)(["'])(.*?)\2""", re.IGNORECASE | re.DOTALL)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


@dataclass(frozen=True)
class Link:
    """A link of a sent email, as stored: what a click token points at."""

    id: int
    launch_id: str
    email_id: str
    url: str
    name: str | None


#: ``link_id(launch_id, email_id, url, name)``: the stored id of a link, created if new.
LinkIds = Callable[[str, str, str, "str | None"], int]


def unsubscribe_url(base: str, secret: str, contact_id: int, launch_id: str, email_id: str) -> str:
    return f"{base}/u/{tokens.sign(secret, UNSUBSCRIBE, contact_id, launch_id, email_id)}"


def confirm_url(base: str, secret: str, contact_id: int, tags: Sequence[str], now: datetime) -> str:
    """A signup confirmation link; it carries the tags asked for, applied once confirmed."""
    hour = int(now.timestamp() // 3600)
    return f"{base}/confirm/{tokens.sign(secret, CONFIRM, contact_id, hour, ','.join(sorted(tags)))}"


def rewrite(
    html: str,
    *,
    base: str,
    secret: str,
    contact_id: int,
    launch_id: str,
    email_id: str,
    variant: int,
    link_ids: LinkIds | None,
    named: dict[str, str],
    opens: bool,
    keep: str,
) -> str:
    """Point the email's web links at the click endpoint and add the open pixel.

    ``named`` maps URLs to their ``[launch.links]`` name (for ``clicked_link``); ``keep`` is
    the unsubscribe URL, which must stay as it is. Only http(s) links are tracked: mailto,
    tel and anchors go through untouched.
    """
    # Built as a list of slices joined once: this runs for every message of a send.
    parts: list[str] = []
    done = 0
    if link_ids is not None:
        for match in _HREF.finditer(html):
            href = match.group(3)
            url = (htmllib.unescape(href) if "&" in href else href).strip()
            if url.startswith(("http://", "https://")) and url != keep:
                link_id = link_ids(launch_id, email_id, url, _name_of(url, named))
                parts += (html[done : match.start(3)], base, "/c/", tokens.sign(secret, CLICK, link_id, contact_id, variant))
                done = match.end(3)
    if opens:
        token = tokens.sign(secret, OPEN, contact_id, launch_id, email_id, variant)
        pixel = f'<img src="{base}/o/{token}.gif" width="1" height="1" alt="" style="display:block;border:0;width:1px;height:1px">'
        end = _body_end(html, done)
        parts += (html[done:end], pixel)
        done = end
    parts.append(html[done:])
    return "".join(parts)


def _body_end(html: str, start: int) -> int:
    """Where ``</body>`` starts (the end of ``html`` when there is none), looking from ``start``."""
    end = html.rfind("</body>", start)  # the usual spelling first: a regex scan costs more
    if end >= 0:
        return end
    found = _BODY_END.search(html, start)
    return found.start() if found else len(html)


def _name_of(url: str, named: dict[str, str]) -> str | None:
    # A named link personalised in the template (?email=…) still counts as that link.
    if url in named:
        return named[url]
    prefixes = [u for u in named if url.startswith(u)]
    return named[max(prefixes, key=len)] if prefixes else None


@dataclass(frozen=True)
class Click:
    link_id: int
    contact_id: int
    variant: int


@dataclass(frozen=True)
class Delivery:
    """Who got which email: what open and unsubscribe tokens name."""

    contact_id: int
    launch_id: str
    email_id: str
    variant: int | None = None  #: open tokens carry the A/B variant; unsubscribe tokens do not


@dataclass(frozen=True)
class Confirmation:
    contact_id: int
    tags: list[str]
    expired: bool


def read_click(secrets: Sequence[str], token: str) -> Click | None:
    fields = tokens.verify(secrets, token)
    if not fields or len(fields) != 4 or fields[0] != CLICK or not all(f.isdigit() for f in fields[1:]):
        return None
    return Click(int(fields[1]), int(fields[2]), int(fields[3]))


def read_delivery(secrets: Sequence[str], token: str, kind: str) -> Delivery | None:
    """An open (``OPEN``) or unsubscribe (``UNSUBSCRIBE``) token's delivery."""
    fields = tokens.verify(secrets, token)
    size = 5 if kind == OPEN else 4
    if not fields or len(fields) != size or fields[0] != kind or not fields[1].isdigit():
        return None
    if kind == OPEN and not fields[4].isdigit():
        return None
    return Delivery(int(fields[1]), fields[2], fields[3], int(fields[4]) if kind == OPEN else None)


def read_confirmation(secrets: Sequence[str], token: str, now: datetime) -> Confirmation | None:
    fields = tokens.verify(secrets, token)
    if not fields or len(fields) != 4 or fields[0] != CONFIRM or not (fields[1].isdigit() and fields[2].isdigit()):
        return None
    issued = datetime.fromtimestamp(int(fields[2]) * 3600, timezone.utc)
    return Confirmation(int(fields[1]), [t for t in fields[3].split(",") if t], now - issued > CONFIRM_FOR)
