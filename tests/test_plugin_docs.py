"""docs/plugins.md documents every hook, with the signature the code has, and every public type."""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

import pytest

from launchkit import hookspecs, types

DOCS = (Path(__file__).parent.parent / "docs" / "plugins.md").read_text(encoding="utf-8")

HOOKS = sorted(name for name, fn in vars(hookspecs).items() if inspect.isfunction(fn) and hasattr(fn, "launchkit_spec"))
PUBLIC_TYPES = [
    "OutgoingMessage", "SendResult", "SendStatus", "ProviderContext", "Provider", "Event", "SkipMessage", "ProviderUnavailable",
    "WebhookRequest", "WebhookContext", "Webhook", "WebhookRejected", "ReporterContext", "Reporter",
]


def section(title: str) -> str:
    match = re.search(rf"^### {re.escape(title)}\n(.*?)(?=^##)", DOCS + "\n##", re.S | re.M)
    assert match, f"docs/plugins.md has no section '### {title}'"
    return match.group(1)


def test_there_are_hooks_to_document() -> None:
    assert "register_providers" in HOOKS and "before_send" in HOOKS


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_with_its_signature(hook: str) -> None:
    text = section(hook)
    arguments = ", ".join(inspect.signature(getattr(hookspecs, hook)).parameters)
    assert f"{hook}({arguments})" in text, f"the documented signature of {hook} differs from hookspecs.py"
    assert getattr(hookspecs, hook).__doc__, f"{hook} has no docstring"


@pytest.mark.parametrize("name", PUBLIC_TYPES)
def test_every_public_type_and_field_is_documented(name: str) -> None:
    text = section(name)
    kind = getattr(types, name)
    if dataclasses.is_dataclass(kind):
        for f in dataclasses.fields(kind):
            assert f"`{f.name}`" in text, f"{name}.{f.name} is not documented"
    if isinstance(kind, type) and issubclass(kind, types.enum.Enum):
        for member in kind:
            assert f"`{member.name}`" in text, f"{name}.{member.name} is not documented"
