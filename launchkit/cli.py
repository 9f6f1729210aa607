"""The `launchkit` command: each command parses, calls the library, prints.

Heavy modules are imported inside commands so that `launchkit --help` stays fast.
"""

from __future__ import annotations

import json
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import click

from launchkit import __version__
from launchkit.errors import ConfigError, LaunchkitError
from launchkit.reporters.words import counted


class _Group(click.Group):
    """Turns errors meant for people into one paragraph and exit code 1, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            raise click.ClickException("\n".join(str(p) for p in exc.problems)) from None
        except LaunchkitError as exc:
            raise click.ClickException(str(exc)) from None


def _project(ctx: click.Context, now: str | None = None) -> Any:
    from launchkit.project import Project

    return Project.open(ctx.obj.get("project"), now=now)


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--project",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="LAUNCHKIT_PROJECT",
    help="The project folder (default: the nearest folder with a launchkit.toml).",
)
@click.version_option(__version__, prog_name="launchkit")
@click.pass_context
def cli(ctx: click.Context, project: Path | None) -> None:
    """Email launches for creators: waitlist → open cart → close, declared in TOML.

    \b
    Try it:
      launchkit init my-launch && cd my-launch
      launchkit audience import audience.csv
      launchkit plan
      launchkit run

    LAUNCHKIT_NOW="2027-03-10 09:05" makes every command act at that moment.
    """
    ctx.ensure_object(dict)
    ctx.obj["project"] = project


@cli.command()
@click.argument("folder", default=".", type=click.Path(file_okay=False, path_type=Path))
def init(folder: Path) -> None:
    """Create a project with a commented example launch that works as is.

    \b
    Example:
      launchkit init my-launch
    """
    from launchkit.scaffold import init_project

    written = init_project(folder, date.today())
    console = _console()
    console.print(f"Created {len(written)} files in {folder}/. Next:")
    where = "" if folder == Path(".") else f"cd {folder} && "
    console.print(f"  {where}launchkit audience import audience.csv && launchkit check && launchkit plan")


@cli.command()
@click.pass_context
def check(ctx: click.Context) -> None:
    """Validate settings, launches, bodies, conditions and plugins (exit 1 on any problem).

    \b
    Example:
      launchkit check
    """
    from launchkit.checks import check as run_check

    report = run_check(_project(ctx))
    if not report.ok:
        raise click.ClickException("\n".join(str(p) for p in report.problems))
    emails = sum(len(launch.emails) for launch in report.launches)
    _console().print(f"OK: {counted(len(report.launches), 'launch', 'launches')}, {counted(emails, 'email')}, no problems.")


@cli.command()
@click.argument("what", type=click.Choice(["launch", "config"]), default="launch")
def schema(what: str) -> None:
    """Print the JSON Schema of launch files (or of launchkit.toml), for editor completion.

    \b
    Example:
      launchkit schema > launch.schema.json
    """
    from launchkit.config import Config
    from launchkit.spec import LaunchFile

    model = LaunchFile if what == "launch" else Config
    document = {"$schema": "https://json-schema.org/draft/2020-12/schema", **model.model_json_schema(by_alias=True)}
    click.echo(json.dumps(document, indent=2, ensure_ascii=False))


@cli.command()
@click.argument("launch", required=False)
@click.pass_context
def plan(ctx: click.Context, launch: str | None) -> None:
    """Show each launch's timeline, its audience and what a typical launch would sell.

    \b
    Example:
      launchkit plan academy-spring
    """
    from launchkit.views import print_timeline
    from launchkit.timeline import timeline

    project = _project(ctx)
    print_timeline(_console(), timeline(project, launch), project.now())


@cli.command()
@click.argument("launch")
@click.argument("email")
@click.option("--contact", "address", help="Render for this contact (default: a sample contact).")
@click.option("--open", "open_browser", is_flag=True, help="Open the HTML in a browser.")
@click.pass_context
def preview(ctx: click.Context, launch: str, email: str, address: str | None, open_browser: bool) -> None:
    """Show the subject, text and HTML of one email for one contact.

    \b
    Example:
      launchkit preview academy-spring doors-open --contact camille.roux@example.com
    """
    from launchkit.runner import preview as render_preview
    from launchkit.views import print_message

    message = render_preview(_project(ctx), launch, email, address)
    print_message(_console(), message)
    if open_browser:
        import tempfile
        import webbrowser

        with tempfile.NamedTemporaryFile("w", suffix=".html", delete=False, encoding="utf-8") as handle:
            handle.write(message.html)
        webbrowser.open(Path(handle.name).as_uri())


@cli.command()
@click.option("--now", "now", metavar="ISO", help="Act as if it were this moment (default: LAUNCHKIT_NOW, else now).")
@click.option("--dry-run", is_flag=True, help="Plan and render what is due, send nothing, change nothing.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@click.pass_context
def run(ctx: click.Context, now: str | None, dry_run: bool, quiet: bool) -> None:
    """One tick: plan and send everything due, then exit. Cron calls this every minute.

    \b
    Example (crontab):
      * * * * *  cd /path/to/project && launchkit run --quiet
    """
    from launchkit.runner import tick
    from launchkit.scheduler import stop_on_signals
    from launchkit.views import print_tick, progress_bar

    project = _project(ctx, now)
    console = _console()
    _warn_plugin_errors(project)
    with progress_bar(console, enabled=not quiet) as progress, stop_on_signals() as stop:
        report = tick(project, dry_run=dry_run, stop=stop.is_set, progress=progress)
    if not quiet:
        print_tick(console, report, dry_run=dry_run)


def _warn_plugin_errors(project: Any) -> None:
    for info in project.plugins.errors:  # cron mails stderr: a skipped plugin must not go unnoticed
        click.echo(f"Warning: plugin {info.name!r} ({info.source}) was not loaded: {info.error}", err=True)


@cli.command()
@click.option("--every", type=click.FloatRange(min=1), default=60, show_default=True, help="Seconds between ticks.")
@click.pass_context
def scheduler(ctx: click.Context, every: float) -> None:
    """Tick every N seconds until SIGTERM or Ctrl-C (for containers and systemd).

    SIGTERM finishes the chunk in flight, records it and exits.

    \b
    Example:
      launchkit scheduler --every 30
    """
    import logging

    from launchkit.runner import tick
    from launchkit.scheduler import run_forever, stop_on_signals
    from launchkit.views import print_tick

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    for chatty in ("httpx", "httpcore"):  # a line per request: per message, for one-request-per-message services
        logging.getLogger(chatty).setLevel(logging.WARNING)
    console = _console()
    root = _project(ctx).root
    with stop_on_signals() as stop:

        def one_tick(stop_event: Any) -> Any:
            from launchkit.project import Project

            project = Project.open(root)  # read again: edits to launch files apply on the next tick
            _warn_plugin_errors(project)
            return tick(project, stop=stop_event.is_set)

        run_forever(one_tick, every, stop, lambda report: print_tick(console, report, dry_run=False))
    console.print("Scheduler stopped.")


@cli.command()
@click.argument("launch", required=False)
@click.option("--format", "format_", metavar="NAME", help="table (default), json, csv, html, or a plugin's format; guessed from -o's suffix.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="File to write (default: standard output).")
@click.pass_context
def report(ctx: click.Context, launch: str | None, format_: str | None, output: Path | None) -> None:
    """How a launch did against its audience; with no LAUNCH, every launch side by side.

    \b
    Examples:
      launchkit report academy-spring
      launchkit report academy-spring -o report.html
      launchkit report --format json > launches.json
    """
    from launchkit.report import build, format_for

    project = _project(ctx)
    name = format_for(str(output) if output else None, format_, project.plugins.reporters().items)
    reporter = project.reporter(name)
    result = build(project, launch)
    if output is None:
        _write_report(reporter, result, sys.stdout, name)  # the terminal itself: reporters read its width
        return
    partial = output.with_name(f".{output.name}.partial")  # a reporter that fails leaves no half-written file
    try:
        with partial.open("w", encoding="utf-8", newline="") as handle:
            _write_report(reporter, result, handle, name)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(output)
    _console(stderr=True).print(f"Wrote {output}")


def _write_report(reporter: Any, result: Any, out: Any, name: str) -> None:
    from launchkit.plugins import where_raised

    try:
        reporter.write(result, out)
    except Exception as exc:  # a plugin's reporter failing its own way: one line, like any other error
        raise LaunchkitError(f"report format {name!r} failed: {exc!r}{where_raised(exc)}") from None


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0 for every interface).")
@click.option("--port", type=int, default=8787, show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Processes to run.")
@click.option(
    "--forwarded-allow-ips", default="127.0.0.1", show_default=True,
    help="Proxies trusted for X-Forwarded-For (the client IP signup limits count); '*' behind a load balancer.",
)
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, workers: int, forwarded_allow_ips: str) -> None:
    """The tracking and webhook server: opens, clicks, unsubscribes, signups, webhooks.

    Put it behind HTTPS at [tracking] base_url. It keeps no state of its own. On SQLite keep
    one worker on the project's machine (a second is a second writer to one file); on
    PostgreSQL run as many workers, on as many machines, as you like.

    \b
    Example:
      launchkit serve --host 0.0.0.0 --port 8787
    """
    from launchkit.server import serve as run_server

    project = _project(ctx)
    _console(stderr=True).print(f"Serving {project.config.project.name} on http://{host}:{port} (Ctrl-C to stop)")
    run_server(project, host=host, port=port, workers=workers, forwarded_allow_ips=forwarded_allow_ips)


@cli.group(cls=_Group, invoke_without_command=True)
@click.option("--failed", "statuses", flag_value="failed", multiple=True, help="List failed rows, with reasons.")
@click.option("--in-doubt", "statuses", flag_value="in_doubt", multiple=True, help="List rows in doubt.")
@click.option("--missed", "statuses", flag_value="missed", multiple=True, help="List missed rows.")
@click.option("--skipped", "statuses", flag_value="skipped", multiple=True, help="List skipped rows.")
@click.option("--launch", "launch_id", help="Only this launch.")
@click.option("--limit", type=int, default=50, show_default=True, help="0 for all.")
@click.pass_context
def outbox(ctx: click.Context, statuses: tuple[str, ...], launch_id: str | None, limit: int) -> None:
    """What is scheduled, sent, failed, in doubt or missed, with reasons.

    \b
    Examples:
      launchkit outbox                   counts per launch, email and status
      launchkit outbox --failed          the failed rows and why
      launchkit outbox retry --in-doubt  send the rows in doubt again, deliberately
    """
    if ctx.invoked_subcommand is not None:
        return
    from launchkit.runner import outbox_counts, outbox_rows
    from launchkit.views import print_outbox_counts, print_outbox_rows

    project = _project(ctx)
    if statuses:
        print_outbox_rows(_console(), outbox_rows(project, statuses, launch_id=launch_id, limit=limit))
    else:
        print_outbox_counts(_console(), outbox_counts(project, launch_id))


@outbox.command("retry")
@click.option("--in-doubt", "status", flag_value="in_doubt", help="Rows whose fate is unknown (may send a duplicate).")
@click.option("--failed", "status", flag_value="failed", help="Rows that failed.")
@click.option("--launch", "launch_id", help="Only this launch.")
@click.pass_context
def outbox_retry(ctx: click.Context, status: str | None, launch_id: str | None) -> None:
    """Schedule in-doubt (or failed) rows to be sent by the next tick.

    \b
    Example:
      launchkit outbox retry --in-doubt --launch academy-spring
    """
    from launchkit.runner import retry

    if status is None:
        raise click.UsageError("say which rows to retry: --in-doubt or --failed")
    count = retry(_project(ctx), status, launch_id=launch_id)
    _console().print(f"{counted(count, 'row')} scheduled again; the next tick sends them.")


@cli.command("send-test")
@click.argument("launch")
@click.argument("email")
@click.option("--to", "to", required=True, help="Where to send the test.")
@click.option("--contact", "address", help="Render as for this contact (default: a sample contact).")
@click.pass_context
def send_test(ctx: click.Context, launch: str, email: str, to: str, address: str | None) -> None:
    """Send one email for real through the configured provider, outside the outbox.

    \b
    Example:
      launchkit send-test academy-spring doors-open --to me@example.com
    """
    from launchkit.runner import send_test as send

    result = send(_project(ctx), launch, email, to, address)
    _console().print(f"{result.status.value}: {result.reason or result.provider_message_id or ''}".rstrip(": "))
    if result.status.value != "accepted":
        raise SystemExit(1)


@cli.group(cls=_Group)
def audience() -> None:
    """The contacts: import, add, list, tag, untag, unsubscribe, export, forget.

    \b
    Example:
      launchkit audience import subscribers.csv --tag newsletter
      launchkit audience list --tag waitlist
    """


@audience.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--tag", "tags", multiple=True, help="Tag every imported contact (repeatable).")
@click.pass_context
def audience_import(ctx: click.Context, file: Path, tags: tuple[str, ...]) -> None:
    """Import contacts from a CSV export (Kit, Mailchimp, Substack, Excel…).

    Columns are found by their usual names, in English or French: the address, first and
    last name (or one name), tags, and a status: someone the file says unsubscribed
    (cancelled), bounced (cleaned), complained or pending is kept and never written to,
    and nothing makes a contact who left sendable again. A launchkit export's created_at,
    consent_source and consent_at are kept; any other column becomes a field
    (contact.city in templates).

    \b
    Example:
      launchkit audience import subscribers.csv --tag newsletter
    """
    from launchkit.audience import import_csv

    report = import_csv(_project(ctx), file, tags=tags)
    console = _console()
    console.print(
        f"Imported {file.name}: {report.created} new, {report.updated} updated, "
        f"{counted(report.merged, 'duplicate row')} merged."
    )
    if report.not_sendable:
        console.print(
            f"{counted(report.not_sendable, 'contact')} kept but never written to: the file says they "
            "unsubscribed, bounced, complained or never confirmed."
        )
    for problem in report.problems:
        console.print(f"  skipped line {problem.line}: {problem.message}")
    if report.suppressed:
        console.print(f"{counted(report.suppressed, 'address', 'addresses')} skipped: erased on request (audience forget).")


@audience.command("add")
@click.argument("email")
@click.option("--first-name")
@click.option("--last-name")
@click.option("--tag", "tags", multiple=True, help="Repeatable.")
@click.option("--field", "fields", multiple=True, metavar="NAME=VALUE", help="A custom field (repeatable).")
@click.pass_context
def audience_add(ctx: click.Context, email: str, first_name: str | None, last_name: str | None, tags: tuple[str, ...], fields: tuple[str, ...]) -> None:
    """Add (or update) one contact.

    \b
    Example:
      launchkit audience add camille@example.com --first-name Camille --tag newsletter --tag waitlist
    """
    from launchkit.audience import add

    values = {}
    for item in fields:
        name, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"expected NAME=VALUE; found {item!r}", param_hint="--field")
        values[name.strip()] = value.strip()
    created = add(_project(ctx), email, first_name=first_name, last_name=last_name, tags=tags, fields=values)
    _console().print(f"{'Added' if created else 'Updated'} {email.strip().lower()}.")


@audience.command("list")
@click.option("--tag", "tag_name", help="Only contacts with this tag.")
@click.option("--status", type=click.Choice(["subscribed", "pending", "unsubscribed", "bounced", "complained"]))
@click.option("--limit", type=int, default=50, show_default=True, help="0 for all.")
@click.pass_context
def audience_list(ctx: click.Context, tag_name: str | None, status: str | None, limit: int) -> None:
    """List contacts with their status and tags.

    \b
    Example:
      launchkit audience list --tag waitlist
    """
    from launchkit.audience import contacts
    from launchkit.views import print_contacts

    print_contacts(_console(), contacts(_project(ctx), tag_name=tag_name, status=status), limit)


@audience.command("tag")
@click.argument("tag")
@click.argument("emails", nargs=-1, required=True)
@click.pass_context
def audience_tag(ctx: click.Context, tag: str, emails: tuple[str, ...]) -> None:
    """Add TAG to contacts.

    \b
    Example:
      launchkit audience tag waitlist camille@example.com zoe@example.org
    """
    from launchkit.audience import tag as add_tag

    added = add_tag(_project(ctx), emails, [tag])
    _console().print(f"Tagged {counted(added, 'contact')} with {tag!r}.")


@audience.command("untag")
@click.argument("tag")
@click.argument("emails", nargs=-1, required=True)
@click.pass_context
def audience_untag(ctx: click.Context, tag: str, emails: tuple[str, ...]) -> None:
    """Remove TAG from contacts.

    \b
    Example:
      launchkit audience untag waitlist camille@example.com
    """
    from launchkit.audience import untag

    removed = untag(_project(ctx), emails, [tag])
    _console().print(f"Removed {tag!r} from {counted(removed, 'contact')}.")


@audience.command("unsubscribe")
@click.argument("email")
@click.pass_context
def audience_unsubscribe(ctx: click.Context, email: str) -> None:
    """Unsubscribe a contact: nothing more is ever sent to them.

    \b
    Example:
      launchkit audience unsubscribe camille@example.com
    """
    from launchkit.audience import unsubscribe

    unsubscribe(_project(ctx), email)
    _console().print(f"Unsubscribed {email.strip().lower()}.")


@audience.command("forget")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def audience_forget(ctx: click.Context, email: str, yes: bool) -> None:
    """Erase a contact for good (GDPR) and keep them from being imported or added again.

    Their contact, tags and emails are deleted; their opens, clicks and purchases stay in
    the reports without the address. Only a hash of the address is kept.

    \b
    Example:
      launchkit audience forget camille@example.com --yes
    """
    from launchkit.audience import forget

    address = email.strip().lower()
    if not yes:
        click.confirm(f"Erase {address} for good? This cannot be undone", abort=True)
    result = forget(_project(ctx), email)
    console = _console()
    found = result.traces
    if found.contact:
        console.print(
            f"Forgot {result.email}: deleted the contact, {counted(found.tags, 'tag')} and {counted(found.outbox, 'outbox row')}; "
            f"{counted(found.events, 'event')} and {counted(found.conversions, 'purchase')} kept without the address."
        )
    elif found.conversions:
        console.print(f"Forgot {result.email}: no contact; {counted(found.conversions, 'purchase')} kept without the address.")
    elif result.already:
        console.print(f"{result.email} was already forgotten; nothing left to erase.")
    else:
        console.print(f"No contact or purchase for {result.email}; recorded the request anyway.")
    console.print("From now on imports skip this address and `audience add` refuses it.")


@audience.command("export")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="File to write (default: standard output).")
@click.option("--tag", "tag_name", help="Only contacts with this tag.")
@click.option("--status", type=click.Choice(["subscribed", "pending", "unsubscribed", "bounced", "complained"]))
@click.pass_context
def audience_export(ctx: click.Context, output: Path | None, tag_name: str | None, status: str | None) -> None:
    """Export contacts as CSV (cells that look like formulas are escaped).

    \b
    Example:
      launchkit audience export -o contacts.csv
    """
    from launchkit.audience import export_csv

    project = _project(ctx)
    if output is None:
        export_csv(project, sys.stdout, tag_name=tag_name, status=status)
        return
    with open(output, "w", encoding="utf-8", newline="") as handle:
        count = export_csv(project, handle, tag_name=tag_name, status=status)
    _console(stderr=True).print(f"Exported {counted(count, 'contact')} to {output}.")


@cli.group(cls=_Group)
def conversions() -> None:
    """Purchases: typed by hand or imported from a platform's CSV export.

    \b
    Example:
      launchkit conversions import stripe-payments.csv --product academy
    """


def _amount(_ctx: click.Context, _param: click.Parameter, value: str) -> Decimal:
    try:
        amount = Decimal(value)
    except ArithmeticError:
        raise click.BadParameter(f"expected an amount like 297 or 19.99; found {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise click.BadParameter(f"expected an amount of 0 or more, like 297 or 19.99; found {value!r}")
    return amount


def _currency(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    from launchkit.fields import currency_code

    try:
        return currency_code(value) if value is not None else None
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@conversions.command("add")
@click.argument("email")
@click.option("--product", required=True, help="The product id; a launch counts it when it matches [launch] product.")
@click.option("--amount", required=True, callback=_amount, metavar="AMOUNT", help="What the buyer paid, e.g. 297 or 19.99 (a refund: --refunded).")
@click.option("--currency", callback=_currency, help="Three letters, e.g. EUR (default: the launch's currency).")
@click.option("--at", "at", metavar="ISO", help="When it was bought (default: now).")
@click.option("--id", "external_id", help="The order id, so that adding it twice is harmless.")
@click.option("--refunded", is_flag=True, help="Record it as refunded.")
@click.pass_context
def conversions_add(ctx: click.Context, email: str, product: str, amount: Decimal, currency: str | None, at: str | None, external_id: str | None, refunded: bool) -> None:
    """Record one purchase.

    \b
    Example:
      launchkit conversions add camille@example.com --product academy --amount 297 --currency EUR
    """
    from launchkit.clock import parse_moment
    from launchkit.conversions import Purchase, record

    project = _project(ctx)
    when = parse_moment(at, project.tz, source="--at") if at else None
    purchase = Purchase(email, product, amount, currency, when, external_id, refunded)
    report = record(project, [purchase], source="manual")
    console = _console()
    console.print("Recorded." if report.added else "Already recorded: nothing changed.")
    if report.unknown_buyers:
        console.print(f"Note: {', '.join(report.unknown_buyers)} is not in the audience; the sale counts if that address joins.")


@conversions.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--product", help="The product, when the file has no product column.")
@click.pass_context
def conversions_import(ctx: click.Context, file: Path, product: str | None) -> None:
    """Import purchases from a CSV export (Stripe, Gumroad, Lemon Squeezy…).

    \b
    Example:
      launchkit conversions import sales.csv --product academy
    """
    from launchkit.conversions import import_csv

    report = import_csv(_project(ctx), file, product=product)
    console = _console()
    console.print(f"Imported {file.name}: {report.added} new, {report.refunded} refunded, {report.known} already known.")
    for problem in report.problems:
        console.print(f"  skipped line {problem.line}: {problem.message}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def plugins(ctx: click.Context, as_json: bool) -> None:
    """List installed plugins, their hooks and versions, and any that failed to load.

    \b
    Example:
      launchkit plugins --json
    """
    from launchkit.plugins import load_plugins
    from launchkit.location import find_project_dir
    from launchkit.views import print_plugins

    try:
        root: Path | None = find_project_dir(ctx.obj.get("project"))
    except LaunchkitError:
        root = None  # listing installed plugins needs no project
    loaded = load_plugins(root)
    if as_json:
        entries = [vars(p) for p in loaded.loaded + loaded.errors]
        registries = loaded.registries()
        click.echo(json.dumps({
            "plugins": entries,
            **{f"{kind}s": registry.owners for kind, registry in registries.items()},
            # A name two plugins register, and a plugin whose register_* hook failed: what the table shows in red.
            "conflicts": {f"{kind}s": registry.conflicts for kind, registry in registries.items() if registry.conflicts},
            "problems": [message for registry in registries.values() for message in registry.problems],
        }, indent=2))
    else:
        print_plugins(_console(), loaded)


@cli.group(cls=_Group)
def db() -> None:
    """The database: its schema's migrations.

    \b
    Example:
      launchkit db upgrade
    """


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Apply schema migrations (a new database is also migrated on first use).

    \b
    Example:
      launchkit db upgrade
    """
    revision = _project(ctx).store.upgrade()
    _console().print(f"Database at schema revision {revision}.")


def _register_plugin_commands(argv: list[str]) -> None:
    """Let plugins add commands; one that fails is reported and the others still load."""
    from launchkit.plugins import load_plugins
    from launchkit.location import find_project_dir

    try:
        root: Path | None = find_project_dir(_project_option(argv))
    except LaunchkitError:
        root = None  # no project here: installed plugins' commands still load
    for problem in load_plugins(root).call_each("register_commands", lambda _plugin: cli, "cli"):
        click.echo(f"Warning: {problem}", err=True)


def _project_option(argv: list[str]) -> Path | None:
    # Commands must be registered before click parses the command line, so --project is
    # read by hand here (LAUNCHKIT_PROJECT and the working directory are the fallbacks).
    for index, arg in enumerate(argv):
        if arg == "--project" and index + 1 < len(argv):
            return Path(argv[index + 1])
        if arg.startswith("--project="):
            return Path(arg.split("=", 1)[1])
    return None


def main() -> None:
    _register_plugin_commands(sys.argv[1:])
    cli(prog_name="launchkit")
