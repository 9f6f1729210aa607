"""Launch files (sequences/NAME.toml): the model, its validation, and the loaded ``Launch``.

Structure is checked by pydantic; meaning (anchors a phase can use, conditions, body files,
email ids) by ``_check_meaning``. Both report every problem at once, each with the file, the
key path and the line.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, ValidationError, field_validator

from launchkit import fields
from launchkit.conditions import ALWAYS, Condition, ConditionError, compile_condition
from launchkit.config import Config
from launchkit.errors import ConfigError, LaunchkitError, Problem
from launchkit.timing import Timing
from launchkit.tomlfile import key_path, locate, read_toml, validation_problems

SEQUENCES_DIR = "sequences"
BODY_SUFFIXES = (".md", ".html")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class EmailSpec(_Strict):
    id: fields.Slug = Field(description="Unique within the launch; used in conditions such as opened('id').")
    when: fields.Timing
    subject: str | list[str] | None = Field(
        None, description="A subject, or a list of A/B variants; optional when the body's front matter has one."
    )
    body: str = Field(description="File name in sequences/LAUNCH/: NAME.md, or NAME.html with an optional NAME.txt.")
    only: str | None = Field(None, description="Send only to contacts for whom this condition holds at send time.")
    unless: str | None = Field(None, description="Never send to contacts for whom this condition holds at send time.")
    late_by: fields.Duration | None = Field(None, description="More late than this and it is recorded as missed.")
    catch_up: StrictBool = Field(False, description="Contacts who join after this email's moment still get it.")

    @field_validator("subject")
    @classmethod
    def _subjects_not_empty(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and not value:
            raise ValueError("expected at least one subject")
        return value


class PhaseSpec(_Strict):
    name: fields.Slug
    starts: fields.Timing
    ends: fields.Timing | None = None
    audience: str | None = Field(None, description="Narrows the launch audience for this phase.")
    emails: list[EmailSpec] = Field(default_factory=list, alias="email")


class LaunchSpec(_Strict):
    name: str
    product: str = Field(description="What a purchase must match to count for this launch.")
    product_ids: list[str] = Field(default_factory=list, description="Other identifiers of the same product.")
    price: fields.Money = Decimal(0)
    currency: str = "USD"
    audience: str = Field(ALWAYS, description="Who this launch is for: the denominator of its report.")
    mode: Literal["live", "evergreen"] = "live"
    benchmark: tuple[StrictFloat, StrictFloat] = (0.02, 0.04)
    timezone: fields.TimezoneName | None = None
    lang: str | None = None
    links: dict[str, fields.HttpUrl] = Field(default_factory=dict)
    utm: dict[str, str] = Field(
        default_factory=dict,
        description="UTM parameters added to tracked links on their way out: source, medium, campaign, term, content.",
    )
    grace: fields.Duration = Field(
        timedelta(days=7), description="How long after the last phase starts (or ends) a sale still counts for the launch."
    )

    @field_validator("utm")
    @classmethod
    def _utm_keys(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - {"source", "medium", "campaign", "term", "content"})
        if unknown:
            raise ValueError(f"expected keys among source, medium, campaign, term, content; found {', '.join(unknown)}")
        return value

    @field_validator("currency")
    @classmethod
    def _currency_code(cls, value: str) -> str:
        return fields.currency_code(value)

    @field_validator("benchmark")
    @classmethod
    def _band(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not 0 <= low <= high <= 1:
            raise ValueError(f"expected [low, high] rates between 0 and 1, like [0.02, 0.04]; found {list(value)}")
        return value


class LaunchFile(_Strict):
    launch: LaunchSpec
    phases: list[PhaseSpec] = Field(alias="phase", min_length=1)


@dataclass
class Email:
    """One email of a launch, ready to plan and send."""

    id: str
    phase: Phase
    when: Timing
    subjects: list[str]  #: from the TOML; empty when the body's front matter gives them
    body: Path
    only: Condition | None
    unless: Condition | None
    late_by: timedelta
    catch_up: bool
    key: str = ""  #: where it is written: "phase[2].email[1]"
    line: int | None = None


@dataclass
class Phase:
    name: str
    index: int
    starts: Timing
    ends: Timing | None
    audience: Condition | None
    emails: list[Email] = field(default_factory=list)


@dataclass
class Launch:
    """A loaded, checked launch."""

    id: str
    path: Path
    spec: LaunchSpec
    tz: ZoneInfo
    lang: str
    audience: Condition
    phases: list[Phase]
    fingerprint: str

    @property
    def emails(self) -> list[Email]:
        return [e for p in self.phases for e in p.emails]

    @property
    def products(self) -> list[str]:
        return [self.spec.product, *self.spec.product_ids]

    @property
    def evergreen(self) -> bool:
        return self.spec.mode == "evergreen"

    @property
    def body_dir(self) -> Path:
        return self.path.parent / self.id

    def email(self, email_id: str) -> Email:
        for email in self.emails:
            if email.id == email_id:
                return email
        known = ", ".join(e.id for e in self.emails)
        raise LaunchkitError(f"launch {self.id!r} has no email {email_id!r} (emails: {known})")

    def window(self, phase: Phase, joined: datetime | None = None) -> tuple[datetime, datetime | None]:
        """A phase's start and end; in evergreen mode from the contact's own join time.

        A phase with no ``ends`` ends when the next one starts; the last one never ends.
        """
        start = phase.starts.resolve(self.tz, join=joined)
        if phase.ends is not None:
            return start, phase.ends.resolve(self.tz, start=start, join=joined)
        if phase.index + 1 < len(self.phases):
            return start, self.phases[phase.index + 1].starts.resolve(self.tz, join=joined)
        return start, None


    def sales_window(self, joined: datetime | None = None) -> tuple[datetime, datetime]:
        """When a sale counts for this launch: from the first phase's start to the last
        phase's end (or start, when it never ends) plus ``grace``; in evergreen mode on the
        buyer's own clock."""
        start = self.window(self.phases[0], joined)[0]
        last_start, last_end = self.window(self.phases[-1], joined)
        return start, (last_end or last_start) + self.spec.grace


def launch_files(project_dir: Path) -> list[Path]:
    return sorted((project_dir / SEQUENCES_DIR).glob("*.toml"))


def load_launch(path: Path, config: Config) -> Launch:
    """Read, validate and check one launch file; raises ConfigError listing every problem."""
    data, text = read_toml(path)
    try:
        spec = LaunchFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(validation_problems(exc, path, text, LaunchFile)) from None
    problems: list[Problem] = []
    launch = _build(path, spec, text, config, problems)
    if problems:
        raise ConfigError(problems)
    return launch


def _build(path: Path, spec: LaunchFile, text: str, config: Config, problems: list[Problem]) -> Launch:
    def problem(loc: tuple[str | int, ...], message: str) -> None:
        problems.append(Problem(path, message, key=key_path(loc), line=locate(text, loc)))

    email_ids = {e.id for p in spec.phases for e in p.emails}
    link_names = set(spec.launch.links)

    def condition(loc: tuple[str | int, ...], source: str | None) -> Condition | None:
        if source is None:
            return None
        try:
            return compile_condition(source, email_ids=email_ids, link_names=link_names)
        except ConditionError as exc:
            problem(loc, f"condition {exc}")
            return None

    tz = ZoneInfo(spec.launch.timezone or config.project.timezone)
    evergreen = spec.launch.mode == "evergreen"
    body_dir = path.parent / path.stem
    phases: list[Phase] = []
    seen_ids: set[str] = set()
    for p_index, p in enumerate(spec.phases):
        loc = ("phase", p_index)
        start_anchors = ("join", "absolute") if evergreen else ("absolute",)
        if p.starts.anchor not in start_anchors:
            expected = "'join …' (evergreen: each contact's own clock)" if evergreen else "a date 'YYYY-MM-DD HH:MM' (live mode)"
            problem(loc + ("starts",), f"expected {expected}; found {p.starts.source!r}")
        if p.ends is not None and p.ends.anchor == "end":
            problem(loc + ("ends",), "a phase end cannot be relative to itself; use 'start + …' or a date")
        if p.ends is not None and p.ends.anchor == "join" and not evergreen:
            problem(loc + ("ends",), "'join' anchors a phase only in evergreen mode; use a date or 'start + …'")
        if any(p.name == earlier.name for earlier in phases):
            problem(loc + ("name",), f"phase name {p.name!r} is used twice; each phase needs its own name")
        phase = Phase(p.name, p_index, p.starts, p.ends, condition(loc + ("audience",), p.audience))
        has_end = p.ends is not None or p_index + 1 < len(spec.phases)
        for e_index, e in enumerate(p.emails):
            eloc = loc + ("email", e_index)
            if e.id in seen_ids:
                problem(eloc + ("id",), f"email id {e.id!r} is used twice; ids must be unique within a launch")
            seen_ids.add(e.id)
            if e.when.anchor == "end" and not has_end:
                problem(eloc + ("when",), f"{e.when.source!r} needs a phase end, but {p.name!r} is the last phase and has no 'ends'")
            body = body_dir / e.body
            if body.suffix not in BODY_SUFFIXES:
                problem(eloc + ("body",), f"expected a .md or .html file; found {e.body!r}")
            elif not body.is_file():
                problem(eloc + ("body",), f"body file not found: {body}")
            subjects = [e.subject] if isinstance(e.subject, str) else list(e.subject or [])
            phase.emails.append(
                Email(
                    e.id,
                    phase,
                    e.when,
                    subjects,
                    body,
                    condition(eloc + ("only",), e.only),
                    condition(eloc + ("unless",), e.unless),
                    e.late_by or config.delivery.late_by,
                    e.catch_up,
                    key_path(eloc),
                    locate(text, eloc),
                )
            )
        phases.append(phase)

    if not evergreen:
        _check_live_dates(spec, tz, problem)
    fingerprint = hashlib.sha256(f"{tz.key}\n{text}".encode()).hexdigest()
    audience = condition(("launch", "audience"), spec.launch.audience) or compile_condition(ALWAYS)
    return Launch(path.stem, path, spec.launch, tz, spec.launch.lang or config.project.lang, audience, phases, fingerprint)


def _check_live_dates(spec: LaunchFile, tz: ZoneInfo, problem: Any) -> None:
    previous: datetime | None = None
    for index, p in enumerate(spec.phases):
        if p.starts.anchor != "absolute":
            continue
        start = p.starts.resolve(tz)
        if previous is not None and start < previous:
            problem(("phase", index, "starts"), "phases must be in time order; this one starts before the previous one")
        previous = start
        if p.ends is not None and p.ends.anchor in ("absolute", "start") and p.ends.resolve(tz, start=start) <= start:
            problem(("phase", index, "ends"), "the phase ends before it starts")
