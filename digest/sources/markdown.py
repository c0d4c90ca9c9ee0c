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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import yaml
from frontmatter import detect_format
from frontmatter.default_handlers import BaseHandler, YAMLHandler
from markdown_it import MarkdownIt

from digest.articles import RawArticle, date_problem, parse_date, value_kind
from digest.errors import SourceError
from digest.sources.jsonfeed import load_json

SUFFIXES = {".md", ".markdown"}
TAXONOMY_FOLDERS = {"tags", "tag", "categories", "category"}

# Keys as the site generators name them, most common first.
TITLE_KEYS = ("title", "newstitle")  # newstitle: 11ty's own site
DATE_KEYS = ("date", "publishDate", "pubDate", "pubDatetime", "published", "created")
SUMMARY_KEYS = ("summary", "description", "excerpt")
URL_KEYS = ("url", "permalink", "path")  # path: Zola
IMAGE_KEYS = ("image", "cover", "coverImage", "cover_image", "featured_image", "thumbnail", "ogImage", "ogimageOverride", "images")
LANGUAGE_KEYS = ("lang", "language", "locale")

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


class _YamlLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """PyYAML's safe loader (libyaml's when there, as python-frontmatter
    picks), except that a timestamp that is no real moment (``2026-02-30``,
    hour 25, year 0) stays the text it was: the date reader then says what
    is wrong with it, instead of a ValueError escaping the loader."""


def _timestamp(loader: yaml.BaseLoader, node: yaml.Node) -> Any:
    try:
        return yaml.constructor.SafeConstructor.construct_yaml_timestamp(loader, node)  # type: ignore[arg-type]
    except (ValueError, OverflowError):
        return loader.construct_scalar(node)  # type: ignore[arg-type]


_YamlLoader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp)


class _YamlHandler(YAMLHandler):
    """``---`` YAML front matter, read with :class:`_YamlLoader`."""

    def load(self, fm: str, **kwargs: object) -> Any:
        return yaml.load(fm, Loader=_YamlLoader)  # a SafeLoader: no Python objects


_HANDLERS = [_YamlHandler(), _TomlHandler()]
# A top-level key at the start of a front matter line (YAML "key:", TOML "key =").
_KEY_LINE = re.compile(r"""^["']?([^\s"':=#\[\]{}]+)["']?[ \t]*[:=]""")


@dataclass
class _FrontMatter:
    """A post's front matter (``meta``), the file line of each top-level key
    (``lines``), and ``notes``: problems with a field that do not stop the
    post (the field is ignored), each naming its line and field."""

    meta: dict[str, Any]
    lines: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def where(self, key: str) -> str:
        line = self.lines.get(key)
        return f"line {line}, {key}" if line else key

    def note(self, key: str, problem: str) -> None:
        self.notes.append(f"{self.where(key)}: {problem}")

    def first(self, keys: tuple[str, ...]) -> tuple[str, Any]:
        """(key, value) of the first of ``keys`` with a value other than
        None, "", an empty list or mapping, or a bool; (keys[0], None) when
        there is none."""
        for key in keys:
            value = self.meta.get(key)
            if value not in (None, "", [], {}) and not isinstance(value, bool):
                return key, value
        return keys[0], None

    def read(self, keys: tuple[str, ...], reader: Callable[[Any], str | None], problem: str) -> str | None:
        """The first of ``keys`` as ``reader`` reads it; a value it cannot
        read is noted ("a list, not a link; ignored") and ignored."""
        key, value = self.first(keys)
        if value is None:
            return None
        found = reader(value)
        if found is None:
            self.note(key, f"{value_kind(value)}{problem}; ignored")
        return found


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
    post's own folder when None).

    Raises :class:`SourceError` for bytes that are not UTF-8, for front
    matter that does not parse, for a title that is not text (a list, a
    mapping) and for a directory data file that is not JSON. A field of the
    wrong kind that the post can do without (a mapping of tags, a list as
    ``url``, an unreadable or ambiguous date) is ignored and said in
    ``notes``, naming its line; tags are split at commas in a list as in a
    string (``[x,y]`` is two tags, as ``"x, y"`` is)."""
    front, body = _split(path)
    if front is None or not _is_post(path, front.meta):
        return None
    title_key, title = front.first(TITLE_KEYS)
    if title is None:
        return None
    if _text(title) is None:
        raise SourceError(f"{front.where(title_key)}: {value_kind(title)}, not text")
    file_slug, file_date = _slug_and_date(path)
    # A link must be text: ``url: 42`` is a slip, not the path /42.
    url = front.read(URL_KEYS, lambda value: value if isinstance(value, str) else None, ", not a link")
    summary = front.read(SUMMARY_KEYS, _text, ", not text")
    tags = [_tags(front, key, front.meta.get(key)) for key in ("tags", "categories", "category")]
    return RawArticle(
        source=str(path),
        title=_text(title),
        date=_date(front, file_date),
        tags=[*tags, *_directory_tags(path, root, front)],
        summary_html=_markdown.renderInline(summary) if summary else None,
        body_html=_markdown.render(_FOOTNOTE_REF.sub("", _TEMPLATE_TAG.sub("", body))),
        url=_site_path(url) if url else None,
        slug=front.read(("slug",), _text, ", not text") or file_slug,
        author=front.read(("author", "authors"), _names, " with no name in it"),
        image=_image(front),
        **_image_details(front),
        language=front.read(LANGUAGE_KEYS, _text, ", not a language tag"),
        guid=None,
        base_url=None,
        notes=front.notes,
    )


def _split(path: Path) -> tuple[_FrontMatter | None, str]:
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
    # Line i of ``front`` (from 0: the rest of the delimiter's line) is line first_line + i of the file.
    try:
        meta = handler.load(front)
    except yaml.MarkedYAMLError as exc:
        line = first_line + (exc.problem_mark.line if exc.problem_mark else 0)
        raise SourceError(f"line {line}: bad YAML front matter: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise SourceError(f"bad YAML front matter: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        where = re.sub(r"\(at line (\d+), column (\d+)\)", lambda m: f"(line {first_line + int(m[1]) - 1}, column {m[2]})", str(exc))
        raise SourceError(f"bad TOML front matter: {where}") from None
    except RecursionError:  # nesting deeper than the parser's stack
        raise SourceError(f"line {first_line}: front matter nested too deeply") from None
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise SourceError(f"line {first_line}: front matter is {value_kind(meta)}, not a set of fields")
    lines: dict[str, int] = {}
    for number, line in enumerate(front.split("\n")):
        if match := _KEY_LINE.match(line):
            lines.setdefault(match[1], first_line + number)
    return _FrontMatter(meta, lines), body


def _text(value: Any) -> str | None:
    """A scalar written as text: a string, a number or a date (``title: 2024``);
    None for a list, a mapping, a yes/no value or binary data."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float, date)):
        return None
    return str(value)


def _tag_list(value: Any) -> tuple[list[str] | str | None, str | None]:
    """(tags, problem) of a tags field: a string as it is (``merge_tags``
    splits it), a list with each item split at commas, one number or date as
    one tag; a mapping or a yes/no value is no tags, and the problem says so."""
    if value is None or isinstance(value, str):
        return value, None
    if isinstance(value, (list, tuple, set)):
        tags = [part for item in value if (text := _text(item)) is not None for part in text.split(",")]
        odd = next((item for item in value if item is not None and _text(item) is None), None)
        return tags, (f"{value_kind(odd)} in the list is not a tag; ignored" if odd is not None else None)
    if (text := _text(value)) is not None:
        return [text], None
    return None, f"{value_kind(value)}, not a list of tags; ignored"


def _tags(front: _FrontMatter, key: str, value: Any) -> list[str] | str | None:
    tags, problem = _tag_list(value)
    if problem:
        front.note(key, problem)
    return tags


def _data_files(path: Path, root: Path | None) -> Iterator[Path]:
    """The Eleventy directory data files that may apply to ``path``, nearest
    folder first (whether or not they exist)."""
    folder = path.parent
    while True:
        for name in (f"{folder.name}.11tydata.json", f"{folder.name}.json"):
            yield folder / name
        if root is None or folder == root or root not in folder.parents:
            return
        folder = folder.parent


def data_stamp(path: Path, root: Path | None) -> tuple:
    """(name, size, mtime in ns) of each directory data file of ``path``
    that exists: with the post's own, what tells it unchanged."""
    stamps = []
    for data_file in _data_files(path, root):
        try:
            stat = data_file.stat()
        except OSError:
            continue
        stamps.append((str(data_file), stat.st_size, stat.st_mtime_ns))
    return tuple(stamps)


def _directory_tags(path: Path, root: Path | None, front: _FrontMatter) -> list[Any]:
    """The ``tags`` of Eleventy directory data files, nearest folder first:
    ``<folder>/<folder>.11tydata.json`` then ``<folder>/<folder>.json``, for
    the post's folder and each parent up to ``root``. Tags that are not a
    list or a string are noted in ``front`` and ignored."""
    found: list[Any] = []
    for data_file in _data_files(path, root):
        if data_file.is_file():
            data = _json_data(data_file)
            tags = data.get("tags") if isinstance(data, dict) else None
            if isinstance(tags, str):
                found.append([tags])  # to Eleventy a string is one tag
            elif tags is not None:
                listed, problem = _tag_list(tags)
                found.append(listed)
                if problem:
                    front.notes.append(f"Eleventy data file {data_file}, tags: {problem}")
    return found


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


def _date(front: _FrontMatter, file_date: date | None) -> Any:
    """The first readable of: the date keys in order, the date in Zola's
    ``path``, the date in the file name (front matter first: it may carry a
    time and zone). The first date key that cannot be read is noted, with
    what dated the post instead, or that it is left undated."""
    candidates = [(key, front.meta.get(key)) for key in DATE_KEYS]
    candidates += [("path", _path_date(front.meta.get("path"))), ("file name", file_date)]
    unreadable: tuple[str, str] | None = None
    for key, value in candidates:
        if isinstance(value, bool):  # published: true is a flag, not a date
            continue
        if parse_date(value) is not None:
            if unreadable:
                front.note(unreadable[0], f"{unreadable[1]}; dated by its {key} instead")
            return value
        problem = date_problem(value)
        if problem and unreadable is None:
            unreadable = (key, problem)
    if unreadable:
        front.note(unreadable[0], f"{unreadable[1]}; the post is left undated")
    return None


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


def _names(value: Any) -> str | None:
    """``author``: a name, a list of names, or mappings with ``name``; the
    names joined by ", ", or None when there is none."""
    if isinstance(value, dict):
        value = value.get("name")
    if isinstance(value, (list, tuple)):
        names = [_names(item) for item in value]
        value = ", ".join(name for name in names if name)
    text = _text(value)
    return " ".join(text.split()) or None if text else None


def _image(front: _FrontMatter) -> str | None:
    """The first image key (Liquid prefixes like ``{{ site.url }}`` dropped,
    so the path resolves against site_url); see :func:`_image_path`."""
    found = front.read(IMAGE_KEYS, _image_path, ", not an image path or URL")
    return _TEMPLATE_TAG.sub("", found).strip() or None if found else None


def _image_details(front: _FrontMatter) -> dict[str, Any]:
    """``image_alt``, ``image_width`` and ``image_height`` of an image given
    as a mapping (Astro ``coverImage: {src, alt}``; ``width``/``height``
    where a theme has them)."""
    _, value = front.first(IMAGE_KEYS)
    if isinstance(value, list):
        value = value[0] if value else None
    if not isinstance(value, dict):
        return {}
    alt = value.get("alt")
    return {"image_alt": alt if isinstance(alt, str) else None, "image_width": value.get("width"), "image_height": value.get("height")}


def _image_path(value: Any) -> str | None:
    """A path or URL, a mapping with ``src``/``url`` (Astro ``coverImage``),
    or a list of those (Hugo ``images``, the first counts)."""
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, dict):
        value = value.get("src") or value.get("url")
    return value if isinstance(value, str) else None
