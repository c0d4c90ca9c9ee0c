"""Sources: where articles come from. One reader per format, as pelican has.

- a folder: every Markdown post under it (:mod:`.markdown`); feed files lying
  in a content folder are not read (name them as sources of their own);
- a file: ``.md``/``.markdown`` -> Markdown; ``.json`` -> JSON Feed
  (:mod:`.jsonfeed`); anything else -> RSS/Atom (:mod:`.feeds`), unless its
  first byte says JSON;
- an ``http(s)://`` URL: fetched with httpx, then JSON Feed or RSS/Atom by content.

Every record goes through :func:`digest.articles.normalize`. A file, feed or
URL that fails becomes one warning line ``"<where>: <reason>"`` and the rest
go on; duplicates across sources are dropped by id and by URL, first wins.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from digest import __version__
from digest.articles import Article, RawArticle, normalize
from digest.errors import SourceError
from digest.settings import Settings
from digest.sources import feeds, jsonfeed, markdown

log = logging.getLogger(__name__)

FETCH_TIMEOUT = 20.0  # seconds, per connect/read/write/pool phase (httpx.Timeout)
USER_AGENT = f"digest/{__version__} (newsletter digest generator)"


@dataclass
class LoadResult:
    """Articles from all sources (normalized, duplicates dropped) and one
    warning line per file or feed that was skipped, naming it and the reason."""

    articles: list[Article]
    warnings: list[str]


def load_articles(sources: Sequence[str], settings: Settings) -> LoadResult:
    """Read every source (folder, file or http(s) URL) into normalized
    articles, in source order. Never raises for bad input: each unreadable
    source, file or entry is a line in ``warnings``. An error that is not about
    the input (a bug) is also a warning, marked "unexpected", and is logged
    with its traceback."""
    result = LoadResult(articles=[], warnings=[])
    seen: set[str] = set()
    for source in sources:
        for where, read in _readers(source):
            try:
                records = read()
            except (SourceError, OSError) as exc:
                result.warnings.append(f"{where}: {_reason(exc)}")
                continue
            except Exception as exc:  # noqa: BLE001 - one bad file must not stop the run
                log.exception("reading %s", where)
                result.warnings.append(f"{where}: unexpected error ({type(exc).__name__}: {exc})")
                continue
            skipped: list[str] = []
            for raw in records:
                try:
                    article = normalize(raw, settings)
                except SourceError as exc:
                    skipped.append(str(exc))
                    continue
                keys = {article.id, article.url} - {None}
                if not keys & seen:
                    seen |= keys
                    result.articles.append(article)
            if skipped:
                noun = "entry" if len(skipped) == 1 else "entries"
                result.warnings.append(f"{where}: {len(skipped)} {noun} skipped ({skipped[0]})")
    return result


def _readers(source: str) -> Iterator[tuple[str, Callable[[], list[RawArticle]]]]:
    """(where, read) pairs: one per file to read for ``source``."""
    if source.lower().startswith(("http://", "https://")):
        yield source, lambda: _read_url(source)
        return
    path = Path(source).expanduser()
    if path.is_dir():
        for post in markdown.find_posts(path):
            yield str(post), lambda post=post: _read_markdown(post)
    elif path.is_file():
        yield str(path), lambda: _read_file(path)
    else:
        yield source, _missing


def _missing() -> list[RawArticle]:
    raise SourceError("no such file or folder")


def _read_markdown(path: Path) -> list[RawArticle]:
    post = markdown.read_post(path)
    return [post] if post else []


def _read_file(path: Path) -> list[RawArticle]:
    if path.suffix.lower() in markdown.SUFFIXES:
        return _read_markdown(path)
    return _read_document(path.read_bytes(), str(path), None, json_hint=path.suffix.lower() == ".json")


def _read_document(data: bytes, where: str, url: str | None, json_hint: bool) -> list[RawArticle]:
    if json_hint or data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
        return jsonfeed.read_json_feed(data, where, url)
    return feeds.read_feed(data, where, url)


def _read_url(url: str) -> list[RawArticle]:
    """Fetch a feed (redirects followed, ``FETCH_TIMEOUT``) and read it; the
    final URL after redirects is the base of its relative links."""
    try:
        response = httpx.get(url, timeout=FETCH_TIMEOUT, follow_redirects=True, headers={"User-Agent": USER_AGENT})
    except httpx.TimeoutException:
        raise SourceError(f"no answer within {FETCH_TIMEOUT:g} s") from None
    except httpx.HTTPError as exc:
        raise SourceError(f"cannot fetch: {exc}") from None
    if response.status_code >= 400:
        raise SourceError(f"HTTP {response.status_code} {response.reason_phrase}")
    content_type = response.headers.get("content-type", "").lower()
    return _read_document(response.content, url, str(response.url), json_hint="json" in content_type)


def _reason(exc: Exception) -> str:
    if isinstance(exc, OSError):  # "Permission denied", not "[Errno 13] Permission denied: '...'"
        return exc.strerror or str(exc)
    return str(exc)
