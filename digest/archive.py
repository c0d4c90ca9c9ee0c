"""The web archive: every issue that went out, as static pages and an Atom feed.

``digest archive DIR`` writes, for the issues in the ledger that reached at
least one subscriber:

- ``DIR/index.html``: the issues, newest first, with date and subject;
- ``DIR/{key}.html``: one page per issue, the issue as a subscriber of every
  tag got it (the broadest variant); the "view in browser" link target,
  published at ``{archive_url}/{key}.html``;
- ``DIR/feed.xml``: an Atom feed of the issues (RFC 4287).

The ledger keeps each issue's key, window, time and article ids, not its
HTML, so pages are rendered again from the articles still in the sources,
with today's templates.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from jinja2 import Environment, StrictUndefined

from digest.errors import DigestError, SettingsError
from digest.ledger import DeliveryStatus, IssueRecord, Ledger
from digest.settings import Settings

ATOM = "http://www.w3.org/2005/Atom"
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")

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


def archive_base_url(settings: Settings) -> str:
    """``settings.archive_url`` or ``{site_url}archive``, without a trailing
    slash. Raises :class:`SettingsError` unless it is an http(s) URL."""
    base = settings.archive_url or settings.site_url.rstrip("/") + "/archive"
    if not base.startswith(("https://", "http://")):
        raise SettingsError(f"setting 'archive_url' (digest.toml, or DIGEST_ARCHIVE_URL): must start with http:// or https://, not {base!r}")
    return base.rstrip("/")


def page_name(issue_key: str) -> str:
    """The file name of an issue's page: its key with anything but letters,
    digits, ``.``, ``_`` and ``-`` replaced (``2026-W48`` -> ``2026-W48.html``)."""
    return _UNSAFE_NAME.sub("-", issue_key).strip(".-") + ".html"


def sent_issues(ledger_path: Path) -> list[IssueRecord]:
    """The issues of the ledger at ``ledger_path`` that reached at least one
    subscriber (an accepted delivery), newest first. Raises
    :class:`DigestError` when there is no ledger there (it is not created)."""
    path = Path(ledger_path)
    if not path.is_file():
        raise DigestError(f"no ledger at {path}: nothing has been sent yet (see the 'ledger' setting)")
    with Ledger(path) as ledger:
        return [issue for issue in ledger.issues() if ledger.counts(issue.key)[DeliveryStatus.ACCEPTED]]


def write_archive(issues: Sequence[IssueRecord] | Path, out_dir: Path, settings: Settings) -> ArchiveResult:
    """Write the archive of ``issues`` (records, or a ledger path read with
    :func:`sent_issues`) into ``out_dir`` (created if needed): the pages,
    ``index.html`` and ``feed.xml`` described in the module docstring.

    Each page is the issue rendered for every tag, from the articles of
    ``settings.sources`` whose ids the ledger recorded; articles no longer
    found are left out with a warning, and an issue with none left gets no
    page. Raises :class:`DigestError` for bad settings or templates.
    """
    from digest.sources import load_articles

    if isinstance(issues, Path):
        issues = sent_issues(issues)
    base = archive_base_url(settings)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    loaded = load_articles(settings.sources, settings)
    by_id = {article.id: article for article in loaded.articles}
    result = ArchiveResult()
    for issue in sorted(issues, key=_issue_date, reverse=True):
        articles = [by_id[i] for i in issue.article_ids if i in by_id]
        missing = len(issue.article_ids) - len(articles)
        if missing:
            result.warnings.append(f"issue {issue.key}: {missing} of its {len(issue.article_ids)} articles are no longer in the sources; left out")
        if not articles:
            continue
        name = page_name(issue.key)
        subject, preheader, html = _render_page(issue, articles, settings)
        (out_dir / name).write_text(html, encoding="utf-8")
        result.pages.append(ArchivedIssue(issue.key, _issue_date(issue), subject, preheader, name, f"{base}/{name}", len(articles)))
    index = Environment(autoescape=True, undefined=StrictUndefined).from_string(_INDEX)
    (out_dir / "index.html").write_text(
        index.render(site_name=settings.site_name, site_url=settings.site_url, language=settings.language, pages=result.pages), encoding="utf-8"
    )
    _write_feed(result.pages, out_dir / "feed.xml", base, settings)
    return result


def _issue_date(issue: IssueRecord) -> datetime:
    return issue.scheduled_at or issue.created_at


def _render_page(issue: IssueRecord, articles, settings: Settings) -> tuple[str, str, str]:
    """(subject, preheader, HTML) of ``issue`` as a reader of every tag got it,
    with the per-person values of nobody in particular: the greeting says
    "there", the footer "you", and the unsubscribe and preferences links, which
    need a subscriber's own signed token, lead to the site instead."""
    from digest.audience import variant_key
    from digest.providers import Recipient
    from digest.rendering import IssueContext, personalize, render_variant

    context = IssueContext(key=issue.key, as_of=_issue_date(issue), window_start=issue.window_start, window_end=issue.window_end)
    rendered = render_variant(articles, context, settings, variant_key=variant_key([a.id for a in articles]))
    reader = Recipient(email="you", name="", subscriber_id="", list_name="", unsubscribe_url=settings.site_url)
    html, _ = personalize(rendered, reader)
    return rendered.subject, rendered.preheader, html


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
