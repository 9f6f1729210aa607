"""The ``maildir`` provider: each message becomes an .eml file in a Maildir folder.

No account needed, nothing leaves the machine: the default for trying a launch, previewing
it in a mail client (Thunderbird, mutt and Apple Mail open Maildir/.eml files), and tests.

Settings (``[delivery.maildir]``): ``path``, the folder (default ``mail``, relative to the
project). Messages are written to ``tmp/`` and renamed into ``new/``, so a reader never sees
half a file, and every send is a new file: sending twice would show as two files.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Sequence

from launchkit import hookimpl
from launchkit.mime import HeaderInjection, to_bytes
from launchkit.types import OutgoingMessage, Provider, ProviderContext, SendResult, SendStatus


class MaildirProvider(Provider):
    name = "maildir"
    max_batch = 500

    def __init__(self, folder: Path):
        self.folder = folder
        self._ready = False
        self._host = socket.gethostname().replace("/", "_").replace(":", "_")
        self._count = 0

    def send(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        if not self._ready:  # on first send: `launchkit check` builds providers too
            for sub in ("tmp", "new", "cur"):
                (self.folder / sub).mkdir(parents=True, exist_ok=True)
            self._ready = True
        results = []
        for message in messages:
            try:
                data = to_bytes(message)
            except HeaderInjection as exc:
                results.append(SendResult(message.key, SendStatus.PERMANENT, reason=str(exc)))
                continue
            name = self._unique_name()
            temporary = self.folder / "tmp" / name
            temporary.write_bytes(data)
            os.replace(temporary, self.folder / "new" / name)
            results.append(SendResult(message.key, SendStatus.ACCEPTED, provider_message_id=name))
        return results

    def _unique_name(self) -> str:
        # Maildir's naming rule (time, process, counter, host) keeps names unique across
        # concurrent writers; .eml lets a file manager open it in a mail client.
        self._count += 1
        return f"{time.time_ns()}.P{os.getpid()}Q{self._count}.{self._host}.eml"


def _factory(context: ProviderContext) -> MaildirProvider:
    folder = Path(context.settings.get("path", "mail"))
    return MaildirProvider(folder if folder.is_absolute() else context.project_dir / folder)


@hookimpl
def register_providers(register):  # type: ignore[no-untyped-def]
    register("maildir", _factory)
