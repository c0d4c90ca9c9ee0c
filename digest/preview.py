"""What editors see before anything goes out.

- :func:`build_preview` plans and renders the issue as each variant gets it,
  with its headers, size, size-budget notes and lint warnings.
- :func:`create_preview_app` / :func:`serve_preview`: ``digest preview
  --serve``, a local web page showing that preview at desktop (600 px) and
  phone (375 px) widths, light and dark. It plans and renders again on every
  request, so an edited template, article or setting shows on the next reload
  without a restart.
- :func:`screenshot` / :func:`measure`: the HTML in headless Chromium, for
  ``digest preview --screenshot`` and for the tests that check the layout.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from digest.errors import DigestError
from digest.sources import FeedCache

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from digest.issue import IssueRequest
    from digest.settings import Settings

DESKTOP_WIDTH = 600  # the width the templates hold in Outlook and on desktops
PHONE_WIDTH = 375  # CSS pixels of the most common phone viewport (iPhone 6 to SE)

# Debian's chromium wrapper is "chromium"; Ubuntu and older Debians ship "chromium-browser".
CHROMIUM_NAMES = ("chromium", "chromium-browser")
# Quiet, offline-friendly Chromium: no GPU, no QUIC, no update or sync traffic.
# Playwright adds --headless and a fresh --user-data-dir of its own.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
PAGE_TIMEOUT_MS = 15_000


# Chromium --------------------------------------------------------------------------------


def find_chromium() -> str:
    """Path of the system Chromium. Raises :class:`DigestError` when none is
    on ``PATH`` (Debian: ``apt-get install chromium``)."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise DigestError("Chromium not found (looked for 'chromium' and 'chromium-browser' on PATH); install it, e.g. apt-get install chromium")


@contextmanager
def _page(width: int, *, dark: bool = False, offline: bool = True) -> Iterator[Page]:
    """A Playwright page in the system Chromium, ``width`` CSS pixels wide,
    with ``prefers-color-scheme`` emulated as dark or light. ``offline`` aborts
    every request the page makes (remote images, fonts), so the result does
    not depend on the network."""
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise DigestError("the 'playwright' package is missing: pip install 'playwright>=1.40'") from None
    executable = find_chromium()
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=executable, args=list(CHROMIUM_ARGS), timeout=PAGE_TIMEOUT_MS)
        except PlaywrightError as exc:
            first_line = str(exc).strip().splitlines()[0]
            raise DigestError(f"Chromium at {executable} did not start: {first_line}") from None
        try:
            page = browser.new_page(viewport={"width": width, "height": 800}, color_scheme="dark" if dark else "light")
            page.set_default_timeout(PAGE_TIMEOUT_MS)
            if offline:
                page.route("**/*", lambda route: route.abort())
            yield page
        finally:
            browser.close()


def _load(page: Page, html: str) -> None:
    # "load" waits for images; offline they fail at once, online they may take a while.
    page.set_content(html, wait_until="load")


def screenshot(html: str, out: Path, *, width: int = DESKTOP_WIDTH, dark: bool = False, offline: bool = False) -> Path:
    """Render ``html`` in headless Chromium at ``width`` CSS pixels (the
    whole page, not only the first screen) and save a PNG at ``out``.

    ``dark`` emulates ``prefers-color-scheme: dark`` (what Apple Mail and iOS
    Mail apply). Remote images load unless ``offline``. Returns ``out``.
    Raises :class:`DigestError` when Chromium is missing or does not start.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with _page(width, dark=dark, offline=offline) as page:
        _load(page, html)
        page.screenshot(path=str(out), full_page=True)
    return out


# Per element: its computed background and text colour, in document order.
_COLOURS_JS = """() => Array.from(document.querySelectorAll('body, body *')).map(e => {
    const s = getComputedStyle(e); return [s.backgroundColor, s.color]; })"""
_TRANSPARENT = {"rgba(0, 0, 0, 0)", "transparent"}


def measure(html: str, width: int = PHONE_WIDTH) -> dict:
    """Lay ``html`` out in headless Chromium at ``width`` CSS pixels, offline,
    in light and in dark mode (``prefers-color-scheme`` emulated).

    Returns ``{"scroll_width": int, "scroll_height": int, "light": {...},
    "dark": {...}}`` where ``scroll_width`` and ``scroll_height`` are
    ``document.documentElement``'s, in CSS pixels (a width greater than
    ``width`` means the reader must scroll sideways), and each
    scheme holds ``background`` (the computed background colour, as CSS
    ``rgb()`` text, of the outermost element that paints one: the body or the
    main container) and ``colours`` (``[background, colour]`` of every
    element, in document order, so two schemes can be compared element by
    element).
    """
    with _page(width) as page:
        _load(page, html)
        result: dict = {
            "scroll_width": page.evaluate("document.documentElement.scrollWidth"),
            "scroll_height": page.evaluate("document.documentElement.scrollHeight"),
        }
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)
            colours = [tuple(pair) for pair in page.evaluate(_COLOURS_JS)]
            painted = next((bg for bg, _ in colours if bg not in _TRANSPARENT), None)
            result[scheme] = {"background": painted, "colours": colours}
    return result


# The preview of one issue ----------------------------------------------------------------

# The headers an editor checks before sending (RFC 5322 From/To/Subject, RFC 2369
# and RFC 8058 List-Unsubscribe, RFC 2919 List-Id).
SHOWN_HEADERS = ("From", "Reply-To", "To", "Subject", "List-Unsubscribe", "List-Unsubscribe-Post", "List-Id")


@dataclass(frozen=True)
class VariantPreview:
    """One variant as its first subscriber gets it.

    ``html`` and ``text`` are personalized for ``recipient`` (an address);
    ``headers`` holds the :data:`SHOWN_HEADERS` of the real message, decoded;
    ``html_bytes`` is the size of the variant's HTML in bytes after inlining,
    before personalization (the figure Gmail's ~102 KB clip applies to);
    ``notes`` says what the size budget changed; ``findings`` are the lines
    of :mod:`digest.lint` for the variant and its message ("error: ..." or
    "warning: ...", with the article or template line they come from).
    """

    number: int
    key: str
    tags: frozenset[str]
    subscribers: int
    articles: int
    recipient: str
    subject: str
    preheader: str
    headers: dict[str, str]
    html: str
    text: str
    html_bytes: int
    notes: tuple[str, ...]
    findings: tuple[str, ...]


@dataclass(frozen=True)
class Preview:
    """A planned and rendered issue: its key, the count of selected articles,
    the warnings of planning (unreadable sources, undated articles, skipped
    subscriber rows) and one :class:`VariantPreview` per variant, in variant
    order (empty when there is nothing to send)."""

    issue_key: str
    articles: int
    planning_warnings: tuple[str, ...]
    variants: tuple[VariantPreview, ...]


def build_preview(settings: Settings, request: IssueRequest, *, feeds: FeedCache | None = None) -> Preview:
    """Plan the issue for ``request`` (:func:`digest.issue.plan_issue`),
    render each variant once (:func:`digest.delivery.render_issue`) and build
    each variant's message for its first subscriber
    (:func:`digest.messages.build_message`), and check both
    (:mod:`digest.lint`). Sends and writes nothing. ``feeds``: see
    :func:`digest.issue.plan_issue`.

    Raises what planning and rendering raise (:class:`DigestError` for bad
    settings, sources or templates).
    """
    from digest.delivery import render_issue
    from digest.issue import plan_issue
    from digest.lint import lint_message, lint_variant
    from digest.messages import build_message
    from digest.rendering import personalize
    from digest.unsubscribe import recipient_for

    issue = plan_issue(settings, request, feeds=feeds)
    variants = []
    for variant, rendered in zip(issue.variants, render_issue(issue, settings), strict=True):
        recipient = recipient_for(variant.subscribers[0], settings)
        message = build_message(rendered, recipient, settings, issue_key=issue.context.key)
        html, text = personalize(rendered, recipient)
        variants.append(
            VariantPreview(
                number=variant.number,
                key=variant.key,
                tags=variant.tags,
                subscribers=len(variant.subscribers),
                articles=len(variant.articles),
                recipient=recipient.email,
                subject=rendered.subject,
                preheader=rendered.preheader,
                headers={name: str(message[name]) for name in SHOWN_HEADERS if message[name] is not None},
                html=html,
                text=text,
                html_bytes=len(rendered.html.encode("utf-8")),
                notes=rendered.notes,
                findings=tuple(str(f) for f in [*lint_variant(rendered, articles=variant.articles, settings=settings), *lint_message(message)]),
            )
        )
    return Preview(
        issue_key=issue.context.key,
        articles=len(issue.selection.articles),
        planning_warnings=tuple(issue.warnings()),
        variants=tuple(variants),
    )


_DARK_QUERY = re.compile(r"\(\s*prefers-color-scheme\s*:\s*dark\s*\)", re.IGNORECASE)
_LIGHT_QUERY = re.compile(r"\(\s*prefers-color-scheme\s*:\s*light\s*\)", re.IGNORECASE)


def force_color_scheme(html: str, scheme: Literal["light", "dark"]) -> str:
    """``html`` with its ``prefers-color-scheme`` media features made always
    true or always false, so an ``<iframe>`` shows the chosen scheme whatever
    the editor's own system uses. (Chromium does not yet let a parent page set
    the scheme an iframe sees; CSS Color Adjustment 1 §2 says it should follow
    the iframe's ``color-scheme``.) Only the message's own ``@media`` rules
    are applied: the automatic inversion of Gmail's and Outlook's apps is not
    simulated."""
    always, never = "(min-width: 0px)", "(max-width: -1px)"
    if scheme == "dark":
        return _LIGHT_QUERY.sub(never, _DARK_QUERY.sub(always, html))
    return _DARK_QUERY.sub(never, _LIGHT_QUERY.sub(always, html))


# The preview server ----------------------------------------------------------------------

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Preview: {{ title }}</title>
<style>
body { font: 15px/1.45 system-ui, sans-serif; margin: 0; background: #eef0f3; color: #1b1f24; }
header, main { padding: 12px 20px; } header { background: #1b1f24; color: #fff; }
header a { color: #cfe3ff; margin-right: 10px; } header a.on { color: #fff; font-weight: bold; text-decoration: none; }
.columns { display: flex; gap: 20px; align-items: flex-start; flex-wrap: wrap; }
.columns > div { flex: 1 1 22rem; min-width: 0; overflow-wrap: anywhere; } h1 { font-size: 1.4rem; }
iframe { border: 1px solid #b8bec6; background: #fff; height: 80vh; }
table { border-collapse: collapse; } th, td { text-align: left; vertical-align: top; padding: 3px 8px; } th { white-space: nowrap; }
pre { white-space: pre-wrap; background: #fff; padding: 12px; border: 1px solid #b8bec6; max-width: 74ch; }
.warn { color: #8a4b00; } .error { color: #a00; font-weight: bold; white-space: pre-wrap; }
</style></head><body>
<header>
{% if preview and preview.variants %}<div>Variant:
{% for v in preview.variants %}<a href="{{ link(variant=v.number) }}" class="{{ 'on' if v.number == current.number else '' }}">{{ v.number }} ({{ v.subscribers }} subscriber{{ 's' if v.subscribers != 1 else '' }}{% if v.tags %}: {{ v.tags | sort | join(', ') }}{% else %}: every tag{% endif %})</a>{% endfor %}
</div>{% endif %}
<div>Width: {% for w, label in widths %}<a href="{{ link(width=w) }}" class="{{ 'on' if w == width else '' }}">{{ label }} {{ w }}px</a>{% endfor %}
 Mode: {% for s in ['light', 'dark'] %}<a href="{{ link(scheme=s) }}" class="{{ 'on' if s == scheme else '' }}">{{ s }}</a>{% endfor %}</div>
</header>
<main>
{% if error %}<h1>The issue could not be rendered</h1><p class="error">{{ error }}</p>
{% elif not preview.variants %}<h1>Nothing to send</h1><p>{{ preview.articles }} articles selected, no subscriber gets any of them.</p>
{% else %}
<div class="columns">
<iframe title="The email as variant {{ current.number }} gets it" width="{{ width }}" src="/variants/{{ current.number }}.html?scheme={{ scheme }}"></iframe>
<div>
<h1>{{ current.subject }}</h1>
<table>
{% for name, value in current.headers.items() %}<tr><th>{{ name }}</th><td>{{ value }}</td></tr>{% endfor %}
<tr><th>Preheader</th><td>{{ current.preheader }} ({{ current.preheader | length }} characters)</td></tr>
<tr><th>HTML size</th><td>{{ '%.1f' | format(current.html_bytes / 1024) }} KB (Gmail clips at about 102 KB)</td></tr>
<tr><th>Articles</th><td>{{ current.articles }} of {{ preview.articles }} selected</td></tr>
</table>
{% for note in current.notes %}<p>Size budget: {{ note }}</p>{% endfor %}
<h2>Checks</h2>
{% for line in current.findings %}<p class="warn">{{ line }}</p>{% else %}<p>No problems found.</p>{% endfor %}
{% for line in preview.planning_warnings %}<p class="warn">{{ line }}</p>{% endfor %}
{% if scheme == 'dark' %}<p><small>Dark mode applies the message's own prefers-color-scheme rules (Apple Mail, iOS);
the automatic colour inversion of Gmail's and Outlook's apps is not simulated.</small></p>{% endif %}
</div></div>
<h2>Text part</h2>
<pre>{{ current.text }}</pre>
{% endif %}
</main></body></html>
"""


def create_preview_app(
    settings: Settings | Callable[[], Settings], request_factory: Callable[[Settings], IssueRequest]
):
    """The Starlette app of ``digest preview --serve``.

    ``settings`` is a :class:`Settings` or, so that edits of ``digest.toml``
    and ``.env`` show without a restart, a function that loads them (called
    on every request). ``request_factory`` makes the :class:`IssueRequest`
    from them. Every request plans and renders the issue afresh.

    Routes: ``/`` (the page; query ``variant`` number, ``width`` 600 or 375,
    ``scheme`` light or dark), ``/variants/{n}.html`` (variant n's HTML, query
    ``scheme``) and ``/variants/{n}.txt`` (its text part). A setting,
    article or template problem shows on the page with status 500. Feed
    URLs are fetched by a background thread (:class:`FeedCache`), never
    while a request waits: a feed not fetched yet is a warning until it is.
    """
    from jinja2 import Environment, StrictUndefined
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, PlainTextResponse, Response
    from starlette.routing import Route

    page = Environment(autoescape=True, undefined=StrictUndefined).from_string(_PAGE)
    load = settings if callable(settings) else (lambda: settings)
    feeds = FeedCache(load)  # no request waits on a feed: they are fetched in the background

    def current_preview() -> Preview:
        loaded = load()
        return build_preview(loaded, request_factory(loaded), feeds=feeds)

    def choose(preview: Preview, number: object) -> VariantPreview:
        found = next((v for v in preview.variants if str(v.number) == str(number)), None)
        return found or preview.variants[0]

    async def index(request: Request) -> Response:
        query = request.query_params
        width = PHONE_WIDTH if query.get("width") == str(PHONE_WIDTH) else DESKTOP_WIDTH
        scheme = "dark" if query.get("scheme") == "dark" else "light"
        state = {"variant": query.get("variant", "1"), "width": width, "scheme": scheme}

        def link(**change: object) -> str:
            return "/?" + "&".join(f"{k}={v}" for k, v in {**state, **change}.items())

        values = {"link": link, "width": width, "scheme": scheme, "widths": [(DESKTOP_WIDTH, "desktop"), (PHONE_WIDTH, "phone")]}
        try:
            preview = current_preview()
        except DigestError as exc:
            return HTMLResponse(page.render(title="error", preview=None, error=str(exc), **values), status_code=500)
        current = choose(preview, state["variant"]) if preview.variants else None
        title = current.subject if current else "nothing to send"
        return HTMLResponse(page.render(title=title, preview=preview, current=current, error=None, **values))

    async def variant_page(request: Request) -> Response:
        try:
            preview = current_preview()
        except DigestError as exc:
            return PlainTextResponse(str(exc), status_code=500)
        if not preview.variants:
            return PlainTextResponse("nothing to send", status_code=404)
        variant = choose(preview, request.path_params["number"])
        if request.path_params["part"] == "txt":
            return PlainTextResponse(variant.text)
        scheme = "dark" if request.query_params.get("scheme") == "dark" else "light"
        return HTMLResponse(force_color_scheme(variant.html, scheme))

    # Handlers are plain "async def" without awaits: rendering is CPU-bound and
    # one editor at a time reloads the page, so no thread pool is needed.
    @asynccontextmanager
    async def lifespan(app):
        feeds.start()
        yield
        feeds.stop()

    return Starlette(
        routes=[
            Route("/", index),
            Route("/variants/{number:int}.{part:str}", variant_page),
        ],
        lifespan=lifespan,
    )


def serve_preview(
    settings: Settings | Callable[[], Settings],
    request_factory: Callable[[Settings], IssueRequest],
    port: int,
    *,
    host: str = "127.0.0.1",
) -> None:
    """Run the preview server until Ctrl-C (see :func:`create_preview_app`).
    It binds ``host`` (loopback by default: the preview shows the subscribers'
    addresses and signed unsubscribe links, which are not for others to see)."""
    import uvicorn

    uvicorn.run(create_preview_app(settings, request_factory), host=host, port=port, log_level="warning")
