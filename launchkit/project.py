"""A project on disk: its settings, launches, database and plugins, loaded on demand.

This is the library the CLI is a thin layer over: everything a command does is a call here
or in the modules it names.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator
from zoneinfo import ZoneInfo

from launchkit import clock
from launchkit.config import Config, config_problem, expanded, load_config
from launchkit.errors import ConfigError, LaunchkitError, Problem
from launchkit.location import find_project_dir
from launchkit.plugins import Plugins, load_plugins, where_raised
from launchkit.spec import Launch, launch_files, load_launch
from launchkit.store import Store
from launchkit.types import Provider, ProviderContext, Reporter, ReporterContext, Webhook, WebhookContext

@dataclass
class Project:
    root: Path
    now_override: str | None = None

    @classmethod
    def open(cls, root: Path | None = None, *, now: str | None = None) -> Project:
        return cls(find_project_dir(root), now)

    @cached_property
    def config(self) -> Config:
        return load_config(self.root)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.config.project.timezone)

    def now(self) -> datetime:
        return clock.now(self.tz, self.now_override)

    @cached_property
    def launches(self) -> dict[str, Launch]:
        """Every launch in sequences/, checked; raises ConfigError listing all their problems."""
        found: dict[str, Launch] = {}
        problems: list[Problem] = []
        for path in launch_files(self.root):
            try:
                found[path.stem] = load_launch(path, self.config)
            except ConfigError as exc:
                problems += exc.problems
        if problems:
            raise ConfigError(problems)
        return found

    def launch(self, launch_id: str) -> Launch:
        if launch_id not in self.launches:
            known = ", ".join(self.launches) or "none"
            raise LaunchkitError(f"no launch {launch_id!r} in {self.root / 'sequences'} (launches: {known})")
        return self.launches[launch_id]

    @cached_property
    def store(self) -> Store:
        return Store(self.config.project.database, self.root)

    @cached_property
    def plugins(self) -> Plugins:
        return load_plugins(self.root)

    def secret(self) -> str:
        """The secret new tokens are signed with."""
        return self.config.tracking.secret or self.store.secret()

    def secrets(self) -> list[str]:
        """Every secret a token may have been signed with: the current one, then older ones."""
        return [self.secret(), *self.config.tracking.previous_secrets]

    def plugin_settings(self) -> dict[str, Any]:
        """The ``[plugins]`` table, ``${VAR}`` expanded, for ``on_event`` hooks."""
        return {name: expanded(table, f"plugins.{name}", self.root) for name, table in self.config.plugins.items()}

    def reporter(self, name: str) -> Reporter:
        """The report output registered as ``name`` (``--format NAME``)."""
        factory = self.plugins.reporters().get(name, "report format")
        settings = expanded(self.config.reporters.get(name, {}), f"reporters.{name}", self.root)
        return self._built(factory, ReporterContext(name=name, settings=settings, project_dir=self.root), ("reporters", name), f"report format {name!r}")

    def webhook(self, name: str) -> Webhook | None:
        """The handler for ``POST /hooks/NAME``, or None when ``[webhooks.NAME]`` is absent."""
        if name not in self.config.webhooks:
            return None
        try:
            factory = self.plugins.webhooks().get(name, "webhook")
        except LaunchkitError as exc:
            raise ConfigError([config_problem(self.root, ("webhooks", name), str(exc))]) from None
        settings = expanded(self.config.webhooks[name], f"webhooks.{name}", self.root)
        return self._built(factory, WebhookContext(name=name, settings=settings, project_dir=self.root), ("webhooks", name), f"webhook {name!r}")

    def _built(self, factory: Any, context: Any, key: tuple[str, ...], what: str) -> Any:
        """What a plugin's factory makes; any failure a ConfigError at ``key`` of launchkit.toml."""
        try:
            return factory(context)
        except (ValueError, LaunchkitError) as exc:
            raise ConfigError([config_problem(self.root, key, str(exc))]) from None
        except Exception as exc:  # the factory failing its own way (a KeyError for a missing setting)
            raise ConfigError([config_problem(self.root, key, f"{what} could not be built: {exc!r}{where_raised(exc)}")]) from None

    def provider(self, name: str | None = None) -> Provider:
        """The configured delivery provider (or ``name``), built by its plugin's factory."""
        name = name or self.config.delivery.provider
        try:
            factory = self.plugins.providers().get(name, "delivery provider")
        except LaunchkitError as exc:
            raise ConfigError([config_problem(self.root, ("delivery", "provider"), str(exc))]) from None
        settings = expanded(self.config.delivery.provider_settings(name), f"delivery.{name}", self.root)
        return self._built(factory, ProviderContext(name=name, settings=settings, project_dir=self.root), ("delivery",), f"provider {name!r}")

    @contextmanager
    def transaction(self) -> Iterator[object]:
        with self.store.begin() as conn:
            yield conn
