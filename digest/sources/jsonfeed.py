"""JSON Feed 1.0 and 1.1 (https://jsonfeed.org/version/1.1), which feedparser
does not read.

Fields used per item: ``id``, ``url`` (else ``external_url``), ``title``,
``content_html`` (else ``content_text``), ``summary`` (plain text in the
spec), ``image`` (else ``banner_image``), ``date_published`` (else
``date_modified``), ``tags``, ``authors`` (1.1) or ``author`` (1.0),
``language`` (1.1, the item's else the feed's). The feed's
``home_page_url`` (else ``feed_url``) is the base of relative links.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any

from digest.articles import RawArticle
from digest.errors import SourceError

VERSION_PREFIX = "https://jsonfeed.org/version/"
_MARKUP = re.compile(r"</?[a-zA-Z][^>]*>|&(?:#\d+|#x[0-9a-fA-F]+|[a-zA-Z]+);")


def read_json_feed(data: bytes, source: str, url: str | None = None) -> list[RawArticle]:
    """Items of a JSON Feed as :class:`RawArticle` records. ``url`` is where
    it was fetched from (the last resort for relative links). Raises
    :class:`SourceError` for invalid JSON, a JSON document that is not a
    JSON Feed, or a feed without items."""
    feed = load_json(data)
    version = feed.get("version") if isinstance(feed, dict) else None
    if not isinstance(version, str) or not version.startswith(VERSION_PREFIX):
        raise SourceError(f"not a JSON Feed (no \"version\": \"{VERSION_PREFIX}1.1\")")
    items = feed.get("items")
    if not isinstance(items, list):
        raise SourceError('not a JSON Feed: "items" is not a list')
    if not items:
        raise SourceError("the feed has no entries")
    base = _string(feed.get("home_page_url")) or _string(feed.get("feed_url")) or url
    language = _string(feed.get("language"))  # JSON Feed 1.1: the feed's language (RFC 5646)
    return [_item(item, source, base, language) for item in items if isinstance(item, dict)]


def load_json(data: bytes) -> Any:
    """A JSON document (UTF-8/16/32 detected as RFC 8259 §8.1 allows).
    A lone surrogate escape (``"\\ud800"``, which RFC 8259 §8.2 leaves
    undefined and no UTF-8 text can hold) becomes U+FFFD. Raises
    :class:`SourceError` naming the line and column of a syntax error."""
    try:
        return _scrub(json.loads(data))
    except UnicodeDecodeError as exc:
        raise SourceError(f"not UTF-8 text (byte at offset {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise SourceError(f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise SourceError("JSON nested too deeply") from None


_SURROGATE = re.compile("[\ud800-\udfff]")


def _scrub(value: Any) -> Any:
    """``value`` with every lone surrogate in its strings replaced by U+FFFD
    (json pairs valid ones into one character, so any left is lone)."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_scrub(item) for item in value]
    if isinstance(value, dict):
        return {_scrub(key): _scrub(item) for key, item in value.items()}
    return value


def _item(item: dict[str, Any], source: str, base: str | None, language: str | None = None) -> RawArticle:
    content_html = _string(item.get("content_html"))
    content_text = _string(item.get("content_text"))
    summary = _string(item.get("summary"))
    tags = item.get("tags")
    return RawArticle(
        source=source,
        title=_string(item.get("title")),
        date=_string(item.get("date_published")) or _string(item.get("date_modified")),
        tags=[[tag for tag in tags if isinstance(tag, str)]] if isinstance(tags, list) else [],
        summary_html=_summary_html(summary),
        body_html=content_html or (_paragraphs(content_text) if content_text else None),
        url=_string(item.get("url")) or _string(item.get("external_url")),
        author=_author(item.get("authors"), item.get("author")),
        image=_string(item.get("image")) or _string(item.get("banner_image")),
        # The spec says id is a string; 1.0 feeds in the wild also use numbers.
        guid=str(item["id"]) if isinstance(item.get("id"), (str, int)) and str(item["id"]).strip() else None,
        base_url=base,
        language=_string(item.get("language")) or language,
    )


def _string(value: Any) -> str | None:
    """A non-empty string, stripped; None for anything else ("icon": "" is common)."""
    if not isinstance(value, str):
        return None
    return value.strip() or None


def _summary_html(summary: str | None) -> str | None:
    """The spec says plain text, but feeds in the wild put entities and tags
    in it ("Blackletter &amp; thick"); such a summary is read as HTML."""
    if not summary:
        return None
    return summary if _MARKUP.search(summary) else html.escape(summary, quote=False)


def _paragraphs(text: str) -> str:
    return "".join(f"<p>{html.escape(part.strip(), quote=False)}</p>" for part in text.split("\n\n") if part.strip())


def _author(authors: Any, author: Any) -> str | None:
    candidates = authors if isinstance(authors, list) else [author]
    names = [entry.get("name") for entry in candidates if isinstance(entry, dict)]
    return ", ".join(name.strip() for name in names if isinstance(name, str) and name.strip()) or None
