"""The ses provider: its SigV4 signer against AWS's examples, and real ticks against a local
SES v2 that verifies every signature."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest
from fakes.server import serve
from fakes.ses import UNAVAILABLE, FakeSES, expected_signature
from sqlalchemy import select

from launchkit import audience
from launchkit.errors import LaunchkitError
from launchkit.project import Project
from launchkit.runner import tick
from launchkit.store import outbox
from launchkit.store.tables import outbox as outbox_table
from launchkit_plugins.ses import AwsKey, authorization, signing_key

ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
WAITLIST_OPENS = "2030-01-02 09:05"  # the example launch's welcome email is due at 09:00
WAITLIST = ["ada@example.com", "grace@example.com", "linus@example.org"]  # tagged waitlist in audience.csv

# AWS's Signature Version 4 test suite: credentials, scope and the request of its examples.
SUITE_KEY = AwsKey("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
SUITE_HEADERS = {"Host": "example.amazonaws.com", "X-Amz-Date": "20150830T123600Z"}
SUITE_CREDENTIAL = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature="


def at(root: Path, moment: str) -> Project:
    return Project.open(root, now=moment)


def add_settings(root: Path, *lines: str) -> None:
    """More keys for [delivery.ses], the last table of launchkit.toml."""
    config = root / "launchkit.toml"
    config.write_text(config.read_text() + "".join(f"{line}\n" for line in lines))


def outbox_rows(root: Path) -> dict[str, outbox.Row]:
    """The welcome email's outbox rows, by address."""
    with at(root, WAITLIST_OPENS).store.connect() as conn:
        return {row.address: row for row in outbox.listing(conn, outbox.STATUSES, limit=0) if row.email_id == "welcome"}


@pytest.mark.parametrize(
    ("name", "method", "path", "query", "signature"),
    [
        ("get-vanilla", "GET", "/", "", "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
        ("post-vanilla", "POST", "/", "", "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"),
        ("get-vanilla-query-order-key-case", "GET", "/", "Param2=value2&Param1=value1", "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"),
        ("get-utf8", "GET", "/ሴ", "", "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85"),
    ],
)
def test_the_signer_matches_awss_signature_v4_test_suite(name: str, method: str, path: str, query: str, signature: str) -> None:
    signed = authorization(method, path, query, SUITE_HEADERS, b"", key=SUITE_KEY, region="us-east-1", service="service")
    assert signed == SUITE_CREDENTIAL + signature


def test_the_signing_key_is_derived_as_aws_documents_it() -> None:
    key = signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20120215", "us-east-1", "iam")
    assert key.hex() == "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"


def test_the_fake_ses_verifies_signatures_as_aws_computes_them() -> None:
    headers = {"host": "example.amazonaws.com", "x-amz-date": "20150830T123600Z"}
    expected = expected_signature(SUITE_KEY.secret_access_key, "GET", "/", "", headers, b"", "20150830T123600Z", "us-east-1", "service")
    assert expected == "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"


@pytest.fixture
def ses() -> FakeSES:
    return FakeSES(region="eu-west-1", access_key_id=ACCESS_KEY, secret_access_key=SECRET, configuration_sets={"launches"})


@pytest.fixture
def root(use_provider: Callable[..., Path], ses: FakeSES, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    with serve(ses.app) as url:
        table = (
            "[delivery.ses]\n"
            'region = "eu-west-1"\n'
            'access_key_id = "${AWS_ACCESS_KEY_ID}"\n'
            'secret_access_key = "${AWS_SECRET_ACCESS_KEY}"\n'
            'configuration_set = "launches"\n'
            f'base_url = "{url}"\n'
        )
        root = use_provider("ses", table, tracking="https://go.example.com")
        audience.import_csv(at(root, "2030-01-01 10:00"), root / "audience.csv")
        yield root


def test_each_message_is_one_signed_send_email_carrying_the_raw_message_and_its_tags(root: Path, ses: FakeSES) -> None:
    report = tick(at(root, WAITLIST_OPENS))

    assert report.sent == 3 and ses.verified_signatures == 3
    assert sorted(m.to for m in ses.accepted) == sorted(WAITLIST)
    [ada] = ses.to("ada@example.com")
    mime = ada.mime
    assert mime["From"] == "Your Name <you@example.com>" and mime["Reply-To"] == "you@example.com"
    assert mime["Subject"] == "You're on the list, Ada!"
    assert mime["List-Unsubscribe"].startswith("<https://go.example.com/u/")  # one line, unfolded, as launchkit wrote it
    assert mime["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mime["Message-ID"].startswith("<example-launch.welcome.")
    assert "Hi Ada," in mime.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert ada.tags == {"launch": "example-launch", "email": "welcome"}
    assert ada.configuration_set == "launches"
    with at(root, WAITLIST_OPENS).store.connect() as conn:
        recorded = set(conn.execute(select(outbox_table.c.provider_message_id).where(outbox_table.c.status == "sent")).scalars())
    assert recorded == {m.message_id for m in ses.accepted}


def test_a_tampered_secret_is_refused_403_and_stops_the_tick_until_it_is_fixed(root: Path, ses: FakeSES, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET[:-1] + "Z")

    with pytest.raises(LaunchkitError) as refused:
        tick(at(root, WAITLIST_OPENS))

    message = str(refused.value)
    assert message.startswith("provider 'ses' cannot send: ses: HTTP 403 InvalidSignatureException: The request signature we calculated does not match")
    assert "secret_access_key" in message and "the messages stay scheduled" in message
    assert ses.accepted == [] and ses.verified_signatures == 0 and ses.requests == 1
    assert {row.status for row in outbox_rows(root).values()} == {"scheduled"}
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)  # fixed
    assert tick(at(root, "2030-01-02 09:10")).sent == 3
    assert sorted(m.to for m in ses.accepted) == sorted(WAITLIST)


def test_temporary_credentials_send_and_sign_the_session_token(root: Path, ses: FakeSES, monkeypatch: pytest.MonkeyPatch) -> None:
    ses.session_token = "FwoGZXIvYXdzEXAMPLETOKEN"
    monkeypatch.setenv("AWS_SESSION_TOKEN", ses.session_token)
    add_settings(root, 'session_token = "${AWS_SESSION_TOKEN}"')

    assert tick(at(root, WAITLIST_OPENS)).sent == 3


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("MessageRejected", "Email address is not verified. The following identities failed the check in region EU-WEST-1: grace@example.com"),
        ("MailFromDomainNotVerifiedException", "The MAIL FROM domain bounce.example.com is not verified."),
    ],
)
def test_a_message_ses_rejects_fails_alone_and_permanently(root: Path, ses: FakeSES, kind: str, words: str) -> None:
    ses.reject["grace@example.com"] = (kind, words)

    report = tick(at(root, WAITLIST_OPENS))

    assert (report.sent, report.failed) == (2, 1)
    assert sorted(m.to for m in ses.accepted) == ["ada@example.com", "linus@example.org"]
    grace = outbox_rows(root)["grace@example.com"]
    assert grace.status == "failed" and grace.reason == f"ses: HTTP 400 {kind}: {words}"


def test_throttling_is_retried_by_a_later_tick_and_each_message_is_sent_once(root: Path, ses: FakeSES) -> None:
    ses.fail_next(3)  # TooManyRequestsException, 429: "Maximum sending rate exceeded."

    report = tick(at(root, WAITLIST_OPENS))
    assert report.retried == 3 and ses.accepted == []

    report = tick(at(root, "2030-01-02 09:07"))
    assert report.sent == 3
    assert sorted(m.to for m in ses.accepted) == sorted(WAITLIST)


def test_random_outages_end_with_every_message_sent_exactly_once(root: Path, ses: FakeSES) -> None:
    people = [f"reader{i}@example.com" for i in range(30)]
    for address in people:
        audience.add(at(root, "2030-01-01 11:00"), address, tags=["newsletter", "waitlist"])
    ses.fault_rate, ses.fault = 0.3, UNAVAILABLE

    for moment in ["2030-01-02 09:05", "2030-01-02 10:06", "2030-01-02 11:07", "2030-01-02 12:08", "2030-01-02 13:09"]:
        tick(at(root, moment))

    assert sorted(m.to for m in ses.accepted) == sorted(people + WAITLIST)
    assert ses.requests > len(ses.accepted)
    assert {row.status for row in outbox_rows(root).values()} == {"sent"}


def test_a_lost_answer_leaves_the_message_in_doubt_because_ses_has_no_idempotency_key(root: Path, ses: FakeSES) -> None:
    add_settings(root, "concurrency = 1", "timeout = 0.5")
    ses.slow_next(1, seconds=1.5)

    report = tick(at(root, WAITLIST_OPENS))
    assert (report.sent, report.in_doubt) == (2, 1)

    tick(at(root, "2030-01-02 12:00"))
    assert len(ses.accepted) == 3 and ses.requests == 3  # SES has it once; nothing was resent


def test_the_region_names_the_endpoint_and_must_be_an_aws_region(root: Path) -> None:
    config = root / "launchkit.toml"
    text = config.read_text()
    base_url = next(line for line in text.splitlines() if line.startswith('base_url = "http://127.0.0.1'))
    config.write_text(text.replace(base_url, ""))
    provider = at(root, WAITLIST_OPENS).provider()
    assert str(provider.client.base_url) == "https://email.eu-west-1.amazonaws.com"  # type: ignore[attr-defined]
    provider.close()

    config.write_text(text.replace('region = "eu-west-1"', 'region = "Ireland"'))
    with pytest.raises(LaunchkitError, match=r"\[delivery.ses\] needs region"):
        at(root, WAITLIST_OPENS).provider()


def test_importing_the_plugin_does_not_load_httpx() -> None:
    code = "import sys, launchkit_plugins.ses; print('httpx' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
