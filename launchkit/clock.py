"""The current moment, which LAUNCHKIT_NOW (or ``--now``) can set for replaying a launch."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from launchkit.errors import LaunchkitError
from launchkit.timing import TimingError, localize, parse_local_datetime

ENV = "LAUNCHKIT_NOW"


def parse_moment(text: str, tz: ZoneInfo, *, source: str = "the moment") -> datetime:
    """'2027-03-10 09:00' (in ``tz``), or ISO 8601 with an offset; returns aware UTC.

    ``source`` names where the text came from (``--now``, LAUNCHKIT_NOW) for the error.
    """
    text = text.strip()
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            moment = parse_local_datetime(text)
        except TimingError:
            raise LaunchkitError(
                f"{source}: expected a moment like '2027-03-10 09:00' or '2027-03-10T09:00:00+01:00'; found {text!r}"
            ) from None
    if moment.tzinfo is None:
        return localize(moment, tz)
    return moment.astimezone(timezone.utc)


def now(tz: ZoneInfo, override: str | None = None) -> datetime:
    """``override``, else LAUNCHKIT_NOW, else the real time; naive values are in ``tz``."""
    if override:
        return parse_moment(override, tz, source="--now")
    text = os.environ.get(ENV)
    return parse_moment(text, tz, source=ENV) if text else datetime.now(timezone.utc)
