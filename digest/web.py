"""The small web app of ``digest serve``: unsubscribe, preferences, and
SendGrid's Event Webhook.

- ``POST /unsubscribe?token=...``: the one-click endpoint of RFC 8058 that
  mail clients call for ``List-Unsubscribe-Post: List-Unsubscribe=One-Click``.
  No cookie, no confirmation step (§3.2): it records the suppression and
  answers 200. The body ``List-Unsubscribe=One-Click`` is accepted, and so is
  an empty one.
- ``GET /unsubscribe?token=...``: a plain page with a button that POSTs.
  Link scanners and prefetchers follow GETs, so a GET never unsubscribes.
- ``GET``/``POST /preferences?token=...``: the reader picks the tags they
  want from those known in the lists and the articles, and how often the
  digest comes; stored in the ledger and applied over their CSV row's. The
  page links to "delete everything about me".
- ``/subscribe``, ``/confirm`` (sign-up with double opt-in) and ``/forget``
  (erasure): :mod:`digest.web_signup`.
- ``POST /webhooks/sendgrid``: SendGrid's Event Webhook. With
  ``sendgrid_webhook_public_key`` set, the ECDSA signature is checked with the
  official library's helper and an unsigned or badly signed request gets 403.
  ``bounce``, ``dropped``, ``spamreport``, ``unsubscribe`` and
  ``group_unsubscribe`` events become suppressions, and ``delivered``,
  ``bounce`` and ``dropped`` events are recorded against their delivery rows
  in the ledger (matched through our ``issue_key`` and ``subscriber_id``
  custom args); all of a batch in one transaction: a malformed batch gets
  400 and records nothing. Without a key, unsigned events are taken on
  loopback (behind a proxy, or for tests) and refused with 403 when the app
  listens beyond it, since anyone could then suppress any address.

A forged, altered or malformed token gets 400 and records nothing.
Responses carry no cookies, ``Cache-Control: no-store`` and
``Referrer-Policy: no-referrer`` (the token must not leak to other sites).
For the same reason the request log names paths without their query
string: uvicorn's own access log, which prints the token, is off.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Iterable
from contextlib import closing
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from jinja2 import DictLoader, Environment, StrictUndefined
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from digest import suppressions
from digest.articles import slugify_tag
from digest.consent import address_hash, forgotten_hashes
from digest.errors import DigestError, SettingsError
from digest.ledger import Ledger
from digest.ledger import record_events as ledger_events
from digest.subscribers import FREQUENCIES
from digest.unsubscribe import TokenError, is_loopback, read_token
from digest.web_signup import PAGES as SIGNUP_PAGES
from digest.web_signup import signup_routes

if TYPE_CHECKING:
    from digest.settings import Settings

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
PAGE_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex"}
ACCESS_LOG = logging.getLogger("digest.web")

# SendGrid event -> our suppression reason. Event names from SendGrid's
# "Event Webhook reference" (delivery and engagement events).
SUPPRESSING_EVENTS = {
    "bounce": "bounced",
    "dropped": "bounced",
    "spamreport": "spam-report",
    "unsubscribe": "unsubscribed",
    "group_unsubscribe": "unsubscribed",
}
# `dropped` reasons that concern the message, not the address: SendGrid drops
# the mail but the address is fine (its reference lists these reasons).
MESSAGE_DROP_REASONS = ("spam content", "smtpapi", "quota")

_PAGES = {
    "base.html": """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{{ title }} · {{ site_name }}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem;color:#222}
button{font:inherit;padding:.5rem 1.2rem;cursor:pointer}label{display:block;margin:.2rem 0}</style>
</head><body><h1>{{ title }}</h1>{% block body %}{% endblock %}
<p><a href="{{ site_url }}">{{ site_name }}</a></p></body></html>""",
    "confirm.html": """{% extends "base.html" %}{% block body %}
{% if suppressed %}<p><strong>{{ email }}</strong> gets no more mail from {{ list_name }}.</p>
{% else %}<p>Stop sending <strong>{{ site_name }}</strong> ({{ list_name }}) to <strong>{{ email }}</strong>?</p>
<form method="post" action="unsubscribe?token={{ token }}">
<input type="hidden" name="List-Unsubscribe" value="One-Click"><input type="hidden" name="via" value="page">
<button type="submit">Unsubscribe</button></form>{% endif %}
<p><a href="preferences?token={{ token }}">Choose topics instead</a></p>{% endblock %}""",
    "done.html": """{% extends "base.html" %}{% block body %}
<p><strong>{{ email }}</strong> will get no more mail from {{ site_name }} ({{ list_name }}).</p>{% endblock %}""",
    "preferences.html": """{% extends "base.html" %}{% block body %}
{% if saved %}<p role="status">Saved.</p>{% endif %}
{% if suppressed %}<p><strong>{{ email }}</strong> is unsubscribed from {{ list_name }}; these choices apply if you come back.</p>{% endif %}
<form method="post" action="preferences?token={{ token }}">
<p>Topics for <strong>{{ email }}</strong> ({{ list_name }}). Leave all unticked to get every article.</p>
{% for tag in tags %}<label><input type="checkbox" name="tag" value="{{ tag }}"{% if tag in chosen %} checked{% endif %}> {{ tag }}</label>
{% endfor %}<fieldset><legend>How often</legend>
{% for value in frequencies %}<label><input type="radio" name="frequency" value="{{ value }}"{% if value == frequency %} checked{% endif %}> {{ value }}</label>
{% endfor %}</fieldset><p><button type="submit">Save</button></p></form>
<p><a href="unsubscribe?token={{ token }}">Unsubscribe</a> · <a href="forget?token={{ token }}">Delete everything about me</a></p>{% endblock %}""",
    "error.html": """{% extends "base.html" %}{% block body %}<p>{{ message }}</p>{% endblock %}""",
}


@dataclass
class _State:
    """What the endpoints share: the settings, the page templates, the
    webhook verifier (None without a key) and the known tags (worked out on
    first use, or given)."""

    settings: Settings
    pages: Environment
    verifier: object | None
    tags: frozenset[str] | None

    @property
    def ledger(self) -> Path:
        return Path(self.settings.ledger)

    def page(self, name: str, status_code: int = 200, background: BackgroundTask | None = None, **values: object) -> HTMLResponse:
        values = {"site_name": self.settings.site_name, "site_url": self.settings.site_url, **values}
        return HTMLResponse(self.pages.get_template(name).render(**values), status_code, headers=PAGE_HEADERS, background=background)

    def known_tags(self) -> frozenset[str]:
        if self.tags is None:
            self.tags = frozenset(known_tags(self.settings))
        return self.tags


def create_app(settings: Settings, *, known_tags: Iterable[str] | None = None) -> Starlette:
    """The Starlette app of ``digest serve`` for ``settings``.

    ``known_tags`` (slugs) are the topics offered on the preferences page;
    by default the tags of the subscriber lists and of the articles of
    ``settings.sources``, read on the first preferences request. Raises
    :class:`SettingsError` when ``sendgrid_webhook_public_key`` is not a
    valid public key."""
    state = _State(
        settings=settings,
        pages=Environment(loader=DictLoader({**_PAGES, **SIGNUP_PAGES}), autoescape=True, undefined=StrictUndefined),
        verifier=_verifier(settings.sendgrid_webhook_public_key),
        tags=frozenset(known_tags) if known_tags is not None else None,
    )

    async def unsubscribe(request: Request) -> Response:
        person = await _person(state, request)
        if isinstance(person, Response):
            return person
        email, list_name, token = person
        if request.method == "GET":
            stopped = await run_in_threadpool(_suppression, state.ledger, email, list_name)
            return state.page("confirm.html", title="Unsubscribe", email=email, list_name=list_name, token=token, suppressed=stopped is not None)
        via = _form_field(request, await request.body(), "via")
        source = "unsubscribe-page" if via == "page" else "one-click"
        await run_in_threadpool(suppressions.add, state.ledger, email, "unsubscribed", source, list_name)
        return state.page("done.html", title="Unsubscribed", email=email, list_name=list_name)

    async def preferences(request: Request) -> Response:
        person = await _person(state, request)
        if isinstance(person, Response):
            return person
        email, list_name, token = person
        tags = await run_in_threadpool(state.known_tags)
        saved = False
        if request.method == "POST":
            form = await request.form()
            chosen = {slug for value in form.getlist("tag") if (slug := slugify_tag(value)) in tags}
            await run_in_threadpool(suppressions.set_preferences, state.ledger, email, list_name, chosen)
            if (frequency := form.get("frequency")) in FREQUENCIES:
                await run_in_threadpool(suppressions.set_frequency, state.ledger, email, list_name, frequency)
            saved = True
        chosen, frequency, stopped = await run_in_threadpool(_current_choice, state.settings, email, list_name)
        return state.page(
            "preferences.html",
            title="Your topics",
            email=email,
            list_name=list_name,
            token=token,
            tags=sorted(tags | chosen),
            chosen=chosen,
            frequencies=FREQUENCIES,
            frequency=frequency,
            saved=saved,
            suppressed=stopped,
        )

    async def sendgrid_webhook(request: Request) -> Response:
        if state.verifier is None and not is_loopback(settings.serve_host):  # anyone could suppress anyone
            refusal = f"unsigned events are not taken on {settings.serve_host}: set sendgrid_webhook_public_key"
            return JSONResponse({"error": refusal}, 403)
        body = await request.body()
        if state.verifier is not None and not _signed(state.verifier, body, request.headers):
            return JSONResponse({"error": "missing or invalid Event Webhook signature"}, 403)
        try:
            events = parse_events(body)
        except ValueError as exc:
            return JSONResponse({"error": f"malformed event batch: {exc}"}, 400)
        # An address erased on request is never mailed: a late report about it must not write it back.
        erased = await run_in_threadpool(forgotten_hashes, state.ledger)
        if erased:
            secret = settings.secret_key.get_secret_value()
            events = replace(events, suppressions=[e for e in events.suppressions if address_hash(secret, e.email) not in erased])
        added, matched = await run_in_threadpool(record_events, state.ledger, events)
        return JSONResponse({"suppressions": added, "delivery_events": matched})

    return Starlette(
        routes=[
            Route("/unsubscribe", unsubscribe, methods=["GET", "POST"]),
            Route("/preferences", preferences, methods=["GET", "POST"]),
            Route("/webhooks/sendgrid", sendgrid_webhook, methods=["POST"]),
            *signup_routes(settings, state.page, state.known_tags),
        ],
        middleware=[Middleware(PathOnlyAccessLog)],
    )


class PathOnlyAccessLog:
    """ASGI middleware that logs each request as ``client "METHOD /path"
    status`` to the ``digest.web`` logger at INFO: the path without its query
    string, which holds unsubscribe tokens (anyone reading a log line with
    one could unsubscribe that reader or change their topics)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the server answers when the app fails before starting a response

        async def send_noting_status(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            client = scope["client"][0] if scope.get("client") else "-"
            ACCESS_LOG.info('%s "%s %s" %d', client, scope["method"], scope["path"], status)


async def _person(state: _State, request: Request) -> tuple[str, str, str] | Response:
    """(email, list name, token) from the request's token, or the 400 page;
    for an address erased on request, a page saying nothing is kept (its old
    links must not write the address back into the ledger)."""
    token = request.query_params.get("token", "")
    try:
        email, list_name = read_token(state.settings, token)
    except TokenError as exc:
        return state.page("error.html", 400, title="Link not valid", message=f"{exc}. Please use the link from one of our emails.")
    hashed = address_hash(state.settings.secret_key.get_secret_value(), email)
    if hashed in await run_in_threadpool(forgotten_hashes, state.ledger):
        return state.page("error.html", title="Nothing kept", message="Everything about this address was deleted on request; nothing more is sent to it.")
    return email, list_name, token


def _form_field(request: Request, body: bytes, name: str) -> str | None:
    """One field of an urlencoded body (the one-click POST); None for any
    other body: RFC 8058 senders post the form, some clients post nothing."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return None
    values = parse_qs(body.decode("utf-8", errors="replace")).get(name)
    return values[0] if values else None


def _suppression(ledger: Path, email: str, list_name: str) -> suppressions.Suppression | None:
    return suppressions.is_suppressed(ledger, email, list_name) if ledger.is_file() else None


def _current_choice(settings: Settings, email: str, list_name: str) -> tuple[frozenset[str], str, bool]:
    """The reader's tags and frequency (stored choice, else their CSV row's,
    else the default) and whether they are suppressed for the list."""
    from digest.subscribers import choose_lists, find_subscriber

    ledger = Path(settings.ledger)
    stored = suppressions.get_preferences(ledger, email, list_name) if ledger.is_file() else None
    frequency = suppressions.get_frequency(ledger, email, list_name) if ledger.is_file() else None
    try:
        row = find_subscriber(choose_lists(Path(settings.subscribers), list_name), email)
    except DigestError:  # the list is gone: nothing to start from
        row = None
    if stored is None:
        stored = row.tags if row else frozenset()
    frequency = frequency or (row.frequency if row else "") or settings.frequency_default
    return stored, frequency, _suppression(ledger, email, list_name) is not None


def known_tags(settings: Settings) -> set[str]:
    """The topics offered on the preferences and sign-up pages: the tags of
    the subscriber lists and of the articles of ``settings.sources``."""
    from digest.sources import load_articles
    from digest.subscribers import list_files, list_tags

    try:
        tags = list_tags(list_files(Path(settings.subscribers)))
    except DigestError:  # no lists where the settings say: offer the articles' tags
        tags = set()
    for article in load_articles(settings.sources, settings).articles:
        tags.update(article.tags)
    return tags


# SendGrid's Event Webhook ------------------------------------------------------------------


def _verifier(public_key: str | None):
    """The official helper for ``public_key`` (the base64 DER key SendGrid
    shows under Mail Settings > Signed Event Webhook), or None."""
    if not public_key:
        return None
    from sendgrid.helpers.eventwebhook import EventWebhook

    try:
        return EventWebhook(public_key.strip())
    except Exception as exc:  # noqa: BLE001 - the helper's key library (starkbank-ecdsa, ecdsa or cryptography by version) raises its own errors
        raise SettingsError(
            "setting 'sendgrid_webhook_public_key' (digest.toml, or DIGEST_SENDGRID_WEBHOOK_PUBLIC_KEY): "
            f"not a public key as SendGrid shows it (base64, no PEM lines): {exc}"
        ) from None


def _signed(verifier, body: bytes, headers) -> bool:
    """Whether ``body`` carries a valid signature: ECDSA P-256 over the
    timestamp header followed by the raw body (SendGrid's "Getting started
    with the Event Webhook security features"), checked by the helper."""
    signature = headers.get(SIGNATURE_HEADER)
    timestamp = headers.get(TIMESTAMP_HEADER)
    if not signature or not timestamp:
        return False
    try:
        return bool(verifier.verify_signature(body.decode("utf-8"), signature, timestamp))
    except Exception:  # noqa: BLE001 - undecodable body, signature not base64 or not DER: each helper version raises its own error
        return False


@dataclass(frozen=True)
class SuppressionEvent:
    """An event that stops mail to ``email``: our ``reason`` and the
    ``source`` (``sendgrid:<event>``)."""

    email: str
    reason: str
    source: str


@dataclass(frozen=True)
class DeliveryEvent:
    """What SendGrid reports about one message we sent (``event`` is one of
    :data:`DELIVERY_EVENTS`), to be recorded against its delivery row, found
    by the ``issue_key`` and ``subscriber_id`` custom args the SendGrid
    provider sends. ``event_id`` is SendGrid's ``sg_event_id`` (else the
    event's timestamp); ``occurred_at`` its ``timestamp`` (Unix seconds) as
    an aware UTC datetime, or None; ``detail`` the bounce or drop reason."""

    issue_key: str
    subscriber_id: str
    event: str
    event_id: str
    detail: str | None
    occurred_at: datetime | None


@dataclass(frozen=True)
class EventBatch:
    """One Event Webhook request: the events that suppress an address and
    the events about our delivery rows (one SendGrid event may be both)."""

    suppressions: list[SuppressionEvent]
    deliveries: list[DeliveryEvent]


# Recorded against the delivery rows: the events that say whether a message
# arrived (Event Webhook reference, "delivery events").
DELIVERY_EVENTS = ("delivered", "bounce", "dropped")


def parse_events(body: bytes) -> EventBatch:
    """The events of an Event Webhook batch (a JSON array of objects, each
    with a string ``event``) that matter to us: suppressing ones (with an
    ``email``) and delivery ones carrying our custom args; other events
    (``processed``, ``open``...) are checked and skipped.

    A ``bounce`` of type ``blocked`` (a temporary refusal, SendGrid's Blocks
    list) and a ``dropped`` for a reason about the message rather than the
    address do not suppress, but are still recorded against the delivery
    row. Raises :class:`ValueError` naming the first malformed item: the
    whole batch is then refused."""
    try:
        batch = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(batch, list):
        raise ValueError("expected a JSON array of events")
    found, deliveries = [], []
    for index, event in enumerate(batch):
        if not isinstance(event, dict) or not isinstance(event.get("event"), str):
            raise ValueError(f"item {index} is not an event object with an 'event' name")
        name = event["event"]
        if name in SUPPRESSING_EVENTS:
            email = event.get("email")
            if not isinstance(email, str) or "@" not in email or not email.strip():
                raise ValueError(f"item {index} ({name}) has no email address")
            reason = _reason(name, event)
            if reason is not None:
                found.append(SuppressionEvent(email.strip(), reason, f"sendgrid:{name}"))
        if name in DELIVERY_EVENTS and (delivery := _delivery_event(index, name, event)):
            deliveries.append(delivery)
    return EventBatch(found, deliveries)


def _delivery_event(index: int, name: str, event: dict) -> DeliveryEvent | None:
    """The delivery event of ``event``, or None when it lacks our custom args
    (mail sent by something else). SendGrid puts custom args at the top level
    of each event, as the strings we sent."""
    issue_key, subscriber_id = event.get("issue_key"), event.get("subscriber_id")
    if issue_key is None or subscriber_id is None:
        return None
    if not isinstance(issue_key, str) or not isinstance(subscriber_id, str):
        raise ValueError(f"item {index} ({name}): custom args issue_key and subscriber_id must be strings")
    stamp = event.get("timestamp")
    occurred = datetime.fromtimestamp(stamp, UTC) if isinstance(stamp, int | float) and not isinstance(stamp, bool) else None
    event_id = event.get("sg_event_id")
    reason = event.get("reason") if isinstance(event.get("reason"), str) else None
    kind = event.get("type")
    detail = f"{kind}: {reason}" if name == "bounce" and isinstance(kind, str) and reason else reason
    return DeliveryEvent(
        issue_key, subscriber_id, name, str(event_id) if event_id else str(stamp or ""), detail, occurred
    )


def _reason(name: str, event: dict) -> str | None:
    if name == "bounce" and str(event.get("type", "")).casefold() == "blocked":
        return None
    if name == "dropped":
        why = str(event.get("reason", "")).casefold()
        if any(part in why for part in MESSAGE_DROP_REASONS):
            return None
        if "unsubscribe" in why:
            return "unsubscribed"
        if "spam" in why:
            return "spam-report"
    return SUPPRESSING_EVENTS[name]


def record_events(ledger: Path, batch: EventBatch) -> tuple[int, int]:
    """Record ``batch`` in the ledger file: its suppressions (for every list)
    and its delivery events (against their delivery rows), all in one
    transaction: all or nothing. Returns (new suppressions, new delivery
    events); a repeated event (SendGrid retries deliveries) changes nothing."""
    Ledger(ledger).close()  # creates the ledger's tables, or brings an older file up to date
    with closing(suppressions.connect(ledger)) as conn, conn:  # commit at the end, roll back on error
        conn.execute("BEGIN IMMEDIATE")
        added = sum(suppressions.add(conn, e.email, e.reason, e.source) for e in batch.suppressions)
        return added, ledger_events(conn, batch.deliveries)


def serve_warnings(settings: Settings) -> list[str]:
    """What ``digest serve`` warns about at start, one line each: a webhook
    without a public key takes unsigned events on loopback (whoever reaches
    it, through a reverse proxy too, can suppress any address) and refuses
    them beyond it."""
    lines = []
    try:
        from digest.signup import signup_list

        signup_list(settings)
    except DigestError as exc:
        lines.append(f"sign-up (/subscribe) answers 503 until 'signup_list' or 'default_list' names the list readers join: {exc}")
    if settings.sendgrid_webhook_public_key:
        return lines
    if is_loopback(settings.serve_host):
        return lines + [
            "no sendgrid_webhook_public_key: POST /webhooks/sendgrid accepts unsigned events, so anyone who can "
            "reach it (through a proxy too) can suppress addresses; turn on SendGrid's signed Event Webhook and set the key"
        ]
    return lines + [
        f"no sendgrid_webhook_public_key: POST /webhooks/sendgrid refuses every event (403) on {settings.serve_host}; "
        "turn on SendGrid's signed Event Webhook and set the key"
    ]


def uvicorn_options(settings: Settings) -> dict:
    """Keyword arguments of ``uvicorn.run`` for ``settings``: host and port,
    uvicorn's access log off (it prints each URL with its query, tokens
    included) and ``digest.web``'s path-only log on, beside uvicorn's own
    lines on stderr."""
    from uvicorn.config import LOGGING_CONFIG

    log_config = copy.deepcopy(LOGGING_CONFIG)
    log_config["loggers"][ACCESS_LOG.name] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return {
        "host": settings.serve_host,
        "port": settings.serve_port,
        "log_level": "info",
        "access_log": False,
        "log_config": log_config,
    }


def serve(settings: Settings) -> None:
    """Run the app on ``settings.serve_host``:``settings.serve_port`` with
    uvicorn until interrupted, after printing :func:`serve_warnings` on
    stderr. Raises :class:`SettingsError` when the app would face the
    network with the default ``secret_key`` (anyone could then forge
    unsubscribe links)."""
    import click
    import uvicorn

    from digest.settings import Settings as SettingsModel

    default_secret = SettingsModel.model_fields["secret_key"].default.get_secret_value()
    if settings.secret_key.get_secret_value() == default_secret and not is_loopback(settings.serve_host):
        raise SettingsError(
            "setting 'secret_key' (digest.toml, or DIGEST_SECRET_KEY): set a long random secret before "
            f"serving on {settings.serve_host}; with the default anyone can forge unsubscribe links"
        )
    app = create_app(settings)
    for line in serve_warnings(settings):
        click.secho(f"warning: {line}", fg="yellow", err=True)
    uvicorn.run(app, **uvicorn_options(settings))
