"""`launchkit audience forget`: erasure on request that keeps people from coming back.

Each test works on a real project from `launchkit init` and its SQLite database (the example
launch dated from 2030-01-01: waitlist 01-02 09:00, open cart 01-09 09:00 → 01-13 23:59).
"""

from __future__ import annotations

import csv
import hashlib
import io
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select

from launchkit import audience
from launchkit.cli import cli
from launchkit.project import Project
from launchkit.store import erasure, history
from launchkit.store.tables import (
    contact_tags,
    contacts,
    conversions,
    enrolments,
    events,
    outbox,
    suppressions,
)

Launchkit = Callable[..., Result]

JOINED = "2029-12-20 10:00"  # the example audience joins well before the launch
WAITLIST_OPENS = "2030-01-02 09:05"  # welcome goes to the waitlist; the rest is planned ahead
DOORS_OPEN = "2030-01-09 09:05"  # doors-open goes to every newsletter contact
ADA_HASH = hashlib.sha256(b"ada@example.com").hexdigest()


def ok(result: Result) -> Result:
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result


def refused(result: Result) -> Result:
    """Exit 1 with a message for people, no traceback."""
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    return result


def at(monkeypatch: pytest.MonkeyPatch, moment: str) -> None:
    monkeypatch.setenv("LAUNCHKIT_NOW", moment)


def listed(launchkit: Launchkit, *options: str) -> set[str]:
    output = ok(launchkit("audience", "list", "--limit", "0", *options)).output
    return {word for word in output.replace("│", " ").split() if "@" in word}


def rows(project_dir: Path, query: Any) -> list[Any]:
    project = Project.open(project_dir)
    try:
        with project.store.connect() as conn:
            return list(conn.execute(query).all())
    finally:
        project.store.close()


def scalar(project_dir: Path, query: Any) -> Any:
    return rows(project_dir, query)[0][0]


def database_dump(project_dir: Path) -> str:
    """Every row of every table, as SQL text: what a backup of the database would hold."""
    with sqlite3.connect(project_dir / "launchkit.db") as db:
        return "\n".join(db.iterdump())


def answering(project_dir: Path, answer: str, *args: str) -> Result:
    """Run a command that asks a question, typing ``answer`` (the ``launchkit`` fixture types nothing)."""
    return CliRunner().invoke(cli, ["--project", str(project_dir), *args], input=answer)


def recipients(sent_mail: Callable[[], list[Any]], skip: int = 0) -> list[str]:
    return [m["To"].addresses[0].addr_spec for m in sent_mail()[skip:]]


@pytest.fixture
def launched(project_dir: Path, launchkit: Launchkit, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The example audience imported, the waitlist opened (welcome sent, the rest planned),
    an open recorded for Ada and one purchase each by Ada and Grace."""
    at(monkeypatch, JOINED)
    ok(launchkit("audience", "import", str(project_dir / "audience.csv")))
    at(monkeypatch, WAITLIST_OPENS)
    ok(launchkit("run"))
    project = Project.open(project_dir)
    try:
        with project.store.begin() as conn:
            history.record_event(
                conn, kind="opened", email="ada@example.com", occurred_at=project.now(), source="test",
                external_id="open-1", launch_id="example-launch", email_id="welcome",
                data={"ip": "203.0.113.7", "user_agent": "Ada's phone", "email": "ada@example.com"},
            )
    finally:
        project.store.close()
    ok(launchkit("conversions", "add", "ada@example.com", "--product", "course", "--amount", "99", "--id", "ord_ada"))
    ok(launchkit("conversions", "add", "grace@example.com", "--product", "course", "--amount", "149", "--id", "ord_grace"))
    return project_dir


def ada_id(project_dir: Path) -> int:
    return int(scalar(project_dir, select(contacts.c.id).where(contacts.c.email == "ada@example.com")))


# --- what is erased ------------------------------------------------------------------------


def test_forget_erases_the_contact_tags_and_outbox_and_keeps_reports_without_the_address(launched: Path, launchkit: Launchkit) -> None:
    cid = ada_id(launched)
    assert scalar(launched, select(func.count()).select_from(outbox).where(outbox.c.contact_id == cid)) > 1
    revenue = scalar(launched, select(func.sum(conversions.c.amount)))
    opens = scalar(launched, select(func.count()).select_from(events).where(events.c.kind == "opened"))

    result = ok(launchkit("audience", "forget", " Ada@Example.com ", "--yes"))

    assert "Forgot ada@example.com" in result.output
    assert "2 tags" in result.output and "1 purchase kept" in result.output
    assert "ada@example.com" not in listed(launchkit)
    for table in (contact_tags, enrolments, outbox):
        assert scalar(launched, select(func.count()).select_from(table).where(table.c.contact_id == cid)) == 0
    # The open still counts for the launch, but belongs to no one and says nothing about them.
    (opened,) = rows(launched, select(events.c.contact_id, events.c.data, events.c.email_id).where(events.c.external_id == "open-1"))
    assert (opened.contact_id, opened.data, opened.email_id) == (None, {}, "welcome")
    assert scalar(launched, select(func.count()).select_from(events).where(events.c.kind == "opened")) == opens
    # Revenue adds up; the purchase is under a pseudonym.
    assert scalar(launched, select(func.sum(conversions.c.amount))) == revenue
    (sale,) = rows(launched, select(conversions.c.email, conversions.c.amount).where(conversions.c.external_id == "ord_ada"))
    assert (sale.email, sale.amount) == ("forgotten:" + ADA_HASH[:16], Decimal(99))
    # Only the hash is kept; nothing in the database names her any more.
    assert rows(launched, select(suppressions.c.email_hash)) == [(ADA_HASH,)]
    assert erasure.email_hash("ada@example.com") == ADA_HASH
    dump = database_dump(launched)
    assert "ada@example.com" not in dump and "Lovelace" not in dump and "203.0.113.7" not in dump
    # The others are untouched.
    assert listed(launchkit) == {"grace@example.com", "alan@example.com", "katherine@example.com", "linus@example.org"}
    assert scalar(launched, select(conversions.c.email).where(conversions.c.external_id == "ord_grace")) == "grace@example.com"


def test_a_tick_after_forget_sends_them_nothing(launched: Path, launchkit: Launchkit, sent_mail, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "ada@example.com" in recipients(sent_mail)  # the welcome went out before
    before = len(sent_mail())

    ok(launchkit("audience", "forget", "ada@example.com", "--yes"))
    at(monkeypatch, DOORS_OPEN)
    ok(launchkit("run"))

    after = recipients(sent_mail, skip=before)
    assert sorted(after) == ["alan@example.com", "grace@example.com", "katherine@example.com", "linus@example.org"]


def test_forgetting_twice_is_harmless(launched: Path, launchkit: Launchkit) -> None:
    ok(launchkit("audience", "forget", "ada@example.com", "--yes"))

    again = ok(launchkit("audience", "forget", "ADA@example.com", "--yes"))

    assert "already forgotten" in again.output
    assert rows(launched, select(suppressions.c.email_hash)) == [(ADA_HASH,)]
    assert scalar(launched, select(conversions.c.email).where(conversions.c.external_id == "ord_ada")) == "forgotten:" + ADA_HASH[:16]


def test_an_unknown_address_is_recorded_so_it_can_never_be_imported(project_dir: Path, launchkit: Launchkit) -> None:
    result = ok(launchkit("audience", "forget", "ghost@example.com", "--yes"))

    assert "No contact or purchase for ghost@example.com" in result.output
    assert "recorded" in result.output
    assert rows(project_dir, select(suppressions.c.email_hash)) == [(hashlib.sha256(b"ghost@example.com").hexdigest(),)]
    refused(launchkit("audience", "add", "ghost@example.com"))
    tagging = refused(launchkit("audience", "tag", "vip", "Ghost@example.com"))
    assert "ghost@example.com was erased on request" in tagging.output and "add them first" not in tagging.output


def test_a_buyer_who_never_joined_has_their_purchases_pseudonymised(project_dir: Path, launchkit: Launchkit) -> None:
    ok(launchkit("conversions", "add", "stranger@example.com", "--product", "course", "--amount", "50", "--id", "ord_s"))

    result = ok(launchkit("audience", "forget", "stranger@example.com", "--yes"))

    assert "1 purchase kept" in result.output
    assert "stranger@example.com" not in database_dump(project_dir)


def test_an_invalid_address_is_refused_without_a_traceback(launchkit: Launchkit) -> None:
    result = refused(launchkit("audience", "forget", "not-an-address", "--yes"))

    assert "not a valid email address" in result.output


# --- confirmation --------------------------------------------------------------------------


def test_forget_asks_first_and_a_no_changes_nothing(launched: Path, launchkit: Launchkit) -> None:
    result = answering(launched, "n\n", "audience", "forget", "ada@example.com")

    assert result.exit_code == 1
    assert "Erase ada@example.com for good?" in result.output
    assert "ada@example.com" in listed(launchkit)
    assert rows(launched, select(suppressions.c.email_hash)) == []


def test_forget_goes_ahead_when_the_answer_is_yes(launched: Path, launchkit: Launchkit) -> None:
    result = ok(answering(launched, "y\n", "audience", "forget", "ada@example.com"))

    assert "Forgot ada@example.com" in result.output
    assert "ada@example.com" not in listed(launchkit)


def test_forget_help_has_an_example(launchkit: Launchkit) -> None:
    result = ok(launchkit("audience", "forget", "--help"))

    assert "launchkit audience forget camille@example.com --yes" in result.output
    assert "--yes" in result.output


# --- they do not come back -----------------------------------------------------------------


def test_a_reimport_skips_a_forgotten_address_in_any_case_or_spacing(project_dir: Path, launchkit: Launchkit) -> None:
    ok(launchkit("audience", "import", str(project_dir / "audience.csv")))
    ok(launchkit("audience", "forget", "ada@example.com", "--yes"))
    export = project_dir / "new-export.csv"
    export.write_text("email,first_name\n  ADA@Example.COM ,Ada\nzoe@example.org,Zoé\n", encoding="utf-8")

    result = ok(launchkit("audience", "import", str(export)))

    assert "1 new" in result.output
    assert "1 address skipped: erased on request (audience forget)" in result.output
    assert "ada@example.com" not in listed(launchkit)
    assert "zoe@example.org" in listed(launchkit)
    again = ok(launchkit("audience", "import", str(project_dir / "audience.csv")))
    assert "0 new" in again.output and "4 updated" in again.output and "1 address skipped" in again.output


def test_an_import_without_forgotten_addresses_says_nothing_about_them(project_dir: Path, launchkit: Launchkit) -> None:
    result = ok(launchkit("audience", "import", str(project_dir / "audience.csv")))

    assert "erased on request" not in result.output


def test_audience_add_refuses_a_forgotten_address(launchkit: Launchkit) -> None:
    ok(launchkit("audience", "add", "camille@example.com", "--tag", "newsletter"))
    ok(launchkit("audience", "forget", "camille@example.com", "--yes"))

    result = refused(launchkit("audience", "add", " Camille@Example.com", "--first-name", "Camille"))

    assert "camille@example.com was erased on request" in result.output
    assert "audience forget" in result.output
    assert "camille@example.com" not in listed(launchkit)


def test_a_purchase_by_a_forgotten_address_is_still_recorded(launched: Path, launchkit: Launchkit) -> None:
    ok(launchkit("audience", "forget", "ada@example.com", "--yes"))

    result = ok(launchkit("conversions", "add", "ada@example.com", "--product", "course", "--amount", "99", "--id", "ord_ada_2"))

    assert "Recorded" in result.output
    assert scalar(launched, select(conversions.c.email).where(conversions.c.external_id == "ord_ada_2")) == "ada@example.com"
    assert "ada@example.com" not in listed(launchkit)  # a purchase is not a way back into the audience


# --- the library ---------------------------------------------------------------------------


def test_library_forget_reports_what_it_erased(launched: Path) -> None:
    project = Project.open(launched)
    try:
        result = audience.forget(project, "Ada@Example.com")
        again = audience.forget(project, "ada@example.com")
    finally:
        project.store.close()

    assert (result.email, result.found, result.already) == ("ada@example.com", True, False)
    assert result.traces.contact and result.traces.tags == 2 and result.traces.events >= 1 and result.traces.conversions == 1
    assert result.traces.outbox > 1
    assert (again.found, again.already) == (False, True)


def test_email_hash_normalises_the_address() -> None:
    assert erasure.email_hash("  Ada@Example.COM\n") == erasure.email_hash("ada@example.com") == ADA_HASH


def test_suppressed_answers_in_batches_for_large_lists(project_dir: Path) -> None:
    addresses = [f"person{i}@example.com" for i in range(1, 1201)]
    forgotten = {"person1@example.com", "person777@example.com", "person1200@example.com"}
    project = Project.open(project_dir, now="2030-01-01 12:00")
    try:
        with project.store.begin() as conn:
            for address in forgotten:
                assert erasure.forget(conn, address, project.now()) is False  # never known: nothing found
        with project.store.connect() as conn:
            assert erasure.suppressed(conn, addresses) == forgotten
            assert erasure.suppressed(conn, ["PERSON777@example.com", "someone@example.com"]) == {"PERSON777@example.com"}
            assert erasure.is_suppressed(conn, " person1@EXAMPLE.com")
            assert not erasure.is_suppressed(conn, "person2@example.com")
    finally:
        project.store.close()


# --- export --------------------------------------------------------------------------------


def test_export_has_the_consent_source_and_time(project_dir: Path, launchkit: Launchkit, monkeypatch: pytest.MonkeyPatch) -> None:
    at(monkeypatch, JOINED)
    ok(launchkit("audience", "import", str(project_dir / "audience.csv")))

    output = ok(launchkit("audience", "export")).stdout
    ada = next(row for row in csv.DictReader(io.StringIO(output)) if row["email"] == "ada@example.com")

    assert ada["consent_source"] == "import:audience.csv"
    assert datetime.fromisoformat(ada["consent_at"]) == datetime(2029, 12, 20, 10, 0, tzinfo=UTC)
    assert (ada["status"], ada["city"]) == ("subscribed", "London")
    assert set(ada["tags"].split(", ")) == {"newsletter", "waitlist"}


def test_a_contact_erased_while_their_email_is_being_sent_is_not_sent_it(
    launched: Path, monkeypatch: pytest.MonkeyPatch, launchkit_plugin: Any
) -> None:
    """Rendered, then erased before the chunk is marked sending: the message never goes."""
    from launchkit import hookimpl
    from launchkit.runner import tick
    from launchkit.testing import RecordingProvider

    rendered: list[str] = []

    @launchkit_plugin
    class NoteRendering:
        @staticmethod
        @hookimpl
        def before_send(message: Any) -> None:
            rendered.append(message.to)

    at(monkeypatch, DOORS_OPEN)
    erased: list[bool] = []

    def forget_after_rendering() -> bool:
        # The tick asks this between rendering a batch and handing it over, outside any transaction.
        if "ada@example.com" in rendered and not erased:
            audience.forget(Project.open(launched), "ada@example.com")
            erased.append(True)
        return False

    provider = RecordingProvider()
    report = tick(Project.open(launched), provider=provider, stop=forget_after_rendering)
    assert erased and provider.sent
    assert "ada@example.com" not in {m.to for m in provider.sent}
    assert report.sent == len(provider.sent)
