"""`launchkit report`: every number of a launch with a known history, checked by hand.

The history is made through the same paths production uses: an import, real ticks, events
stored as webhooks store them, purchases recorded and attributed, a refund.
"""

from __future__ import annotations

import csv
import json
import shutil
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

import pytest

from launchkit import audience, conversions, inbound
from launchkit.conversions import Purchase
from launchkit.project import Project
from launchkit.report import build
from launchkit.runner import tick
from launchkit.testing import RecordingProvider
from launchkit.types import Event, SendResult, SendStatus

LAUNCH = "example-launch"
PEOPLE = [f"c{n}@example.com" for n in range(10)]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def write_audience(root: Path) -> Path:
    path = root / "people.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "first_name", "tags"])
        for n, address in enumerate(PEOPLE):
            writer.writerow([address, f"C{n}", "newsletter, waitlist" if n < 6 else "newsletter"])
    return path


def store(project: Project, *events: Event, now: str) -> None:
    with project.store.begin() as conn:
        inbound.store_events(conn, list(events), source="test", launches=project.launches.values(), now=at(now))


@pytest.fixture
def history(project_dir: Path) -> tuple[Path, dict[str, RecordingProvider]]:
    """Ten contacts (six on the waitlist), three ticks, opens, clicks, a bounce, two
    unsubscribes, a failed send, four purchases (one refunded, one by a stranger)."""
    audience.import_csv(Project.open(project_dir, now="2029-12-20 10:00"), write_audience(project_dir))
    sent: dict[str, RecordingProvider] = {}
    sent["welcome"] = RecordingProvider()
    tick(Project.open(project_dir, now="2030-01-02 09:05"), provider=sent["welcome"])
    sent["behind"] = RecordingProvider()
    tick(Project.open(project_dir, now="2030-01-04 09:05"), provider=sent["behind"])
    audience.unsubscribe(Project.open(project_dir, now="2030-01-05 10:00"), "c9@example.com")

    def refuse_c7(message: Any) -> SendResult | None:
        return SendResult(message.key, SendStatus.PERMANENT, reason="mailbox full") if message.to == "c7@example.com" else None

    sent["doors"] = RecordingProvider(answer=refuse_c7)
    tick(Project.open(project_dir, now="2030-01-09 09:05"), provider=sent["doors"])

    project = Project.open(project_dir, now="2030-01-16 10:00")
    doors = {"launch": LAUNCH, "email_id": "doors-open"}
    store(
        project,
        Event("opened", "c0@example.com", at("2030-01-09 09:30"), id="o1", **doors),
        Event("opened", "c0@example.com", at("2030-01-09 11:00"), id="o2", **doors),  # the same person again
        Event("opened", "c1@example.com", at("2030-01-09 10:00"), id="o3", **doors),
        Event("opened", "c2@example.com", at("2030-01-10 08:00"), id="o4", **doors),
        Event("opened", "c3@example.com", at("2030-01-10 08:00"), id="o5", **doors),
        Event("clicked", "c0@example.com", at("2030-01-09 11:01"), id="k1", data={"url": "https://example.com/course"}, **doors),
        Event("clicked", "c1@example.com", at("2030-01-09 10:01"), id="k2", **doors),
        Event("opened", "c0@example.com", at("2030-01-02 10:00"), id="o6", launch=LAUNCH, email_id="welcome"),
        Event("opened", "c4@example.com", at("2030-01-02 10:00"), id="o7", launch=LAUNCH, email_id="welcome"),
        Event("bounced", "c8@example.com", at("2030-01-09 12:00"), id="b1", **doors),
        Event("unsubscribed", "c3@example.com", at("2030-01-10 09:00"), id="u1", **doors),
        now="2030-01-10 09:00",
    )
    conversions.record(project, [
        Purchase("c0@example.com", "course", Decimal(99), "USD", at("2030-01-09 12:00"), "ord-0"),
        Purchase("c1@example.com", "course", Decimal(99), "USD", at("2030-01-13 22:00"), "ord-1", refunded=True),
        Purchase("c2@example.com", "course", Decimal(99), "USD", at("2030-01-13 23:00"), "ord-2"),
        Purchase("stranger@example.org", "course", Decimal(99), "USD", at("2030-01-13 15:00"), "ord-3"),
        Purchase("c5@example.com", "another-product", Decimal(500), "USD", at("2030-01-10 12:00"), "ord-4"),
    ], source="test")
    return project_dir, sent


def test_every_headline_and_per_email_number_matches_the_history(history: tuple[Path, dict[str, RecordingProvider]]) -> None:
    root, sent = history
    data = build(Project.open(root, now="2030-01-16 10:00"), LAUNCH).to_dict()
    assert data["schema_version"] == 1
    launch = data["launch"]
    assert launch["status"] == "finished"
    h = launch["headline"]
    # Newsletter contacts subscribed when the cart opened: all but c9, who left on the 5th.
    # c8 (bounced) and c3 (unsubscribed) left after it, so they count.
    assert h["audience"] == 9
    assert h["engaged"] == 5  # c0, c1, c2, c3 opened doors-open; c4 opened welcome
    assert h["buyers"] == 3  # c0, c2 and the stranger; c1 was refunded; c5 bought another product
    assert h["conversion"] == pytest.approx(3 / 9, abs=1e-6)
    assert h["conversion_engaged"] == pytest.approx(3 / 5, abs=1e-6)
    assert h["verdict"] == "above" and h["benchmark"] == [0.02, 0.04] and h["expected_buyers"] == [0, 0]
    assert Decimal(h["revenue"]) == Decimal(297)
    assert Decimal(h["revenue_per_subscriber"]) == Decimal("33.00")
    assert h["refunds"] == 1 and Decimal(h["refunded"]) == Decimal(99)

    emails = {e["id"]: e for p in launch["phases"] for e in p["emails"]}
    welcome, behind, doors = emails["welcome"], emails["behind-the-scenes"], emails["doors-open"]
    w = welcome["stats"]
    assert (w["sent"], w["opened"], w["clicked"], w["sales"]) == (6, 2, 0, 0)
    assert behind["stats"]["sent"] == 6
    d = doors["stats"]
    assert (d["sent"], d["opened"], d["clicked"], d["bounced"], d["unsubscribed"], d["complaints"]) == (8, 4, 2, 1, 1, 0)
    # c0 clicked doors-open before buying; c2 only received it: both credited to doors-open.
    assert (d["sales"], Decimal(d["revenue"])) == (2, Decimal(198))
    assert d["delivered"] is None  # no delivery events: no provider webhook in this project
    assert doors["statuses"] == {"sent": 8, "failed": 1, "skipped": 1}  # c7's mailbox was full; c9 had left

    # A/B: the variants split what the email did, as the provider saw each message.
    variant_of = {m.to: m.variant for m in sent["doors"].sent}
    variants = {v["index"]: v["stats"] for v in doors["variants"]}
    for index, stats in variants.items():
        people = {to for to, v in variant_of.items() if v == index and to != "c7@example.com"}
        assert stats["sent"] == len(people)
        assert stats["opened"] == len(people & {"c0@example.com", "c1@example.com", "c2@example.com", "c3@example.com"})
        assert stats["clicked"] == len(people & {"c0@example.com", "c1@example.com"})
        assert stats["sales"] == len(people & {"c0@example.com", "c2@example.com"})
    assert sum(v["sent"] for v in variants.values()) == 8

    phases = {p["name"]: p["stats"] for p in launch["phases"]}
    assert phases["waitlist"]["sent"] == 12 and phases["open_cart"]["opened"] == 4

    assert launch["sales_by_day"] == [
        {"day": "2030-01-09", "count": 1, "total": None, "amount": "99.00"},
        {"day": "2030-01-10", "count": 0, "total": None, "amount": "0.00"},
        {"day": "2030-01-11", "count": 0, "total": None, "amount": "0.00"},
        {"day": "2030-01-12", "count": 0, "total": None, "amount": "0.00"},
        {"day": "2030-01-13", "count": 2, "total": None, "amount": "198.00"},
    ]
    growth = launch["waitlist_growth"]  # every day from the import to the cart's opening
    assert growth[0] == {"day": "2029-12-20", "count": 6, "total": 6, "amount": None}
    assert (len(growth), growth[-1]["day"], growth[-1]["total"]) == (21, "2030-01-09", 6)
    assert launch["problems"] == [{"email": "doors-open", "status": "failed", "reason": "mailbox full", "count": 1}]
    assert [l["id"] for l in data["launches"]] == [LAUNCH]


def test_the_cli_writes_each_format(history: tuple[Path, Any], launchkit: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAUNCHKIT_NOW", "2030-01-16 10:00")
    table = launchkit("report", LAUNCH)
    assert table.exit_code == 0, table.output
    assert "33.3 %" in table.output and "above the 2–4 % benchmark" in table.output and "doors-open" in table.output
    data = json.loads(launchkit("report", LAUNCH, "--format", "json").output)
    assert data["launch"]["headline"]["buyers"] == 3
    out = tmp_path / "report.csv"
    assert launchkit("report", LAUNCH, "-o", str(out)).exit_code == 0
    rows = list(csv.DictReader(out.open()))
    doors = next(r for r in rows if r["email"] == "doors-open" and r["variant"] == "")
    assert (doors["sent"], doors["opened"], doors["sales"], doors["revenue"]) == ("8", "4", "2", "198.00")
    welcome = next(r for r in rows if r["email"] == "welcome")
    assert (welcome["sales"], welcome["revenue"]) == ("0", "0.00")  # money always has its two decimals
    html = tmp_path / "report.html"
    assert launchkit("report", LAUNCH, "-o", str(html)).exit_code == 0
    assert html.read_text().startswith("<!DOCTYPE html>")
    every = launchkit("report")
    assert every.exit_code == 0 and "Every launch" in every.output
    unknown = launchkit("report", LAUNCH, "--format", "pdf")
    assert unknown.exit_code == 1 and "no report format named 'pdf'" in unknown.output and "html" in unknown.output


def test_csv_cells_that_look_like_formulas_are_escaped(project_dir: Path, launchkit: Callable[..., Any]) -> None:
    launch_file = project_dir / "sequences" / "example-launch.toml"
    launch_file.write_text(launch_file.read_text().replace('subject = ["Doors are open", ', 'subject = ["=HYPERLINK(\\"http://evil\\")", '))
    output = launchkit("report", LAUNCH, "--format", "csv").output
    assert "'=HYPERLINK" in output and ",=HYPERLINK" not in output


# --- Reports that must still make sense ---------------------------------------------------


def test_a_launch_with_no_audience_says_so_without_dividing_by_zero(project_dir: Path, launchkit: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAUNCHKIT_NOW", "2030-01-16 10:00")
    data = json.loads(launchkit("report", LAUNCH, "--format", "json").output)
    h = data["launch"]["headline"]
    assert (h["audience"], h["buyers"], h["conversion"], h["verdict"], h["revenue_per_subscriber"]) == (0, 0, None, None, None)
    table = launchkit("report", LAUNCH)
    assert table.exit_code == 0 and "No audience yet" in table.output
    assert launchkit("report", LAUNCH, "--format", "html").exit_code == 0


def test_a_launch_with_no_sales_is_below_its_band(project_dir: Path, launchkit: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    audience.import_csv(Project.open(project_dir, now="2029-12-20 10:00"), write_audience(project_dir))
    monkeypatch.setenv("LAUNCHKIT_NOW", "2030-01-16 10:00")
    h = json.loads(launchkit("report", LAUNCH, "--format", "json").output)["launch"]["headline"]
    assert (h["audience"], h["buyers"], h["conversion"], h["verdict"], h["revenue"]) == (10, 0, 0.0, "below", "0.00")
    assert "0.0 % is below" in launchkit("report", LAUNCH).output


def test_a_launch_in_progress_says_so_plainly(history: tuple[Path, Any], launchkit: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAUNCHKIT_NOW", "2030-01-11 10:00")
    data = json.loads(launchkit("report", LAUNCH, "--format", "json").output)["launch"]
    assert data["status"] == "in progress"
    assert [d["day"] for d in data["sales_by_day"]] == ["2030-01-09", "2030-01-10", "2030-01-11", "2030-01-13"]
    assert "So far (in progress)" in launchkit("report", LAUNCH).output
    monkeypatch.setenv("LAUNCHKIT_NOW", "2029-12-25 10:00")
    assert "Not started yet" in launchkit("report", LAUNCH).output
    # No verdict before the start: no sale is late yet.
    assert json.loads(launchkit("report", LAUNCH, "--format", "json").output)["launch"]["headline"]["verdict"] is None
    assert "below" not in launchkit("report").output


def test_plan_forecasts_from_the_band_and_from_the_creators_own_finished_launches(history: tuple[Path, Any], launchkit: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    root, _ = history
    sequences = root / "sequences"
    (sequences / "autumn.toml").write_text((sequences / "example-launch.toml").read_text().replace("2030-01-", "2030-09-"))
    shutil.copytree(sequences / "example-launch", sequences / "autumn")
    monkeypatch.setenv("LAUNCHKIT_NOW", "2030-01-16 10:00")
    output = launchkit("plan", "autumn").output
    # 7 newsletter contacts still subscribed (c3 left, c8 bounced, c9 left): 2–4 % of 7 is 0.
    assert "7 contacts in this launch's audience" in output
    assert "would sell less than one: the audience is what to grow first." in output
    # The example launch converted 3 of its 9: at 33.3 %, 7 contacts buy 2, for 2 × 99.
    assert "Your own 1 finished launch converted 33.3% of their audience" in output
    assert "would sell 2 (revenue 198 USD)" in output
