"""The normalized article: what every source becomes.

Readers in :mod:`digest.sources` yield :class:`RawArticle` records, as close to
their input as possible; :func:`normalize` turns any of them into an
:class:`Article` by the same rules for every format (tags to slugs, datetimes
to aware, links absolute, summary HTML sanitized, an excerpt when there is no
summary, reading time, a stable id).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass
class RawArticle:
    """One article as a reader found it, before normalization.

    ``date`` may be a ``date``, a naive or aware ``datetime``, a string in a
    common form, a ``time.struct_time`` (feedparser) or None. ``tags`` holds
    the raw values of tags/categories (lists, comma- or space-separated strings).
    ``summary_html`` and ``body_html`` are untrusted HTML. ``base_url`` is what
    relative links resolve against (xml:base, the feed's link or None for
    ``site_url``). ``source`` names the file or URL, for messages.
    """

    source: str
    title: str | None = None
    date: Any = None
    tags: list[Any] = field(default_factory=list)
    summary_html: str | None = None
    body_html: str | None = None
    url: str | None = None
    slug: str | None = None
    author: str | None = None
    image: str | None = None
    guid: str | None = None
    base_url: str | None = None


@dataclass(frozen=True)
class Article:
    """A normalized article.

    - ``id``: stable across runs (feed guid/id, else URL, else a hash of title
      and date); used to drop duplicates and to remember what was sent.
    - ``published``: timezone-aware datetime, or None when the source had no
      usable date (such articles are never selected).
    - ``tags``: slugs (case-folded, spaces/underscores to hyphens, Unicode
      letters kept), in source order, without duplicates.
    - ``summary_html``: sanitized HTML (simple inline markup; http/https/mailto
      links only), safe to put in a template unescaped.
    - ``summary_text``: the same as plain text (entities decoded, curly quotes
      kept), for the text part.
    - ``url`` and ``image``: absolute URLs or None.
    - ``reading_minutes``: estimated reading time of the body, at least 1.
    """

    id: str
    title: str
    url: str | None
    published: datetime | None
    tags: tuple[str, ...]
    summary_html: str
    summary_text: str
    author: str | None
    image: str | None
    reading_minutes: int
    source: str
