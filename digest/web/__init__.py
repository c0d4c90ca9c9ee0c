"""The small web app of ``digest serve``: unsubscribe, preferences, and
SendGrid's Event Webhook, one module each (:mod:`digest.web.pages`,
:mod:`digest.web.webhook`) behind the guards of :mod:`digest.web.guards`
(body caps, timeouts, an access log without tokens).

Routes: ``/unsubscribe`` (GET, HEAD, POST), ``/preferences`` (GET, HEAD,
POST), ``/webhooks/sendgrid`` (POST), and sign-up and erasure:
``/subscribe``, ``/confirm``, ``/forget`` (GET, HEAD, POST;
:mod:`digest.web.signup`). Any other method gets 405, any other
path 404; a path with a trailing slash is not redirected (a redirect would
be built from the request's ``Host``).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from digest.consent import address_hash, forgotten_hashes
from digest.errors import DigestError, SettingsError
from digest.tokens import check_secret
from digest.unsubscribe import is_loopback
from digest.web import pages, webhook
from digest.web.guards import ACCESS_LOG, BodyLimit, HeaderDeadline, PathOnlyAccessLog, SecurityHeaders, security_headers
from digest.web.signup import signup_routes

if TYPE_CHECKING:
    from digest.settings import Settings

WEBHOOK_PATH = "/webhooks/sendgrid"


def create_app(settings: Settings, *, known_tags: Iterable[str] | None = None) -> Starlette:
    """The Starlette app of ``digest serve`` for ``settings``.

    ``known_tags`` (slugs) are the topics offered on the preferences page;
    by default the tags of the subscriber lists and of the articles of
    ``settings.sources``, read in the background from startup on. Raises
    :class:`SettingsError` when ``sendgrid_webhook_public_key`` is not a
    valid public key."""
    state = pages.PageState(settings, known_tags=frozenset(known_tags) if known_tags is not None else None)
    check = webhook.verifier(settings.sendgrid_webhook_public_key)

    async def unsubscribe(request: Request) -> Response:
        return await pages.unsubscribe(state, request)

    async def preferences(request: Request) -> Response:
        return await pages.preferences(state, request)

    async def sendgrid_webhook(request: Request) -> Response:
        body = await request.body()
        refused = webhook.refusal(check, body, request.headers, settings)
        if refused:
            return JSONResponse({"error": refused}, 403)
        try:
            events = webhook.parse_events(body)
        except ValueError as exc:
            return JSONResponse({"error": f"malformed event batch: {exc}"}, 400)
        # An address erased on request is never mailed: a late report about it must not write it back.
        erased = await run_in_threadpool(forgotten_hashes, state.ledger)
        if erased:
            secret = settings.secret_key.get_secret_value()
            events = replace(events, suppressions=[e for e in events.suppressions if address_hash(secret, e.email) not in erased])
        added, matched = await run_in_threadpool(webhook.record_events, state.ledger, events)
        return JSONResponse({"suppressions": added, "delivery_events": matched})

    @asynccontextmanager
    async def lifespan(app):
        if known_tags is None:
            await run_in_threadpool(state.read_list_tags)
        state.start_reading_articles()
        yield
        state.stop.set()

    app = Starlette(
        routes=[
            Route("/unsubscribe", unsubscribe, methods=["GET", "HEAD", "POST"]),
            Route("/preferences", preferences, methods=["GET", "HEAD", "POST"]),
            Route(WEBHOOK_PATH, sendgrid_webhook, methods=["POST"]),
            *signup_routes(settings, state.page, state.tags),
        ],
        middleware=[
            Middleware(PathOnlyAccessLog),
            Middleware(SecurityHeaders, headers=security_headers(settings.unsubscribe_base_url)),
            Middleware(BodyLimit, limits={WEBHOOK_PATH: settings.webhook_max_body}, timeout=settings.serve_request_timeout),
        ],
        lifespan=lifespan,
    )
    app.router.redirect_slashes = False  # Starlette builds that redirect from the Host header
    return app


def serve_warnings(settings: Settings) -> list[str]:
    """What ``digest serve`` says at start, one line each: sign-up is off
    when no list can be chosen for it; the Event Webhook is off without a
    key (403), or open to anyone with ``webhook_allow_unsigned``."""
    lines = []
    try:
        from digest.signup import signup_list

        signup_list(settings)
    except DigestError as exc:
        lines.append(f"sign-up (/subscribe) answers 503 until 'signup_list' or 'default_list' names the list readers join: {exc}")
    if settings.sendgrid_webhook_public_key:
        return lines
    if settings.webhook_allow_unsigned:
        return lines + [
            "webhook_allow_unsigned is on and there is no sendgrid_webhook_public_key: POST /webhooks/sendgrid accepts "
            "unsigned events, so anyone who can reach it (through a proxy too) can suppress addresses"
        ]
    return lines + [
        "no sendgrid_webhook_public_key: POST /webhooks/sendgrid refuses every event (403); turn on SendGrid's "
        "signed Event Webhook and set the key"
    ]


def uvicorn_options(settings: Settings) -> dict:
    """Keyword arguments of ``uvicorn.run`` for ``settings``: host and port;
    the h11 protocol with a header deadline (:class:`HeaderDeadline`,
    ``serve_request_timeout``), request heads of at most 16 KiB, idle
    keep-alive connections closed after 5 s, at most
    ``serve_max_connections`` connections (more get 503); uvicorn's access
    log off (it prints each URL with its query, tokens included) and
    ``digest.web``'s path-only log on, beside uvicorn's own lines on stderr."""
    from uvicorn.config import LOGGING_CONFIG

    log_config = copy.deepcopy(LOGGING_CONFIG)
    log_config["loggers"][ACCESS_LOG.name] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    protocol = type("DigestH11Protocol", (HeaderDeadline,), {"header_timeout": settings.serve_request_timeout})
    return {
        "host": settings.serve_host,
        "port": settings.serve_port,
        "http": protocol,
        "h11_max_incomplete_event_size": 16 * 1024,
        "timeout_keep_alive": 5,
        "limit_concurrency": settings.serve_max_connections,
        "log_level": "info",
        "access_log": False,
        "log_config": log_config,
    }


def serve(settings: Settings) -> None:
    """Run the app on ``settings.serve_host``:``settings.serve_port`` with
    uvicorn until interrupted, after printing :func:`serve_warnings` on
    stderr. Raises :class:`SettingsError` when ``secret_key`` is weak
    (:func:`digest.tokens.check_secret`: anyone could forge unsubscribe
    links) or ``public_url`` cannot carry tokens."""
    import click
    import uvicorn

    from digest.unsubscribe import unsubscribe_url

    check_secret(settings)
    unsubscribe_url(settings, "check@example.org", "check")  # raises for a public_url that is not https
    app = create_app(settings)
    for line in serve_warnings(settings):
        click.secho(f"warning: {line}", fg="yellow", err=True)
    if not is_loopback(settings.serve_host):
        click.echo(f"listening on {settings.serve_host}: put it behind your https proxy at {settings.unsubscribe_base_url}", err=True)
    _check_can_listen(settings.serve_host, settings.serve_port)
    uvicorn.run(app, **uvicorn_options(settings))


def _check_can_listen(host: str, port: int) -> None:
    """Raise :class:`SettingsError` naming the address when ``host:port``
    cannot be listened on (in use, not ours), before uvicorn would log its
    own error and exit 3, which README gives to a provider's refusal."""
    import socket

    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            probe.bind((host, port))
    except OSError as exc:
        raise SettingsError(f"cannot listen on {host}:{port} (serve_host, serve_port): {exc.strerror or exc}") from None
