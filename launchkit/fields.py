"""Value types shared by launchkit.toml and launch files, with their JSON Schema for editors."""

from __future__ import annotations

import re
from decimal import Decimal
from datetime import datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BeforeValidator, WithJsonSchema

from launchkit import timing


def _duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a duration like '6h', '90m' or '1d 4h'; found {value!r}")
    try:
        return timing.parse_duration(value)
    except timing.TimingError as exc:
        raise ValueError(str(exc)) from None


def _timing(value: Any) -> timing.Timing:
    if isinstance(value, timing.Timing):
        return value
    if isinstance(value, datetime):
        # TOML reads an unquoted 2030-01-02 09:00:00 as a date: say how to write it.
        raise ValueError(f"write the date as a quoted string, like \"{value:%Y-%m-%d %H:%M}\"; found an unquoted TOML date")
    if not isinstance(value, str):
        raise ValueError(f"expected a time like 'start + 3d at 09:00'; found {value!r}")
    try:
        return timing.parse_timing(value)
    except timing.TimingError as exc:
        raise ValueError(str(exc)) from None


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"expected an IANA timezone like 'Europe/Paris' or 'UTC'; found {value!r}") from None
    return value


MAX_PROCESSES = 64


def _processes(value: Any) -> int | str:
    # One message for the one mistake, rather than pydantic's one per member of a union.
    if value == "auto" or (type(value) is int and 1 <= value <= MAX_PROCESSES):
        return value
    raise ValueError(f'expected "auto" or a whole number from 1 to {MAX_PROCESSES}; found {value!r}')


_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|m|h|sec|min|hour)\s*$")
_PER = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600}


def _rate(value: Any) -> float:
    """'50/s', '3000/m', '100000/h' -> messages per second."""
    match = _RATE.match(str(value))
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"expected a rate like '50/s', '3000/m' or '100000/h'; found {value!r}")
    return float(match.group(1)) / _PER[match.group(2)]


def _money(value: Any) -> Decimal:
    # TOML has numbers; a quoted "99" is almost always a mistake worth pointing out.
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)) or value < 0:
        raise ValueError(f"expected a number like 297 or 29.90 (not quoted, not negative); found {value!r}")
    return Decimal(str(value))


def currency_code(value: str) -> str:
    """A three-letter currency code, upper-cased: 'eur' -> 'EUR'."""
    if not (len(value) == 3 and value.isascii() and value.isalpha()):
        raise ValueError(f"expected a three-letter currency code like 'EUR'; found {value!r}")
    return value.upper()


def _slug(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_\-]*", value):
        raise ValueError(f"expected letters, digits, '-' or '_' (it is used in file names and URLs); found {value!r}")
    return value


def _http_url(value: str) -> str:
    if not re.match(r"^https?://[^\s/]+", value):
        raise ValueError(f"expected an http:// or https:// URL; found {value!r}")
    return value


def _string_schema(description: str, pattern: str | None = None) -> WithJsonSchema:
    schema: dict[str, Any] = {"type": "string", "description": description}
    if pattern:
        schema["pattern"] = pattern
    return WithJsonSchema(schema)


Duration = Annotated[
    timedelta,
    BeforeValidator(_duration),
    _string_schema("A duration: '6h', '90m', '1d 4h 30m'.", r"^\s*\d+\s*[wdhms]"),
]
Timing = Annotated[
    timing.Timing,
    BeforeValidator(_timing),
    _string_schema(
        "An anchor (start, end, join or 'YYYY-MM-DD HH:MM'), an optional offset ('+ 2d', '- 3h'), "
        "an optional 'at HH:MM'."
    ),
]
TimezoneName = Annotated[str, AfterValidator(_timezone), _string_schema("An IANA timezone, e.g. 'Europe/Paris'.")]
Rate = Annotated[float, BeforeValidator(_rate), _string_schema("Messages per unit: '50/s', '3000/m'.")]
Processes = Annotated[
    int | str,
    BeforeValidator(_processes),
    WithJsonSchema({"anyOf": [{"const": "auto"}, {"type": "integer", "minimum": 1, "maximum": MAX_PROCESSES}]}),
]
Money = Annotated[Decimal, BeforeValidator(_money), WithJsonSchema({"type": "number", "minimum": 0})]
Slug = Annotated[str, AfterValidator(_slug), _string_schema("Letters, digits, '-' or '_'.", r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")]
HttpUrl = Annotated[str, AfterValidator(_http_url), _string_schema("An http:// or https:// URL.", r"^https?://")]
