"""Sources: where articles come from. One reader per format, as pelican has.

- a folder: every Markdown post under it (:mod:`.markdown`); feed files lying
  in a content folder are not read (name them as sources of their own);
- a file: ``.md``/``.markdown`` -> Markdown; ``.json`` -> JSON Feed
  (:mod:`.jsonfeed`); anything else -> RSS/Atom (:mod:`.feeds`), unless its
  first byte says JSON;
- an ``http(s)://`` URL: fetched within the limits of :mod:`.fetch` (a total
  deadline, a size cap, few redirects, no private addresses), then JSON Feed
  or RSS/Atom by content.

Every record goes through :func:`digest.articles.normalize`. A file, feed or
URL that fails becomes one warning line ``"<where>: <reason>"`` and the rest
go on; duplicates across sources are dropped by id and by URL, first wins.

A feed entry without a date of its own is new when first seen, as rss2email
treats it: it takes the feed's own date, else the feed document's
modification time (HTTP ``Last-Modified``, else the time of the fetch; a
file's mtime), in UTC, and the feed gets one warning line saying so. A
Markdown post without a date stays undated: a checkout's mtime means nothing.
A date that is there but cannot be read (``2026-02-30``, the ambiguous
``03/04/2026``) is said in a warning: the post's own, or, for a feed, in its
"dated by" line.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from digest.articles import Article, RawArticle, aware, date_problem, normalize, parse_date
from digest.errors import SourceError
from digest.settings import Settings
from digest.sources import feeds, jsonfeed, markdown
from digest.sources.fetch import FeedCache, fetch

log = logging.getLogger(__name__)



@dataclass
class LoadResult:
    """Articles from all sources (normalized, duplicates dropped) and one
    warning line per file or feed that was skipped, naming it and the reason."""

    articles: list[Article]
    warnings: list[str]


@dataclass
class _Document:
    """What one file or URL yielded. ``modified`` is a feed document's
    modification time (aware, UTC); None for Markdown, which is never dated by it."""

    records: list[RawArticle]
    modified: datetime | None = None


def load_articles(
    sources: Sequence[str], settings: Settings, *, fetched_at: datetime | None = None, feeds: FeedCache | None = None
) -> LoadResult:
    """Read every source (folder, file or http(s) URL) into normalized
    articles, in source order. Never raises for bad input: each unreadable
    source, file or entry is a line in ``warnings``. An error that is not about
    the input (a bug) is also a warning, marked "unexpected", and is logged
    with its traceback.

    Feed entries without a date are dated as the module docstring says, with
    one warning line per feed. ``fetched_at`` (aware) stands for "the time of
    the fetch" of URLs without ``Last-Modified``; default: the clock when the
    response arrives. A planner passes its ``as_of`` so that such entries fall
    in the window ending then (the clock would put them just after it).
    ``feeds`` (a long-running server's) answers for URLs at once, from what
    its background thread fetched, instead of fetching them here."""
    result = LoadResult(articles=[], warnings=[])
    seen: set[str] = set()
    for source in sources:
        for where, read in _readers(source, settings, fetched_at, feeds):
            try:
                document = read()
            except (SourceError, OSError) as exc:
                result.warnings.append(f"{where}: {_reason(exc)}")
                continue
            except Exception as exc:  # noqa: BLE001 - one bad file must not stop the run
                log.exception("reading %s", where)
                result.warnings.append(f"{where}: unexpected error ({type(exc).__name__}: {exc})")
                continue
            skipped: list[str] = []
            dated_by: list[tuple[datetime, str]] = []
            unreadable: list[str] = []  # why the dates of entries dated by the feed could not be read
            for raw in document.records:
                result.warnings.extend(f"{where}: {note}" for note in raw.notes)
                try:
                    article = normalize(raw, site_url=settings.site_url, tz=settings.tz)
                except SourceError as exc:
                    skipped.append(str(exc))
                    continue
                if article.published is None and document.modified is not None:
                    dated_by.append(_feed_date(raw, document.modified, settings))
                    if problem := date_problem(raw.date):
                        unreadable.append(problem)
                    # After normalize, so the id (a hash of title and date when
                    # there is no guid or link) does not change with the mtime.
                    article = dataclasses.replace(article, published=dated_by[-1][0])
                keys = {article.id, article.url} - {None}
                if not keys & seen:
                    seen |= keys
                    result.articles.append(article)
            if skipped:
                noun = "entry" if len(skipped) == 1 else "entries"
                result.warnings.append(f"{where}: {len(skipped)} {noun} skipped ({skipped[0]})")
            if dated_by:
                noun = "entry" if len(dated_by) == 1 else "entries"
                when, how = dated_by[0]
                if not unreadable:
                    what = "without a date"
                elif len(unreadable) == len(dated_by):
                    what = f"with a date that cannot be read ({unreadable[0]})"
                else:
                    what = f"without a readable date ({len(unreadable)} with one that cannot be, e.g. {unreadable[0]})"
                result.warnings.append(f"{where}: {len(dated_by)} {noun} {what}, dated by the feed's {how} ({when.isoformat()})")
    return result


def _feed_date(raw: RawArticle, modified: datetime, settings: Settings) -> tuple[datetime, str]:
    """(date, how) for an undated entry: the feed's own date (a zone-less one
    read in the site's timezone), else the document's modification time; UTC."""
    own = aware(parse_date(raw.feed_date), settings.tz)
    if own is not None:
        return own.astimezone(UTC), "own date"
    return modified, "modification time"


def _readers(
    source: str, settings: Settings, fetched_at: datetime | None = None, feeds: FeedCache | None = None
) -> Iterator[tuple[str, Callable[[], _Document]]]:
    """(where, read) pairs: one per file to read for ``source``."""
    if source.lower().startswith(("http://", "https://")):
        yield source, lambda: _read_url(source, settings, fetched_at, feeds)
        return
    path = Path(source).expanduser()
    if path.is_dir():
        for post in markdown.find_posts(path):
            yield str(post), lambda post=post: _read_markdown(post, path)
    elif path.is_file():
        yield str(path), lambda: _read_file(path)
    else:
        yield source, _missing


def _missing() -> _Document:
    raise SourceError("no such file or folder")


def _read_markdown(path: Path, root: Path | None = None) -> _Document:
    post = markdown.read_post(path, root)
    return _Document([post] if post else [])


def _read_file(path: Path) -> _Document:
    if path.suffix.lower() in markdown.SUFFIXES:
        return _read_markdown(path)
    data = path.read_bytes()
    modified = datetime.fromtimestamp(int(path.stat().st_mtime), UTC)
    return _Document(_read_document(data, str(path), None, json_hint=path.suffix.lower() == ".json"), modified)


def _read_document(data: bytes, where: str, url: str | None, json_hint: bool) -> list[RawArticle]:
    if json_hint or data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
        return jsonfeed.read_json_feed(data, where, url)
    return feeds.read_feed(data, where, url)


def _read_url(url: str, settings: Settings, fetched_at: datetime | None = None, feeds: FeedCache | None = None) -> _Document:
    """Fetch a feed (:func:`digest.sources.fetch.fetch`, or from ``feeds``) and read it; the
    final URL after redirects is the base of its relative links. Its
    modification time is ``Last-Modified`` (RFC 9110 §8.8.2), else
    ``fetched_at``, else the clock now."""
    fetched = feeds.get(url) if feeds is not None else fetch(url, settings)
    content_type = fetched.headers.get("content-type", "").lower()
    records = _read_document(fetched.body, url, fetched.url, json_hint="json" in content_type)
    # Last-Modified is an HTTP-date (RFC 9110 §5.6.7: IMF-fixdate, GMT), which parse_date reads.
    modified = aware(parse_date(fetched.headers.get("last-modified")), UTC) or fetched_at or datetime.now(UTC)
    return _Document(records, modified.astimezone(UTC).replace(microsecond=0))


def _reason(exc: Exception) -> str:
    if isinstance(exc, OSError):  # "Permission denied", not "[Errno 13] Permission denied: '...'"
        return exc.strerror or str(exc)
    return str(exc)
