"""RSS 0.9x/1.0/2.0 and Atom 0.3/1.0 feeds, read by feedparser.

feedparser gets the raw BYTES so that it can detect the encoding itself
(BOMs, the XML declaration, HTTP headers, undeclared Shift_JIS). A feed that
is not well-formed but still yielded entries is fine ("bozo" feeds are common
in the wild); a document that yielded nothing is reported with the reason.
"""

from __future__ import annotations

import html
from datetime import datetime
from typing import Any

import feedparser

from digest.articles import SLASH_DATE, RawArticle, absolute_url, parse_date
from digest.errors import SourceError
from digest.htmltext import html_to_text

_HTML_TYPES = {"text/html", "application/xhtml+xml"}
_ENTRY_FIELDS = ("title", "link", "id", "summary", "content")
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".avif")


def read_feed(data: bytes, source: str, url: str | None = None) -> list[RawArticle]:
    """Entries of an RSS or Atom document as :class:`RawArticle` records.

    ``url`` is where the document was fetched from (None for a file): it is
    the base of relative links, given to feedparser as Content-Location.
    Without it, relative links resolve against xml:base (feedparser does
    that), else the feed's own self/alternate link. Raises
    :class:`SourceError` when the document is not a feed or has no entries.
    """
    headers = {"content-location": url} if url else None
    try:
        # Its own sanitizer off (15% of reading a large feed): every HTML
        # field an article keeps goes through nh3 in digest.articles.normalize.
        parsed = feedparser.parse(data, response_headers=headers, sanitize_html=False)
    except UnicodeError as exc:  # feedparser fails on a character reference to a lone surrogate (&#xD800;)
        raise SourceError(f"not a readable feed: {exc.reason} ({exc.object[exc.start : exc.end]!a})") from None
    # An empty <item/> nested in an item (PCMag's feed) or a truncated one
    # parses as an entry with no fields at all: not an article.
    entries = [entry for entry in parsed.entries if any(entry.get(key) for key in _ENTRY_FIELDS)]
    if not entries:
        raise SourceError(_why_empty(parsed, data))
    feed_base = _feed_base(parsed, url)
    # The channel's last change (lastBuildDate, Atom updated/modified, dc:date)
    # before its pubDate: undated items appeared, at the latest, when it last changed.
    day_first = not str(parsed.feed.get("language", "")).lower().startswith("en-us")
    feed_date = _slash_convention(_date(parsed.feed, keys=("updated", "published")), day_first)
    language = parsed.feed.get("language")
    return [_entry(entry, source, feed_base, feed_date, day_first, language) for entry in entries]


def _why_empty(parsed: Any, data: bytes) -> str:
    head = data[:2048].lstrip().lower()
    if not parsed.version and (b"<html" in head or b"<!doctype html" in head):
        return "not a feed: it is an HTML page"
    if parsed.bozo:
        problem = parsed.get("bozo_exception")
        return f"not a readable feed: {problem}" if parsed.version else f"not a feed: {problem}"
    return "the feed has no entries"


def _feed_base(parsed: Any, url: str | None) -> str | None:
    """The absolute address relative links of this feed resolve against: the
    fetched URL, else the feed's self link (its own address), else its
    alternate link; relative ones (Hexo's ``/atom.xml``) are resolved in turn."""
    feed = parsed.feed
    self_href = next((link.get("href") for link in feed.get("links", []) if link.get("rel") == "self"), None)
    base = url or ""
    for href in (self_href, feed.get("link")):
        if href and not absolute_url(base, None):
            base = absolute_url(href, base) or href
    return absolute_url(base, None)


def _entry(entry: Any, source: str, feed_base: str | None, feed_date: Any, day_first: bool = True, language: Any = None) -> RawArticle:
    content = entry.get("content") or []
    body = next((part.get("value") for part in content if part.get("value")), None)
    # An entry's own xml:base (Atom) beats the feed's; feedparser records it per text construct.
    entry_base = next(
        (
            base
            for detail in (entry.get("summary_detail"), *content, entry.get("title_detail"))
            if detail and (base := absolute_url(detail.get("base"), None))
        ),
        None,
    )
    return RawArticle(
        source=source,
        title=_text(entry.get("title_detail")) or entry.get("title"),
        date=_slash_convention(_date(entry), day_first),
        tags=[[tag.get("term") or tag.get("label") for tag in entry.get("tags", [])]],
        summary_html=_html(entry.get("summary_detail")),
        body_html=_html(content[0]) if body else None,
        url=entry.get("link") or _alternate(entry),
        # author_detail.name: RSS <author> is "email (Name)"; only the name is for readers.
        author=entry.get("author_detail", {}).get("name") or entry.get("author") or None,
        **_image(entry),
        guid=entry.get("id") or None,
        # Last resort for a feed without any absolute link: a permalink guid (RSS 2.0).
        base_url=entry_base or feed_base or absolute_url(entry.get("id"), None),
        feed_date=feed_date,
        # An entry's own xml:lang (Atom), else the feed's language.
        language=(entry.get("title_detail") or {}).get("language") or language,
    )


def _text(detail: Any) -> str | None:
    """A text construct as plain text (titles may be HTML or XHTML)."""
    if not detail or not detail.get("value"):
        return None
    if detail.get("type") in _HTML_TYPES:
        return html_to_text(detail["value"])
    return detail["value"]


def _html(detail: Any) -> str | None:
    """A text construct as HTML (plain text is escaped)."""
    if not detail or not detail.get("value"):
        return None
    if detail.get("type") in _HTML_TYPES:
        return detail["value"]
    return html.escape(detail["value"], quote=False)


def _alternate(entry: Any) -> str | None:
    return next((link.get("href") for link in entry.get("links", []) if link.get("rel") == "alternate"), None)


def _date(entry: Any, keys: tuple[str, ...] = ("published", "updated", "created")) -> Any:
    """The first of ``keys`` (published, else updated, else created) of an
    entry or of the feed itself, as a value for ``parse_date``.

    feedparser's ``*_parsed`` are UTC struct_time and are used as they are,
    except where its reading is wrong for us: a zone-less date (which it takes
    as UTC, but the site's timezone applies), a date it could not parse
    (``08/02/2013``), and a bare number, a Unix timestamp it misreads as a
    date (``1518478934`` -> 2015-07-03). Those go as strings to our parser.
    When no key gives a date, the first text found goes as it is, so that
    the warning can say why it is not one (``08/02/2013`` is ambiguous).
    """
    unreadable = None
    for key in keys:
        # ``in`` first: feedparser's get("updated") falls back to "published" with a DeprecationWarning.
        raw = entry[key] if key in entry else None
        ours = parse_date(raw) if isinstance(raw, str) else None
        if ours is not None and (raw.strip().isdigit() or not _has_zone(ours)):
            return raw
        if f"{key}_parsed" in entry and entry[f"{key}_parsed"]:
            return entry[f"{key}_parsed"]
        if ours is not None:
            return raw
        if unreadable is None and isinstance(raw, str) and raw.strip():
            unreadable = raw
    return unreadable


def _slash_convention(value: Any, day_first: bool) -> Any:
    """A feed's ``08/02/2013`` read by the feed's own convention: month first
    when its language is en-US, day first otherwise. A feed's dates cannot be
    corrected by the editor, and leaving the entry undated would date it by
    the feed's modification time, making old news look new; a Markdown post's
    ambiguous date is refused instead (its author can fix it)."""
    if not isinstance(value, str) or not (match := SLASH_DATE.match(value.strip())):
        return value
    first, second, year = match.group(1), match.group(2), match.group(3)
    day, month = (first, second) if day_first else (second, first)
    rest = value.strip()[match.end(3):]
    return f"{year}-{int(month):02d}-{int(day):02d}{rest.replace(' ', 'T', 1) if rest.strip() else ''}"


def _has_zone(moment: Any) -> bool:
    return isinstance(moment, datetime) and moment.utcoffset() is not None


def _image(entry: Any) -> dict[str, Any]:
    """The first image of media:thumbnail, media:content or an enclosure
    (image types only: podcasts enclose audio), as RawArticle fields: its
    URL, and its width and height when the feed gives them (Media RSS)."""
    found = next((thumbnail for thumbnail in entry.get("media_thumbnail", []) if thumbnail.get("url")), None)
    if found is None:
        found = next((m for m in entry.get("media_content", []) if _is_image(m.get("url"), m.get("type"), m.get("medium"))), None)
    if found is not None:
        return {"image": found["url"], "image_width": found.get("width"), "image_height": found.get("height")}
    for link in entry.get("enclosures", []):
        if _is_image(link.get("href"), link.get("type"), None):
            return {"image": link["href"]}
    return {}


def _is_image(url: str | None, mime: str | None, medium: str | None) -> bool:
    if not url:
        return False
    if mime or medium:
        return (mime or "").startswith("image/") or medium == "image"
    return url.lower().split("?")[0].endswith(_IMAGE_SUFFIXES)
