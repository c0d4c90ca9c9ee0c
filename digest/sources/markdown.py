"""Markdown posts with front matter, as Hugo, Jekyll, Zola, Eleventy and Astro
sites lay them out.

A folder is walked recursively for ``*.md``/``*.markdown``. Front matter is YAML
(``---``) or TOML (``+++``), split and loaded by python-frontmatter's handlers
(TOML through the standard ``tomllib``); the body is rendered by markdown-it-py.

What is not a post is skipped without a word: files without front matter or
without a title, section indexes (``_index.md``; a page named after its folder,
as Eleventy's ``blog/blog.md``), taxonomy pages (in a ``tags/`` or
``categories/`` folder), drafts (``draft: true``, ``published: false``,
``eleventyExcludeFromCollections: true``). A broken file raises
:class:`SourceError` naming the line and the reason.

Eleventy directory data files (``blog/blog.json``, ``blog/blog.11tydata.json``)
give their ``tags`` to every post in their folder and below, merged after the
post's own, as Eleventy's data cascade does
(https://www.11ty.dev/docs/data-template-dir/); their other keys (``layout``,
a templated ``permalink``) are about the site's pages, not about articles.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import yaml
from frontmatter import detect_format
from frontmatter.default_handlers import BaseHandler, YAMLHandler
from markdown_it import MarkdownIt

from digest.articles import RawArticle, parse_date
from digest.errors import SourceError
from digest.sources.jsonfeed import load_json

SUFFIXES = {".md", ".markdown"}
TAXONOMY_FOLDERS = {"tags", "tag", "categories", "category"}

# Keys as the site generators name them, most common first.
TITLE_KEYS = ("title", "newstitle")  # newstitle: 11ty's own site
DATE_KEYS = ("date", "publishDate", "pubDate", "pubDatetime", "published", "created")
SUMMARY_KEYS = ("summary", "description", "excerpt")
URL_KEYS = ("url", "permalink", "path")  # path: Zola
IMAGE_KEYS = ("image", "cover", "coverImage", "cover_image", "featured_image", "ogImage", "ogimageOverride", "images")

# Template syntax left in Markdown bodies (Liquid, Nunjucks, Hugo shortcodes):
# not text a reader should see in an excerpt.
_TEMPLATE_TAG = re.compile(r"\{\{<.*?>\}\}|\{\{%.*?%\}\}|\{%.*?%\}|\{\{.*?\}\}|\{#.*?#\}", re.DOTALL)
# Footnote references ([^1]) are not CommonMark; without the plugin they show as text.
_FOOTNOTE_REF = re.compile(r"\[\^[^\]\s]+\](?!:)")
_FILE_DATE = re.compile(r"^(\d{4})-(\d\d)-(\d\d)-(.+)$")  # Jekyll: 2016-02-28-title.md
_PATH_DATE = re.compile(r"(?:^|/)(\d{4})/(\d\d)/(\d\d)(?:/|$)")  # Zola: path = "2025/09/18/Rust-1.90.0"

_markdown = MarkdownIt("commonmark").enable("table")


class _TomlHandler(BaseHandler):
    """``+++`` TOML front matter (Hugo, Zola) read with the standard library's
    TOML 1.0 parser (python-frontmatter's own handler needs the old ``toml``)."""

    FM_BOUNDARY = re.compile(r"^\+{3,}\s*$", re.MULTILINE)
    START_DELIMITER = END_DELIMITER = "+++"

    def load(self, fm: str, **kwargs: object) -> Any:
        return tomllib.loads(fm)


_HANDLERS = [YAMLHandler(), _TomlHandler()]


def find_posts(folder: Path) -> Iterator[Path]:
    """Markdown files under ``folder``, recursively, in a stable order; hidden
    folders (``.git``) and ``node_modules`` are not entered."""
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).parts
        if any(part.startswith(".") or part == "node_modules" for part in relative):
            continue
        if path.suffix.lower() in SUFFIXES and path.is_file():
            yield path


def read_post(path: Path, root: Path | None = None) -> RawArticle | None:
    """One Markdown file as a :class:`RawArticle`, or None when it is not a
    post (see the module docstring). ``root`` is the folder being walked:
    directory data files from the post's folder up to it apply (only the
    post's own folder when None). Raises :class:`SourceError` for bytes
    that are not UTF-8, for front matter that does not parse and for a
    directory data file that is not JSON."""
    meta, body = _split(path)
    if meta is None or not _is_post(path, meta):
        return None
    title = _first(meta, TITLE_KEYS)
    if title is None:
        return None
    file_slug, file_date = _slug_and_date(path)
    url = _first(meta, URL_KEYS)
    summary = _first(meta, SUMMARY_KEYS)
    return RawArticle(
        source=str(path),
        title=str(title),
        date=_date(meta, file_date),
        tags=[meta.get("tags"), meta.get("categories"), meta.get("category"), *_directory_tags(path, root)],
        summary_html=_markdown.renderInline(str(summary)) if summary else None,
        body_html=_markdown.render(_FOOTNOTE_REF.sub("", _TEMPLATE_TAG.sub("", body))),
        url=_site_path(str(url)) if url else None,
        slug=str(meta.get("slug") or file_slug),
        author=_author(meta.get("author") or meta.get("authors")),
        image=_image(_first(meta, IMAGE_KEYS)),
        guid=None,
        base_url=None,
    )


def _split(path: Path) -> tuple[dict[str, Any] | None, str]:
    """(front matter, body); front matter None when the file has none."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SourceError(f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None
    stripped = text.lstrip()
    first_line = text.count("\n", 0, len(text) - len(stripped)) + 1  # of the opening delimiter
    handler = detect_format(stripped, _HANDLERS)
    if handler is None:
        return None, text
    try:
        front, body = handler.split(stripped)
    except ValueError:
        raise SourceError(f"line {first_line}: front matter opened with {handler.START_DELIMITER!r} is never closed") from None
    try:
        meta = handler.load(front)
    except yaml.MarkedYAMLError as exc:
        line = first_line + (exc.problem_mark.line if exc.problem_mark else 0)
        raise SourceError(f"line {line}: bad YAML front matter: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise SourceError(f"bad YAML front matter: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SourceError(f"bad TOML front matter: {exc}") from None
    if meta is None:
        return {}, body
    if not isinstance(meta, dict):
        raise SourceError(f"line {first_line}: front matter is a {type(meta).__name__}, not a set of fields")
    return meta, body


def _directory_tags(path: Path, root: Path | None) -> list[Any]:
    """The ``tags`` of Eleventy directory data files, nearest folder first:
    ``<folder>/<folder>.11tydata.json`` then ``<folder>/<folder>.json``, for
    the post's folder and each parent up to ``root``."""
    found: list[Any] = []
    folder = path.parent
    while True:
        for name in (f"{folder.name}.11tydata.json", f"{folder.name}.json"):
            data_file = folder / name
            if data_file.is_file():
                data = _json_data(data_file)
                tags = data.get("tags") if isinstance(data, dict) else None
                if tags is not None:
                    found.append([tags] if isinstance(tags, str) else tags)  # to Eleventy a string is one tag
        if root is None or folder == root or root not in folder.parents:
            return found
        folder = folder.parent


def _json_data(path: Path) -> Any:
    try:
        return load_json(path.read_bytes())
    except SourceError as exc:
        raise SourceError(f"Eleventy data file {path}: {exc}") from None


def _is_post(path: Path, meta: dict[str, Any]) -> bool:
    if path.stem == "_index" or path.stem == path.parent.name:
        return False
    if path.parent.name.lower() in TAXONOMY_FOLDERS:
        return False
    return not (_true(meta.get("draft")) or meta.get("published") is False or _true(meta.get("eleventyExcludeFromCollections")))


def _true(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() in ("true", "yes"))


def _first(meta: dict[str, Any], keys: tuple[str, ...]) -> Any:
    """The first of ``keys`` with a value other than None, "" or a bool."""
    for key in keys:
        value = meta.get(key)
        if value is not None and value != "" and not isinstance(value, bool):
            return value
    return None


def _slug_and_date(path: Path) -> tuple[str, date | None]:
    """The file's slug and the date in a Jekyll-style name; a page bundle
    (``folder/index.md``) takes its folder's name."""
    stem = path.parent.name if path.stem == "index" else path.stem
    match = _FILE_DATE.match(stem)
    if not match:
        return stem, None
    try:
        return match.group(4), date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:  # 2019-13-45-title: not a date after all
        return stem, None


def _date(meta: dict[str, Any], file_date: date | None) -> Any:
    """The first readable of: a date key, the date in Zola's ``path``, the
    date in the file name (front matter wins: it may carry a time and zone)."""
    candidates = [meta.get(key) for key in DATE_KEYS] + [_path_date(meta.get("path")), file_date]
    return next((value for value in candidates if parse_date(value) is not None), None)


def _path_date(value: Any) -> date | None:
    match = _PATH_DATE.search(value) if isinstance(value, str) else None
    if not match:
        return None
    try:
        return date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        return None


def _site_path(value: str) -> str:
    """A url/permalink/path value: kept when absolute, else made root-relative
    (so that Zola's ``path = "2025/09/18/x"`` and a Jekyll permalink with a
    ``:`` in it are paths, not schemes)."""
    value = _TEMPLATE_TAG.sub("", value).strip()
    if re.match(r"^https?://", value, re.IGNORECASE):
        return value
    return "/" + value.lstrip("/")


def _author(value: Any) -> str | None:
    """A string, a list of names, or a mapping with ``name``."""
    if isinstance(value, dict):
        value = value.get("name")
    if isinstance(value, list):
        names = [_author(item) for item in value]
        value = ", ".join(name for name in names if name)
    text = str(value).strip() if value else ""
    return text or None


def _image(value: Any) -> str | None:
    """A path or URL, a mapping with ``src``/``url`` (Astro ``coverImage``),
    or a list of those (Hugo ``images``); Liquid prefixes like
    ``{{ site.url }}`` are dropped so the path resolves against site_url."""
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, dict):
        value = value.get("src") or value.get("url")
    if not isinstance(value, str):
        return None
    return _TEMPLATE_TAG.sub("", value).strip() or None
