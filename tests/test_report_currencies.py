"""Sales in another currency than the launch's: counted among the buyers, kept out of its money figures."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from launchkit import conversions
from launchkit.cli import cli
from launchkit.conversions import Purchase
from launchkit.project import Project
from launchkit.report import build
from tests.backends import EXAMPLE_LAUNCH_DAY, Database

pytestmark = pytest.mark.every_backend

LAUNCH = "example-launch"  # launchkit init's: product "course", in USD, its cart open on days 8 to 12 (UTC)


def day(n: int, hour: str) -> str:
    return f"{EXAMPLE_LAUNCH_DAY + timedelta(days=n)} {hour}"


def at(n: int, hour: str) -> datetime:
    return datetime.fromisoformat(day(n, hour)).replace(tzinfo=timezone.utc)


def test_a_sale_in_another_currency_is_a_buyer_but_not_revenue(database: Database, tmp_path: Path) -> None:
    root = database.project(tmp_path / "p")
    conversions.record(Project.open(root, now=day(13, "10:00")), [
        Purchase("ada@example.com", "course", Decimal(99), "USD", at(9, "10:00"), "o1"),
        Purchase("grace@example.com", "course", Decimal(90), "eur", at(9, "11:00"), "o2"),  # stored as EUR
        Purchase("alan@example.com", "course", Decimal("10.50"), "EUR", at(9, "12:00"), "o3", refunded=True),
        Purchase("linus@example.org", "course", Decimal(40), None, at(10, "09:00"), "o4"),  # typed by hand
    ], source="test")
    project = Project.open(root, now=day(20, "10:00"))
    launch = build(project, LAUNCH).to_dict()["launch"]
    h = launch["headline"]
    assert h["buyers"] == 3  # Ada, Grace (EUR) and Linus (no currency: the launch's); Alan was refunded
    assert (h["revenue"], h["refunds"], h["refunded"]) == ("139.00", 1, "0.00")  # 99 + 40 USD; Alan's EUR refund is not USD
    assert h["other_currencies"] == {"EUR": "90.00"}
    sales = {d["day"]: (d["count"], d["amount"]) for d in launch["sales_by_day"]}
    assert sales[str(EXAMPLE_LAUNCH_DAY + timedelta(days=9))] == (2, "99.00")
    assert sales[str(EXAMPLE_LAUNCH_DAY + timedelta(days=10))] == (1, "40.00")

    table = CliRunner().invoke(cli, ["--project", str(root), "report", LAUNCH], env={"LAUNCHKIT_NOW": day(20, "10:00")}).output
    assert "Revenue 139.00 USD net" in table
    assert "Also 90.00 EUR from sales in another currency than USD: not in the revenue figures." in table
