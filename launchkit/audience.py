"""The audience: importing, adding, tagging, unsubscribing, exporting and forgetting contacts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Iterable, TextIO
from zoneinfo import ZoneInfo

from sqlalchemy import Connection

from launchkit.conditions import Condition, Facts
from launchkit.csvfiles import CsvProblem, normalize_email, read_contacts_csv, write_csv
from launchkit.errors import LaunchkitError
from launchkit.project import Project
from launchkit.spec import Launch
from launchkit.store import contacts as contact_store
from launchkit.store import erasure
from launchkit.store.contacts import Contact, NewContact
from launchkit.timing import localize

EXPORT_COLUMNS = ("email", "first_name", "last_name", "status", "tags", "created_at", "consent_source", "consent_at")


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    merged: int = 0  #: duplicate rows folded into an earlier one
    problems: list[CsvProblem] = field(default_factory=list)  #: rows skipped, with their line
    suppressed: int = 0  #: addresses skipped because they were erased on request (`audience forget`)
    not_sendable: int = 0  #: contacts the file says left or never confirmed: kept, never written to


@dataclass
class ForgetResult:
    """What ``forget`` erased, for telling the person who asked."""

    email: str
    found: bool  #: False: nothing was known about the address; it is suppressed all the same
    already: bool  #: the address had been forgotten before
    traces: erasure.Traces


def import_csv(project: Project, path: Path, *, tags: Iterable[str] = ()) -> ImportReport:
    """Import a CSV export in one transaction: all valid rows, or nothing if the file is unreadable.

    Invalid rows are skipped and reported; the file is recorded as the consent source.
    Addresses erased with ``forget`` are skipped and counted, whatever their case or spacing.
    """
    parsed = read_contacts_csv(path)
    extra = set(tags)
    tz = project.tz
    people = [
        NewContact(
            r.email, r.first_name, r.last_name, dict(r.fields), r.tags | extra, status=r.status,
            created_at=_aware(r.created_at, tz), consent_source=r.consent_source, consent_at=_aware(r.consent_at, tz),
        )
        for r in parsed.rows
    ]
    with project.store.begin() as conn:
        counts = contact_store.upsert(conn, people, now=project.now(), consent_source=f"import:{path.name}")
    return ImportReport(counts.created, counts.updated, parsed.merged, parsed.problems, len(counts.suppressed), counts.not_sendable)


def _aware(moment: datetime | None, tz: ZoneInfo) -> datetime | None:
    """A file's time, in the project's timezone when the file gives no offset."""
    return localize(moment, tz) if moment is not None and moment.tzinfo is None else moment


def add(project: Project, email: str, *, first_name: str | None = None, last_name: str | None = None, tags: Iterable[str] = (), fields: dict[str, str] | None = None, source: str = "cli") -> bool:
    """Add or update one contact; True if it was new. A forgotten address is refused, not skipped quietly."""
    person = NewContact(_address(email), first_name, last_name, fields or {}, set(tags))
    with project.store.begin() as conn:
        counts = contact_store.upsert(conn, [person], now=project.now(), consent_source=source)
        if counts.suppressed:
            raise LaunchkitError(
                f"{person.email} was erased on request (`launchkit audience forget`); it cannot be added again."
            )
    return counts.created == 1


def tag(project: Project, emails: Iterable[str], tags: Iterable[str]) -> int:
    with project.store.begin() as conn:
        return contact_store.tag(conn, _known(conn, emails), list(tags), project.now())


def untag(project: Project, emails: Iterable[str], tags: Iterable[str]) -> int:
    with project.store.begin() as conn:
        return contact_store.untag(conn, _known(conn, emails), list(tags), project.now())


def unsubscribe(project: Project, email: str, *, reason: str = "unsubscribed from the command line") -> None:
    with project.store.begin() as conn:
        if not contact_store.set_status(conn, _address(email), "unsubscribed", project.now(), reason):
            raise LaunchkitError(f"no contact {email!r}; `launchkit audience list` shows who is there")


def forget(project: Project, email: str) -> ForgetResult:
    """Erase a person for good, in one transaction, and keep them from coming back (GDPR art. 17).

    Their contact, tags and emails go; events and purchases stay for the reports without the
    address. An unknown address is suppressed all the same: a request to be forgotten may come
    before the import that would have added them.
    """
    address = _address(email)
    with project.store.begin() as conn:
        already = erasure.is_suppressed(conn, address)
        found = erasure.traces(conn, address)
        erasure.forget(conn, address, project.now())
    return ForgetResult(address, found.found, already, found)


def contacts(project: Project, *, tag_name: str | None = None, status: str | None = None) -> Iterable[tuple[Contact, list[str]]]:
    """Contacts with their tags, streamed."""
    with project.store.connect() as conn:
        yield from contact_store.listing(conn, tag_name=tag_name, status=status)


def export_csv(project: Project, out: TextIO, *, tag_name: str | None = None, status: str | None = None) -> int:
    """Write contacts as CSV (formula cells escaped); returns how many."""
    # Two streamed passes (field names, then rows) keep memory flat on any audience size.
    field_names = sorted({name for person, _ in contacts(project, tag_name=tag_name, status=status) for name in person.fields})
    rows = (
        [
            person.email,
            person.first_name,
            person.last_name,
            person.status,
            ", ".join(tags),
            person.created_at.isoformat(),
            person.consent_source,
            person.consent_at.isoformat() if person.consent_at else None,
            *(person.fields.get(name) for name in field_names),
        ]
        for person, tags in contacts(project, tag_name=tag_name, status=status)
    )
    return write_csv(out, [*EXPORT_COLUMNS, *field_names], rows)


def _address(email: str) -> str:
    try:
        return normalize_email(email)
    except ValueError as exc:
        raise LaunchkitError(f"{email!r} is not a valid email address: {exc}") from None


def _known(conn: object, emails: Iterable[str]) -> list[str]:
    addresses = [_address(e) for e in emails]
    found = contact_store.ids_for(conn, addresses)  # type: ignore[arg-type]
    missing = [a for a in addresses if a not in found]
    erased = erasure.suppressed(conn, missing)  # type: ignore[arg-type]
    if erased:
        raise LaunchkitError(f"{', '.join(sorted(erased))} was erased on request (`launchkit audience forget`): there is no contact to change")
    if missing:
        raise LaunchkitError(f"no contact {', '.join(missing)}; add them first with `launchkit audience add`")
    return addresses


def count_matching(conn: Connection, launch: Launch, conditions: list[Condition]) -> int:
    """Subscribed contacts for whom every condition holds: in SQL when they are tag formulas."""
    formulas = [c.formula for c in conditions]
    if all(formulas):
        combined = formulas[0]
        for formula in formulas[1:]:
            combined = ("and", combined, formula)
        return contact_store.count(conn, combined)
    total = 0
    after: tuple[int, int] | None = None
    while people := contact_store.changed_since(conn, -1, after):
        after = (people[-1].revision, people[-1].id)
        facts: dict[int, Facts] = contact_store.facts_for(conn, people, products=launch.products)
        context = {"launch": launch.spec}
        total += sum(
            1 for p in people if p.sendable and all(c.evaluate(p, facts[p.id], context)[0] for c in conditions)
        )
    return total
