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
go on. The same article reached twice (by id, or by URL where one of the two
has no guid of its own) is kept once, first wins, and the other is listed in
``duplicates``; two entries with guids of their own are two articles even
when they share a link.

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
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from digest.articles import Article, RawArticle, aware, date_problem, normalize, parse_date, same_article
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
    failed: list[str] = dataclasses.field(default_factory=list)  # "<where>: <reason>" of each file or URL not read
    duplicates: list[tuple[Article, Article]] = dataclasses.field(default_factory=list)  # (left out, the article kept)
    every_source_failed: bool = False  # there were sources, and not one file or URL of them could be read


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
    seen = _Seen()
    sources_read = 0
    for source in sources:
        read_one, failed_before, note_dates = False, len(result.failed), 0
        for where, read in _readers(source, settings, fetched_at, feeds):
            try:
                document = read()
            except (SourceError, OSError) as exc:
                result.warnings.append(f"{where}: {_reason(exc)}")
                result.failed.append(result.warnings[-1])
                continue
            except Exception as exc:  # noqa: BLE001 - one bad file must not stop the run
                log.exception("reading %s", where)
                result.warnings.append(f"{where}: unexpected error ({type(exc).__name__}: {exc})")
                result.failed.append(result.warnings[-1])
                continue
            read_one = True
            skipped: list[str] = []
            dated_by: list[tuple[datetime, str]] = []
            unreadable: list[str] = []  # "<entry>": why its date could not be read, per entry dated by the feed
            for raw in document.records:
                for note in raw.notes:
                    if _is_date_problem(note):  # one line each for the first DATE_LINES of a source, then a count
                        note_dates += 1
                        if note_dates > DATE_LINES:
                            continue
                    result.warnings.append(f"{where}: {note}")
                try:
                    article = normalize(raw, site_url=settings.site_url, tz=settings.tz)
                except SourceError as exc:
                    skipped.append(str(exc))
                    continue
                if article.published is None and document.modified is not None:
                    dated_by.append(_feed_date(raw, document.modified, settings))
                    if problem := date_problem(raw.date):
                        value = " ".join(raw.date.split())[:60] if isinstance(raw.date, str) else ""
                        shown = f", date {value!r}" if value and value not in problem else ""
                        unreadable.append(f"{_entry_name(raw)}{shown}: {problem}")
                    # After normalize, so the id (a hash of title and date when
                    # there is no guid or link) does not change with the mtime.
                    article = dataclasses.replace(article, published=dated_by[-1][0])
                _keep_once(article, raw, result, seen)
            if skipped:
                noun = "entry" if len(skipped) == 1 else "entries"
                result.warnings.append(f"{where}: {len(skipped)} {noun} skipped ({skipped[0]})")
            if dated_by:
                when, how = dated_by[0]
                dated = f"dated by the feed's {how} ({when.astimezone(settings.tz).isoformat()})"  # the site's zone, as every article time shown
                # One line per entry whose date cannot be read, naming it and the value, capped.
                result.warnings.extend(f"{where}: {line}, {dated}" for line in unreadable[:DATE_LINES])
                if len(unreadable) > DATE_LINES:
                    result.warnings.append(f"{where}: and {len(unreadable) - DATE_LINES} more entries with a date that cannot be read, {dated}")
                if undated := len(dated_by) - len(unreadable):
                    noun = "entry" if undated == 1 else "entries"
                    result.warnings.append(f"{where}: {undated} {noun} without a date, {dated}")
        if note_dates > DATE_LINES:
            result.warnings.append(f"{source}: and {note_dates - DATE_LINES} more with a date that cannot be read")
        # A source counts as read unless it failed as a whole (an empty folder is a quiet week).
        sources_read += read_one or len(result.failed) == failed_before
    result.every_source_failed = bool(sources) and bool(result.failed) and sources_read == 0
    return result


DATE_LINES = 5  # per feed: entries whose date cannot be read, one line each, then "and N more"


@dataclass
class _Seen:
    """The articles kept so far, by id and by URL (see :func:`digest.articles.same_article`)."""

    by_id: dict[str, Article] = dataclasses.field(default_factory=dict)
    by_url: dict[str, list[Article]] = dataclasses.field(default_factory=dict)


def _keep_once(article: Article, raw: RawArticle, result: LoadResult, seen: _Seen) -> None:
    """Add ``article`` to ``result`` unless an article kept before is the
    same one (first wins): the same id, or the same URL where either is
    known by its URL only. Two feed entries with their own guids are two
    articles even when they share a link (event listings, podcasts); a post
    in a Markdown folder and the site's own feed entry for it are one."""
    kept = seen.by_id.get(article.id)
    if kept is None and article.url:
        kept = next((other for other in seen.by_url.get(article.url, ()) if same_article(article, other)), None)
    if kept is not None:
        result.duplicates.append((article, kept))
        return
    seen.by_id[article.id] = article
    if article.url:
        seen.by_url.setdefault(article.url, []).append(article)
    result.articles.append(article)


def _is_date_problem(note: str) -> bool:
    """Whether a reader's note is about a date it could not read (the
    wording of :func:`digest.articles.date_problem`)."""
    return "unreadable date" in note or "ambiguous date" in note


def _entry_name(raw: RawArticle) -> str:
    """A feed entry as a warning names it: its title, else its guid, else its link."""
    name = " ".join((raw.title or "").split()) or (raw.guid or "").strip() or (raw.url or "").strip() or "an entry"
    return f"entry {name[:80]!r}"


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
    """(where, read) pairs: one per file to read for ``source``. A file
    unchanged since it was last read (same path, size, mtime, inode) is not
    parsed again: see :func:`_cached`."""
    if source.lower().startswith(("http://", "https://")):
        yield source, lambda: _read_url(source, settings, fetched_at, feeds)
        return
    path = Path(source).expanduser()
    if path.is_dir():
        for post in markdown.find_posts(path):
            yield str(post), _cached(post, path, lambda post=post: _read_markdown(post, path))
    elif path.is_file():
        yield str(path), _cached(path, None, lambda: _read_file(path))
    else:
        yield source, _missing


# Files parsed before, by (path, walked root): (their stamp, the document). An
# editor's preview re-renders after every template edit; the sources it reads
# again have mostly not changed, and parsing them was most of its time.
_PARSED: dict[tuple[str, str], tuple[tuple, _Document]] = {}
_PARSED_LOCK = threading.Lock()


def _cached(path: Path, root: Path | None, read: Callable[[], _Document]) -> Callable[[], _Document]:
    """``read``, answered from the cache while the file's stamp is unchanged
    (documents are never changed after they are read). A read that fails is
    not kept: it is tried again next time."""

    def cached() -> _Document:
        stamp = _stamp(path, root)
        key = (str(path), str(root))
        with _PARSED_LOCK:
            found = _PARSED.get(key)
        if stamp is not None and found is not None and found[0] == stamp:
            return found[1]
        document = read()
        if stamp is not None:
            with _PARSED_LOCK:
                _PARSED[key] = (stamp, document)
        return document

    return cached


def _stamp(path: Path, root: Path | None) -> tuple | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    # A post's directory data files (Eleventy's) shape it too: a folder's
    # mtime changes when one is added or removed, not when edited, so
    # Markdown posts are keyed by their data files' stamps as well.
    extra = markdown.data_stamp(path, root) if path.suffix.lower() in markdown.SUFFIXES else ()
    return (stat.st_size, stat.st_mtime_ns, stat.st_ino, extra)


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
