"""Running ticks and previews for a project: the engine wired to the project's parts."""

from __future__ import annotations

import gc
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Callable, Iterator, Sequence

from sqlalchemy import Connection

from launchkit import senders
from launchkit.compose import Composer
from launchkit.csvfiles import normalize_email
from launchkit.engine import Progress, Tick, TickReport
from launchkit.errors import LaunchkitError
from launchkit.planner import LAUNCH_ENTRY
from launchkit.project import Project
from launchkit.store import contacts as contact_store
from launchkit.store import outbox
from launchkit.store.contacts import Contact
from launchkit.throttle import Throttle
from launchkit.types import OutgoingMessage, Provider, ProviderUnavailable, SendResult, SendStatus


def composers(project: Project, secret: str) -> dict[str, Composer]:
    return {
        launch_id: Composer(project.config, launch, project.root, secret, project.plugins.hook)
        for launch_id, launch in project.launches.items()
    }


def tick(
    project: Project,
    *,
    dry_run: bool = False,
    provider: Provider | None = None,
    stop: Callable[[], bool] = lambda: False,
    progress: Progress | None = None,
) -> TickReport:
    """One tick: plan and send everything due at the project's ``now``.

    ``provider`` replaces the configured one (a test's recording provider, say). ``stop``
    is asked between chunks: once true, the chunk in flight is finished and recorded, and
    the tick ends. On SQLite a second tick started while one runs returns at once with
    ``locked`` set. A dry run does everything but send, in a transaction rolled back.
    """
    launches = project.launches
    store = project.store
    store.ensure_schema()
    with store.tick_lock() as acquired:
        if not acquired:
            return TickReport(locked=True)
        secret = project.secret()
        owned = provider is None and not dry_run
        if owned:
            provider = project.provider()
        engine = Tick(
            transaction=store.begin,
            launches=launches,
            composers=composers(project, secret),
            provider=None if dry_run else provider,
            provider_name=provider.name if provider is not None else project.config.delivery.provider,
            hook=project.plugins.hook,
            now=project.now(),
            tz=project.tz,
            throttle=Throttle(project.config.delivery.rate),
            daily_cap=project.config.delivery.daily_cap,
            stop=stop,
            progress=progress,
            read=store.connect if store.is_sqlite and not dry_run else None,
        )
        try:
            if dry_run:
                with _rolled_back(store.engine.connect()) as transaction:
                    engine.transaction = transaction
                    return engine.run(every_orphan=store.is_sqlite)
            report = engine.prepare(every_orphan=store.is_sqlite)
            if engine.stop():
                return report
            processes = _sending_processes(project, engine) if owned else 1
            with _heap_frozen():
                if processes > 1:
                    senders.dispatch(engine, report, processes, new_provider=project.provider, after_fork=store.after_fork)
                else:
                    engine.dispatch(report)
            return report
        finally:
            if owned and provider is not None:
                provider.close()


@contextmanager
def _heap_frozen() -> Iterator[None]:
    """Leave what is alive before the send (modules, launches, compiled templates: most of the
    heap, none of the garbage) out of the garbage collector's passes while it runs: two thirds
    of the collector's time in a send, 5 µs a message. Forked helpers inherit it. Unfrozen
    after, so what the tick leaves behind is collected as usual in a long-running scheduler."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _sending_processes(project: Project, engine: Tick) -> int:
    """How many processes share this tick's send (see launchkit/senders.py)."""
    delivery = project.config.delivery
    wanted = senders.count(delivery.processes)
    if wanted == 1 or not project.store.is_sqlite or delivery.rate or delivery.daily_cap or not senders.can_fork():
        return 1
    with project.store.connect() as conn:
        due = outbox.due(conn, engine.now, up_to=senders.SHARE_FROM)
    return wanted if due >= senders.SHARE_FROM else 1


@contextmanager
def _rolled_back(connection: Connection) -> Iterator[object]:
    """Transactions that are savepoints inside one outer transaction, rolled back at the end."""
    with connection:
        outer = connection.begin()

        @contextmanager
        def savepoint() -> Iterator[Connection]:
            with connection.begin_nested():
                yield connection

        try:
            yield savepoint
        finally:
            outer.rollback()


SAMPLE_CONTACT = Contact(0, "preview@example.com", "Camille", "Martin", {}, "subscribed", datetime(2000, 1, 1, tzinfo=timezone.utc))


def preview(project: Project, launch_id: str, email_id: str, address: str | None = None) -> OutgoingMessage:
    """The message ``email_id`` would be for ``address`` (a sample contact when None)."""
    launch = project.launch(launch_id)
    email = launch.email(email_id)
    now = project.now()
    person: Contact = SAMPLE_CONTACT
    clock: datetime | None = now
    if address is not None:
        with project.store.connect() as conn:
            found = contact_store.find(conn, address.strip().lower())
            if found is None:
                raise LaunchkitError(f"no contact {address!r}; `launchkit audience list` shows who is there")
            person = found
            clock = outbox.entries_for(conn, launch.id, [person.id]).get(person.id, {}).get(LAUNCH_ENTRY, now)
    composer = Composer(project.config, launch, project.root, project.secret(), project.plugins.hook)
    return composer.compose(email, person, launch.window(email.phase, clock if launch.evergreen else None), now)


def send_test(project: Project, launch_id: str, email_id: str, to: str, address: str | None = None) -> SendResult:
    """Send one email to ``to`` through the configured provider, outside the outbox.

    The subject is marked ``[TEST]`` and the key is unique, so an idempotent service
    never confuses it with the real delivery.
    """
    try:
        recipient = normalize_email(to)
    except ValueError as exc:
        raise LaunchkitError(f"--to {to!r} is not a valid email address: {exc}") from None
    message = preview(project, launch_id, email_id, address)
    message.to, message.to_name = recipient, None
    message.subject = f"[TEST] {message.subject}"
    message.key = f"test/{message.key}/{uuid.uuid4().hex}"
    message.message_id = message.message_id.replace("<", f"<test.{uuid.uuid4().hex[:8]}.", 1)
    provider = project.provider()
    try:
        results = provider.send([message])
    except ProviderUnavailable as exc:  # nothing was sent: the test failed for the provider's reason
        return SendResult(message.key, SendStatus.PERMANENT, reason=str(exc))
    finally:
        provider.close()
    return results[0] if results else SendResult(message.key, SendStatus.UNKNOWN, reason="the provider gave no result")


def outbox_counts(project: Project, launch_id: str | None = None) -> dict[tuple[str, str, str], int]:
    """(launch, email, status) -> rows, for `launchkit outbox`."""
    with project.store.connect() as conn:
        return outbox.counts(conn, launch_id)


def outbox_rows(project: Project, statuses: Sequence[str], *, launch_id: str | None = None, limit: int = 50) -> list[outbox.Row]:
    """Rows in these statuses with their reasons, most recently changed first."""
    with project.store.connect() as conn:
        return outbox.listing(conn, statuses, launch_id=launch_id, limit=limit)


def retry(project: Project, status: str, *, launch_id: str | None = None) -> int:
    """Schedule in-doubt (or failed) rows to go with the next tick; returns how many."""
    with project.store.begin() as conn:
        return outbox.retry(conn, status, project.now(), launch_id=launch_id)
