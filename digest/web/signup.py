"""The sign-up and erasure pages of ``digest serve``; :mod:`digest.web`
registers them beside unsubscribe and preferences.

- ``GET /subscribe``: the form (:func:`digest.signup.signup_form`).
- ``POST /subscribe``: an urlencoded form of at most :data:`MAX_FORM_BYTES`
  (413 above, 415 for another encoding; no CSRF token, since the form is
  meant to be pasted into other sites, and the confirmation email is the
  check). A client address posting more than ``signup_client_limit`` times
  an hour gets 429; a filled-in honeypot, a valid request and a throttled
  one all get the same "check your inbox" page, byte for byte, whether or
  not the address is subscribed. The confirmation email is sent after the
  answer, so its timing tells nothing either. A form that is wrong comes
  back with its message (400).
- ``GET /confirm?token=...``: a page with a button; ``POST /confirm``
  confirms (:func:`digest.signup.confirm`) and, with ``welcome_message``,
  sends the welcome message afterwards.
- ``GET /forget?token=...`` (the preferences token): "delete everything
  about me", a confirmation step; ``POST /forget`` with that page's form
  token (CSRF: the preferences token alone is in every forwarded email)
  erases the reader
  (:func:`digest.privacy.forget`).

Every change is a POST; links and form targets are built from
``public_url``, never from the request's Host header. Tokens in forms are
the capability (only the reader has them), so a cross-site post cannot
carry one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from digest import tokens
from digest.errors import DigestError
from digest.signup import (
    SignupError,
    claim_confirmation,
    confirm,
    parse_signup,
    read_confirm_token,
    send_confirmation,
    send_welcome,
    signup_form,
    signup_list,
)
from digest.unsubscribe import TokenError, public_base, read_token

if TYPE_CHECKING:
    from digest.settings import Settings

log = logging.getLogger(__name__)

MAX_FORM_BYTES = 16 * 1024  # a sign-up form is well under 2 KB; the topics of a big site fit too
HOUR = 3600.0

PAGES = {
    "subscribe.html": """{% extends "base.html" %}{% block body %}
{% if error %}<p role="alert"><strong>{{ error }}</strong></p>{% endif %}
{{ form }}{% endblock %}""",
    "check-inbox.html": """{% extends "base.html" %}{% block body %}
<p>Thank you. Please check your inbox: if the address can be subscribed, a message with a confirmation link is on its way.
The link works for a limited time; nothing happens until you open it.</p>{% endblock %}""",
    "confirm-signup.html": """{% extends "base.html" %}{% block body %}
<p>Subscribe <strong>{{ email }}</strong> to <strong>{{ site_name }}</strong>{% if topics %} (topics: {{ topics }}){% endif %}, {{ frequency }}?</p>
<form method="post" action="{{ action }}"><button type="submit">Confirm my subscription</button></form>{% endblock %}""",
    "confirmed.html": """{% extends "base.html" %}{% block body %}
<p><strong>{{ email }}</strong> {% if added %}is subscribed to{% else %}keeps getting{% endif %} {{ site_name }}, {{ frequency }}.</p>{% endblock %}""",
    "forget.html": """{% extends "base.html" %}{% block body %}
<p>Delete everything {{ site_name }} keeps about <strong>{{ email }}</strong>: your place on every list, your topics and
consent, and your address in the record of what was sent. You will get no more mail from us. This cannot be undone.</p>
<form method="post" action="{{ action }}"><input type="hidden" name="csrf" value="{{ csrf }}"><button type="submit">Delete everything about me</button></form>
<p><a href="{{ back }}">Keep my subscription</a></p>{% endblock %}""",
    "forgotten.html": """{% extends "base.html" %}{% block body %}
<p>Done: your address is gone from our lists and records. Only a one-way code of it is kept, so an old list cannot add you back.</p>{% endblock %}""",
}


@dataclass
class ClientLimiter:
    """At most ``limit`` requests per client address in any ``window``
    seconds (a sliding window; 0: no limit), in this process's memory.
    Behind a reverse proxy every client shares the proxy's address: limit
    there, or raise ``signup_client_limit``."""

    limit: int
    window: float = HOUR
    clock: Callable[[], float] = time.monotonic
    seen: dict[str, deque[float]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    swept: float = 0.0

    def allow(self, client: str) -> bool:
        if not self.limit:
            return True
        now = self.clock()
        with self.lock:
            if now - self.swept > 60:  # forget idle clients once a minute, so the table cannot grow without bound
                self.swept = now
                for key in [k for k, times in self.seen.items() if not times or times[-1] <= now - self.window]:
                    del self.seen[key]
            times = self.seen.setdefault(client, deque())
            while times and times[0] <= now - self.window:
                times.popleft()
            if len(times) >= self.limit:
                return False
            times.append(now)
            return True


async def read_form(request: Request, limit: int = MAX_FORM_BYTES) -> dict[str, list[str]] | Response:
    """The urlencoded body of ``request`` as field -> values, read up to
    ``limit`` bytes (a longer body is refused with 413 before it is held in
    memory); 415 for any other content type."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return Response("expected an application/x-www-form-urlencoded form\n", 415)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return Response("form too large\n", 413)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return Response("form too large\n", 413)
    try:
        return parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=200, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        return Response("malformed form\n", 400)


def signup_routes(settings: Settings, page: Callable[..., HTMLResponse], known_tags: Callable[[], frozenset[str]]) -> list[Route]:
    """The routes of this module for the app of ``settings``; ``page(name,
    status, **values)`` renders one of :data:`PAGES` (merged into the app's
    templates), ``known_tags()`` gives the topics offered."""
    limiter = ClientLimiter(settings.signup_client_limit)
    base = public_base(settings)

    async def subscribe(request: Request) -> Response:
        try:
            signup_list(settings)
        except DigestError as exc:  # several lists and none named: serve_warnings says so at start
            log.error("sign-up is off: %s", exc)
            return page("error.html", 503, title="Sign-up closed", message="Sign-up is not available just now; please try again later.")
        tags = await run_in_threadpool(known_tags)
        if request.method != "POST":  # GET and HEAD (Starlette adds it to GET routes) change nothing
            return page("subscribe.html", title="Subscribe", form=signup_form(settings, tags), error=None)
        client = request.client.host if request.client else "-"
        if not limiter.allow(client):
            return page("error.html", 429, title="Too many requests", message="Too many sign-up requests from your network; please try again in an hour.")
        form = await read_form(request)
        if isinstance(form, Response):
            return form
        if any(value for value in form.get("website", [])):  # the honeypot: a bot filled in every field
            return page("check-inbox.html", title="Check your inbox")
        try:
            wanted = parse_signup(form, tags, settings)
        except SignupError as exc:
            shown = {"email": (form.get("email") or [""])[0][:320], "name": (form.get("name") or [""])[0][:200]}
            return page("subscribe.html", 400, title="Subscribe", error=str(exc), form=signup_form(settings, tags, **shown, chosen=form.get("topic", [])))
        # The claim is made before answering (so the hour's one email is decided
        # by then), the email sent after: the answer is the same either way.
        claimed = await run_in_threadpool(claim_confirmation, settings, wanted)
        task = BackgroundTask(_quietly, send_confirmation, settings, wanted) if claimed else None
        return page("check-inbox.html", title="Check your inbox", background=task)

    async def confirm_page(request: Request) -> Response:
        token = request.query_params.get("token", "")
        try:
            wanted = read_confirm_token(settings, token)
        except TokenError as exc:
            return page("error.html", 400, title="Link not valid", message=_sentence(exc))
        if request.method != "POST":  # GET and HEAD (Starlette adds it to GET routes) change nothing
            topics = ", ".join(sorted(wanted.tags))
            return page("confirm-signup.html", title="Confirm your subscription", email=wanted.email, topics=topics,
                        frequency=wanted.frequency, action=f"{base}/confirm?token={token}")
        client = request.client.host if request.client else None
        try:
            done = await run_in_threadpool(confirm, settings, token, ip_address=client)
        except TokenError as exc:
            return page("error.html", 400, title="Link not valid", message=_sentence(exc))
        except DigestError as exc:
            log.error("a confirmation could not be saved: %s", exc)
            return page("error.html", 500, title="Not saved", message="Your subscription could not be saved just now; please try the link again later.")
        task = BackgroundTask(_quietly, send_welcome, settings, done.request) if settings.welcome_message else None
        return page("confirmed.html", title="Subscribed", email=wanted.email, added=done.added, frequency=wanted.frequency, background=task)

    async def forget_page(request: Request) -> Response:
        from digest.privacy import forget

        token = request.query_params.get("token", "")
        try:
            email, _ = read_token(settings, token, "preferences")
        except TokenError as exc:
            return page("error.html", 400, title="Link not valid", message=f"{exc}. Please use the link from one of our emails.")
        if request.method != "POST":  # GET and HEAD (Starlette adds it to GET routes) change nothing
            return page("forget.html", title="Delete everything about me", email=email, action=f"{base}/forget?token={token}",
                        back=f"{base}/preferences?token={token}", csrf=tokens.sign(settings, "form", ["forget", email]))
        # The preferences token is in every email (and so in every forwarded copy):
        # an erasure also needs the form's token, which only our own page hands out.
        form = await read_form(request)
        if isinstance(form, Response):
            return form
        try:
            sent_for = tokens.verify(settings, "form", (form.get("csrf") or [""])[0], max_age=tokens.FORM_MAX_AGE)
        except TokenError:
            sent_for = None
        if sent_for != ["forget", email]:
            message = "Nothing was deleted: this form is too old or did not come from our page. Please open the link again."
            return page("error.html", 403, title="Form not valid", message=message)
        try:
            await run_in_threadpool(forget, settings, email)
        except DigestError as exc:
            log.error("an erasure could not be completed: %s", exc)
            return page("error.html", 500, title="Not done", message="Your data could not be deleted just now; please try again later.")
        return page("forgotten.html", title="Deleted")

    return [
        Route("/subscribe", subscribe, methods=["GET", "POST"]),
        Route("/confirm", confirm_page, methods=["GET", "POST"]),
        Route("/forget", forget_page, methods=["GET", "POST"]),
    ]


def _sentence(exc: Exception) -> str:
    text = str(exc)
    return text[:1].upper() + text[1:] + "."


def _quietly(function: Callable, *args) -> None:
    """Run ``function`` after the answer went out; its failure is one log
    line (never the reader's address or a secret), not a crash."""
    try:
        function(*args)
    except Exception as exc:  # noqa: BLE001 - the answer is gone: log and carry on
        log.error("%s failed: %s", function.__name__, type(exc).__name__)
