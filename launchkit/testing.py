"""Testing launches and plugins: a recording provider and pytest fixtures for plugin authors.

This module is a pytest plugin, installed through the ``pytest11`` entry point: in any
environment where launchkit is installed, these fixtures are available to every test
without an import (``pytest --fixtures`` lists them with their documentation):

``launchkit_project``
    a project made by ``launchkit init`` in a temporary folder (a ``LaunchkitProject``):
    add contacts, choose a provider and its settings, run ticks and commands.
``launchkit_clock``
    the moment launchkit thinks it is (a ``Clock``, through ``LAUNCHKIT_NOW``).
``recording_provider``
    a ``RecordingProvider``: accepts and keeps every message it is given.
``launchkit_plugin``
    registers a plugin object or module for one test (a ``PluginRegistrar``).
``webhook_poster``
    posts a request, signed as a service signs it, to an ASGI app (a ``WebhookPoster``).

Every pytest run in such an environment imports this module, so it imports only what it
needs to define the fixtures: the project, the engine, click and httpx load when a fixture
uses them.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Coroutine, Iterable, Mapping, Sequence, TypeVar

import pytest

from launchkit.types import OutgoingMessage, Provider, SendResult, SendStatus

if TYPE_CHECKING:
    import httpx
    from click.testing import Result

    from launchkit.engine import TickReport
    from launchkit.project import Project

#: The day ``launchkit_project`` is created on, as if ``launchkit init`` ran then. The
#: example launch is dated from it: waitlist 2030-01-02 09:00, open cart 2030-01-09 09:00 to
#: 2030-01-13 23:59, close 2030-01-14 08:00 (``LaunchkitProject.dates``).
PROJECT_DAY = date(2030, 1, 1)
#: Where ``launchkit_clock`` starts: the morning the project is created, before any launch
#: email is due.
START = "2030-01-01 09:00"
#: The example launch's audience is ``tagged('newsletter')`` and its waitlist phase
#: ``tagged('waitlist')``: contacts with both tags get its first email, ``welcome``, when
#: the waitlist opens.
DEFAULT_TAGS = ("newsletter", "waitlist")

#: Environment variables that change what launchkit does; ``launchkit_project`` clears
#: them so that a developer's shell cannot change a test's outcome.
_ENVIRONMENT = ("LAUNCHKIT_PROJECT", "LAUNCHKIT_LOAD_PLUGINS", "LAUNCHKIT_SECRET")


@dataclass
class RecordingProvider(Provider):
    """Accepts every message and keeps it, unless ``answer`` says otherwise for a message.

    ``answer(message)`` may return a ``SendResult`` (a transient or permanent failure), or
    None to accept; set ``raises`` to make the next ``send`` call raise it.

    ``closed`` counts the calls to ``close()``. launchkit closes only the providers it builds
    itself, at the end of each tick: a provider handed to a tick belongs to the caller, so
    after ``launchkit_project.tick(provider=recording_provider)`` ``closed`` is still 0.
    """

    name = "recording"  # type: ignore[misc]
    max_batch = 100  # type: ignore[misc]

    sent: list[OutgoingMessage] = field(default_factory=list)
    calls: list[int] = field(default_factory=list)  #: batch sizes, one per send() call
    answer: Callable[[OutgoingMessage], SendResult | None] | None = None
    raises: Exception | None = None
    closed: int = 0

    def send(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        self.calls.append(len(messages))
        if self.raises is not None:
            error, self.raises = self.raises, None
            raise error
        results = []
        for message in messages:
            result = self.answer(message) if self.answer else None
            if result is None:
                self.sent.append(message)
                result = SendResult(message.key, SendStatus.ACCEPTED, provider_message_id=f"rec-{len(self.sent)}")
            results.append(result)
        return results

    def close(self) -> None:
        self.closed += 1

    def to(self, address: str) -> list[str]:
        """The email ids sent to ``address``, in order."""
        return [m.email for m in self.sent if m.to == address]


# --- The clock ---------------------------------------------------------------------------


class Clock:
    """The moment launchkit thinks it is, set through ``LAUNCHKIT_NOW`` for one test.

    Moments are wall-clock times in the project's timezone (``"2030-01-02 09:05"``) or
    ISO 8601 with an offset (``"2030-01-02T09:05:00+01:00"``), as ``--now`` takes them.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, start: str | datetime = START):
        self._monkeypatch = monkeypatch
        self.now: datetime = _moment(start)  #: the current moment; a naive one is in the project's timezone
        self._publish()

    def set(self, moment: str | datetime) -> None:
        """Jump to ``moment``: ``clock.set("2030-01-02 09:05")``."""
        self.now = _moment(moment)
        self._publish()

    def advance(self, *, days: float = 0, hours: float = 0, minutes: float = 0, seconds: float = 0) -> None:
        """Move forward (or back, with negative numbers): ``clock.advance(hours=2)``."""
        self.now += timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
        self._publish()

    def __str__(self) -> str:
        """The moment as ``LAUNCHKIT_NOW`` holds it."""
        return self.now.isoformat(sep=" ")

    def _publish(self) -> None:
        from launchkit.clock import ENV

        self._monkeypatch.setenv(ENV, str(self))


def _moment(value: str | datetime) -> datetime:
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"expected a moment like '2030-01-02 09:05' or '2030-01-02T09:05:00+01:00'; found {value!r}") from None


# --- The project -------------------------------------------------------------------------


@dataclass
class LaunchkitProject:
    """A project made by ``launchkit init`` in a temporary folder, and ways to drive it.

    Unless a method is given ``now``, it acts at the ``launchkit_clock``'s moment.
    """

    root: Path  #: the project folder (``launchkit.toml``, ``sequences/``, ``plugins/``…)
    clock: Clock  #: the same object as the ``launchkit_clock`` fixture
    _added: int = field(default=0, init=False, repr=False)  #: contacts numbered so far by add_contacts(n)

    @property
    def config_file(self) -> Path:
        """The project's ``launchkit.toml``."""
        return self.root / "launchkit.toml"

    @property
    def dates(self) -> dict[str, str]:
        """The example launch's moments: ``waitlist_starts``, ``cart_opens``, ``cart_closes``, ``close_starts``."""
        from launchkit.scaffold import skeleton_dates

        return {token.strip("@").lower(): moment for token, moment in skeleton_dates(PROJECT_DAY).items()}

    def project(self, now: str | None = None) -> Project:
        """The project as launchkit's library sees it (``Project.open``), at ``now`` or the clock's moment."""
        from launchkit.project import Project

        return Project.open(self.root, now=now)

    def add_contacts(self, people: int | str | Iterable[str], *, tags: Iterable[str] = DEFAULT_TAGS, now: str | None = None) -> list[str]:
        """Add subscribed contacts, tagged ``tags``; returns their addresses.

        ``people`` is a number (``person1@example.com``, ``person2@example.com``… numbered on
        from earlier calls), or one address or a list of them, each optionally with a name (``"Ada Lovelace
        <ada@example.com>"``: first name Ada, last name Lovelace). The default tags put them
        in the example launch's audience and waitlist.
        """
        from email.utils import parseaddr

        from launchkit.csvfiles import normalize_email
        from launchkit.store import contacts as contact_store
        from launchkit.store.contacts import NewContact

        if isinstance(people, str):
            people = [people]
        if isinstance(people, int):
            mailboxes = [f"person{self._added + i}@example.com" for i in range(1, people + 1)]
            self._added += people
        else:
            mailboxes = list(people)
        added = []
        for mailbox in mailboxes:
            name, address = parseaddr(mailbox)
            first, _, last = name.partition(" ")
            added.append(NewContact(normalize_email(address), first or None, last or None, {}, set(tags)))
        project = self.project(now)
        try:
            with project.store.begin() as conn:
                contact_store.upsert(conn, added, now=project.now(), consent_source="launchkit.testing")
        finally:
            project.store.close()
        return [person.email for person in added]

    def use_provider(self, name: str, /, **settings: Any) -> None:
        """Send through provider ``name``: sets ``[delivery] provider`` and writes ``[delivery.NAME]``.

        ``settings`` become the whole ``[delivery.NAME]`` table (strings, numbers, booleans,
        lists; ``"${VAR}"`` is expanded by launchkit as in any project). A table already
        there is replaced.
        """
        text = _set_keys(self.config_file.read_text(encoding="utf-8"), "delivery", {"provider": name})
        text = _drop_table(text, f"delivery.{name}")
        if settings:
            lines = [f"{key} = {_toml_value(value)}" for key, value in settings.items()]
            text = text.rstrip("\n") + f"\n\n[delivery.{name}]\n" + "\n".join(lines) + "\n"
        self._write_config(text)

    def set_delivery(self, **values: Any) -> None:
        """Set keys of ``[delivery]`` (``rate="50/s"``, ``daily_cap=100``, ``late_by="2h"``); None removes one."""
        self._write_config(_set_keys(self.config_file.read_text(encoding="utf-8"), "delivery", values))

    def tick(self, now: str | None = None, *, provider: Provider | None = None) -> TickReport:
        """One ``launchkit run``: plan and send what is due, through the configured provider or ``provider``.

        launchkit builds the configured provider and closes it at the end of the tick; a
        ``provider`` passed here is the caller's, and is not closed.
        """
        from launchkit.runner import tick

        project = self.project(now)
        try:
            return tick(project, provider=provider)
        finally:
            project.store.close()

    def cli(self, *args: str, input: str | None = None) -> Result:
        """Run a ``launchkit`` command on the project, plugins' commands included: ``cli("outbox")``.

        Returns click's ``Result`` (``exit_code``, ``output``). A plugin whose
        ``register_commands`` fails is reported as a warning, as ``launchkit`` does.
        """
        import copy
        import warnings

        from click.testing import CliRunner

        from launchkit.cli import cli
        from launchkit.plugins import load_plugins

        # A copy of the command group, so that plugins' commands do not outlive the test.
        group = copy.copy(cli)
        group.commands = dict(cli.commands)
        for problem in load_plugins(self.root).call_each("register_commands", lambda _plugin: group, "cli"):
            warnings.warn(problem, stacklevel=2)
        return CliRunner().invoke(group, ["--project", str(self.root), *args], input=input)

    def _write_config(self, text: str) -> None:
        import tomllib

        try:
            tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:  # a bug here, not in the test: say so plainly
            raise AssertionError(f"launchkit.testing wrote launchkit.toml that is not TOML ({exc}):\n{text}") from None
        self.config_file.write_text(text, encoding="utf-8")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} ({type(value).__name__}) to launchkit.toml")


def _table_span(lines: list[str], table: str) -> tuple[int, int] | None:
    """The lines of ``[table]``: from its header to the next header, or None."""
    import re

    header = re.compile(rf"^\[\s*{re.escape(table)}\s*\]\s*(#.*)?$")
    any_header = re.compile(r"^\[")
    for start, line in enumerate(lines):
        if header.match(line.strip()):
            end = next((i for i in range(start + 1, len(lines)) if any_header.match(lines[i].strip())), len(lines))
            return start, end
    return None


def _set_keys(text: str, table: str, values: Mapping[str, Any]) -> str:
    import re

    lines = text.splitlines()
    span = _table_span(lines, table)
    if span is None:
        lines += ["", f"[{table}]"]
        span = (len(lines) - 1, len(lines))
    start, end = span
    for key, value in values.items():
        pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
        found = next((i for i in range(start + 1, end) if pattern.match(lines[i])), None)
        if found is not None:
            if value is None:
                del lines[found]
                end -= 1
            else:
                lines[found] = f"{key} = {_toml_value(value)}"
        elif value is not None:
            lines.insert(start + 1, f"{key} = {_toml_value(value)}")
            end += 1
    return "\n".join(lines) + "\n"


def _drop_table(text: str, table: str) -> str:
    lines = text.splitlines()
    span = _table_span(lines, table)
    if span is not None:
        del lines[span[0] : span[1]]
    return "\n".join(lines) + "\n"


# --- Plugins -----------------------------------------------------------------------------

Plugin = TypeVar("Plugin")
Result_ = TypeVar("Result_")

#: Prefix of the module names ``launchkit_plugin`` gives plugins in ``sys.modules``.
_PLUGIN_MODULES = "launchkit_testing_plugins"


class PluginRegistrar:
    """Registers plugins for one test, the way launchkit's default plugins are loaded.

    ``launchkit_plugin(plugin)`` adds ``plugin`` (a module, a class whose static methods
    are ``@hookimpl`` functions, or an object whose methods are) to ``launchkit.plugins.DEFAULT_PLUGINS`` under a
    module name of its own in ``sys.modules``; both are restored when the test ends. Every
    project opened during the test loads it, the CLI's included; ``launchkit plugins``
    lists it with source ``default``.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self._monkeypatch = monkeypatch
        self.names: list[str] = []  #: the plugins registered, in order

    def __call__(self, plugin: Plugin, name: str | None = None) -> Plugin:
        """Register ``plugin`` as ``name`` (default: its ``__name__``'s last part); returns it, so it works as a class decorator."""
        import launchkit.plugins

        name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        name = name.rsplit(".", 1)[-1]
        if name in self.names:
            raise ValueError(f"a plugin named {name!r} is already registered in this test; pass another name=")
        module_name = f"{_PLUGIN_MODULES}.{name}"
        self._monkeypatch.setitem(sys.modules, module_name, plugin)
        self._monkeypatch.setattr(launchkit.plugins, "DEFAULT_PLUGINS", (*launchkit.plugins.DEFAULT_PLUGINS, module_name))
        self.names.append(name)
        return plugin


# --- Webhooks ----------------------------------------------------------------------------


class WebhookPoster:
    """Posts a request to an ASGI app in this process, with httpx's ``ASGITransport``.

    It takes any ASGI app: launchkit's own server (``launchkit.server.create_app(project)``,
    where a plugin's ``register_webhooks`` endpoints live at ``/hooks/NAME``) or any other.
    ``sign`` signs the way the service does; ``hmac_signer`` covers the common
    HMAC-SHA256-of-the-body scheme.
    """

    base_url = "http://testserver"

    def __call__(
        self,
        app: Any,
        path: str,
        body: bytes | str | Mapping[str, Any] | list[Any] = b"",
        headers: Mapping[str, str] | None = None,
        *,
        sign: Callable[[bytes], Mapping[str, str]] | None = None,
        method: str = "POST",
    ) -> httpx.Response:
        """Send ``body`` to ``path`` and return the response, read.

        ``body`` is sent as is when bytes, UTF-8 when text, and as JSON (with
        ``Content-Type: application/json`` unless ``headers`` say otherwise) when a dict or
        a list. ``sign(raw_body)`` returns headers to add: the signature, a timestamp.
        """
        if isinstance(body, bytes):
            raw = body
        elif isinstance(body, str):
            raw = body.encode()
        else:
            raw = json.dumps(body).encode()
        sent = dict(headers or {})
        if not isinstance(body, (bytes, str)) and not any(k.lower() == "content-type" for k in sent):
            sent["Content-Type"] = "application/json"
        if sign is not None:
            sent.update(sign(raw))
        response = _run_async(lambda: self._send(app, method, path, raw, sent))
        server = getattr(getattr(app, "state", None), "server", None)
        if server is not None:  # launchkit's own: its on_event hooks have been told by the time this returns
            server.relay.wait()
        return response

    async def _send(self, app: Any, method: str, path: str, raw: bytes, headers: dict[str, str]) -> httpx.Response:
        import httpx

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=self.base_url) as client:
            response = await client.request(method, path, content=raw, headers=headers)
            await response.aread()
            return response


def hmac_signer(secret: str | bytes, header: str = "X-Signature", *, prefix: str = "") -> Callable[[bytes], dict[str, str]]:
    """A ``sign`` for ``webhook_poster``: ``header`` = ``prefix`` + hex HMAC-SHA256 of the body.

    ``hmac_signer(secret, "X-Hub-Signature-256", prefix="sha256=")`` signs as GitHub does.
    """
    import hashlib
    import hmac

    key = secret.encode() if isinstance(secret, str) else secret

    def sign(body: bytes) -> dict[str, str]:
        return {header: prefix + hmac.new(key, body, hashlib.sha256).hexdigest()}

    return sign


def _run_async(make: Callable[[], Coroutine[Any, Any, Result_]]) -> Result_:
    """Run a coroutine to its end, also from a test that is itself running an event loop."""
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    import threading

    outcome: dict[str, Any] = {}  # "value" or "error"

    def run() -> None:
        try:
            outcome["value"] = asyncio.run(make())
        except BaseException as exc:  # handed back to the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    value: Result_ = outcome["value"]
    return value


# --- Fixtures ----------------------------------------------------------------------------


@pytest.fixture
def launchkit_clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The moment launchkit thinks it is, for this test: ``LAUNCHKIT_NOW``, set and restored.

    Starts at 2030-01-01 09:00 (``launchkit.testing.START``), the morning
    ``launchkit_project`` is created. ``launchkit_clock.set("2030-01-02 09:05")`` jumps;
    ``launchkit_clock.advance(hours=2)`` moves on; ``launchkit_clock.now`` is the moment.
    Times without an offset are in the project's timezone (UTC in a new project). Every
    project opened and every command run in the test acts at this moment.
    """
    return Clock(monkeypatch)


@pytest.fixture
def launchkit_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, launchkit_clock: Clock) -> LaunchkitProject:
    """A new project, as ``launchkit init`` makes it, in a temporary folder.

    The example launch is dated from 2030-01-01: its waitlist opens 2030-01-02 09:00 and its
    first email, ``welcome``, is then due for every contact tagged ``newsletter`` and
    ``waitlist`` (``.dates`` has the other moments). It differs from ``launchkit init`` in
    one way: ``[delivery] rate`` is removed, so a tick does not pace sends and a provider's
    ``send`` gets up to ``max_batch`` messages at once (``.set_delivery(rate="50/s")`` puts
    a rate back). ``LAUNCHKIT_PROJECT``, ``LAUNCHKIT_LOAD_PLUGINS`` and ``LAUNCHKIT_SECRET``
    are cleared for the test; ``LAUNCHKIT_NOW`` is the ``launchkit_clock``'s.

    - ``.root``: the folder;
    - ``.add_contacts(3)`` or ``.add_contacts(["Ada Lovelace <ada@example.com>"], tags=[...])``;
    - ``.use_provider("postmark", server_token="t", base_url=url)``: ``[delivery]
      provider`` and the ``[delivery.postmark]`` table; ``.set_delivery(daily_cap=100)``;
    - ``.tick()`` or ``.tick("2030-01-02 09:05", provider=recording_provider)``: a
      ``launchkit run``, returning its ``TickReport`` (``sent``, ``retried``, ``failed``,
      ``in_doubt``, ``failures``…);
    - ``.project()``: the ``launchkit.project.Project``;
    - ``.cli("outbox")``: a command's click ``Result``, plugins' commands included.
    """
    from launchkit.scaffold import init_project

    for name in _ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "project"
    init_project(root, PROJECT_DAY)
    project = LaunchkitProject(root, launchkit_clock)
    project.set_delivery(rate=None)
    return project


@pytest.fixture
def recording_provider() -> RecordingProvider:
    """A provider that accepts every message and keeps it: ``.sent``, ``.calls``, ``.to(address)``.

    Pass it to ``launchkit_project.tick(provider=recording_provider)``. Set ``.answer`` to a
    function of the message returning a ``SendResult`` to fail chosen messages, or
    ``.raises`` to make the next ``send`` raise. The tick does not close a provider it is
    handed, so ``.closed`` stays 0.
    """
    return RecordingProvider()


@pytest.fixture
def launchkit_plugin(monkeypatch: pytest.MonkeyPatch) -> PluginRegistrar:
    """Register a plugin for this test only: ``launchkit_plugin(module_or_object, name=None)``.

    For plugins that are not installed: a module of test helpers, or a class defined in the
    test whose hook implementations are static methods::

        @launchkit_plugin
        class Tagging:
            @staticmethod
            @hookimpl
            def before_send(message):
                message.headers["X-Test"] = "1"

    Every project opened during the test loads it, the CLI's included. An installed plugin
    package needs none of this: it is loaded through its entry point, as in production.
    The plugin goes into ``launchkit.plugins.DEFAULT_PLUGINS`` (so ``launchkit plugins``
    shows it with source ``default``), and is removed when the test ends.
    """
    return PluginRegistrar(monkeypatch)


@pytest.fixture
def webhook_poster() -> WebhookPoster:
    """Post to an ASGI app in this process: ``webhook_poster(app, "/hooks/NAME", body, headers)``.

    Returns the ``httpx.Response``. ``sign=launchkit.testing.hmac_signer(secret, "X-Signature")``
    (or any function of the raw body returning headers) signs the request as the service
    would. To test a webhook plugin end to end, post to ``launchkit.server.create_app(project)``.
    """
    return WebhookPoster()


__all__ = [
    "Clock",
    "LaunchkitProject",
    "PluginRegistrar",
    "RecordingProvider",
    "WebhookPoster",
    "hmac_signer",
    "launchkit_clock",
    "launchkit_plugin",
    "launchkit_project",
    "recording_provider",
    "webhook_poster",
]
