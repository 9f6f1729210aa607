"""The hooks plugins implement, grouped by when launchkit calls them.

Every hook is documented in docs/plugins.md; hooks only ever gain arguments.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import pluggy

if TYPE_CHECKING:
    import click

    from launchkit.types import Event, OutgoingMessage, Provider, ProviderContext, Reporter, ReporterContext, Webhook, WebhookContext

hookspec = pluggy.HookspecMarker("launchkit")


# Start-up: what the plugin offers.


@hookspec
def register_providers(register: Callable[[str, Callable[[ProviderContext], Provider]], None]) -> None:
    """Register email delivery providers: ``register(name, factory)``.

    :param register: call it once per provider with the name users put in
        ``[delivery] provider`` and a factory that takes a ``ProviderContext`` and returns
        a ``Provider``. The factory is called only when that provider is selected.
    """


@hookspec
def register_webhooks(register: Callable[[str, Callable[[WebhookContext], Webhook]], None]) -> None:
    """Register inbound webhook endpoints: ``register(name, factory)``.

    :param register: call it once per endpoint. ``launchkit serve`` answers
        ``POST /hooks/NAME`` when launchkit.toml has a ``[webhooks.NAME]`` table; the factory
        takes a ``WebhookContext`` (that table's settings) and returns a ``Webhook`` whose
        ``handle(request)`` verifies the request and returns normalized ``Event`` objects.
    """


@hookspec
def register_reporters(register: Callable[[str, Callable[[ReporterContext], Reporter]], None]) -> None:
    """Register report outputs: ``register(name, factory)``.

    :param register: call it once per output. ``launchkit report --format NAME`` builds it
        with a ``ReporterContext`` (the ``[reporters.NAME]`` table) and calls its
        ``write(report, out)`` with a ``launchkit.report.Report``.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add subcommands to the ``launchkit`` command line.

    :param cli: the top-level click group; decorate functions with ``@cli.command()``.
    """


# Sending: each message on its way out.


@hookspec
def template_context(launch: Any, phase: Any, email: Any, contact: Any) -> dict[str, Any] | None:
    """Extra variables for subjects and bodies, merged into the template context.

    :param launch: the launch being sent, a ``launchkit.spec.Launch`` (``launch.id``, the file
        name without ``.toml``; ``launch.spec.name``; ``launch.products``, its ``product``
        then its ``product_ids``; ``launch.spec`` holds the rest of the ``[launch]`` table)
    :param phase: the phase the email belongs to (``phase.name``, ``phase.starts``, ``phase.ends``)
    :param email: the email (``email.id``)
    :param contact: the recipient (``contact.email``, ``contact.first_name``, custom fields as
        attributes)
    :return: a dict of names to values, or None.
    """


@hookspec
def before_send(message: OutgoingMessage) -> None:
    """Change or veto one outgoing message just before it is handed to the provider.

    Change the message's fields in place; raise ``launchkit.types.SkipMessage(reason)`` to
    veto it (the reason is recorded in the outbox and the message is never sent).

    :param message: the rendered message.
    """


# After the fact: what happened.


@hookspec
def on_event(event: Event, settings: dict[str, Any]) -> None:
    """React to an event after it is stored (a sale, an unsubscribe, a bounce…).

    Called once per new event; replayed webhooks do not call it again. An exception here is
    logged and does not undo the event.

    :param event: the stored event.
    :param settings: the ``[plugins]`` table of launchkit.toml, ``${VAR}`` expanded: a
        plugin reads its own ``[plugins.NAME]`` table from it.
    """
