"""Reading TOML files and turning validation errors into problems people can act on.

A problem names the file, the key path (``phase[2].email[1].when``, counted from 1 as a
person counts phases) and, where the file's text allows it, the line.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Callable, Iterable

import pydantic

from launchkit.errors import ConfigError, Problem

_TOML_LINE = re.compile(r"\(at line (\d+), column \d+\)")
_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-]+)\s*=")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

Loc = tuple[str | int, ...]


def read_toml(path: Path) -> tuple[dict[str, Any], str]:
    """Parse a TOML file; a syntax error becomes a ConfigError with its line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([Problem(path, "file not found")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem(path, f"is not UTF-8 text ({exc.reason} at byte {exc.start})")]) from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = _TOML_LINE.search(message)
        line = int(match.group(1)) if match else None
        message = _TOML_LINE.sub("", message).strip()
        raise ConfigError([Problem(path, f"is not valid TOML: {message}", line=line)]) from None


def key_path(loc: Iterable[str | int]) -> str:
    """('phase', 1, 'email', 0, 'when') -> 'phase[2].email[1].when'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part + 1}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def locate(text: str, loc: Loc) -> int | None:
    """The line where ``loc`` is set, or of the nearest enclosing table; None if unknown."""
    lines: dict[Loc, int] = {}
    table: Loc = ()
    counters: dict[Loc, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header and not _KEY.match(line):
            parts = tuple(p.strip().strip("\"'") for p in header.group(2).split("."))
            table = _table_loc(parts, table, counters, is_array=header.group(1) == "[[")
            lines.setdefault(table, number)
            continue
        key = _KEY.match(line)
        if key:
            lines.setdefault(table + (key.group(1),), number)
    for end in range(len(loc), 0, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def _table_loc(parts: tuple[str, ...], current: Loc, counters: dict[Loc, int], is_array: bool) -> Loc:
    # Rebuild the indexed path: [[phase.email]] is the next email of the current phase.
    loc: Loc = ()
    for i, part in enumerate(parts):
        loc += (part,)
        last = i == len(parts) - 1
        if last and is_array:
            index = counters.get(loc, -1) + 1
            counters[loc] = index
            for key in [k for k in counters if len(k) > len(loc) and k[: len(loc)] == loc]:
                del counters[key]
            loc += (index,)
        elif not last and loc in counters:
            loc += (counters[loc],)
    return loc


def validation_problems(exc: pydantic.ValidationError, path: Path, text: str, model: type[pydantic.BaseModel]) -> list[Problem]:
    """One problem per pydantic error, with key path and line."""
    problems = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        if error["type"] == "extra_forbidden":
            allowed = ", ".join(allowed_keys(model, loc[:-1]))
            message = f"unknown key {loc[-1]!r}; the keys allowed here are: {allowed}"
        else:
            message = _message(error)
        problems.append(Problem(path, message, key=key_path(loc) or None, line=locate(text, loc)))
    return problems


def allowed_keys(model: type[pydantic.BaseModel], loc: Loc) -> list[str]:
    """The keys the model accepts at ``loc`` (a table's path, list indexes included)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = next((f for name, f in current.model_fields.items() if (f.alias or name) == part), None)
        if field is None:
            return []
        current = _model_in(field.annotation)
        if current is None:
            return []
    return [f.alias or name for name, f in current.model_fields.items()]


def _model_in(annotation: Any) -> Any:
    """The pydantic model inside ``Model``, ``list[Model]`` or ``Model | None``."""
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return annotation
    for argument in getattr(annotation, "__args__", ()):
        found = _model_in(argument)
        if found is not None:
            return found
    return None


def _message(error: dict[str, Any]) -> str:
    kind = error["type"]
    if kind == "missing":
        return "required key is missing"
    message = error["msg"]
    # pydantic prefixes errors raised by our own validators with "Value error, ".
    message = message.removeprefix("Value error, ")
    if kind not in ("value_error", "assertion_error") and "input" in error:
        message += f"; found {error['input']!r}"
    return message


def expand_env(value: Any, loc: Loc, path: Path, problems: list[Problem], text: str = "", quote: Callable[[str], str] | None = None) -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in strings, recursively; unset variables are problems.

    ``quote`` encodes each variable's value (not a default, written as it must appear).
    """
    if isinstance(value, dict):
        return {k: expand_env(v, loc + (k,), path, problems, text, quote) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, loc + (i,), path, problems, text, quote) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        value = os.environ.get(name)
        if value or (value is not None and default is None):
            return quote(value) if quote else value
        if default is not None:
            return default  # as in the shell, ${VAR:-default} also replaces an empty VAR
        problems.append(
            Problem(path, f"environment variable {name} is not set (write ${{{name}:-default}} for a default)", key=key_path(loc), line=locate(text, loc))
        )
        return ""

    return _ENV.sub(substitute, value)
