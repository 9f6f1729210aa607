"""When an email goes out: parse ``when``/``starts``/``ends`` once, resolve per contact fast.

Grammar: an anchor (``start``, ``end``, ``join`` or ``YYYY-MM-DD HH:MM``), an optional offset
(``+ 2d``, ``- 3h``, ``+ 1d 4h 30m``; units w, d, h, m) and an optional ``at HH:MM``.

Weeks and days move on the calendar: "start + 1d" means the same wall-clock time the next day,
because that is what a reader of the TOML expects on the morning DST changes. Hours and minutes
are elapsed time: "end - 3h" must be three real hours before the cart closes, or the email's
"3 hours left" is a lie. ``at`` sets the local wall time on the resulting local date.

A wall time that does not exist (spring-forward gap) moves forward by the gap, and one that
happens twice (fall-back fold) takes the first occurrence: an email is never skipped and never
sent twice. Both are PEP 495's ``fold=0`` rules, so zoneinfo does the work.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from launchkit.errors import LaunchkitError

__all__ = ["Timing", "TimingError", "localize", "parse_duration", "parse_local_datetime", "parse_timing"]

_GRAMMAR = (
    "an anchor (start, end, join or YYYY-MM-DD HH:MM), then an optional offset like '+ 2d' "
    "or '- 3h', then an optional 'at HH:MM'"
)
_ANCHORS = ("start", "end", "join")
_DAYS = {"w": 7, "d": 1}
_SECONDS = {"h": 3600, "m": 60, "s": 1}

_DATETIME = r"(\d{4})-(\d{1,2})-(\d{1,2})(?:\s+|[tT])(\d{1,2}):(\d{2})"
_ANCHOR_RE = re.compile(rf"\s*(?:(start|end|join)\b|{_DATETIME}(?!\d))\s*", re.I)
# The offset runs up to a standalone "at" so a bad unit is reported as an offset problem.
_OFFSET_RE = re.compile(r"([+-])\s*(.*?)\s*(?=\bat\b|$)", re.I | re.S)
_AMOUNTS_RE = re.compile(r"(?:\d+\s*[a-z]\s*)+", re.I)
_AMOUNT_RE = re.compile(r"(\d+)\s*([a-z])", re.I)
_AT_RE = re.compile(r"at\b\s*(.*?)\s*$", re.I | re.S)
_CLOCK_RE = re.compile(r"(\d{1,2}):(\d{2})")
_LOCAL_DATETIME_RE = re.compile(rf"\s*{_DATETIME}(?::(\d{{2}}))?\s*")


class TimingError(LaunchkitError, ValueError):
    """A timing or duration the user wrote that cannot be understood or resolved."""


@dataclass(frozen=True)
class Timing:
    """A parsed timing, ready to resolve against a phase's start/end or a contact's join."""

    source: str
    anchor: str  # "start" | "end" | "join" | "absolute"
    absolute: datetime | None  # naive local wall time when anchor == "absolute"
    days: int  # signed calendar days (weeks folded in)
    seconds: int  # signed elapsed seconds (hours and minutes)
    at: time | None
    # Built once here so resolve(), called per contact per email, does no allocation it can avoid.
    _calendar: timedelta = field(init=False, repr=False, compare=False)
    _elapsed: timedelta = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if (self.anchor == "absolute") != (self.absolute is not None) or self.anchor not in (*_ANCHORS, "absolute"):
            raise ValueError(f"Timing anchor {self.anchor!r} does not match absolute={self.absolute!r}")
        object.__setattr__(self, "_calendar", timedelta(days=self.days))
        object.__setattr__(self, "_elapsed", timedelta(seconds=self.seconds))

    def resolve(
        self,
        tz: ZoneInfo,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        join: datetime | None = None,
    ) -> datetime:
        """The moment this timing names, as an aware UTC datetime; anchors must be aware."""
        anchor = self.anchor
        if anchor == "absolute":
            moment = (self.absolute + self._calendar).replace(tzinfo=tz)  # type: ignore[operator]
        else:
            found = start if anchor == "start" else end if anchor == "end" else join
            if found is None:
                needed = {"start": "a phase start", "end": "a phase end", "join": "the moment the contact joined"}
                raise TimingError(
                    f"cannot resolve {self.source!r}: '{anchor}' needs {needed[anchor]}, and none was given"
                )
            if found.tzinfo is None:
                raise ValueError(f"cannot resolve {self.source!r}: the '{anchor}' anchor must be timezone-aware")
            moment = found
            # Only days go through wall time: an exact instant in a fold would otherwise be
            # snapped to the fold's first occurrence.
            if self.days:
                moment = (moment.astimezone(tz).replace(tzinfo=None) + self._calendar).replace(tzinfo=tz)
        # Aware arithmetic within one zone is wall-clock arithmetic, so add elapsed time in UTC.
        moment = moment.astimezone(timezone.utc) + self._elapsed
        if self.at is not None:
            moment = datetime.combine(moment.astimezone(tz).date(), self.at, tzinfo=tz).astimezone(timezone.utc)
        return moment


def parse_timing(text: str) -> Timing:
    """Parse ``anchor [+|- offset] [at HH:MM]``, raising TimingError with what was expected."""
    if not isinstance(text, str):  # an unquoted TOML date arrives as a datetime, not text
        raise TimingError(f"expected {_GRAMMAR}, as a quoted string; found {text!r}")
    anchor_match = _ANCHOR_RE.match(text)
    if not anchor_match:
        raise TimingError(f"expected {_GRAMMAR}; found {_found(text)}{_did_you_mean(text)}")
    named, *clock = anchor_match.groups()
    absolute = None
    if named:
        anchor = named.lower()
    else:
        anchor = "absolute"
        absolute = _datetime(text, *clock)

    rest = text[anchor_match.end() :]
    days = seconds = 0
    offset_match = _OFFSET_RE.match(rest)
    if offset_match:
        sign, amounts = offset_match.groups()
        parsed = _amounts(amounts, "wdhm")
        if parsed is None:
            raise TimingError(
                f"in {text!r}: expected an offset like '+ 2d', '- 3h' or '+ 1d 4h 30m' "
                f"(units w, d, h, m); found {_found(offset_match.group(0))}"
            )
        days, seconds = (-parsed[0], -parsed[1]) if sign == "-" else parsed
        rest = rest[offset_match.end() :].lstrip()

    at = None
    if rest:
        at_match = _AT_RE.match(rest)
        if not at_match:
            raise TimingError(
                f"in {text!r}: expected an offset like '+ 2d' or '- 3h', or 'at HH:MM', "
                f"after the anchor; found {_found(rest.strip())}"
            )
        at = _clock(at_match.group(1))
        if at is None:
            raise TimingError(
                f"in {text!r}: expected 'at HH:MM' with a time of day from 00:00 to 23:59; "
                f"found {_found(rest.strip())}"
            )
    return Timing(source=text, anchor=anchor, absolute=absolute, days=days, seconds=seconds, at=at)


def parse_duration(text: str) -> timedelta:
    """Parse a positive duration such as ``6h``, ``90m``, ``1d 4h 30m``, ``2w`` or ``30s``."""
    parsed = _amounts(text.strip(), "wdhms") if isinstance(text, str) else None
    if parsed is None or parsed == (0, 0):
        raise TimingError(
            f"expected a positive duration like '6h', '90m' or '1d 4h 30m' (units w, d, h, m, s); found {_found(text)}"
        )
    return timedelta(days=parsed[0], seconds=parsed[1])


def parse_local_datetime(text: str) -> datetime:
    """Parse ``YYYY-MM-DD HH:MM`` or ``YYYY-MM-DDTHH:MM[:SS]`` into a naive wall time."""
    match = _LOCAL_DATETIME_RE.fullmatch(text)
    if not match:
        raise TimingError(f"expected a date and time like '2027-03-10 09:00'; found {_found(text)}")
    return _datetime(text, *match.groups())


def localize(naive: datetime, tz: ZoneInfo) -> datetime:
    """Turn a naive wall time in ``tz`` into aware UTC: gaps move forward, folds take the first."""
    if naive.tzinfo is not None:
        raise ValueError(f"localize() needs a naive wall time; got {naive.isoformat()}")
    # fold=0 is exactly the rule wanted: pre-transition offset, so a gap time lands after the
    # gap and a fold time is its first occurrence.
    return naive.replace(tzinfo=tz, fold=0).astimezone(timezone.utc)


def _amounts(text: str, units: str) -> tuple[int, int] | None:
    """Sum '1d 4h 30m' into (calendar days, elapsed seconds), or None if it is not that shape."""
    if not _AMOUNTS_RE.fullmatch(text):
        return None
    days = seconds = 0
    for number, unit in _AMOUNT_RE.findall(text):
        unit = unit.lower()
        if unit not in units:
            return None
        if unit in _DAYS:
            days += int(number) * _DAYS[unit]
        else:
            seconds += int(number) * _SECONDS[unit]
    return days, seconds


def _clock(text: str) -> time | None:
    match = _CLOCK_RE.fullmatch(text)
    if not match:
        return None
    hour, minute = int(match.group(1)), int(match.group(2))
    return time(hour, minute) if hour < 24 and minute < 60 else None


def _datetime(
    text: str, year: str, month: str, day: str, hour: str, minute: str, second: str | None = None
) -> datetime:
    try:
        return datetime(int(year), int(month), int(day), int(hour), int(minute), int(second or 0))
    except ValueError as error:
        raise TimingError(f"expected a real date and time in {text!r}; {error}") from None


def _found(text: object) -> str:
    if not isinstance(text, str):
        return repr(text)
    return repr(text.strip()) if text.strip() else "nothing"


def _did_you_mean(text: str) -> str:
    word = re.match(r"\s*([a-z]*)", text, re.I).group(1).lower()  # type: ignore[union-attr]
    close = difflib.get_close_matches(word, _ANCHORS, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
