"""Each bad input gives a one-paragraph error with file and key path, exit code 1, no traceback.

One test per class of mistake a creator makes, on a real project from `launchkit init`
edited to contain that mistake. Mistakes in the project's files must stop `plan` and `run`
exactly as cleanly as they stop `check`.
"""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Callable

import pytest
from click.testing import Result

LAUNCH_FILE = Path("sequences") / "example-launch.toml"
CONFIG_FILE = Path("launchkit.toml")
BODIES = Path("sequences") / "example-launch"

# The example launch, as `launchkit init` writes it:
#   phase[1] waitlist:  email[1] welcome, email[2] behind-the-scenes
#   phase[2] open_cart: email[1] doors-open, email[2] faq, email[3] last-call
#   phase[3] close:     email[1] welcome-buyers, email[2] next-time
CHECK_PLAN_RUN = pytest.mark.parametrize("command", ["check", "plan", "run"])

Launchkit = Callable[..., Result]


@pytest.fixture(autouse=True)
def waitlist_has_opened(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`run` acts at a fixed moment: the waitlist's first morning."""
    monkeypatch.setenv("LAUNCHKIT_NOW", "2030-01-02 09:05")


def edit(path: Path, old: str, new: str) -> None:
    """Replace the first ``old`` in a file (which must contain it) with ``new``."""
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} is not in {path}: the skeleton changed"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def line_of(path: Path, needle: str) -> int:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} is not in {path}")


def assert_clean_error(result: Result, *expected: str) -> None:
    """Exit code 1, one paragraph of text naming everything in ``expected``, no traceback."""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        crash = "".join(traceback.format_exception(*result.exc_info))  # type: ignore[misc]
        raise AssertionError(f"the command crashed instead of explaining:\n{crash}")
    assert result.exit_code == 1, f"exit code {result.exit_code}; output:\n{result.output}"
    message = result.output.strip()
    assert message, "no error message at all"
    assert "Traceback" not in message
    assert "\n\n" not in message, f"not one paragraph:\n{message}"
    for fragment in expected:
        assert fragment in message, f"{fragment!r} is missing from the error:\n{message}"


# --- TOML syntax ---------------------------------------------------------------------------


@CHECK_PLAN_RUN
def test_malformed_toml_in_launchkit_toml_names_the_file_and_line(project_dir: Path, launchkit: Launchkit, command: str) -> None:
    config = project_dir / CONFIG_FILE
    edit(config, 'name = "Your Project"', 'name = "Your Project')  # unterminated string
    line = line_of(config, 'name = "Your Project')

    assert_clean_error(launchkit(command), "launchkit.toml", f"line {line}", "not valid TOML")


@CHECK_PLAN_RUN
def test_malformed_toml_in_a_launch_file_names_the_file_and_line(project_dir: Path, launchkit: Launchkit, command: str) -> None:
    launch = project_dir / LAUNCH_FILE
    edit(launch, "price = 99", "price = 99 99")
    line = line_of(launch, "price = 99 99")

    assert_clean_error(launchkit(command), "example-launch.toml", f"line {line}", "not valid TOML")


# --- unknown keys --------------------------------------------------------------------------


@CHECK_PLAN_RUN
def test_unknown_key_in_sender_names_the_key_path_and_line(project_dir: Path, launchkit: Launchkit, command: str) -> None:
    config = project_dir / CONFIG_FILE
    edit(config, 'reply_to = "you@example.com"', 'reply_to = "you@example.com"\nreplyto = "help@example.com"')
    line = line_of(config, "replyto =")

    assert_clean_error(launchkit(command), "launchkit.toml", f"line {line}", "sender.replyto", "unknown key")


@CHECK_PLAN_RUN
def test_unknown_key_in_an_email_names_the_key_path_and_line(project_dir: Path, launchkit: Launchkit, command: str) -> None:
    launch = project_dir / LAUNCH_FILE
    edit(launch, 'subject = "Your questions, answered"', 'subjet = "Your questions, answered"')
    line = line_of(launch, "subjet =")

    assert_clean_error(launchkit(command), "example-launch.toml", f"line {line}", "phase[2].email[2].subjet", "unknown key")


def test_unknown_key_error_says_which_keys_are_allowed(project_dir: Path, launchkit: Launchkit) -> None:
    edit(project_dir / CONFIG_FILE, 'reply_to = "you@example.com"', 'reply_to = "you@example.com"\nreplyto = "help@example.com"')

    assert_clean_error(launchkit("check"), "sender.replyto", "reply_to", "postal_address")


# --- wrong types ---------------------------------------------------------------------------


@CHECK_PLAN_RUN
def test_a_price_that_is_not_a_number_says_a_number_was_expected(project_dir: Path, launchkit: Launchkit, command: str) -> None:
    launch = project_dir / LAUNCH_FILE
    edit(launch, "price = 99", 'price = "cheap"')
    line = line_of(launch, 'price = "cheap"')

    assert_clean_error(launchkit(command), "example-launch.toml", f"line {line}", "launch.price", "expected a number", "'cheap'")


@CHECK_PLAN_RUN
def test_catch_up_given_as_a_string_is_a_type_error(project_dir: Path, launchkit: Launchkit, command: str) -> None:
    launch = project_dir / LAUNCH_FILE
    edit(launch, "catch_up = true", 'catch_up = "yes"')
    line = line_of(launch, 'catch_up = "yes"')

    assert_clean_error(launchkit(command), "example-launch.toml", f"line {line}", "phase[1].email[2].catch_up", "'yes'")


def test_processes_must_be_auto_or_a_count_and_one_line_says_so(project_dir: Path, launchkit: Launchkit) -> None:
    config = project_dir / "launchkit.toml"
    edit(config, "# processes = \"auto\"", "processes = 0")
    line = line_of(config, "processes = 0")

    result = launchkit("check")
    assert_clean_error(result, "launchkit.toml", f"line {line}", "delivery.processes", '"auto" or a whole number from 1 to 64')
    assert result.output.count("delivery.processes") == 1


def test_a_late_by_without_a_unit_shows_durations_that_work(project_dir: Path, launchkit: Launchkit) -> None:
    launch = project_dir / LAUNCH_FILE
    edit(launch, 'late_by = "1h"', "late_by = 1")
    line = line_of(launch, "late_by = 1")

    assert_clean_error(launchkit("check"), "example-launch.toml", f"line {line}", "phase[2].email[3].late_by", "'6h'")


# --- timing --------------------------------------------------------------------------------


@CHECK_PLAN_RUN
def test_misspelled_timing_anchor_is_named_with_a_suggestion(project_dir: Path, launchkit: Launchkit, command: str) -> None:
    launch = project_dir / LAUNCH_FILE
    edit(launch, 'when = "start + 2d at 09:00"', 'when = "strat + 3d"')
    line = line_of(launch, "strat + 3d")

    assert_clean_error(
        launchkit(command),
        "example-launch.toml",
        f"line {line}",
        "phase[1].email[2].when",
        "'strat + 3d'",
        "did you mean 'start'",
    )


def test_unknown_offset_unit_in_a_timing_lists_the_units(project_dir: Path, launchkit: Launchkit) -> None:
    launch = project_dir / LAUNCH_FILE
    edit(launch, 'when = "start + 2d at 09:00"', 'when = "start + 3x"')
    line = line_of(launch, "start + 3x")

    assert_clean_error(
        launchkit("check"), "example-launch.toml", f"line {line}", "phase[1].email[2].when", "'+ 3x'", "units w, d, h, m"
    )


@CHECK_PLAN_RUN
def test_end_anchor_in_the_last_phase_without_ends_is_refused(project_dir: Path, launchkit: Launchkit, command: str) -> None:
    launch = project_dir / LAUNCH_FILE
    edit(launch, 'when = "start + 1d at 10:00"\n  unless = "converted"\n  subject = "Doors', 'when = "end - 1d"\n  unless = "converted"\n  subject = "Doors')
    line = line_of(launch, 'when = "end - 1d"')

    assert_clean_error(
        launchkit(command), "example-launch.toml", f"line {line}", "phase[3].email[2].when", "'end - 1d'", "'ends'"
    )


def test_unquoted_phase_date_is_named_with_its_key_path(project_dir: Path, launchkit: Launchkit) -> None:
    launch = project_dir / LAUNCH_FILE
    edit(launch, 'starts = "2030-01-02 09:00"', "starts = 2030-01-02 09:00:00")
    line = line_of(launch, "starts = 2030-01-02 09:00:00")

    assert_clean_error(launchkit("check"), "example-launch.toml", f"line {line}", "phase[1].starts")


def test_unquoted_phase_date_says_to_quote_it(project_dir: Path, launchkit: Launchkit) -> None:
    edit(project_dir / LAUNCH_FILE, 'starts = "2030-01-02 09:00"', "starts = 2030-01-02 09:00:00")

    result = launchkit("check")

    assert_clean_error(result, "phase[1].starts", "quoted")
    assert "datetime.datetime" not in result.output


# --- conditions ----------------------------------------------------------------------------


@CHECK_PLAN_RUN
def test_misspelled_condition_helper_lists_the_helpers(project_dir: Path, launchkit: Launchkit, command: str) -> None:
    launch = project_dir / LAUNCH_FILE
    edit(launch, "audience = \"tagged('waitlist')\"", "audience = \"taged('waitlist')\"")
    line = line_of(launch, "taged(")

    assert_clean_error(
        launchkit(command), "example-launch.toml", f"line {line}", "phase[1].audience", "'taged'", "tagged", "clicked_link"
    )


def test_converted_called_as_a_function_says_to_drop_the_parentheses(project_dir: Path, launchkit: Launchkit) -> None:
    launch = project_dir / LAUNCH_FILE
    edit(launch, 'only = "converted"', 'only = "converted()"')
    line = line_of(launch, 'only = "converted()"')

    assert_clean_error(
        launchkit("check"), "example-launch.toml", f"line {line}", "phase[3].email[1].only", "`converted`, not `converted()`"
    )


@pytest.mark.parametrize("command", ["check", "plan"])
def test_opened_an_email_that_does_not_exist_lists_the_emails(project_dir: Path, launchkit: Launchkit, command: str) -> None:
    launch = project_dir / LAUNCH_FILE
    edit(launch, 'unless = "converted"', "unless = \"opened('no-such-email')\"")  # the faq email
    line = line_of(launch, "no-such-email")

    assert_clean_error(
        launchkit(command), "example-launch.toml", f"line {line}", "phase[2].email[2].unless", "'no-such-email'", "doors-open"
    )


def test_a_condition_that_cannot_be_evaluated_is_refused_by_check(project_dir: Path, launchkit: Launchkit) -> None:
    edit(project_dir / LAUNCH_FILE, 'unless = "converted"', 'unless = "contact.first_name > 3"')

    assert_clean_error(launchkit("check"), "example-launch.toml", "phase[2].email[2].unless")


def test_a_condition_failing_at_send_time_does_not_crash_run(project_dir: Path, launchkit: Launchkit, monkeypatch: pytest.MonkeyPatch) -> None:
    edit(project_dir / LAUNCH_FILE, 'unless = "converted"', 'unless = "contact.first_name > 3"')  # the faq email
    monkeypatch.setenv("LAUNCHKIT_NOW", "2030-01-01 10:00")
    assert launchkit("audience", "import", str(project_dir / "audience.csv")).exit_code == 0
    monkeypatch.setenv("LAUNCHKIT_NOW", "2030-01-10 10:05")  # the faq is due

    result = launchkit("run")

    assert result.exception is None or isinstance(result.exception, SystemExit), "run crashed with a traceback"
    assert "Traceback" not in result.output


# --- bodies, layouts and subjects ----------------------------------------------------------


@CHECK_PLAN_RUN
def test_missing_body_file_names_the_email_and_the_file(project_dir: Path, launchkit: Launchkit, command: str) -> None:
    (project_dir / BODIES / "faq.md").unlink()
    line = line_of(project_dir / LAUNCH_FILE, 'body = "faq.md"')

    assert_clean_error(
        launchkit(command), "example-launch.toml", f"line {line}", "phase[2].email[2].body", "faq.md", "not found"
    )


LAYOUT_WITHOUT_UNSUBSCRIBE = "<html><body>{{ content }}<p>{{ sender.postal_address }}</p></body></html>\n"


def test_layout_without_unsubscribe_url_is_refused_by_check(project_dir: Path, launchkit: Launchkit) -> None:
    (project_dir / BODIES / "layout.html").write_text(LAYOUT_WITHOUT_UNSUBSCRIBE, encoding="utf-8")

    assert_clean_error(launchkit("check"), "example-launch", "{{ unsubscribe_url }}", "unsubscribe link")


def test_layout_without_unsubscribe_url_never_lets_an_email_out(project_dir: Path, launchkit: Launchkit, sent_mail, monkeypatch: pytest.MonkeyPatch) -> None:
    (project_dir / BODIES / "layout.html").write_text(LAYOUT_WITHOUT_UNSUBSCRIBE, encoding="utf-8")
    monkeypatch.setenv("LAUNCHKIT_NOW", "2030-01-01 10:00")
    assert launchkit("audience", "import", str(project_dir / "audience.csv")).exit_code == 0
    monkeypatch.setenv("LAUNCHKIT_NOW", "2030-01-02 09:05")  # welcome is due for the waitlist

    launchkit("run")

    assert sent_mail() == []


def test_layout_without_unsubscribe_url_names_the_layout_file_once(project_dir: Path, launchkit: Launchkit) -> None:
    (project_dir / BODIES / "layout.html").write_text(LAYOUT_WITHOUT_UNSUBSCRIBE, encoding="utf-8")

    result = launchkit("check")

    assert_clean_error(result, "layout.html")
    assert result.output.count("unsubscribe_url") == 1


def test_run_refuses_a_layout_without_unsubscribe_url_as_check_does(project_dir: Path, launchkit: Launchkit, monkeypatch: pytest.MonkeyPatch) -> None:
    (project_dir / BODIES / "layout.html").write_text(LAYOUT_WITHOUT_UNSUBSCRIBE, encoding="utf-8")
    monkeypatch.setenv("LAUNCHKIT_NOW", "2030-01-01 10:00")
    assert launchkit("audience", "import", str(project_dir / "audience.csv")).exit_code == 0
    monkeypatch.setenv("LAUNCHKIT_NOW", "2030-01-02 09:05")

    assert_clean_error(launchkit("run"), "layout", "unsubscribe_url")


def test_subject_missing_in_toml_and_front_matter_is_refused(project_dir: Path, launchkit: Launchkit) -> None:
    edit(project_dir / LAUNCH_FILE, '  subject = "Your questions, answered"\n', "")

    assert_clean_error(launchkit("check"), "faq.md", "'faq'", "no subject", "front matter")
    assert_clean_error(launchkit("preview", "example-launch", "faq"), "faq.md", "no subject")


def test_subject_missing_names_the_email_in_the_launch_file(project_dir: Path, launchkit: Launchkit) -> None:
    launch = project_dir / LAUNCH_FILE
    edit(launch, '  subject = "Your questions, answered"\n', "")

    assert_clean_error(launchkit("check"), "example-launch.toml", "phase[2].email[2]")


def test_run_refuses_an_email_without_subject_as_check_does(project_dir: Path, launchkit: Launchkit, monkeypatch: pytest.MonkeyPatch) -> None:
    edit(project_dir / LAUNCH_FILE, '  subject = "Your questions, answered"\n', "")
    monkeypatch.setenv("LAUNCHKIT_NOW", "2030-01-01 10:00")
    assert launchkit("audience", "import", str(project_dir / "audience.csv")).exit_code == 0
    monkeypatch.setenv("LAUNCHKIT_NOW", "2030-01-10 10:05")  # the faq is due

    assert_clean_error(launchkit("run"), "faq", "subject")


def broken_jinja_in_faq(project_dir: Path) -> int:
    """Append an unclosed ``{{`` to the faq body's sixth line; returns that line's number."""
    body = project_dir / BODIES / "faq.md"
    lines = body.read_text(encoding="utf-8").splitlines()
    lines[5] += " {{ contact.first_name }"
    body.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 6


def test_jinja_syntax_error_in_a_body_names_the_file_and_line(project_dir: Path, launchkit: Launchkit) -> None:
    line = broken_jinja_in_faq(project_dir)

    assert_clean_error(launchkit("check"), "faq.md", f"line {line}")
    assert_clean_error(launchkit("preview", "example-launch", "faq"), "faq.md", f"line {line}")


def test_jinja_syntax_error_after_front_matter_counts_lines_in_the_file(project_dir: Path, launchkit: Launchkit) -> None:
    body = project_dir / BODIES / "last-call.md"  # starts with +++ front matter
    edit(body, "Quick one:", "{{ contact.first_name } Quick one:")
    line = line_of(body, "Quick one:")

    assert_clean_error(launchkit("check"), "last-call.md", f"line {line}")


def test_run_refuses_a_body_with_a_syntax_error_as_check_does(project_dir: Path, launchkit: Launchkit, monkeypatch: pytest.MonkeyPatch) -> None:
    line = broken_jinja_in_faq(project_dir)
    monkeypatch.setenv("LAUNCHKIT_NOW", "2030-01-01 10:00")
    assert launchkit("audience", "import", str(project_dir / "audience.csv")).exit_code == 0
    monkeypatch.setenv("LAUNCHKIT_NOW", "2030-01-10 10:05")

    assert_clean_error(launchkit("run"), "faq.md", f"line {line}")


# --- settings ------------------------------------------------------------------------------


def test_an_sqlite_too_old_for_launchkit_says_which_versions_work(project_dir: Path, launchkit: Launchkit, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 31, 1))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.31.1")

    assert_clean_error(launchkit("run"), "SQLite 3.31.1", "3.35 or later", "PostgreSQL")



def test_unknown_delivery_provider_is_named_with_the_installed_ones(project_dir: Path, launchkit: Launchkit) -> None:
    edit(project_dir / CONFIG_FILE, 'provider = "maildir"', 'provider = "postmrak"')

    assert_clean_error(launchkit("check"), "launchkit.toml", "delivery.provider", "'postmrak'", "maildir")
    assert_clean_error(launchkit("run"), "'postmrak'", "maildir")


@pytest.mark.parametrize("command", ["check", "run"])
def test_a_provider_whose_factory_fails_its_own_way_is_one_sentence(project_dir: Path, launchkit: Launchkit, command: str) -> None:
    (project_dir / "plugins" / "keyed.py").write_text(
        "from launchkit import hookimpl\n\n"
        "@hookimpl\n"
        "def register_providers(register):\n"
        "    register('keyed', lambda context: context.settings['api_key'])\n"
    )
    edit(project_dir / CONFIG_FILE, 'provider = "maildir"', 'provider = "keyed"')
    assert launchkit("audience", "import", str(project_dir / "audience.csv")).exit_code == 0

    assert_clean_error(launchkit(command), "provider 'keyed' could not be built: KeyError('api_key')", "keyed.py, line 5")


@pytest.mark.parametrize("command", ["check", "run"])
def test_unknown_delivery_provider_names_file_key_and_line(project_dir: Path, launchkit: Launchkit, command: str) -> None:
    config = project_dir / CONFIG_FILE
    edit(config, 'provider = "maildir"', 'provider = "postmrak"')
    line = line_of(config, 'provider = "postmrak"')

    assert_clean_error(launchkit(command), "launchkit.toml", f"line {line}", "delivery.provider", "'postmrak'")


@CHECK_PLAN_RUN
def test_unset_variable_in_tracking_secret_names_the_variable(project_dir: Path, launchkit: Launchkit, command: str) -> None:
    edit(project_dir / CONFIG_FILE, '# secret = "${LAUNCHKIT_SECRET}"', 'secret = "${LAUNCHKIT_SECRET}"')

    assert_clean_error(launchkit(command), "launchkit.toml", "tracking.secret", "LAUNCHKIT_SECRET", "not set")


def test_unset_variable_in_tracking_secret_gives_the_line(project_dir: Path, launchkit: Launchkit) -> None:
    config = project_dir / CONFIG_FILE
    edit(config, '# secret = "${LAUNCHKIT_SECRET}"', 'secret = "${LAUNCHKIT_SECRET}"')
    line = line_of(config, 'secret = "${LAUNCHKIT_SECRET}"')

    assert_clean_error(launchkit("check"), "tracking.secret", f"line {line}")


def test_unset_variable_in_the_chosen_providers_settings_stops_run(project_dir: Path, launchkit: Launchkit, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAILDIR_PATH", raising=False)
    edit(project_dir / CONFIG_FILE, 'path = "mail"', 'path = "${MAILDIR_PATH}"')

    assert_clean_error(launchkit("run"), "launchkit.toml", "delivery.maildir.path", "MAILDIR_PATH")


def test_check_finds_an_unset_variable_in_the_chosen_providers_settings(project_dir: Path, launchkit: Launchkit, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAILDIR_PATH", raising=False)
    edit(project_dir / CONFIG_FILE, 'path = "mail"', 'path = "${MAILDIR_PATH}"')

    assert_clean_error(launchkit("check"), "launchkit.toml", "delivery.maildir.path", "MAILDIR_PATH")


@CHECK_PLAN_RUN
def test_invalid_project_timezone_shows_a_valid_one(project_dir: Path, launchkit: Launchkit, command: str) -> None:
    config = project_dir / CONFIG_FILE
    edit(config, 'timezone = "UTC"', 'timezone = "Europe/Pariss"')
    line = line_of(config, "Europe/Pariss")

    assert_clean_error(
        launchkit(command), "launchkit.toml", f"line {line}", "project.timezone", "'Europe/Pariss'", "'Europe/Paris'"
    )


def test_invalid_launch_timezone_names_the_launch_file(project_dir: Path, launchkit: Launchkit) -> None:
    launch = project_dir / LAUNCH_FILE
    edit(launch, '# timezone = "America/New_York"', 'timezone = "Mars/Olympus"')
    line = line_of(launch, "Mars/Olympus")

    assert_clean_error(launchkit("check"), "example-launch.toml", f"line {line}", "launch.timezone", "'Mars/Olympus'")


def test_an_email_id_used_twice_names_the_id(project_dir: Path, launchkit: Launchkit) -> None:
    edit(project_dir / LAUNCH_FILE, 'id = "faq"', 'id = "doors-open"')

    assert_clean_error(launchkit("check"), "example-launch.toml", "'doors-open'", "used twice")


def test_an_email_id_used_twice_points_at_the_second_one(project_dir: Path, launchkit: Launchkit) -> None:
    launch = project_dir / LAUNCH_FILE
    edit(launch, 'id = "faq"', 'id = "doors-open"')
    first, second = [n for n, text in enumerate(launch.read_text().splitlines(), 1) if 'id = "doors-open"' in text]

    assert_clean_error(launchkit("check"), "phase[2].email[2].id", f"line {second}")


# --- the command line ----------------------------------------------------------------------


def test_run_with_a_now_that_is_not_a_moment_shows_one_that_is(launchkit: Launchkit) -> None:
    result = launchkit("run", "--now", "next tuesday")

    assert_clean_error(result, "'next tuesday'", "2027-03-10 09:00")


def test_run_with_a_now_that_is_not_a_moment_names_the_option(launchkit: Launchkit) -> None:
    assert_clean_error(launchkit("run", "--now", "next tuesday"), "--now")


def test_a_launchkit_now_that_is_not_a_moment_names_the_variable(launchkit: Launchkit, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAUNCHKIT_NOW", "garbage")

    assert_clean_error(launchkit("plan"), "LAUNCHKIT_NOW", "'garbage'")


def test_preview_of_an_unknown_launch_lists_the_launches(launchkit: Launchkit) -> None:
    assert_clean_error(launchkit("preview", "no-such-launch", "welcome"), "'no-such-launch'", "example-launch")


def test_preview_of_an_unknown_email_lists_the_emails(launchkit: Launchkit) -> None:
    assert_clean_error(
        launchkit("preview", "example-launch", "no-such-email"), "'example-launch'", "'no-such-email'", "faq", "next-time"
    )


def test_preview_for_an_unknown_contact_says_how_to_find_contacts(launchkit: Launchkit) -> None:
    assert_clean_error(
        launchkit("preview", "example-launch", "welcome", "--contact", "nobody@example.com"),
        "nobody@example.com",
        "audience list",
    )


# --- audience files ------------------------------------------------------------------------


def assert_no_contacts(launchkit: Launchkit) -> None:
    listing = launchkit("audience", "list")
    assert listing.exit_code == 0, listing.output
    assert "@" not in listing.output, f"contacts were imported:\n{listing.output}"


def test_audience_import_of_a_latin1_file_imports_nothing_and_says_to_save_as_utf8(project_dir: Path, launchkit: Launchkit) -> None:
    path = project_dir / "contacts-latin1.csv"
    # A valid first row, then a Latin-1 "é" on line 3: nothing may be half-imported.
    path.write_bytes("email,first_name\nbob@example.com,Bob\nhelene@example.com,Hélène\n".encode("latin-1"))

    assert_clean_error(
        launchkit("audience", "import", str(path)), "contacts-latin1.csv", "UTF-8", "line 3", "nothing was imported"
    )
    assert_no_contacts(launchkit)


def test_audience_import_without_an_email_column_shows_the_headers_it_found(project_dir: Path, launchkit: Launchkit) -> None:
    path = project_dir / "no-email.csv"
    path.write_text("name,city\nAda Lovelace,London\n", encoding="utf-8")

    assert_clean_error(
        launchkit("audience", "import", str(path)), "no-email.csv", "no email column", "'name'", "'city'", "email address"
    )
    assert_no_contacts(launchkit)


def test_audience_add_of_an_invalid_address_says_why(launchkit: Launchkit) -> None:
    assert_clean_error(launchkit("audience", "add", "camille@@example.com"), "'camille@@example.com'", "not a valid email address")
    assert_no_contacts(launchkit)


def test_a_blank_postal_address_is_refused(project_dir: Path, launchkit: Launchkit) -> None:
    config = project_dir / "launchkit.toml"
    text = config.read_text(encoding="utf-8")
    start = text.index("postal_address = ")
    config.write_text(text[:start] + 'postal_address = "  "' + text[text.index("\n", start) :], encoding="utf-8")

    assert_clean_error(launchkit("check"), "launchkit.toml", "sender.postal_address", "postal address")


def test_a_phase_name_used_twice_is_refused(project_dir: Path, launchkit: Launchkit) -> None:
    launch = project_dir / LAUNCH_FILE
    edit(launch, 'name = "close"', 'name = "waitlist"')

    assert_clean_error(launchkit("check"), "example-launch.toml", "phase[3].name", "used twice")


def test_a_custom_layout_without_the_postal_address_is_refused(project_dir: Path, launchkit: Launchkit) -> None:
    (project_dir / BODIES / "layout.html").write_text(
        "<html><body>{{ content }}<a href=\"{{ unsubscribe_url }}\">unsubscribe</a></body></html>", encoding="utf-8"
    )

    assert_clean_error(launchkit("check"), "postal address")
