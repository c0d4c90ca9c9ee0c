"""The reader's pages of ``digest serve``: unsubscribe and preferences.

- ``POST /unsubscribe?token=...`` with the RFC 8058 body
  ``List-Unsubscribe=One-Click`` (urlencoded or multipart): the one-click
  endpoint mail clients call for ``List-Unsubscribe-Post``. No cookie, no
  confirmation step (§3.2): it records the suppression and answers 200. A
  POST without that body changes nothing (400).
- ``GET``/``HEAD /unsubscribe?token=...``: a page with a button that POSTs
  the one-click body. Link scanners and prefetchers follow GETs and HEADs,
  so those never change anything; other methods get 405.
- ``GET``/``HEAD /preferences?token=...``: the reader picks the tags they
  want from those known in the lists and the articles, and how often the
  digest comes; ``POST`` saves them (stored in the ledger and applied over
  their CSV row's) only with the form's CSRF token, signed for that reader
  and :data:`tokens.FORM_MAX_AGE` long. The page links to "delete everything about
  me" (:mod:`digest.web.signup`).
- The links of an address erased on request (``digest subscribers
  forget``) change nothing and say so: they must not write it back.

Each link's token names its purpose (:mod:`digest.unsubscribe`): an
unsubscribe token is refused by ``/preferences`` and the other way round.
A forged, altered or malformed token gets 400 and records nothing. Every
link and form action is built from ``public_url``, never from the request's
``Host`` header. Responses carry no cookies, ``Cache-Control: no-store``
and ``Referrer-Policy: no-referrer`` (the token must not leak to other
sites).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from jinja2 import DictLoader, Environment, StrictUndefined
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from digest import suppressions, tokens
from digest.articles import slugify_tag
from digest.consent import address_hash, forgotten_hashes
from digest.errors import DigestError
from digest.subscribers import FREQUENCIES
from digest.tokens import TokenError
from digest.unsubscribe import make_token, merged_lists, preferences_url, public_base, read_token, unsubscribe_url
from digest.web.signup import PAGES as SIGNUP_PAGES

if TYPE_CHECKING:
    from digest.settings import Settings

PAGE_HEADERS = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex"}  # and digest.web.guards.security_headers
ARTICLE_TAGS_EVERY = 600  # seconds between two readings of the sources for the preferences page

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
{% if suppressed %}<p><strong>{{ email }}</strong> gets no more mail from {{ lists|join(", ") }}.</p>
{% else %}<p>Stop sending <strong>{{ site_name }}</strong> ({{ lists|join(", ") }}) to <strong>{{ email }}</strong>?</p>
{% if lists|length > 1 %}<p>You get one digest for the lists {{ lists|join(" and ") }}: unsubscribing stops it, and leaves every one of them.</p>{% endif %}
<form method="post" action="{{ unsubscribe_url }}">
<input type="hidden" name="List-Unsubscribe" value="One-Click"><input type="hidden" name="via" value="page">
<button type="submit">Unsubscribe</button></form>{% endif %}
<p><a href="{{ preferences_url }}">Choose topics instead</a></p>{% endblock %}""",
    "done.html": """{% extends "base.html" %}{% block body %}
<p><strong>{{ email }}</strong> will get no more mail from {{ site_name }} ({{ lists|join(", ") }}).</p>{% endblock %}""",
    "preferences.html": """{% extends "base.html" %}{% block body %}
{% if saved %}<p role="status">Saved.</p>{% endif %}
{% if suppressed %}<p><strong>{{ email }}</strong> is unsubscribed from {{ lists|join(", ") }}; these choices apply if you come back.</p>{% endif %}
<form method="post" action="{{ preferences_url }}"><input type="hidden" name="csrf" value="{{ csrf }}">
<p>Topics for <strong>{{ email }}</strong> ({{ lists|join(", ") }}). Leave all unticked to get every article.</p>
{% if lists|length > 1 %}<p>You get one digest for the lists {{ lists|join(" and ") }}: these choices apply to all of them.</p>{% endif %}
{% for tag in tags %}<label><input type="checkbox" name="tag" value="{{ tag }}"{% if tag in chosen %} checked{% endif %}> {{ tag }}</label>
{% endfor %}<fieldset><legend>How often</legend>
{% for value in frequencies %}<label><input type="radio" name="frequency" value="{{ value }}"{% if value == frequency %} checked{% endif %}> {{ value }}</label>
{% endfor %}</fieldset><p><button type="submit">Save</button></p></form>
<p><a href="{{ unsubscribe_url }}">Unsubscribe</a> · <a href="{{ forget_url }}">Delete everything about me</a></p>{% endblock %}""",
    "error.html": """{% extends "base.html" %}{% block body %}<p>{{ message }}</p>{% endblock %}""",
}


@dataclass
class PageState:
    """What the pages share: the settings, the page templates, and the
    tags offered on the preferences page (``known_tags`` given, or the
    lists' tags plus those of the articles, which a background thread reads
    every :data:`ARTICLE_TAGS_EVERY` seconds: a request never waits on a
    feed, nor reads a whole list)."""

    settings: Settings
    known_tags: frozenset[str] | None = None
    list_tags: frozenset[str] = frozenset()
    article_tags: frozenset[str] = frozenset()
    pages: Environment = field(
        default_factory=lambda: Environment(loader=DictLoader({**_PAGES, **SIGNUP_PAGES}), autoescape=True, undefined=StrictUndefined)
    )
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def ledger(self) -> Path | str:
        return self.settings.ledger

    def page(self, name: str, status_code: int = 200, background: BackgroundTask | None = None, **values: object) -> HTMLResponse:
        values = {"site_name": self.settings.site_name, "site_url": self.settings.site_url, **values}
        return HTMLResponse(self.pages.get_template(name).render(**values), status_code, headers=PAGE_HEADERS, background=background)

    def tags(self) -> frozenset[str]:
        return self.known_tags if self.known_tags is not None else self.list_tags | self.article_tags

    def read_list_tags(self) -> None:
        """Read the lists' tags (local files: at start, before any request)."""
        self.list_tags = frozenset(_list_tags(self.settings))

    def start_reading_articles(self) -> None:
        """Read the articles' tags now and, with the lists', every
        :data:`ARTICLE_TAGS_EVERY` seconds in a daemon thread, until
        :attr:`stop` is set."""
        if self.known_tags is not None:
            return

        def loop() -> None:
            while not self.stop.is_set():
                self.article_tags = frozenset(_article_tags(self.settings))
                if self.stop.wait(ARTICLE_TAGS_EVERY):
                    break
                self.read_list_tags()

        threading.Thread(target=loop, name="digest-article-tags", daemon=True).start()


async def _person(state: PageState, request: Request, purpose: str) -> tuple[str, str, dict[str, str]] | Response:
    """(email, list name, their links by page name) from the request's
    token for ``purpose``, or the 400 page; for an address erased on
    request, a page saying nothing is kept. The links are built from
    ``public_url``, with a token of each page's own purpose."""
    try:
        email, list_name = read_token(state.settings, request.query_params.get("token", ""), purpose)
    except TokenError as exc:
        return state.page("error.html", 400, title="Link not valid", message=f"{exc}. Please use the link from one of our emails.")
    hashed = address_hash(state.settings.secret_key.get_secret_value(), email)
    if hashed in await run_in_threadpool(forgotten_hashes, state.ledger):
        return state.page("error.html", title="Nothing kept", message="Everything about this address was deleted on request; nothing more is sent to it.")
    links = {
        "unsubscribe_url": unsubscribe_url(state.settings, email, list_name),
        "preferences_url": preferences_url(state.settings, email, list_name),
        "forget_url": f"{public_base(state.settings)}/forget?token={make_token(state.settings, email, list_name, 'preferences')}",
    }
    return email, list_name, links


async def _form(request: Request) -> dict[str, list[str]]:
    """The fields of an urlencoded or multipart body (the one-click POST is
    either, RFC 8058 §3.1); a body of another or no type is read as
    urlencoded (some clients post ``List-Unsubscribe=One-Click`` as it is).
    The body is already capped (:class:`digest.web.guards.BodyLimit`)."""
    kind = request.headers.get("content-type", "")
    if not kind.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        return parse_qs((await request.body()).decode("utf-8", errors="replace"))
    try:
        form = await request.form(max_files=0, max_fields=200)
    except HTTPException:  # a malformed multipart body, or files in it
        return {}
    return {key: [str(v) for v in form.getlist(key)] for key in form.keys()}


async def unsubscribe(state: PageState, request: Request) -> Response:
    person = await _person(state, request, "unsubscribe")
    if isinstance(person, Response):
        return person
    email, list_name, links = person
    lists = await run_in_threadpool(merged_lists, state.settings, email, list_name)
    if request.method in ("GET", "HEAD"):
        stopped = await run_in_threadpool(_suppressed_on_all, state.ledger, email, lists)
        return state.page("confirm.html", title="Unsubscribe", email=email, lists=lists, suppressed=stopped, **links)
    form = await _form(request)
    if form.get("List-Unsubscribe") != ["One-Click"]:
        message = "Nothing changed: this address unsubscribes with the button on this page, or your mail app's unsubscribe button."
        return state.page("error.html", 400, title="Not a one-click request", message=message)
    source = "unsubscribe-page" if form.get("via") == ["page"] else "one-click"
    # A message merged from several lists stops as a whole (README, "One reader on several lists").
    await run_in_threadpool(suppressions.add_many, state.ledger, [(email, "unsubscribed", name) for name in lists], source)
    return state.page("done.html", title="Unsubscribed", email=email, lists=lists)


async def preferences(state: PageState, request: Request) -> Response:
    person = await _person(state, request, "preferences")
    if isinstance(person, Response):
        return person
    email, list_name, links = person
    settings = state.settings
    tags = await run_in_threadpool(state.tags)
    lists = await run_in_threadpool(merged_lists, settings, email, list_name)
    saved = False
    if request.method == "POST":
        form = await _form(request)
        try:
            sent_for = tokens.verify(settings, "form", (form.get("csrf") or [""])[0], max_age=tokens.FORM_MAX_AGE)
        except TokenError:
            sent_for = None
        if sent_for != ["preferences", email, list_name]:
            message = "Nothing changed: this form is too old or did not come from our page. Please open the link again."
            return state.page("error.html", 403, title="Form not valid", message=message)
        chosen = {slug for value in form.get("tag", []) if (slug := slugify_tag(value)) in tags}
        frequency = (form.get("frequency") or [""])[0]
        await run_in_threadpool(_save_choice, state.ledger, email, lists, chosen, frequency if frequency in FREQUENCIES else None)
        saved = True
    chosen, frequency, stopped = await run_in_threadpool(_current_choice, settings, email, lists)
    return state.page(
        "preferences.html",
        title="Your topics",
        email=email,
        lists=lists,
        tags=sorted(tags | chosen),
        chosen=chosen,
        frequencies=FREQUENCIES,
        frequency=frequency,
        saved=saved,
        suppressed=stopped,
        csrf=tokens.sign(settings, "form", ["preferences", email, list_name]),
        **links,
    )


def _suppressed_on_all(ledger: Path | str, email: str, lists: list[str]) -> bool:
    """Whether ``email`` gets no more mail from any of ``lists``."""
    return suppressions.present(ledger) and all(suppressions.is_suppressed(ledger, email, name) is not None for name in lists)


def _save_choice(ledger: Path | str, email: str, lists: list[str], tags: set[str], frequency: str | None) -> None:
    """Store ``tags`` (and ``frequency``, unless None) for ``email`` on every
    list of ``lists``, in one transaction: the reader of a merged message
    chose for that one message, and the merge (union of the lists' tags,
    most frequent frequency) then gives exactly their choice."""
    with suppressions.transaction(ledger) as conn:
        for name in lists:
            suppressions.set_preferences(conn, email, name, tags)
            if frequency is not None:
                suppressions.set_frequency(conn, email, name, frequency)


def _current_choice(settings: Settings, email: str, lists: list[str]) -> tuple[frozenset[str], str, bool]:
    """The reader's tags and frequency on ``lists`` (per list: the stored
    choice, else their CSV row's, else the default; merged across lists as
    a send merges them: :func:`digest.subscribers.merged_tags`,
    :func:`digest.subscribers.most_frequent`) and whether they are
    suppressed on every one of them."""
    from digest.subscribers import choose_lists, find_subscriber, merged_tags, most_frequent

    ledger = settings.ledger
    stored_ledger = suppressions.present(ledger)
    tag_sets, frequencies = [], []
    for name in lists:
        if stored_ledger and suppressions.is_suppressed(ledger, email, name) is not None and len(lists) > 1:
            continue  # a list they left takes no part in the message (unless it is the only one)
        stored = suppressions.get_preferences(ledger, email, name) if stored_ledger else None
        frequency = suppressions.get_frequency(ledger, email, name) if stored_ledger else None
        try:
            row = find_subscriber(choose_lists(Path(settings.subscribers), name), email)
        except DigestError:  # the list is gone: nothing to start from
            row = None
        tag_sets.append(stored if stored is not None else (row.tags if row else frozenset()))
        frequencies.append(frequency or (row.frequency if row else "") or settings.frequency_default)
    if not tag_sets:  # suppressed on every list: their choices on the first, should they come back
        return _current_choice(settings, email, lists[:1])[:2] + (True,)
    return merged_tags(tag_sets), most_frequent(frequencies), _suppressed_on_all(ledger, email, lists)


def known_tags(settings: Settings) -> set[str]:
    """The topics offered on the sign-up form: the tags of the subscriber
    lists and of the articles of ``settings.sources``."""
    return _list_tags(settings) | _article_tags(settings)


def _list_tags(settings: Settings) -> set[str]:
    from digest.subscribers import list_files, list_tags

    try:
        return list_tags(list_files(Path(settings.subscribers)))
    except DigestError:  # no lists where the settings say: offer the articles' tags
        return set()


def _article_tags(settings: Settings) -> set[str]:
    """The tags of the articles of ``settings.sources``, read with the
    fetch limits of :mod:`digest.sources`; empty if that fails."""
    from digest.sources import load_articles

    started = time.monotonic()
    try:
        return {tag for article in load_articles(settings.sources, settings).articles for tag in article.tags}
    except Exception:  # noqa: BLE001 - the page keeps the lists' tags; the next round tries again
        logging.getLogger("digest.web").exception("reading the articles' tags (%.1f s)", time.monotonic() - started)
        return set()

