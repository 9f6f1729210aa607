"""The audience, conversions, schema and plugins commands, as a creator uses them.

Each test works on a real project from `launchkit init` (the example launch dated from
2030-01-01: waitlist 01-02 09:00, open cart 01-09 09:00 → 01-13 23:59, close 01-14 08:00).
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import pytest
from click.testing import CliRunner, Result

from launchkit.cli import cli

Launchkit = Callable[..., Result]

SKELETON_ADDRESSES = {
    "ada@example.com",
    "grace@example.com",
    "alan@example.com",
    "katherine@example.com",
    "linus@example.org",
}
CLOSE_STARTS = "2030-01-14 08:05"  # welcome-buyers (only = "converted") is due


def ok(result: Result) -> Result:
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result


def exported(launchkit: Launchkit, *options: str) -> dict[str, dict[str, str]]:
    """`audience export` parsed: one dict of columns per address."""
    result = ok(launchkit("audience", "export", *options))
    return {row["email"]: row for row in csv.DictReader(io.StringIO(result.stdout))}


def listed(launchkit: Launchkit, *options: str) -> set[str]:
    """The addresses `audience list` shows."""
    output = ok(launchkit("audience", "list", "--limit", "0", *options)).output
    return {word for word in output.replace("│", " ").split() if "@" in word}


def import_skeleton_audience(project_dir: Path, launchkit: Launchkit, monkeypatch: pytest.MonkeyPatch) -> None:
    """The example audience, joined well before the launch starts."""
    monkeypatch.setenv("LAUNCHKIT_NOW", "2029-12-20 10:00")
    ok(launchkit("audience", "import", str(project_dir / "audience.csv")))
    monkeypatch.delenv("LAUNCHKIT_NOW")


# --- importing -----------------------------------------------------------------------------


def test_importing_the_example_audience_adds_everyone_with_their_tags(project_dir: Path, launchkit: Launchkit) -> None:
    result = ok(launchkit("audience", "import", str(project_dir / "audience.csv")))

    assert "5 new" in result.output
    assert listed(launchkit) == SKELETON_ADDRESSES
    assert listed(launchkit, "--tag", "waitlist") == {"ada@example.com", "grace@example.com", "linus@example.org"}
    contacts = exported(launchkit)
    assert contacts["ada@example.com"]["first_name"] == "Ada"
    assert contacts["ada@example.com"]["city"] == "London"  # a free column becomes a field


def test_importing_the_same_file_twice_updates_instead_of_duplicating(project_dir: Path, launchkit: Launchkit) -> None:
    ok(launchkit("audience", "import", str(project_dir / "audience.csv")))

    again = ok(launchkit("audience", "import", str(project_dir / "audience.csv")))

    assert "0 new" in again.output and "5 updated" in again.output
    assert len(exported(launchkit)) == 5


MESSY_EXCEL_EXPORT = (
    "\ufeffAdresse e-mail;Prénom;Nom;Étiquettes;Ville\r\n"
    "Zoe@Example.org;Zoé;Durand;clients;Lyon\r\n"
    "not-an-address;Xavier;Yon;;\r\n"
    "zoe@example.org ;;;vip;\r\n"
    "paul@example.fr;Paul;;;\r\n"
)


def test_importing_a_messy_semicolon_file_with_bom_merges_duplicates_and_reports_bad_lines(project_dir: Path, launchkit: Launchkit) -> None:
    path = project_dir / "excel-fr.csv"
    path.write_bytes(MESSY_EXCEL_EXPORT.encode("utf-8"))

    result = ok(launchkit("audience", "import", str(path)))

    assert "2 new" in result.output
    assert "1 duplicate" in result.output
    assert "line 3" in result.output and "not-an-address" in result.output
    contacts = exported(launchkit)
    assert set(contacts) == {"zoe@example.org", "paul@example.fr"}
    zoe = contacts["zoe@example.org"]
    assert (zoe["first_name"], zoe["last_name"]) == ("Zoé", "Durand")
    assert set(zoe["tags"].split(", ")) == {"clients", "vip"}  # tags of both rows
    assert zoe["ville"] == "Lyon"


def test_import_tag_option_tags_every_imported_contact(project_dir: Path, launchkit: Launchkit) -> None:
    ok(launchkit("audience", "import", str(project_dir / "audience.csv"), "--tag", "spring-2030"))

    assert listed(launchkit, "--tag", "spring-2030") == SKELETON_ADDRESSES


# --- adding, listing, tagging --------------------------------------------------------------


def test_add_with_tags_and_fields_records_them(launchkit: Launchkit) -> None:
    result = ok(
        launchkit(
            "audience", "add", " Camille@Example.com ",
            "--first-name", "Camille", "--last-name", "Roux",
            "--tag", "newsletter", "--tag", "waitlist",
            "--field", "country=FR", "--field", "plan=pro",
        )
    )

    assert "Added camille@example.com" in result.output
    camille = exported(launchkit)["camille@example.com"]
    assert (camille["first_name"], camille["last_name"]) == ("Camille", "Roux")
    assert set(camille["tags"].split(", ")) == {"newsletter", "waitlist"}
    assert (camille["country"], camille["plan"]) == ("FR", "pro")
    assert camille["status"] == "subscribed"


def test_adding_an_existing_contact_updates_it(launchkit: Launchkit) -> None:
    ok(launchkit("audience", "add", "camille@example.com", "--tag", "newsletter"))

    result = ok(launchkit("audience", "add", "camille@example.com", "--first-name", "Camille", "--tag", "vip"))

    assert "Updated camille@example.com" in result.output
    camille = exported(launchkit)["camille@example.com"]
    assert camille["first_name"] == "Camille"
    assert set(camille["tags"].split(", ")) == {"newsletter", "vip"}


def test_a_field_without_equals_sign_is_a_usage_error(launchkit: Launchkit) -> None:
    result = launchkit("audience", "add", "camille@example.com", "--field", "country")

    assert result.exit_code != 0
    assert "NAME=VALUE" in result.output
    assert listed(launchkit) == set()


def test_list_tag_shows_only_contacts_with_that_tag(launchkit: Launchkit) -> None:
    ok(launchkit("audience", "add", "ada@example.com", "--tag", "vip"))
    ok(launchkit("audience", "add", "alan@example.com", "--tag", "newsletter"))

    assert listed(launchkit, "--tag", "vip") == {"ada@example.com"}
    assert listed(launchkit, "--tag", "nobody-has-this") == set()


def test_tag_and_untag_change_who_has_the_tag(project_dir: Path, launchkit: Launchkit) -> None:
    ok(launchkit("audience", "import", str(project_dir / "audience.csv")))

    tagged = ok(launchkit("audience", "tag", "buyers", "ada@example.com", "Grace@Example.com"))
    assert "2 contact" in tagged.output
    assert listed(launchkit, "--tag", "buyers") == {"ada@example.com", "grace@example.com"}

    untagged = ok(launchkit("audience", "untag", "buyers", "ada@example.com"))
    assert "1 contact" in untagged.output
    assert listed(launchkit, "--tag", "buyers") == {"grace@example.com"}
    assert "newsletter" in exported(launchkit)["ada@example.com"]["tags"]  # other tags untouched


def test_tagging_an_unknown_address_tags_nobody_and_says_so(project_dir: Path, launchkit: Launchkit) -> None:
    ok(launchkit("audience", "import", str(project_dir / "audience.csv")))

    result = launchkit("audience", "tag", "buyers", "ada@example.com", "ghost@example.com")

    assert result.exit_code == 1
    assert "ghost@example.com" in result.output and "audience add" in result.output
    assert listed(launchkit, "--tag", "buyers") == set()


# --- unsubscribing -------------------------------------------------------------------------


def test_unsubscribed_contact_is_not_resubscribed_by_a_reimport(project_dir: Path, launchkit: Launchkit) -> None:
    ok(launchkit("audience", "import", str(project_dir / "audience.csv")))

    ok(launchkit("audience", "unsubscribe", "Alan@Example.com"))
    ok(launchkit("audience", "import", str(project_dir / "audience.csv")))

    assert exported(launchkit)["alan@example.com"]["status"] == "unsubscribed"
    assert listed(launchkit, "--status", "unsubscribed") == {"alan@example.com"}
    assert "alan@example.com" not in listed(launchkit, "--status", "subscribed")


def test_unsubscribed_contact_gets_no_launch_email(project_dir: Path, launchkit: Launchkit, sent_mail, monkeypatch: pytest.MonkeyPatch) -> None:
    import_skeleton_audience(project_dir, launchkit, monkeypatch)
    ok(launchkit("audience", "unsubscribe", "grace@example.com"))
    monkeypatch.setenv("LAUNCHKIT_NOW", "2030-01-02 09:05")  # welcome goes to the waitlist

    ok(launchkit("run"))

    recipients = {m["To"].addresses[0].addr_spec for m in sent_mail()}
    assert recipients == {"ada@example.com", "linus@example.org"}


def test_an_export_imported_into_a_new_project_keeps_who_left_and_their_consent(
    project_dir: Path, launchkit: Launchkit, sent_mail, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Moving a project (docs/scaling.md): export, then import into a fresh one."""
    import_skeleton_audience(project_dir, launchkit, monkeypatch)
    ok(launchkit("audience", "unsubscribe", "grace@example.com"))
    before = exported(launchkit)
    moved = tmp_path / "moved.csv"
    ok(launchkit("audience", "export", "-o", str(moved)))
    for kept in ("audience.csv", "launchkit.db"):
        (project_dir / kept).unlink(missing_ok=True)

    result = ok(launchkit("audience", "import", str(moved)))

    assert "5 new" in result.output and "1 contact kept but never written to" in result.output
    after = exported(launchkit)
    assert after == before  # status, tags, created_at, consent_source and consent_at all came along
    assert "created_at" not in next(csv.reader(io.StringIO(launchkit("audience", "export").output)))[8:]
    monkeypatch.setenv("LAUNCHKIT_NOW", "2030-01-02 09:05")  # welcome goes to the waitlist
    ok(launchkit("run"))
    assert {m["To"].addresses[0].addr_spec for m in sent_mail()} == {"ada@example.com", "linus@example.org"}


def test_a_file_saying_a_contact_left_marks_them_and_never_brings_one_back(project_dir: Path, launchkit: Launchkit) -> None:
    ok(launchkit("audience", "import", str(project_dir / "audience.csv")))
    ok(launchkit("audience", "unsubscribe", "alan@example.com"))
    kit = project_dir / "kit.csv"
    kit.write_text(
        "email_address,state\n"
        "ada@example.com,cancelled\n"  # Kit's word for unsubscribed
        "grace@example.com,bounced\n"
        "alan@example.com,active\n"  # the file is older than his unsubscribe
        "new@example.com,complained\n"
        "katherine@example.com,gone fishing\n"
    )

    result = ok(launchkit("audience", "import", str(kit)))

    assert "3 contacts kept but never written to" in result.output
    assert "skipped line 6: status 'gone fishing' is not one launchkit knows" in result.output
    statuses = {address: row["status"] for address, row in exported(launchkit).items()}
    assert statuses == {
        "ada@example.com": "unsubscribed", "grace@example.com": "bounced", "alan@example.com": "unsubscribed",
        "new@example.com": "complained", "katherine@example.com": "subscribed", "linus@example.org": "subscribed",
    }


def test_someone_imported_as_gone_after_a_launch_is_not_in_its_audience(project_dir: Path, launchkit: Launchkit, monkeypatch: pytest.MonkeyPatch) -> None:
    import_skeleton_audience(project_dir, launchkit, monkeypatch)
    late = project_dir / "old-list.csv"
    late.write_text("email,tags,status,created_at\nold@example.com,newsletter,cancelled,2029-06-01 10:00\n")
    monkeypatch.setenv("LAUNCHKIT_NOW", "2030-01-16 10:00")  # the cart (01-09 → 01-13) is over

    ok(launchkit("audience", "import", str(late)))

    report = json.loads(ok(launchkit("report", "example-launch", "--format", "json")).output)
    assert report["launch"]["headline"]["audience"] == 5  # the five imported in December, not old@


def test_unsubscribing_an_unknown_address_is_an_error(launchkit: Launchkit) -> None:
    result = launchkit("audience", "unsubscribe", "ghost@example.com")

    assert result.exit_code == 1
    assert "ghost@example.com" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


# --- exporting -----------------------------------------------------------------------------


def test_export_escapes_cells_a_spreadsheet_would_run_as_formulas(launchkit: Launchkit) -> None:
    ok(launchkit("audience", "add", "mallory@example.com", "--first-name", '=HYPERLINK("x")', "--field", "note=@SUM(A1)"))

    mallory = exported(launchkit)["mallory@example.com"]

    assert mallory["first_name"] == '\'=HYPERLINK("x")'
    assert mallory["note"] == "'@SUM(A1)"


def test_export_to_a_file_writes_csv_and_counts_on_stderr(project_dir: Path, launchkit: Launchkit) -> None:
    ok(launchkit("audience", "import", str(project_dir / "audience.csv")))
    ok(launchkit("audience", "add", "mallory@example.com", "--first-name", '=HYPERLINK("x")', "--tag", "waitlist"))
    out = project_dir / "waitlist.csv"

    result = ok(launchkit("audience", "export", "-o", str(out), "--tag", "waitlist"))

    assert "Exported 4 contacts" in result.stderr
    rows = list(csv.DictReader(out.open(encoding="utf-8", newline="")))
    assert {r["email"] for r in rows} == {"ada@example.com", "grace@example.com", "linus@example.org", "mallory@example.com"}
    assert next(r for r in rows if r["email"] == "mallory@example.com")["first_name"] == '\'=HYPERLINK("x")'


def test_launchkit_now_is_the_moment_audience_add_records(launchkit: Launchkit, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAUNCHKIT_NOW", "2030-02-03 04:05")  # the project's timezone is UTC

    ok(launchkit("audience", "add", "camille@example.com"))

    created = datetime.fromisoformat(exported(launchkit)["camille@example.com"]["created_at"])
    assert created == datetime(2030, 2, 3, 4, 5, tzinfo=timezone.utc)


def test_launchkit_now_is_read_in_the_projects_timezone(project_dir: Path, launchkit: Launchkit, monkeypatch: pytest.MonkeyPatch) -> None:
    config = project_dir / "launchkit.toml"
    config.write_text(config.read_text(encoding="utf-8").replace('timezone = "UTC"', 'timezone = "Europe/Paris"'), encoding="utf-8")
    monkeypatch.setenv("LAUNCHKIT_NOW", "2030-07-01 12:00")  # CEST, UTC+2

    ok(launchkit("audience", "add", "camille@example.com"))

    created = datetime.fromisoformat(exported(launchkit)["camille@example.com"]["created_at"])
    assert created == datetime(2030, 7, 1, 10, 0, tzinfo=timezone.utc)


def test_audience_list_shows_whole_addresses_when_piped(project_dir: Path, launchkit: Launchkit, monkeypatch: pytest.MonkeyPatch) -> None:
    ok(launchkit("audience", "import", str(project_dir / "audience.csv")))

    output = ok(launchkit("audience", "list")).output

    for address in SKELETON_ADDRESSES:
        assert address in output


# --- conversions ---------------------------------------------------------------------------


def welcome_buyers_recipients(sent_mail) -> set[str]:
    return {m["To"].addresses[0].addr_spec for m in sent_mail() if m["Subject"].startswith("Welcome in")}


def test_conversions_add_twice_with_the_same_id_records_once(project_dir: Path, launchkit: Launchkit, sent_mail, monkeypatch: pytest.MonkeyPatch) -> None:
    import_skeleton_audience(project_dir, launchkit, monkeypatch)
    order = ("conversions", "add", "ada@example.com", "--product", "course", "--amount", "99", "--currency", "USD", "--id", "ord_1")

    first = ok(launchkit(*order))
    second = ok(launchkit(*order))

    assert "Recorded" in first.output
    assert "Already recorded" in second.output
    monkeypatch.setenv("LAUNCHKIT_NOW", CLOSE_STARTS)
    ok(launchkit("run"))
    assert welcome_buyers_recipients(sent_mail) == {"ada@example.com"}


def test_conversions_add_with_a_bad_moment_records_nothing(project_dir: Path, launchkit: Launchkit, sent_mail, monkeypatch: pytest.MonkeyPatch) -> None:
    import_skeleton_audience(project_dir, launchkit, monkeypatch)

    result = launchkit("conversions", "add", "ada@example.com", "--product", "course", "--amount", "99", "--at", "yesterday")

    assert result.exit_code == 1
    assert "'yesterday'" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    monkeypatch.setenv("LAUNCHKIT_NOW", CLOSE_STARTS)
    ok(launchkit("run"))
    assert welcome_buyers_recipients(sent_mail) == set()


STRIPE_EXPORT = (
    "id,Created (UTC),Amount,Currency,Status,Customer Email\n"
    "ch_1,2030-01-10 10:00:00,99.00,usd,Paid,grace@example.com\n"
    "ch_2,2030-01-10 11:00:00,99.00,usd,Refunded,alan@example.com\n"
    "ch_3,2030-01-11 12:00:00,99.00,usd,Paid,not-an-email\n"
    'ch_4,2030-01-11 13:30:00,"1,099.00",usd,Paid,Katherine@Example.com\n'
)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [("--amount", "-5", "an amount of 0 or more"), ("--amount", "12,5x", "an amount like 297"), ("--currency", "euro", "three-letter currency code")],
)
def test_conversions_add_refuses_a_bad_amount_or_currency(project_dir: Path, launchkit: Launchkit, sent_mail, monkeypatch: pytest.MonkeyPatch, option: str, value: str, message: str) -> None:
    import_skeleton_audience(project_dir, launchkit, monkeypatch)
    given = {"--amount": "99", "--currency": "USD", option: value}

    result = launchkit("conversions", "add", "ada@example.com", "--product", "course", *(x for kv in given.items() for x in kv))

    assert result.exit_code == 2 and message in result.output and f"{value!r}" in result.output
    monkeypatch.setenv("LAUNCHKIT_NOW", CLOSE_STARTS)
    ok(launchkit("run"))
    assert welcome_buyers_recipients(sent_mail) == set()  # nothing was recorded


def test_conversions_import_of_a_stripe_export_counts_buyers_net_of_refunds(project_dir: Path, launchkit: Launchkit, sent_mail, monkeypatch: pytest.MonkeyPatch) -> None:
    import_skeleton_audience(project_dir, launchkit, monkeypatch)
    sales = project_dir / "stripe-payments.csv"
    sales.write_text(STRIPE_EXPORT, encoding="utf-8")

    result = ok(launchkit("conversions", "import", str(sales), "--product", "course"))

    assert "3 new" in result.output and "1 refunded" in result.output
    assert "line 4" in result.output and "not-an-email" in result.output
    again = ok(launchkit("conversions", "import", str(sales), "--product", "course"))
    assert "0 new" in again.output and "3 already known" in again.output

    monkeypatch.setenv("LAUNCHKIT_NOW", CLOSE_STARTS)
    ok(launchkit("run"))
    assert welcome_buyers_recipients(sent_mail) == {"grace@example.com", "katherine@example.com"}


def test_conversions_import_without_a_product_column_asks_for_one(project_dir: Path, launchkit: Launchkit) -> None:
    sales = project_dir / "stripe-payments.csv"
    sales.write_text(STRIPE_EXPORT, encoding="utf-8")

    result = launchkit("conversions", "import", str(sales))

    assert result.exit_code == 1
    assert "stripe-payments.csv" in result.output and "no product column" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_conversions_import_without_a_product_column_mentions_the_product_option(project_dir: Path, launchkit: Launchkit) -> None:
    sales = project_dir / "stripe-payments.csv"
    sales.write_text(STRIPE_EXPORT, encoding="utf-8")

    assert "--product" in launchkit("conversions", "import", str(sales)).output


# --- schema --------------------------------------------------------------------------------


def test_schema_prints_json_schema_of_launch_files() -> None:
    result = ok(CliRunner().invoke(cli, ["schema"]))

    schema = json.loads(result.output)
    assert {"launch", "phase"} <= set(schema["properties"])
    assert "json-schema.org" in schema["$schema"]
    email = next(d for name, d in schema["$defs"].items() if "when" in d.get("properties", {}))
    assert {"id", "when", "subject", "body", "only", "unless", "catch_up"} <= set(email["properties"])


def test_schema_config_prints_json_schema_of_launchkit_toml() -> None:
    result = ok(CliRunner().invoke(cli, ["schema", "config"]))

    assert {"project", "sender", "delivery", "tracking"} <= set(json.loads(result.output)["properties"])


# --- plugins -------------------------------------------------------------------------------


def plugins_json(launchkit: Launchkit) -> dict:
    return json.loads(ok(launchkit("plugins", "--json")).output)


def test_plugins_json_lists_the_maildir_provider(launchkit: Launchkit) -> None:
    listing = plugins_json(launchkit)

    maildir = next(p for p in listing["plugins"] if p["name"] == "maildir")
    assert maildir["error"] is None
    assert "register_providers" in maildir["hooks"]
    assert listing["providers"]["maildir"] == "maildir"


def test_plugins_json_works_outside_a_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAUNCHKIT_PROJECT", raising=False)
    monkeypatch.chdir(tmp_path)

    listing = json.loads(ok(CliRunner().invoke(cli, ["plugins", "--json"])).output)

    assert "maildir" in listing["providers"]


BROKEN_PLUGIN = "raise RuntimeError('boom: this plugin is half-written')\n"


def test_a_project_plugin_that_fails_to_import_is_reported_and_maildir_keeps_working(project_dir: Path, launchkit: Launchkit, sent_mail, monkeypatch: pytest.MonkeyPatch) -> None:
    (project_dir / "plugins" / "broken.py").write_text(BROKEN_PLUGIN, encoding="utf-8")

    listing = plugins_json(launchkit)
    broken = next(p for p in listing["plugins"] if "broken" in p["name"])
    assert "boom: this plugin is half-written" in broken["error"]
    assert listing["providers"]["maildir"] == "maildir"  # the other plugins still provide theirs

    table = ok(launchkit("plugins")).output
    assert "broken" in table and "boom" in table and "maildir" in table

    check = launchkit("check")
    assert check.exit_code == 1
    assert "broken" in check.output and "boom" in check.output

    import_skeleton_audience(project_dir, launchkit, monkeypatch)
    monkeypatch.setenv("LAUNCHKIT_NOW", "2030-01-02 09:05")
    ok(launchkit("run"))
    assert len(sent_mail()) == 3  # welcome, to the waitlist, through maildir


MISSPELLED_HOOK_PLUGIN = """\
from launchkit import hookimpl


@hookimpl
def register_provider(register):  # should be register_providers
    register("typo-mail", lambda context: None)
"""


def test_a_project_plugin_with_a_misspelled_hook_is_reported_and_skipped(project_dir: Path, launchkit: Launchkit) -> None:
    (project_dir / "plugins" / "typo.py").write_text(MISSPELLED_HOOK_PLUGIN, encoding="utf-8")

    listing = plugins_json(launchkit)
    typo = next(p for p in listing["plugins"] if "typo" in p["name"])
    assert "register_provider" in typo["error"]
    assert "typo-mail" not in listing["providers"]
    assert "maildir" in listing["providers"]

    check = launchkit("check")
    assert check.exit_code == 1
    assert "register_provider" in check.output


def test_a_misspelled_hook_suggests_the_real_hook_name(project_dir: Path, launchkit: Launchkit) -> None:
    (project_dir / "plugins" / "typo.py").write_text(MISSPELLED_HOOK_PLUGIN, encoding="utf-8")

    output = launchkit("check").output

    assert "register_providers" in output
    assert "<module" not in output


def test_a_plugin_failing_in_register_commands_does_not_break_other_commands(project_dir: Path) -> None:
    (project_dir / "plugins" / "commands.py").write_text(
        "from launchkit import hookimpl\n\n\n@hookimpl\ndef register_commands(cli):\n    raise RuntimeError('no commands today')\n",
        encoding="utf-8",
    )
    executable = Path(sys.executable).with_name("launchkit")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAUNCHKIT_")}

    result = subprocess.run([str(executable), "check"], cwd=project_dir, env=env, capture_output=True, text=True, timeout=60)

    assert "Traceback" not in result.stderr, result.stderr
    assert "no commands today" in result.stdout + result.stderr


TAKES_MAILDIR_PLUGIN = """\
from launchkit import hookimpl
from launchkit.types import Provider


class Impostor(Provider):
    name = "maildir"


@hookimpl
def register_providers(register):
    register("maildir", lambda context: Impostor())
    register("impostor", lambda context: Impostor())
"""


def test_a_provider_name_registered_twice_is_reported_and_only_that_name_is_refused(project_dir: Path, launchkit: Launchkit, sent_mail, monkeypatch: pytest.MonkeyPatch) -> None:
    (project_dir / "plugins" / "impostor.py").write_text(TAKES_MAILDIR_PLUGIN, encoding="utf-8")

    listing = ok(launchkit("plugins")).output
    assert "'maildir' is registered by" in listing and "project:impostor" in listing
    assert plugins_json(launchkit)["providers"]["impostor"] == "project:impostor"  # its other provider works

    check = launchkit("check")  # the project chooses maildir: ambiguous, so refused by name
    assert check.exit_code == 1
    assert "more than one plugin" in check.output and "project:impostor" in check.output

    config = project_dir / "launchkit.toml"
    config.write_text(config.read_text(encoding="utf-8").replace('provider = "maildir"', 'provider = "smtp"'), encoding="utf-8")
    assert "more than one plugin" not in launchkit("check").output  # other names keep working
