"""How fast the ``smtp`` provider sends over one reused connection.

    .venv/bin/python benchmarks/smtp.py [--messages 5000] [--batch 100]

An aiosmtpd server runs in a separate process on loopback and counts what it accepts (and
the connections it sees). This process builds N varied messages (names, subjects with
accents and emoji, bodies of different lengths, the List-Unsubscribe headers a launch
sets), then hands them to the provider in batches, as a tick does, and reports messages/s.
The time launchkit.mime.to_bytes takes for the same messages is measured apart, so the
figure splits into MIME (building the bytes) and SMTP (the dialogue).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import socket
import sys
import time
from pathlib import Path
from typing import Any

SENDER = "Élise Martin 🚀 <elise@example.com>"
FIRST_NAMES = ["Ada", "Grace", "Alan", "Katherine", "Linus", "Zoë", "Renée", "Jürgen", "Amélie", "Søren", None]
SUBJECTS = [
    "You're on the list, {name}!",
    "Les portes sont ouvertes 🎉 — dernière chance",
    "How I built this course (and what I got wrong)",
    "{name}, la formation ferme dans 3 heures ⏰",
    "Your questions, answered",
]
PARAGRAPHS = [
    "Thanks for joining the waitlist. Over the next days I'll share how the course came together.",
    "Voici ce que vous trouverez à l'intérieur : douze leçons, des exercices corrigés et une communauté.",
    "The cart opens on Monday at 9:00. Early readers get the launch price for the first 48 hours.",
    "Si vous avez une question, répondez simplement à cet e-mail : je lis tout, même le week-end.",
    ".A line that starts with a dot, which SMTP must escape.",
    "Here is the link to the sales page, with the full curriculum and the refund policy.",
]


def serve(port: int, ready: Any, stop: Any, results: Any) -> None:
    """The server process: accept everything, count messages, bytes and connections."""
    from aiosmtpd.controller import Controller

    class Counter:
        def __init__(self) -> None:
            self.messages = 0
            self.bytes = 0
            self.peers: set[Any] = set()

        async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]) -> list[str]:
            session.host_name = hostname
            self.peers.add(session.peer)
            return responses

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            self.messages += 1
            self.bytes += len(envelope.original_content)
            return f"250 2.0.0 Ok: queued as B{self.messages:07d}"

    counter = Counter()
    controller = Controller(counter, hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    stop.wait()
    controller.stop()
    results.put({"messages": counter.messages, "bytes": counter.bytes, "connections": len(counter.peers)})


def messages(count: int, seed: int = 7) -> list[Any]:
    from launchkit.types import OutgoingMessage

    rng = random.Random(seed)
    built = []
    for n in range(count):
        name = FIRST_NAMES[n % len(FIRST_NAMES)]
        paragraphs = [rng.choice(PARAGRAPHS) for _ in range(rng.randint(3, 12))]
        unsubscribe = f"https://go.example.com/u/{rng.getrandbits(128):032x}"
        text = f"Hi {name or 'friend'},\n\n" + "\n\n".join(paragraphs) + f"\n\n--\nUnsubscribe: {unsubscribe}\n12 rue des Lilas, 69003 Lyon\n"
        html = (
            f"<!doctype html><html lang=\"fr\"><body><p>Hi {name or 'friend'},</p>"
            + "".join(f"<p>{p}</p>" for p in paragraphs)
            + f"<p><a href=\"{unsubscribe}\">Unsubscribe</a> · 12 rue des Lilas, 69003 Lyon</p>"
            + f"<img src=\"https://go.example.com/o/{n:08x}.gif\" width=\"1\" height=\"1\" alt=\"\"></body></html>"
        )
        built.append(
            OutgoingMessage(
                key=f"bench/email/{n}",
                message_id=f"<bench.email.{n}.{rng.getrandbits(32):08x}@example.com>",
                sender=SENDER,
                to=f"reader{n}@example.com",
                to_name=f"{name} Martin" if name else None,
                subject=SUBJECTS[n % len(SUBJECTS)].format(name=name or "friend"),
                text=text,
                html=html,
                reply_to="elise@example.com",
                headers={"List-Unsubscribe": f"<{unsubscribe}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
                launch="bench",
                email="email",
            )
        )
    return built


def smtp_provider(port: int, max_batch: int) -> Any:
    """The provider as launchkit builds it: through the plugin's register_providers hook."""
    from launchkit.types import ProviderContext
    from launchkit_plugins import smtp

    factories: dict[str, Any] = {}
    smtp.register_providers(register=lambda name, factory: factories.__setitem__(name, factory))
    settings = {"host": "127.0.0.1", "port": port, "security": "none", "max_batch": max_batch}
    return factories["smtp"](ProviderContext(name="smtp", settings=settings, project_dir=Path.cwd()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=5000, help="messages to send (default 5000)")
    parser.add_argument("--batch", type=int, default=100, help="messages per send() call (default 100)")
    args = parser.parse_args()

    from launchkit.mime import to_bytes
    from launchkit.types import SendStatus

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    context = multiprocessing.get_context("spawn")
    ready, stop, results = context.Event(), context.Event(), context.Queue()
    server = context.Process(target=serve, args=(port, ready, stop, results), daemon=True)
    server.start()
    try:
        if not ready.wait(30):
            print("the SMTP server did not start", file=sys.stderr)
            return 1
        outgoing = messages(args.messages)

        started = time.perf_counter()
        for message in outgoing:
            to_bytes(message)
        mime_seconds = time.perf_counter() - started

        provider = smtp_provider(port, args.batch)
        statuses: dict[str, int] = {}
        started = time.perf_counter()
        for start in range(0, len(outgoing), provider.max_batch):
            for result in provider.send(outgoing[start : start + provider.max_batch]):
                statuses[result.status] = statuses.get(result.status, 0) + 1
        seconds = time.perf_counter() - started
        provider.close()
    finally:
        stop.set()
        server.join(30)
    received = results.get(timeout=10)

    n = args.messages
    per_message = seconds / n * 1e6
    mime = mime_seconds / n * 1e6
    print(f"smtp provider, {n} messages in batches of {args.batch}, aiosmtpd on 127.0.0.1 in another process")
    print(f"  sent           {n / seconds:8.0f} messages/s   ({seconds:.2f} s, {per_message:.0f} µs/message)")
    print(f"  of which MIME  {mime:8.0f} µs/message     (launchkit.mime.to_bytes alone: {n / mime_seconds:.0f} messages/s)")
    print(f"  of which SMTP  {per_message - mime:8.0f} µs/message     (the dialogue alone: {1e6 / max(per_message - mime, 1e-9):.0f} messages/s)")
    print(f"  results        {', '.join(f'{status}: {count}' for status, count in sorted(statuses.items()))}")
    print(f"  server got     {received['messages']} messages, {received['bytes'] / 1e6:.1f} MB, over {received['connections']} connection(s)")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"  machine        load average {load} on {os.cpu_count()} CPUs (the server process shares them)")
    ok = received["messages"] == n and statuses.get(SendStatus.ACCEPTED, 0) == n
    if not ok:
        print("MISMATCH: the server did not receive every message exactly once", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
