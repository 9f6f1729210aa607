"""``launchkit serve``: opens, clicks, unsubscribes, signups and webhooks, over HTTP.

A Starlette app that keeps nothing a second instance would need: every fact goes to the
database, so any number of them can run behind a load balancer. Each request's write joins
a shared transaction (``GroupCommit``) and is answered once committed.

Bad input never gets a 500: a forged or unknown token is a 404, a body over its limit a
413, a body that cannot be read a 400; none of them writes anything.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import OrderedDict
from dataclasses import replace
from datetime import datetime
from typing import Any, AsyncIterator, Callable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sqlalchemy import Connection
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from launchkit import inbound, pages, signup, tracking
from launchkit.errors import ConfigError
from launchkit.groupcommit import GroupCommit
from launchkit.project import Project
from launchkit.relay import Relay
from launchkit.store import signups as signup_store
from launchkit.store import tracking as tracking_store
from launchkit.types import Event, Webhook, WebhookRejected, WebhookRequest

log = logging.getLogger("launchkit")

WEBHOOK_BODY_LIMIT = 1024 * 1024  #: the services' events are a few KB; a MB is generous
FORM_BODY_LIMIT = 64 * 1024
#: 1×1 transparent GIF.
PIXEL = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
NO_STORE = {"Cache-Control": "no-store, private", "Referrer-Policy": "no-referrer"}
LINK_CACHE_SIZE = 10_000


class TooLarge(Exception):
    pass


class TrackingServer:
    """The app's state: the project, its secrets, the shared writer and a few caches."""

    def __init__(self, project: Project):
        self.project = project
        self.launches = project.launches  # loaded now: a broken launch file stops `serve` at start
        self.secrets = project.secrets()
        self.lang = project.config.project.lang
        self.words = pages.words(self.lang)
        self.writer = GroupCommit(project.store.begin)
        self.links: OrderedDict[int, tracking.Link] = OrderedDict()
        self.webhooks = _webhooks(project)  # built now: a broken one stops `serve` at start, as `check` says it
        #: Whether any plugin implements ``on_event``. Without one, no request does any work to tell it anything.
        self.notifying = bool(project.plugins.hook.on_event.get_hookimpls())
        self.relay = Relay(project)

    # Opens and clicks.

    async def opened(self, request: Request) -> Response:
        delivery = tracking.read_delivery(self.secrets, request.path_params["token"], tracking.OPEN)
        if delivery is None:
            return Response(status_code=404, headers=NO_STORE)
        row = _engagement("opened", delivery.contact_id, delivery.launch_id, delivery.email_id, delivery.variant, self.project.now(),
                          f"o:{delivery.contact_id}:{delivery.launch_id}:{delivery.email_id}")
        await (self._engaged(row) if self.notifying else self.writer.write_row(tracking_store.record_engagement, row))
        return Response(PIXEL, media_type="image/gif", headers=NO_STORE)

    async def clicked(self, request: Request) -> Response:
        click = tracking.read_click(self.secrets, request.path_params["token"])
        link = await self._link(click.link_id) if click else None
        if click is None or link is None:
            return self._page(404, "invalid_title", "invalid")
        row = _engagement("clicked", click.contact_id, link.launch_id, link.email_id, click.variant, self.project.now(),
                          f"c:{click.contact_id}:{link.id}", link=link.name, data={"url": link.url})
        await (self._engaged(row) if self.notifying else self.writer.write_row(tracking_store.record_engagement, row))
        return RedirectResponse(self._with_utm(link), status_code=302, headers=NO_STORE)

    async def _engaged(self, row: dict[str, Any]) -> None:
        """Store an open or a click, and tell ``on_event`` hooks when it is new.

        Still one statement for the whole batch: the writer says which of its rows were new.
        """
        address = await self.writer.write_row(tracking_store.record_new_engagement, row)
        if address is not None:
            data = {**row["data"], "link": row["link"]} if row["link"] else dict(row["data"])
            self.relay.tell([Event(row["kind"], address, row["occurred_at"], launch=row["launch_id"], email_id=row["email_id"],
                                   data=data, id=row["external_id"], source=tracking_store.SOURCE, variant=row["variant"])])

    async def _link(self, link_id: int) -> tracking.Link | None:
        found = self.links.get(link_id)
        if found is None:
            row = await run_in_threadpool(self._read, lambda conn: tracking_store.link(conn, link_id))
            if row is None:
                return None
            found = self.links[link_id] = tracking.Link(row.id, row.launch_id, row.email_id, row.url, row.name)
            if len(self.links) > LINK_CACHE_SIZE:
                self.links.popitem(last=False)
        return found

    def _with_utm(self, link: tracking.Link) -> str:
        launch = self.launches.get(link.launch_id)
        utm = dict(launch.spec.utm) if launch else {}
        if not utm:
            return link.url
        utm.setdefault("content", link.email_id)
        parts = urlsplit(link.url)
        present = {k for k, _ in parse_qsl(parts.query, keep_blank_values=True)}
        missing = urlencode([(f"utm_{k}", v) for k, v in utm.items() if f"utm_{k}" not in present])
        # Appended to the query as written: re-encoding it could change what the page reads.
        return urlunsplit(parts._replace(query="&".join(q for q in (parts.query, missing) if q)))

    # Unsubscribe: GET asks (mail scanners follow links), POST does (RFC 8058 one-click too).

    async def unsubscribe_page(self, request: Request) -> Response:
        delivery = tracking.read_delivery(self.secrets, request.path_params["token"], tracking.UNSUBSCRIBE)
        address = await run_in_threadpool(self._read, lambda conn: signup_store.address_of(conn, delivery.contact_id)) if delivery else None
        if address is None:
            return self._page(404, "invalid_title", "invalid")
        w = self.words
        text = w["unsubscribe_ask"].format(project=self.project.config.project.name, address=pages.mask(address))
        return HTMLResponse(pages.page(self.lang, w["unsubscribe_title"], text, form_action=str(request.url.path), button=w["unsubscribe_button"]), headers=NO_STORE)

    async def unsubscribe(self, request: Request) -> Response:
        delivery = tracking.read_delivery(self.secrets, request.path_params["token"], tracking.UNSUBSCRIBE)
        if delivery is None:
            return self._page(404, "invalid_title", "invalid")
        try:
            await _body(request, FORM_BODY_LIMIT)
        except TooLarge:
            return PlainTextResponse("request body too large", status_code=413)
        now = self.project.now()
        done = await self.writer.run(
            lambda conn: tracking_store.unsubscribe(conn, delivery.contact_id, delivery.launch_id, delivery.email_id, now)
        )
        if done is None:
            return self._page(404, "invalid_title", "invalid")
        if done.event_id is not None and self.notifying:
            self.relay.tell([Event("unsubscribed", done.address, now, launch=delivery.launch_id or None, email_id=delivery.email_id or None,
                                   id=done.event_id, source=tracking_store.SOURCE)])
        return self._page(200, "unsubscribed_title", "unsubscribed", address=pages.mask(done.address))

    # Signups.

    async def subscribe(self, request: Request) -> Response:
        wants_json = "json" in request.headers.get("content-type", "")
        try:
            fields = _fields(await _body(request, FORM_BODY_LIMIT), request.headers.get("content-type", ""))
            submission = signup.parse(self.project, fields)
        except TooLarge:
            return PlainTextResponse("request body too large", status_code=413)
        except signup.SignupRejected as exc:
            if wants_json:
                return JSONResponse({"error": str(exc)}, status_code=400)
            return HTMLResponse(pages.page(self.lang, self.words["error_title"], str(exc)), status_code=400)
        now = self.project.now()
        client = request.client.host if request.client else ""
        agent = request.headers.get("user-agent", "")
        outcome = await self.writer.run(lambda conn: signup.record(conn, self.project, submission, client=client, now=now, user_agent=agent))
        if outcome.status == "limited":
            headers = {"Retry-After": str(outcome.retry_after)}
            if wants_json:
                return JSONResponse({"error": "too many signups; try again later"}, status_code=429, headers=headers)
            return HTMLResponse(pages.page(self.lang, self.words["limited_title"], self.words["limited"]), status_code=429, headers=headers)
        if outcome.status == "pending" and outcome.contact_id is not None:
            await run_in_threadpool(signup.send_confirmation, self.project, outcome.contact_id, submission, now)
        if outcome.event_id is not None and self.notifying:
            self.relay.tell([Event("subscribed", submission.email, now, data={"tags": list(submission.tags), "status": outcome.status},
                                   id=outcome.event_id, source=signup_store.SOURCE)])
        # A bot or an erased address gets the answer a person would: nothing tells them apart.
        shown = "pending" if self.project.config.signup.double_opt_in else "subscribed"
        if wants_json:
            return JSONResponse({"status": shown})
        thanks = self.project.config.signup.thank_you_url
        if thanks:
            return RedirectResponse(thanks, status_code=303)
        return self._page(200, "thanks_title", "thanks_pending" if shown == "pending" else "thanks")

    async def confirm(self, request: Request) -> Response:
        now = self.project.now()
        confirmation = tracking.read_confirmation(self.secrets, request.path_params["token"], now)
        if confirmation is None:
            return self._page(404, "invalid_title", "invalid")
        if confirmation.expired:
            return self._page(410, "invalid_title", "expired")
        if request.method == "HEAD":  # a link checker or a mail scanner: the answer a GET would get, nothing done
            outcome = await run_in_threadpool(self._read, lambda conn: signup_store.confirmation(conn, confirmation.contact_id))
        else:
            outcome = await self.writer.run(lambda conn: signup_store.confirm(conn, confirmation.contact_id, confirmation.tags, now))
        if outcome is None:
            return self._page(404, "invalid_title", "invalid")
        if outcome.status != "subscribed":
            # Unsubscribed, bounced or complained: said alike, so the page tells no more than the unsubscribe page.
            return self._page(200, "unsubscribed_title", "unsubscribed", address=pages.mask(outcome.address))
        if outcome.event_id is not None and self.notifying:
            self.relay.tell([Event("confirmed", outcome.address, now, data={"tags": list(outcome.tags)}, id=outcome.event_id, source=signup_store.SOURCE)])
        confirmed = self.project.config.signup.confirmed_url
        if confirmed:
            return RedirectResponse(confirmed, status_code=303)
        return self._page(200, "confirmed_title", "confirmed", address=pages.mask(outcome.address))

    # Webhooks.

    async def webhook(self, request: Request) -> Response:
        name = request.path_params["name"]
        handler = self.webhooks.get(name)
        if handler is None:
            return JSONResponse({"error": f"no webhook {name!r} is configured"}, status_code=404)
        try:
            body = await _body(request, WEBHOOK_BODY_LIMIT)
        except TooLarge:
            return JSONResponse({"error": "request body too large"}, status_code=413)
        now = self.project.now()
        received = WebhookRequest(body=body, headers={k.lower(): v for k, v in request.headers.items()}, query=dict(request.query_params), received_at=now)

        def work(conn: Connection) -> inbound.Stored:
            seen = replace(received, first_seen=lambda nonce: tracking_store.first_seen(conn, name, nonce, now))
            events = handler.handle(seen)
            return inbound.store_events(conn, events, source=name, launches=self.launches.values(), now=now)

        try:
            stored = await self.writer.run(work)
        except WebhookRejected as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            # A handler tripped on input it did not expect: the request is at fault, and the
            # service will show our answer to whoever configured it.
            log.warning("webhook %r could not read a request: %r", name, exc)
            return JSONResponse({"error": f"the request could not be read: {exc}"}, status_code=400)
        if self.notifying:
            self.relay.tell(stored.new)
        return JSONResponse({"stored": len(stored.new), "replayed": stored.replayed})

    # Helpers.

    def _read(self, query: Callable[[Connection], Any]) -> Any:
        with self.project.store.connect() as conn:
            return query(conn)

    def _page(self, status: int, title: str, text: str, **values: str) -> HTMLResponse:
        w = self.words
        paragraph = w[text].format(project=self.project.config.project.name, **values)
        return HTMLResponse(pages.page(self.lang, w[title], paragraph), status_code=status, headers=NO_STORE)

    async def health(self, request: Request) -> Response:
        return PlainTextResponse("ok")


def create_app(project: Project) -> Starlette:
    """The tracking and webhook server for ``project``."""
    server = TrackingServer(project)
    routes = [
        Route("/o/{token}.gif", server.opened, methods=["GET", "HEAD"]),
        Route("/c/{token}", server.clicked, methods=["GET", "HEAD"]),
        Route("/u/{token}", server.unsubscribe_page, methods=["GET", "HEAD"]),
        Route("/u/{token}", server.unsubscribe, methods=["POST"]),
        Route("/subscribe", server.subscribe, methods=["POST"]),
        Route("/confirm/{token}", server.confirm, methods=["GET"]),
        Route("/hooks/{name}", server.webhook, methods=["POST"]),
        Route("/health", server.health, methods=["GET"]),
    ]
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        server.writer.close()  # the writes still queued are committed before the process exits
        server.relay.close()  # and the events stored are told

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.server = server
    return app


def serve(project: Project, *, host: str, port: int, workers: int = 1, forwarded_allow_ips: str = "127.0.0.1") -> None:
    """Run the server until Ctrl-C or SIGTERM, in ``workers`` processes."""
    import uvicorn

    app = create_app(project)  # in this process first: a configuration problem stops here, said plainly
    options: dict[str, Any] = dict(host=host, port=port, proxy_headers=True, forwarded_allow_ips=forwarded_allow_ips, server_header=False, log_level="warning")
    if workers == 1:
        uvicorn.run(app, **options)
        return
    os.environ["LAUNCHKIT_PROJECT"] = str(project.root)
    uvicorn.run("launchkit.server:app_from_environment", factory=True, workers=workers, **options)


def app_from_environment() -> Starlette:
    """The app for uvicorn's factory mode (``--workers``): the project from LAUNCHKIT_PROJECT."""
    return create_app(Project.open(_project_dir()))


def _project_dir() -> Any:
    from pathlib import Path

    folder = os.environ.get("LAUNCHKIT_PROJECT")
    return Path(folder) if folder else None


def _webhooks(project: Project) -> dict[str, Webhook | None]:
    """Every configured webhook; ConfigError listing the problems of all that cannot be built."""
    found: dict[str, Webhook | None] = {}
    problems = []
    for name in project.config.webhooks:
        try:
            found[name] = project.webhook(name)
        except ConfigError as exc:
            problems += exc.problems
    if problems:
        raise ConfigError(problems)
    return found


def _engagement(kind: str, contact_id: int, launch_id: str, email_id: str, variant: int | None, now: datetime, external_id: str,
                *, link: str | None = None, data: dict[str, Any] | None = None) -> dict[str, Any]:
    return dict(kind=kind, contact_id=contact_id, launch_id=launch_id, email_id=email_id, variant=variant, outbox_id=None,
                link=link, occurred_at=now, external_id=external_id, data=data or {})


async def _body(request: Request, limit: int) -> bytes:
    """The request body, refused past ``limit`` bytes before it is all read."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _fields(body: bytes, content_type: str) -> dict[str, Any]:
    """A signup's fields from JSON or a urlencoded form; SignupRejected when unreadable."""
    import json

    try:
        if "json" in content_type:
            data = json.loads(body, object_pairs_hook=_one_email)
            if not isinstance(data, dict):
                raise signup.SignupRejected("expected a JSON object with an `email`")
            return data
        if "multipart/" in content_type:
            raise signup.SignupRejected("send the form as application/x-www-form-urlencoded (the browser default)")
        text = body.decode("utf-8")
        return _one_email(parse_qsl(text, keep_blank_values=True, strict_parsing=False, max_num_fields=50))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # RecursionError: JSON nested thousands deep
        if isinstance(exc, signup.SignupRejected):
            raise
        raise signup.SignupRejected(f"the request body could not be read: {exc}") from None


def _one_email(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Fields from (name, value) pairs; two addresses are refused, rather than one of them signed up."""
    if [name for name, _ in pairs].count("email") > 1:
        raise signup.SignupRejected("the `email` field is repeated: send one address per signup")
    return dict(pairs)

