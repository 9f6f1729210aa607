"""launchkit.toml: the project's settings, validated."""

from __future__ import annotations

import re
from datetime import timedelta
from email.utils import parseaddr
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError, field_validator

from launchkit.errors import ConfigError, Problem
from launchkit.location import CONFIG_FILE
from launchkit.fields import Duration, HttpUrl, Processes, Rate, TimezoneName
from launchkit.tomlfile import Loc, expand_env, key_path, locate, read_toml, validation_problems



class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ProjectSettings(Strict):
    name: str
    timezone: TimezoneName = "UTC"
    database: str = "sqlite:///launchkit.db"
    lang: str = "en"


class SenderSettings(Strict):
    from_: str = Field(alias="from", description="'Name <address>' shown as the sender.")
    reply_to: str | None = None
    postal_address: str = Field(min_length=1, description="Printed in every email's footer (CAN-SPAM, GDPR).")

    @field_validator("postal_address")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("expected the postal address every email must carry (CAN-SPAM); found nothing")
        return value.strip()

    @field_validator("from_")
    @classmethod
    def _has_address(cls, value: str) -> str:
        name, address = parseaddr(value)
        if "@" not in address or any(c in value for c in "\r\n"):
            raise ValueError(f"expected 'Name <address@domain>'; found {value!r}")
        return value

    @property
    def name(self) -> str:
        return parseaddr(self.from_)[0]

    @property
    def address(self) -> str:
        return parseaddr(self.from_)[1]


class DeliverySettings(BaseModel):
    # Extra keys are allowed only as provider tables: [delivery.postmark], [delivery.smtp]…
    model_config = ConfigDict(extra="allow", frozen=True)

    provider: str = "maildir"
    rate: Rate | None = None
    daily_cap: StrictInt | None = Field(None, gt=0)
    late_by: Duration = timedelta(hours=6)
    #: Processes sharing a big send on SQLite (see launchkit/senders.py); "auto": one per core.
    processes: Processes = "auto"

    def provider_settings(self, name: str) -> dict[str, Any]:
        return dict((self.model_extra or {}).get(name, {}))


class TrackingSettings(Strict):
    base_url: HttpUrl | None = None
    opens: StrictBool = True
    clicks: StrictBool = True
    secret: str | None = Field(None, description="Signs tracking tokens; generated and stored in the database when absent.")
    previous_secrets: list[str] = Field(
        default_factory=list, description="Secrets used before `secret`: links already sent keep working after a rotation."
    )

    @field_validator("base_url", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return (value.rstrip("/") or None) if isinstance(value, str) else value


class SignupSettings(Strict):
    """``POST /subscribe``: the signup form on the creator's site."""

    tags: list[str] = Field(default_factory=list, description="Tags every signup gets, e.g. ['waitlist'].")
    allowed_tags: list[str] = Field(default_factory=list, description="Tags a form may ask for in its `tags` field.")
    double_opt_in: StrictBool = True
    thank_you_url: HttpUrl | None = Field(None, description="Where a form signup is redirected.")
    confirmed_url: HttpUrl | None = Field(None, description="Where a confirmed signup is redirected.")
    honeypot: str = Field("website", description="A form field humans leave empty (hide it with CSS).")
    per_address: Rate = Field(3 / 3600, description="Signups accepted per address: '3/h'.")
    per_ip: Rate = Field(20 / 3600, description="Signups accepted per client IP: '20/h'.")
    consent_text: str | None = Field(None, description="The consent wording (or its version) recorded with each signup.")
    confirm_subject: str | None = None


class Config(Strict):
    project: ProjectSettings
    sender: SenderSettings
    delivery: DeliverySettings = DeliverySettings()
    tracking: TrackingSettings = TrackingSettings()
    signup: SignupSettings = SignupSettings()
    webhooks: dict[str, dict[str, Any]] = {}
    plugins: dict[str, dict[str, Any]] = {}
    reporters: dict[str, dict[str, Any]] = {}


_ENV_ONLY = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}")  #: a value that is one ${VAR} and nothing else


def _url_quote(value: str) -> str:
    return quote(value, safe="")


def load_config(project_dir: Path) -> Config:
    """Read and validate ``launchkit.toml``; raises ConfigError listing every problem."""
    path = project_dir / CONFIG_FILE
    data, text = read_toml(path)
    problems: list[Problem] = []
    # Provider and webhook tables are expanded when used, so an unused provider's missing
    # secret does not stop the project from working.
    database = data.get("project", {}).get("database") if isinstance(data.get("project"), dict) else None
    if isinstance(database, str) and not _ENV_ONLY.fullmatch(database):
        # A ${VAR} inside the URL (a password) is URL-encoded: an @, : or % in it must not change
        # which host the URL names. A whole URL in one variable (${DATABASE_URL}) is taken as written.
        data["project"]["database"] = expand_env(database, ("project", "database"), path, problems, text, quote=_url_quote)
    for section in ("project", "sender", "tracking", "signup"):
        if isinstance(data.get(section), dict):
            data[section] = expand_env(data[section], (section,), path, problems, text)
    delivery = data.get("delivery")
    if isinstance(delivery, dict):
        known = DeliverySettings.model_fields
        for key, value in delivery.items():
            if key not in known and not isinstance(value, dict):
                problems.append(
                    Problem(
                        path,
                        f"unknown key {key!r}; [delivery] takes {', '.join(known)}, and a provider's "
                        f"settings go in their own table, [delivery.NAME]",
                        key=f"delivery.{key}",
                        line=locate(text, ("delivery", key)),
                    )
                )
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        problems += validation_problems(exc, path, text, Config)
    if problems:
        raise ConfigError(problems)
    return config


def expanded(settings: dict[str, Any], section: str, project_dir: Path) -> dict[str, Any]:
    """A provider or webhook table with ``${VAR}`` expanded; unset variables raise ConfigError."""
    path = project_dir / CONFIG_FILE
    problems: list[Problem] = []
    result = expand_env(settings, tuple(section.split(".")), path, problems, path.read_text(encoding="utf-8"))
    if problems:
        raise ConfigError(problems)
    return result


def config_problem(project_dir: Path, loc: Loc, message: str) -> Problem:
    """A problem about a key of launchkit.toml, with its line."""
    path = project_dir / CONFIG_FILE
    return Problem(path, message, key=key_path(loc), line=locate(path.read_text(encoding="utf-8"), loc))
