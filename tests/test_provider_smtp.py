"""The smtp provider against a real SMTP server (aiosmtpd, in-process on loopback), driven by ticks.

The example launch from `launchkit init` (dated from 2030-01-01): waitlist 2030-01-02 09:00,
behind-the-scenes 01-04 09:00, cart 01-09 09:00 → 01-13 23:59 (faq 01-10 10:00, last-call
01-13 20:59), close 01-14 08:00 (next-time 01-15 10:00). Its audience.csv has five
contacts, three of them on the waitlist: ada, grace and linus (who has no name).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import re
import socket
import ssl
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from click.testing import CliRunner

from launchkit import audience
from launchkit.cli import cli
from launchkit.errors import LaunchkitError
from launchkit.project import Project
from launchkit.runner import tick
from launchkit.scaffold import init_project
from launchkit.store import outbox
from launchkit.types import OutgoingMessage, SendStatus

SENDER = "Élise Martin 🚀 <elise@example.com>"
FAQ_SUBJECT = "Les portes sont ouvertes 🎉 — dernière chance"
WAITLIST = ["ada@example.com", "grace@example.com", "linus@example.org"]
WAITLIST_OPENS = "2030-01-02 09:05"
# Every moment something is due, each ticked twice: a second tick must send nothing.
LAUNCH_TICKS = [
    "2030-01-02 09:05", "2030-01-02 09:06", "2030-01-04 09:05", "2030-01-04 09:06",
    "2030-01-09 09:05", "2030-01-09 09:06", "2030-01-10 10:05", "2030-01-10 10:06",
    "2030-01-13 21:05", "2030-01-13 21:06", "2030-01-14 08:05", "2030-01-15 10:05",
    "2030-01-15 10:06", "2030-01-20 09:00",
]


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LAUNCHKIT_NOW", "LAUNCHKIT_PROJECT", "LAUNCHKIT_LOAD_PLUGINS", "LAUNCHKIT_SECRET"):
        monkeypatch.delenv(name, raising=False)


# The SMTP server.


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    mail_options: list[str]
    tls: bool
    login: str | None

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.content, policy=email.policy.default)  # type: ignore[return-value]


@dataclass
class Mailbox:
    """An aiosmtpd handler that keeps what it accepts and answers as a test tells it to."""

    received: list[Received] = field(default_factory=list)
    peers: list[Any] = field(default_factory=list)  #: one per connection (EHLO seen from a new client port)
    quits: int = 0
    rcpt_replies: dict[str, str] = field(default_factory=dict)  #: recipient → reply to its RCPT TO
    mail_replies: list[str] = field(default_factory=list)  #: replies to the next MAIL FROMs, in order
    drop_after_data: set[str] = field(default_factory=set)  #: recipients whose message is taken, never confirmed
    dropped: list[bytes] = field(default_factory=list)
    hidden_extensions: set[str] = field(default_factory=set)  #: EHLO keywords not offered, e.g. "8BITMIME"
    data_reply: str | None = None  #: the reply to a message accepted; else one with a queue id
    servers: list[Any] = field(default_factory=list)

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname
        if session.peer not in self.peers:
            self.peers.append(session.peer)
            self.servers.append(server)
        return [r for r in responses if r[4:].split(" ")[0].upper() not in self.hidden_extensions]

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]) -> str:
        if self.mail_replies:
            return self.mail_replies.pop(0)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]) -> str:
        if address in self.rcpt_replies:
            return self.rcpt_replies[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.drop_after_data & set(envelope.rcpt_tos):
            # The whole message has arrived; its confirmation never will.
            self.dropped.append(envelope.original_content)
            server.transport.close()
            return "250 OK"
        login = session.auth_data if session.authenticated else None
        self.received.append(
            Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content, list(envelope.mail_options), session.ssl is not None, login)
        )
        return self.data_reply or f"250 2.0.0 Ok: queued as Q{len(self.received):05d}"

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        self.quits += 1
        return "221 Bye"

    def to(self, address: str) -> list[EmailMessage]:
        return [r.message for r in self.received if address in r.rcpt_tos]

    def close_connections(self, controller: Controller) -> None:
        """Close every open client connection from the server's side, as an idle timeout does."""

        async def close() -> None:
            for server in self.servers:
                server.transport.close()

        asyncio.run_coroutine_threadsafe(close(), controller.loop).result(timeout=5)


@dataclass
class SmtpServer:
    mailbox: Mailbox
    controller: Controller
    port: int


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def start_server() -> Iterator[Callable[..., SmtpServer]]:
    """Start an aiosmtpd server on 127.0.0.1: ``start_server(tls_context=…, authenticator=…)``."""
    started: list[Controller] = []

    def start(**options: Any) -> SmtpServer:
        mailbox = Mailbox()
        port = _free_port()
        controller = Controller(mailbox, hostname="127.0.0.1", port=port, **options)
        controller.start()
        started.append(controller)
        return SmtpServer(mailbox, controller, port)

    yield start
    for controller in started:
        controller.stop()


@pytest.fixture
def server(start_server: Callable[..., SmtpServer]) -> SmtpServer:
    return start_server()


# The project.


def _toml(value: object) -> str:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, (str, int, float)) else str(value)


def make_project(folder: Path, provider: str = "smtp", **smtp: object) -> Path:
    """`launchkit init` with the sender and a subject in French (accents, emoji), tracking on,
    delivery through ``[delivery.smtp]`` set to ``smtp``, and the example audience imported."""
    init_project(folder, date(2030, 1, 1))
    config = folder / "launchkit.toml"
    text = config.read_text(encoding="utf-8")
    text = text.replace('from = "Your Name <you@example.com>"', f"from = {_toml(SENDER)}")
    text = text.replace('base_url = ""', 'base_url = "https://go.example.com"')
    if provider == "smtp":
        text = text.replace('provider = "maildir"', 'provider = "smtp"')
        text += "\n[delivery.smtp]\n" + "".join(f"{key} = {_toml(value)}\n" for key, value in smtp.items())
    config.write_text(text, encoding="utf-8")
    launch = folder / "sequences" / "example-launch.toml"
    launch.write_text(launch.read_text(encoding="utf-8").replace('"Your questions, answered"', _toml(FAQ_SUBJECT)), encoding="utf-8")
    audience.import_csv(at(folder, "2030-01-01 12:00"), folder / "audience.csv")
    return folder


def smtp_project(folder: Path, server: SmtpServer, **smtp: object) -> Path:
    return make_project(folder, host="127.0.0.1", port=server.port, **({"security": "none"} | smtp))


def at(root: Path, moment: str) -> Project:
    return Project.open(root, now=moment)


def outbox_counts(root: Path, email_id: str) -> dict[str, int]:
    with at(root, WAITLIST_OPENS).store.connect() as conn:
        return {status: n for (_, e, status), n in outbox.counts(conn).items() if e == email_id}


def outbox_reasons(root: Path, status: str, email_id: str = "welcome") -> dict[str, str]:
    """address → reason of the rows of ``email_id`` in ``status``."""
    with at(root, WAITLIST_OPENS).store.connect() as conn:
        return {row.address: row.reason or "" for row in outbox.listing(conn, [status]) if row.email_id == email_id}


def maildir_messages(root: Path) -> list[EmailMessage]:
    return [
        email.message_from_bytes(path.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
        for path in sorted((root / "mail" / "new").iterdir())
    ]


def identity(message: EmailMessage) -> tuple[str, str, str]:
    return (message["To"].addresses[0].addr_spec, message["Subject"], message["Message-ID"])


# A whole launch.


def test_a_whole_launch_reaches_the_smtp_server_exactly_as_maildir_writes_it(tmp_path: Path, server: SmtpServer) -> None:
    through_smtp = smtp_project(tmp_path / "smtp", server)
    reference = make_project(tmp_path / "maildir", provider="maildir")
    for moment in LAUNCH_TICKS:
        tick(at(through_smtp, moment))
        tick(at(reference, moment))

    received = server.mailbox.received
    messages = [r.message for r in received]
    expected = maildir_messages(reference)
    assert len(expected) == 26  # welcome and behind-the-scenes to 3, four cart and close emails to 5
    assert Counter(identity(m) for m in messages) == Counter(identity(m) for m in expected)
    message_ids = [m["Message-ID"] for m in messages]
    assert len(set(message_ids)) == len(message_ids)  # nobody got anything twice
    for record, message in zip(received, messages):
        assert record.mail_from == "elise@example.com"
        assert record.rcpt_tos == [message["To"].addresses[0].addr_spec]
        assert message.get_content_type() == "multipart/alternative"
        assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]
        assert message["List-Unsubscribe"].startswith("<https://go.example.com/u/")
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert re.fullmatch(r"<[^<>@\s]+@[^<>@\s]+>", message["Message-ID"])
        assert message["From"].addresses[0].display_name == "Élise Martin 🚀"
        assert message["From"].addresses[0].addr_spec == "elise@example.com"
    faq = [m for m in messages if m["Message-ID"].startswith("<example-launch.faq.")]
    assert len(faq) == 5
    assert {m["Subject"] for m in faq} == {FAQ_SUBJECT}
    assert {m["To"].addresses[0].display_name for m in server.mailbox.to("linus@example.org")} == {""}  # no name, no quotes
    with at(through_smtp, WAITLIST_OPENS).store.connect() as conn:
        statuses = Counter()
        for (_, _, status), n in outbox.counts(conn).items():
            statuses[status] += n
    assert statuses["sent"] == 26 and set(statuses) <= {"sent", "skipped"}


def test_a_line_break_in_a_first_name_is_not_sent_and_the_others_are(tmp_path: Path, server: SmtpServer) -> None:
    root = smtp_project(tmp_path / "p", server)
    audience.add(at(root, "2030-01-01 12:00"), "eve@example.com", first_name="Eve\r\nBcc: victim@example.com", tags=["newsletter", "waitlist"])
    report = tick(at(root, WAITLIST_OPENS))
    assert (report.sent, report.failed) == (3, 1)
    assert sorted(r.rcpt_tos[0] for r in server.mailbox.received) == WAITLIST
    assert not any(b"victim" in r.content for r in server.mailbox.received)
    reason = outbox_reasons(root, "failed")["eve@example.com"]
    assert reason.startswith("smtp: ") and "line break" in reason
    assert tick(at(root, "2030-01-02 10:05")).sent == 0  # permanent: not tried again


def test_a_line_break_a_plugin_puts_in_a_subject_is_not_sent(tmp_path: Path, server: SmtpServer) -> None:
    root = smtp_project(tmp_path / "p", server)
    (root / "plugins" / "retitle.py").write_text(
        "from launchkit import hookimpl\n\n\n"
        "@hookimpl\n"
        "def before_send(message):\n"
        "    if message.to == 'grace@example.com':\n"
        "        message.subject += '\\r\\nBcc: victim@example.com'\n"
    )
    report = tick(at(root, WAITLIST_OPENS))
    assert (report.sent, report.failed) == (2, 1)
    assert sorted(r.rcpt_tos[0] for r in server.mailbox.received) == ["ada@example.com", "linus@example.org"]
    assert not any(b"victim" in r.content for r in server.mailbox.received)
    assert "the subject contains a line break" in outbox_reasons(root, "failed")["grace@example.com"]


# One connection.


def test_fifty_messages_in_several_batches_share_one_connection(tmp_path: Path, server: SmtpServer) -> None:
    root = smtp_project(tmp_path / "p", server, max_batch=20)
    project = at(root, "2030-01-01 12:00")
    for i in range(47):
        audience.add(project, f"fan{i:02d}@example.com", first_name=f"Fan {i}", tags=["newsletter", "waitlist"])
    report = tick(at(root, WAITLIST_OPENS))
    assert report.sent == 50
    assert len(server.mailbox.received) == 50
    assert len(server.mailbox.peers) == 1
    assert server.mailbox.quits == 1  # close() said goodbye


def test_a_connection_the_server_closed_while_idle_is_opened_again(tmp_path: Path, server: SmtpServer) -> None:
    provider = at(smtp_project(tmp_path / "p", server), WAITLIST_OPENS).provider()
    assert [r.status for r in provider.send([message(1), message(2)])] == [SendStatus.ACCEPTED] * 2
    server.mailbox.close_connections(server.controller)
    results = provider.send([message(3), message(4)])
    provider.close()
    assert [r.status for r in results] == [SendStatus.ACCEPTED] * 2
    assert [r.rcpt_tos[0] for r in server.mailbox.received] == [f"reader{i}@example.com" for i in (1, 2, 3, 4)]
    assert len(server.mailbox.peers) == 2


def test_a_421_to_mail_from_opens_a_new_connection_and_goes_on(tmp_path: Path, server: SmtpServer) -> None:
    provider = at(smtp_project(tmp_path / "p", server), WAITLIST_OPENS).provider()
    provider.send([message(1)])
    server.mailbox.mail_replies.append("421 4.4.2 Idle for too long, closing")
    results = provider.send([message(2)])
    provider.close()
    assert results[0].status == SendStatus.ACCEPTED
    assert len(server.mailbox.received) == 2
    assert len(server.mailbox.peers) == 2


# What the server answers.


def test_the_servers_queue_id_is_kept_or_else_the_message_id(tmp_path: Path, server: SmtpServer) -> None:
    provider = at(smtp_project(tmp_path / "p", server), WAITLIST_OPENS).provider()
    with_queue_id = provider.send([message(1)])[0]
    server.mailbox.data_reply = "250 OK"
    bare = provider.send([message(2)])[0]
    provider.close()
    assert with_queue_id.provider_message_id == "2.0.0 Ok: queued as Q00001"
    assert bare.provider_message_id == "<test.note.2@example.com>"


def test_451_is_retried_on_a_later_tick_and_550_fails_for_good(tmp_path: Path, server: SmtpServer) -> None:
    root = smtp_project(tmp_path / "p", server)
    server.mailbox.rcpt_replies = {
        "grace@example.com": "451 4.3.0 Mailbox busy, try again later",
        "linus@example.org": "550 5.1.1 <linus@example.org>: no such user",
    }
    report = tick(at(root, WAITLIST_OPENS))
    assert (report.sent, report.retried, report.failed) == (1, 1, 1)
    assert "smtp: 550 5.1.1 <linus@example.org>: no such user" in report.failures[0]
    assert outbox_reasons(root, "scheduled")["grace@example.com"] == "smtp: 451 4.3.0 Mailbox busy, try again later (in reply to RCPT TO <grace@example.com>)"

    del server.mailbox.rcpt_replies["grace@example.com"]
    tick(at(root, "2030-01-02 09:30"))
    tick(at(root, "2030-01-02 10:30"))
    assert [r.rcpt_tos[0] for r in server.mailbox.received] == ["ada@example.com", "grace@example.com"]
    assert outbox_counts(root, "welcome") == {"sent": 2, "failed": 1}


def test_no_such_user_marks_the_contact_bounced_but_a_policy_refusal_does_not(tmp_path: Path, server: SmtpServer) -> None:
    root = smtp_project(tmp_path / "p", server)
    server.mailbox.rcpt_replies = {
        "ada@example.com": "550 5.7.1 <ada@example.com>: Recipient address rejected: Access denied",
        "grace@example.com": "550 Requested action not taken: no such user here",
        "linus@example.org": "550 5.1.1 <linus@example.org>: Recipient address rejected: User unknown",
    }
    assert tick(at(root, WAITLIST_OPENS)).failed == 3
    status = {contact.email: contact.status for contact, _ in audience.contacts(at(root, WAITLIST_OPENS))}
    assert (status["ada@example.com"], status["grace@example.com"], status["linus@example.org"]) == ("subscribed", "bounced", "bounced")


def test_a_message_whose_confirmation_is_lost_is_in_doubt_and_not_resent(tmp_path: Path, server: SmtpServer) -> None:
    root = smtp_project(tmp_path / "p", server)
    server.mailbox.drop_after_data = {"grace@example.com"}
    report = tick(at(root, WAITLIST_OPENS))
    assert (report.sent, report.in_doubt) == (2, 1)
    assert len(server.mailbox.dropped) == 1
    assert "in doubt" in outbox_reasons(root, "in_doubt")["grace@example.com"]

    server.mailbox.drop_after_data = set()
    tick(at(root, "2030-01-02 09:30"))
    tick(at(root, "2030-01-02 12:00"))
    assert sorted(r.rcpt_tos[0] for r in server.mailbox.received) == ["ada@example.com", "linus@example.org"]
    assert outbox_counts(root, "welcome") == {"sent": 2, "in_doubt": 1}


def test_a_server_that_never_answers_is_tried_once_per_tick_and_its_messages_wait(tmp_path: Path) -> None:
    with socket.socket() as silent:  # accepts connections (the kernel does), never greets
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        root = make_project(tmp_path / "p", host="127.0.0.1", port=silent.getsockname()[1], security="none", timeout=0.5)
        report = tick(at(root, WAITLIST_OPENS))
        silent.settimeout(0.2)
        attempts = 0
        with pytest.raises(TimeoutError):
            while True:
                silent.accept()[0].close()
                attempts += 1
    assert report.retried == 3
    assert attempts == 1
    reasons = outbox_reasons(root, "scheduled").values()
    assert all(reason.startswith("smtp: cannot connect to 127.0.0.1:") and "timed out" in reason for reason in reasons)


def test_launchkit_run_says_why_messages_wait_once_not_once_per_message(tmp_path: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # nothing listens once the socket is closed
    root = make_project(tmp_path / "p", host="127.0.0.1", port=port, security="none")
    result = CliRunner().invoke(cli, ["--project", str(root), "run", "--now", WAITLIST_OPENS])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "Tick: 3 to retry."
    assert len(lines) == 2 and lines[1].startswith(f"  smtp: cannot connect to 127.0.0.1:{port}") and lines[1].endswith("(×3)")


# 8-bit content.


def test_8bit_content_is_declared_or_reencoded_for_servers_without_8bitmime(tmp_path: Path, start_server: Callable[..., SmtpServer]) -> None:
    modern = start_server()
    old = start_server()
    old.mailbox.hidden_extensions = {"8BITMIME"}
    for server in (modern, old):
        provider = at(smtp_project(tmp_path / str(server.port), server), WAITLIST_OPENS).provider()
        assert provider.send([message(1)])[0].status == SendStatus.ACCEPTED
        provider.close()
    sent, reencoded = modern.mailbox.received[0], old.mailbox.received[0]
    assert "BODY=8BITMIME" in sent.mail_options and not sent.content.isascii()
    assert "BODY=8BITMIME" not in reencoded.mail_options and reencoded.content.isascii()
    for record in (sent, reencoded):
        assert f"SIZE={len(record.content)}" in record.mail_options  # the size of what was sent
        text, html = (part.get_content().replace("\r\n", "\n") for part in record.message.iter_parts())
        assert text == message(1).text  # accents intact, and the line starting with a dot too
        assert html.strip() == message(1).html


def message(n: int) -> OutgoingMessage:
    return OutgoingMessage(
        key=f"test/note/{n}",
        message_id=f"<test.note.{n}@example.com>",
        sender=SENDER,
        to=f"reader{n}@example.com",
        to_name=f"Lecteur {n}",
        subject="Café ☕",
        text="Bonjour, voilà la suite.\n.\n.une ligne qui commence par un point\n",
        html="<p>Bonjour, voilà la suite.</p>",
    )


# TLS and passwords.


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A certificate authority of our own and a certificate it signed for 127.0.0.1 and localhost."""
    folder = tmp_path_factory.mktemp("tls")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=launchkit test CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl("req", *key, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    (folder / "server.ext").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n"
    )
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.pem", "-days", "2", "-extfile", "server.ext")
    return {"ca": folder / "ca.pem", "cert": folder / "server.pem", "key": folder / "server.key"}


@pytest.fixture
def server_tls(certificates: dict[str, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificates["cert"], certificates["key"])
    return context


def only_camille(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    valid = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"camille", b"s3cret")
    # handled=False: aiosmtpd answers (235, or 535 on failure) itself.
    return AuthResult(success=valid, handled=False, auth_data=auth_data.login.decode() if valid else None)


def test_starttls_with_the_relays_own_ca_and_a_password_delivers(
    tmp_path: Path, start_server: Callable[..., SmtpServer], server_tls: ssl.SSLContext, certificates: dict[str, Path]
) -> None:
    server = start_server(tls_context=server_tls, require_starttls=True, authenticator=only_camille, auth_require_tls=True)
    root = smtp_project(tmp_path / "p", server, security="starttls", ca_file=str(certificates["ca"]), username="camille", password="s3cret")
    assert tick(at(root, WAITLIST_OPENS)).sent == 3
    assert [(r.tls, r.login) for r in server.mailbox.received] == [(True, "camille")] * 3


def test_implicit_tls_with_the_relays_own_ca_delivers(
    tmp_path: Path, start_server: Callable[..., SmtpServer], server_tls: ssl.SSLContext, certificates: dict[str, Path]
) -> None:
    # aiosmtpd counts only STARTTLS as TLS for auth_require_tls; this connection is TLS from its first byte.
    server = start_server(ssl_context=server_tls, authenticator=only_camille, auth_require_tls=False)
    root = smtp_project(tmp_path / "p", server, security="tls", ca_file=str(certificates["ca"]), username="camille", password="s3cret")
    assert tick(at(root, WAITLIST_OPENS)).sent == 3
    assert [r.login for r in server.mailbox.received] == ["camille"] * 3
    assert len(server.mailbox.peers) == 1


def test_a_wrong_password_refused_535_stops_the_tick_and_the_next_tick_sends_everything_once(
    tmp_path: Path, start_server: Callable[..., SmtpServer], server_tls: ssl.SSLContext, certificates: dict[str, Path]
) -> None:
    server = start_server(tls_context=server_tls, require_starttls=True, authenticator=only_camille, auth_require_tls=True)
    root = smtp_project(tmp_path / "p", server, security="starttls", ca_file=str(certificates["ca"]), username="camille", password="guess")
    with pytest.raises(LaunchkitError, match=r"provider 'smtp' cannot send: smtp: 127\.0\.0\.1:\d+ refused logging in as 'camille': 535 .*Nothing was sent"):
        tick(at(root, WAITLIST_OPENS))
    assert server.mailbox.received == []
    assert len(server.mailbox.peers) == 1  # one refusal is enough for the whole tick
    assert outbox_counts(root, "welcome") == {"scheduled": 3}
    config = root / "launchkit.toml"
    config.write_text(config.read_text(encoding="utf-8").replace('password = "guess"', 'password = "s3cret"'), encoding="utf-8")  # fixed
    assert tick(at(root, "2030-01-02 09:10")).sent == 3
    assert sorted(r.login for r in server.mailbox.received) == ["camille"] * 3
    assert outbox_counts(root, "welcome") == {"sent": 3}


def test_a_server_silent_after_the_password_is_retried_later_not_failed(
    tmp_path: Path, start_server: Callable[..., SmtpServer], server_tls: ssl.SSLContext, certificates: dict[str, Path]
) -> None:
    def never_answers(*args: Any) -> AuthResult:
        return AuthResult(success=False, handled=True)  # "handled": aiosmtpd leaves the reply to us, and none comes

    server = start_server(tls_context=server_tls, require_starttls=True, authenticator=never_answers, auth_require_tls=True)
    root = smtp_project(tmp_path / "p", server, security="starttls", ca_file=str(certificates["ca"]), username="camille", password="s3cret", timeout=0.5)
    report = tick(at(root, WAITLIST_OPENS))
    assert (report.retried, report.failed) == (3, 0)
    assert all("timed out" in reason for reason in outbox_reasons(root, "scheduled").values())


def test_a_certificate_from_an_unknown_authority_is_refused(
    tmp_path: Path, start_server: Callable[..., SmtpServer], server_tls: ssl.SSLContext
) -> None:
    server = start_server(tls_context=server_tls, require_starttls=True)
    root = smtp_project(tmp_path / "p", server, security="starttls")  # no ca_file: the system's authorities
    report = tick(at(root, WAITLIST_OPENS))
    assert report.retried == 3
    assert server.mailbox.received == []
    assert all("CERTIFICATE_VERIFY_FAILED" in reason for reason in outbox_reasons(root, "scheduled").values())


def test_starttls_chosen_but_not_offered_stops_the_tick_and_sends_nothing_in_clear_text(
    tmp_path: Path, server: SmtpServer, certificates: dict[str, Path]
) -> None:
    root = smtp_project(tmp_path / "p", server, security="starttls", ca_file=str(certificates["ca"]))
    with pytest.raises(LaunchkitError, match='does not offer STARTTLS.*or "none" for a relay'):
        tick(at(root, WAITLIST_OPENS))
    assert server.mailbox.received == []
    assert outbox_reasons(root, "failed") == {} and len(outbox_reasons(root, "scheduled")) == 3


# Settings.


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ({"port": 2525}, r"\[delivery.smtp\] needs host"),
        ({"host": "smtp.example.com", "security": "ssl"}, r"security: expected \"starttls\", \"tls\" or \"none\"; found 'ssl'"),
        ({"host": "smtp.example.com", "port": "submission"}, r"port: expected a port number"),
        ({"host": "smtp.example.com", "username": "camille"}, r"has username but no password"),
        ({"host": "smtp.example.com", "security": "none", "username": "camille", "password": "x"}, r"unencrypted"),
        ({"host": "smtp.example.com", "ca_file": "missing.pem"}, r"ca_file: .*missing.pem does not exist"),
    ],
)
def test_settings_mistakes_are_explained(tmp_path: Path, settings: dict[str, object], error: str) -> None:
    root = make_project(tmp_path / "p", **settings)
    with pytest.raises(LaunchkitError, match=error):
        at(root, WAITLIST_OPENS).provider()


@pytest.mark.parametrize(("security", "port"), [("starttls", 587), ("tls", 465), ("none", 25)])
def test_the_port_follows_security_when_not_given(tmp_path: Path, security: str, port: int) -> None:
    provider = at(make_project(tmp_path / "p", host="smtp.example.com", security=security), WAITLIST_OPENS).provider()
    assert provider.settings.port == port  # type: ignore[attr-defined]
