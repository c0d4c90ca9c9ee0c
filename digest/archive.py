"""The web archive: every issue that went out, as static pages and an Atom feed.

``digest archive DIR`` writes, for the issues in the ledger that reached at
least one subscriber:

- ``DIR/index.html``: the issues, newest first, with date and subject;
- ``DIR/{key}.html``: one page per issue, the issue as a subscriber of every
  tag got it; the target of the emails' "View in your browser" link,
  published at ``{archive_url}/{key}.html``;
- ``DIR/feed.xml``: an Atom feed of the issues (RFC 4287).

A page shows what was sent: ``digest send`` renders it and keeps it in the
ledger before the first message goes out (:func:`keep_page`). Rendering it
again later would not do: feeds drop their old entries, articles are edited
or deleted, templates change, and the link in old emails must keep showing
the issue those emails carried. Only issues sent before pages were kept are
rendered again, from the articles still in the sources, with a warning.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from jinja2 import Environment, StrictUndefined

from digest.articles import Article
from digest.audience import variant_key
from digest.errors import DigestError
from digest.ledger import DeliveryStatus, IssueRecord, Ledger, exists
from digest.recipients import Recipient
from digest.rendering import IssueContext, archive_base_url, page_name, personalize, render_variant
from digest.settings import Settings

if TYPE_CHECKING:
    from digest.issue import Issue

ATOM = "http://www.w3.org/2005/Atom"

_INDEX = """<!doctype html>
<html lang="{{ language }}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ site_name }}: archive</title>
<link rel="alternate" type="application/atom+xml" title="{{ site_name }}" href="feed.xml">
<style>body { font: 16px/1.5 system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; padding: 0 1rem; }
li { margin: .4rem 0; } time { color: #555; margin-right: .5rem; }</style>
</head><body>
<h1>{{ site_name }}: every issue</h1>
<p><a href="feed.xml">Atom feed</a> · <a href="{{ site_url }}">{{ site_url }}</a></p>
<ul>
{% for page in pages %}<li><time datetime="{{ page.date.isoformat() }}">{{ page.date.strftime('%Y-%m-%d') }}</time><a href="{{ page.file_name }}">{{ page.subject }}</a> ({{ page.articles }} articles)</li>
{% else %}<li>No issue has gone out yet.</li>
{% endfor %}</ul>
</body></html>
"""


@dataclass(frozen=True)
class ArchivedIssue:
    """One page of the archive: the issue's key, date (aware, the scheduled
    time or else when it was created), subject, preheader, page file name,
    absolute URL and article count."""

    key: str
    date: datetime
    subject: str
    preheader: str
    file_name: str
    url: str
    articles: int


@dataclass
class ArchiveResult:
    """What :func:`write_archive` wrote (newest first) and one warning line
    per issue or article it could not render."""

    pages: list[ArchivedIssue] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Page:
    """An issue's page of the archive: subject, preheader and the HTML
    (complete, personalized for nobody)."""

    subject: str
    preheader: str
    html: str


def render_page(articles: Sequence[Article], context: IssueContext, settings: Settings) -> Page:
    """The archive page of an issue of ``articles`` (in selection order), as a
    reader of every tag gets it, with the per-person values of nobody in
    particular: the greeting says "there", and the footer names no address
    and has no unsubscribe link (:func:`digest.rendering.render_variant` with
    ``web_page``). Raises what rendering raises."""
    rendered = render_variant(articles, context, settings, variant_key=variant_key([a.id for a in articles]), web_page=True)
    nobody = Recipient(email="", name="", subscriber_id="", list_name="", unsubscribe_url=settings.site_url)
    html, _ = personalize(rendered, nobody)
    return Page(rendered.subject, rendered.preheader, html)


def keep_page(ledger: Ledger, issue: Issue, settings: Settings) -> bool:
    """Render ``issue``'s archive page (every article of its selection) and
    keep it in ``ledger``, unless a page is kept for its key already (a
    resumed send keeps the page of its first run). Called by ``digest send``
    before the first message goes out. Returns whether a page was kept."""
    key = issue.context.key
    if ledger.page(key) is not None:
        return False
    page = render_page(issue.selection.articles, issue.context, settings)
    return ledger.keep_page(key, page.subject, page.preheader, page.html)


def sent_issues(ledger_path: Path | str) -> list[IssueRecord]:
    """The issues of the ledger at ``ledger_path`` (a file or a PostgreSQL
    URL) that reached at least one subscriber (an accepted delivery), newest
    first. Raises :class:`DigestError` when there is no ledger file there
    (it is not created)."""
    if not exists(ledger_path):
        raise DigestError(f"no ledger at {ledger_path}: nothing has been sent yet (see the 'ledger' setting)")
    with Ledger(ledger_path) as ledger:
        return [issue for issue in ledger.issues() if ledger.counts(issue.key)[DeliveryStatus.ACCEPTED]]


def write_archive(issues: Sequence[IssueRecord] | Path | str, out_dir: Path, settings: Settings) -> ArchiveResult:
    """Write the archive of ``issues`` (records, or a ledger path read with
    :func:`sent_issues`) into ``out_dir`` (created if needed): the pages,
    ``index.html`` and ``feed.xml`` described in the module docstring.

    A page is the one the ledger kept when the issue was sent. Without one
    (records given, or an issue sent before pages were kept) it is rendered
    again for every tag from the articles of ``settings.sources`` whose ids
    the ledger recorded, with a warning; articles no longer found are left
    out with a warning, and an issue with none left gets no page. Raises
    :class:`DigestError` for bad settings or templates.
    """
    kept: dict[str, dict[str, str]] = {}
    if isinstance(issues, Path | str):
        ledger_path, issues = issues, sent_issues(issues)
        with Ledger(ledger_path) as ledger:
            kept = {issue.key: page for issue in issues if (page := ledger.page(issue.key)) is not None}
    base = archive_base_url(settings)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = ArchiveResult()
    by_id: dict[str, Article] | None = None  # the sources, read only when a page must be rendered again
    for issue in sorted(issues, key=_issue_date, reverse=True):
        if issue.key in kept:
            page, count = Page(**kept[issue.key]), len(issue.article_ids)
        else:
            if by_id is None:
                from digest.sources import load_articles

                by_id = {article.id: article for article in load_articles(settings.sources, settings).articles}
            articles = [by_id[i] for i in issue.article_ids if i in by_id]
            missing = len(issue.article_ids) - len(articles)
            if missing:
                result.warnings.append(f"issue {issue.key}: {missing} of its {len(issue.article_ids)} articles are no longer in the sources; left out")
            if not articles:
                continue
            result.warnings.append(f"issue {issue.key}: no page was kept when it was sent; rendered again from today's sources and templates")
            context = IssueContext(key=issue.key, as_of=_issue_date(issue), window_start=issue.window_start, window_end=issue.window_end)
            page, count = render_page(articles, context, settings), len(articles)
        name = page_name(issue.key)
        (out_dir / name).write_text(page.html, encoding="utf-8")
        result.pages.append(ArchivedIssue(issue.key, _issue_date(issue), page.subject, page.preheader, name, f"{base}/{name}", count))
    index = Environment(autoescape=True, undefined=StrictUndefined).from_string(_INDEX)
    (out_dir / "index.html").write_text(
        index.render(site_name=settings.site_name, site_url=settings.site_url, language=settings.language, pages=result.pages), encoding="utf-8"
    )
    _write_feed(result.pages, out_dir / "feed.xml", base, settings)
    return result


def _issue_date(issue: IssueRecord) -> datetime:
    return issue.scheduled_at or issue.created_at


def _write_feed(pages: Sequence[ArchivedIssue], path: Path, base: str, settings: Settings) -> None:
    """An Atom 1.0 feed (RFC 4287) of ``pages``, newest first: each entry's
    id is its page URL (§4.2.6: permanent and unique), its summary the preheader."""
    ET.register_namespace("", ATOM)

    def add(parent: ET.Element, tag: str, text: str | None = None, **attributes: str) -> ET.Element:
        element = ET.SubElement(parent, f"{{{ATOM}}}{tag}", attributes)
        element.text = text
        return element

    feed = ET.Element(f"{{{ATOM}}}feed")
    add(feed, "id", f"{base}/feed.xml")
    add(feed, "title", settings.site_name)
    newest = pages[0].date if pages else datetime.now(UTC)
    add(feed, "updated", _rfc3339(newest))
    add(feed, "link", rel="self", type="application/atom+xml", href=f"{base}/feed.xml")
    add(feed, "link", rel="alternate", type="text/html", href=f"{base}/")
    author = add(feed, "author")
    add(author, "name", settings.sender_name)
    add(feed, "generator", "digest")
    for page in pages:
        entry = add(feed, "entry")
        add(entry, "id", page.url)
        add(entry, "title", page.subject)
        add(entry, "updated", _rfc3339(page.date))
        add(entry, "published", _rfc3339(page.date))
        add(entry, "link", rel="alternate", type="text/html", href=page.url)
        add(entry, "summary", page.preheader)
    ET.indent(feed)
    ET.ElementTree(feed).write(path, encoding="utf-8", xml_declaration=True)


def _rfc3339(moment: datetime) -> str:
    """Atom date constructs are RFC 3339 date-times (RFC 4287 §3.3), in UTC here."""
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
