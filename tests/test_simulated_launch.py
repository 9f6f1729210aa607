"""A whole launch replayed in simulated time: ticks every four hours over three weeks.

The expected emails of every contact are worked out here from the launch's rules, then
compared with the messages the maildir provider actually wrote. On SQLite and on PostgreSQL
(tests/conftest.py).
"""

from __future__ import annotations

import email
import re
from collections import Counter
from datetime import datetime, timedelta, timezone
from email import policy
from pathlib import Path
from textwrap import dedent
from zoneinfo import ZoneInfo

import pytest

from launchkit import audience, conversions
from launchkit.project import Project
from launchkit.runner import tick
from launchkit.store import outbox
from tests.backends import Database

pytestmark = pytest.mark.every_backend

PARIS = ZoneInfo("Europe/Paris")
UTC = timezone.utc

CONFIG = """
[project]
name = "Simulated"
timezone = "Europe/Paris"

[sender]
from = "Élise Martin <elise@example.com>"
postal_address = "12 rue des Lilas, 69003 Lyon"

[delivery]
provider = "maildir"

[tracking]
base_url = "https://go.example.com"
"""

# The launch crosses the change to summer time (2027-03-28) on purpose.
LIVE = """
[launch]
name = "Spring"
product = "academy"
price = 297
currency = "EUR"
audience = "tagged('newsletter')"

[[phase]]
name = "waitlist"
starts = "2027-03-20 09:00"
audience = "tagged('waitlist')"

  [[phase.email]]
  id = "welcome"
  when = "join"
  subject = "Bienvenue"
  body = "note.md"

  [[phase.email]]
  id = "teaser"
  when = "start + 3d at 09:00"
  subject = "Teaser"
  body = "note.md"

[[phase]]
name = "open_cart"
starts = "2027-03-29 09:00"
ends = "2027-04-02 23:00"

  [[phase.email]]
  id = "doors-open"
  when = "start"
  subject = ["Ouvert", "C'est ouvert"]
  body = "note.md"

  [[phase.email]]
  id = "mid"
  when = "start + 2d at 10:00"
  unless = "converted"
  subject = "Mi-parcours"
  body = "note.md"

  [[phase.email]]
  id = "last-call"
  when = "end - 3h"
  late_by = "1h"
  unless = "converted"
  subject = "Dernier appel"
  body = "note.md"

[[phase]]
name = "close"
starts = "2027-04-03 08:00"

  [[phase.email]]
  id = "buyers"
  when = "start"
  only = "converted"
  subject = "Merci"
  body = "note.md"

  [[phase.email]]
  id = "next-time"
  when = "start + 1d at 10:00"
  unless = "converted"
  subject = "La prochaine fois"
  body = "note.md"
"""

EVERGREEN = """
[launch]
name = "Mini-cours"
product = "mini"
audience = "tagged('evergreen')"
mode = "evergreen"

[[phase]]
name = "cart"
starts = "join + 2d at 09:00"
ends = "join + 4d at 23:00"

  [[phase.email]]
  id = "open"
  when = "start"
  subject = "Ouvert pour toi"
  body = "deadline.md"

  [[phase.email]]
  id = "deadline"
  when = "end - 6h"
  subject = "Ferme ce soir"
  body = "deadline.md"
"""


def write_project(root: Path) -> None:
    (root / "sequences" / "spring").mkdir(parents=True)
    (root / "sequences" / "mini").mkdir(parents=True)
    (root / "launchkit.toml").write_text(CONFIG, encoding="utf-8")
    (root / "sequences" / "spring.toml").write_text(LIVE, encoding="utf-8")
    (root / "sequences" / "mini.toml").write_text(EVERGREEN, encoding="utf-8")
    (root / "sequences" / "spring" / "note.md").write_text("Bonjour {{ contact.first_name }} !\n", encoding="utf-8")
    (root / "sequences" / "mini" / "deadline.md").write_text(
        dedent("""\
            Ton panier ferme le {{ phase.ends | datetime("%Y-%m-%d %H:%M") }}.
            """),
        encoding="utf-8",
    )


def at(text: str) -> str:
    return text  # moments are written in the project's timezone (Europe/Paris)


def paris(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=PARIS)


def delivered(root: Path) -> list[tuple[str, str, str, str]]:
    """(recipient, launch, email id, text) of every message written to the maildir."""
    found = []
    for path in sorted((root / "mail" / "new").glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        launch, email_id = re.match(r"<([^.]+)\.([^.]+)\.", message["Message-ID"]).groups()
        text = message.get_body(("plain",)).get_content()
        found.append((str(message["To"].addresses[0].addr_spec), launch, email_id, text))
    return found


def test_a_whole_launch_sends_each_contact_exactly_what_the_rules_say(tmp_path: Path, database: Database) -> None:
    root = tmp_path / "project"
    write_project(root)
    database.point(root)

    def project(moment: str) -> Project:
        return Project.open(root, now=moment)

    # The audience before the launch: 100 on the waitlist, 50 newsletter only.
    waitlist = [f"w{i}@example.com" for i in range(100)]
    newsletter_only = [f"n{i}@example.com" for i in range(50)]
    for address in waitlist:
        audience.add(project("2027-03-01 12:00"), address, first_name="W", tags=["newsletter", "waitlist"])
    for address in newsletter_only:
        audience.add(project("2027-03-01 12:00"), address, tags=["newsletter"])
    # Evergreen contacts join every twelve hours, each with their own cart window.
    evergreen = {}
    for i in range(30):
        joined = paris("2027-03-19 10:00") + timedelta(hours=12 * i)
        address = f"e{i}@example.com"
        audience.add(project(joined.strftime("%Y-%m-%d %H:%M")), address, tags=["evergreen"])
        evergreen[address] = joined

    buyers = set(waitlist[:20])
    unsubscribed = set(waitlist[20:30])
    late_waitlist = [f"late{i}@example.com" for i in range(20)]
    mid_cart = [f"mid{i}@example.com" for i in range(15)]
    events = {
        # After the welcome (2027-03-20 09:00), before the teaser.
        paris("2027-03-21 12:00"): lambda p: [audience.unsubscribe(p, a) for a in unsubscribed],
        # After the teaser's moment (2027-03-23 09:00): they must not get it.
        paris("2027-03-25 12:00"): lambda p: [audience.add(p, a, tags=["newsletter", "waitlist"]) for a in late_waitlist],
        # Mid-cart, after doors-open and before "mid".
        paris("2027-03-30 15:00"): lambda p: conversions.record(
            p, [conversions.Purchase(a, "academy", 297, "EUR") for a in buyers], source="test"
        ),
        # After doors-open and after "mid": neither may reach them.
        paris("2027-03-31 12:00"): lambda p: [audience.add(p, a, tags=["newsletter"]) for a in mid_cart],
    }

    # A tick every four hours (on the UTC clock: 00, 04, 08… UTC), for three weeks. After the
    # change to summer time, last-call (20:00) is followed by a tick at 22:00, two hours
    # late with late_by = "1h": it must be recorded as missed and never sent.
    moment = datetime(2027, 3, 19, 0, 0, tzinfo=UTC)
    end = datetime(2027, 4, 9, 0, 0, tzinfo=UTC)
    pending = sorted(events.items())
    while moment <= end:
        while pending and pending[0][0] <= moment:
            when, action = pending.pop(0)
            action(project(when.astimezone(PARIS).strftime("%Y-%m-%d %H:%M")))
        report = tick(project(moment.isoformat()))
        assert not report.failed and not report.in_doubt
        moment += timedelta(hours=4)

    messages = delivered(root)
    pairs = Counter((to, launch, email_id) for to, launch, email_id, _ in messages)
    assert max(pairs.values()) == 1, "someone got the same email twice"

    def got(address: str) -> set[str]:
        return {e for (to, launch, e) in pairs if to == address and launch == "spring"}

    regular = [a for a in waitlist if a not in buyers | unsubscribed]
    for address in regular:
        assert got(address) == {"welcome", "teaser", "doors-open", "mid", "next-time"}, address
    for address in buyers:
        # Bought mid-cart: no "unless converted" email after that, the buyers' email instead.
        assert got(address) == {"welcome", "teaser", "doors-open", "buyers"}, address
    for address in unsubscribed:
        assert got(address) == {"welcome"}, address
    for address in newsletter_only:
        assert got(address) == {"doors-open", "mid", "next-time"}, address
    for address in late_waitlist:
        # Joined the waitlist after the teaser's moment: no burst of past emails.
        assert got(address) == {"welcome", "doors-open", "mid", "next-time"}, address
    for address in mid_cart:
        assert got(address) == {"next-time"}, address

    # last-call: nobody got it; everyone it was meant for is recorded as missed.
    assert not any(e == "last-call" for (_, _, e) in pairs)
    with project("2027-04-09 00:00").store.connect() as conn:
        counts = outbox.counts(conn, "spring")
    eligible_for_last_call = len(regular) + len(newsletter_only) + len(late_waitlist) + len(mid_cart)
    assert counts[("spring", "last-call", "missed")] == eligible_for_last_call
    assert counts[("spring", "last-call", "skipped")] == len(buyers) + len(unsubscribed)

    # Evergreen: each contact got both emails, each with their own deadline.
    for address, joined in evergreen.items():
        texts = {e: text for to, launch, e, text in messages if to == address and launch == "mini"}
        assert set(texts) == {"open", "deadline"}, address
        own_end = (joined + timedelta(days=4)).replace(hour=23, minute=0)
        assert f"Ton panier ferme le {own_end:%Y-%m-%d %H:%M}" in texts["deadline"], address
    assert len({m[3] for m in messages if m[1] == "mini" and m[2] == "deadline"}) == 30


def test_a_late_tick_within_late_by_still_sends_last_call(tmp_path: Path, database: Database) -> None:
    root = tmp_path / "project"
    write_project(root)
    database.point(root)
    audience.add(Project.open(root, now="2027-03-01 12:00"), "a@example.com", tags=["newsletter"])
    tick(Project.open(root, now="2027-04-02 19:00"))
    report = tick(Project.open(root, now="2027-04-02 20:40"))  # 40 minutes late, late_by = 1h
    assert report.sent == 1
    assert [e for _, _, e, _ in delivered(root) if e == "last-call"] == ["last-call"]


def test_an_email_before_the_phase_start_reaches_those_already_there(tmp_path: Path, database: Database) -> None:
    root = tmp_path / "project"
    write_project(root)
    database.point(root)
    launch_file = root / "sequences" / "spring.toml"
    launch_file.write_text(
        launch_file.read_text().replace(
            '  [[phase.email]]\n  id = "doors-open"',
            '  [[phase.email]]\n  id = "tomorrow"\n  when = "start - 1d"\n  subject = "Demain"\n  body = "note.md"\n\n'
            '  [[phase.email]]\n  id = "doors-open"',
        ),
        encoding="utf-8",
    )
    audience.add(Project.open(root, now="2027-03-01 12:00"), "early@example.com", tags=["newsletter"])
    audience.add(Project.open(root, now="2027-03-28 12:00"), "late@example.com", tags=["newsletter"])
    tick(Project.open(root, now="2027-03-28 09:30"))  # the eve of doors-open (09:00): the early one only
    tick(Project.open(root, now="2027-03-29 09:30"))
    got = sorted((to, e) for to, _, e, _ in delivered(root) if e in ("tomorrow", "doors-open"))
    assert got == [("early@example.com", "doors-open"), ("early@example.com", "tomorrow"), ("late@example.com", "doors-open")]
