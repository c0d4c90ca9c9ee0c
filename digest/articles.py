"""The normalized article: what every source becomes.

Readers in :mod:`digest.sources` yield :class:`RawArticle` records, as close to
their input as possible; :func:`normalize` turns any of them into an
:class:`Article` by the same rules for every format (tags to slugs, datetimes
to aware, links absolute, summary HTML sanitized, an excerpt when there is no
summary, reading time, a stable id).
"""

from __future__ import annotations

import hashlib
import html
import math
import re
import time
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo
from datetime import time as dt_time
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

import nh3

from digest.errors import SourceError
from digest.htmltext import html_to_text, prose, text_blocks
from digest.images import LeadImage, first_body_image, lead_image, pixels

EXCERPT_WORDS = 50  # about 50 words: two or three lines of a digest
SUMMARY_MAX_WORDS = 60  # a summary longer than this is cut to an excerpt
# Word budgets as characters, for text whose "words" are not space-separated:
# at most 8 characters a word (long URLs, German), 3 where Chinese or
# Japanese characters dominate (about 2-3 of them make an English word).
CHARS_PER_WORD = 8
CJK_CHARS_PER_WORD = 3
WORDS_PER_MINUTE = 230  # a common figure for adult silent reading of prose

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")

# Only simple inline markup survives in a summary; links only to the web, mail or a phone.
SUMMARY_TAGS = {"a", "em", "strong", "b", "i", "code", "br", "p"}
LINK_SCHEMES = {"http", "https", "mailto", "tel"}
# A tel: URI (RFC 3966 §3): a global number ("+" then digits) or a local one,
# with the visual separators - . ( ), then ;parameters. Nothing else is a phone.
TEL_URI = re.compile(r"^tel:\+?[0-9().-]{2,32}(?:;[A-Za-z0-9-]+(?:=[A-Za-z0-9+.()-]+)?)*$", re.IGNORECASE)


@dataclass
class RawArticle:
    """One article as a reader found it, before normalization.

    ``date`` may be a ``date``, a naive or aware ``datetime``, a string in a
    common form, a ``time.struct_time`` (feedparser) or None. ``tags`` holds
    the raw values of tags/categories (lists, comma- or space-separated strings).
    ``summary_html`` and ``body_html`` are untrusted HTML. ``base_url`` is what
    relative links resolve against (xml:base, the feed's link or None for
    ``site_url``). ``source`` names the file or URL, for messages.
    ``image_alt``/``image_width``/``image_height`` describe ``image`` when
    the source does (raw values: :func:`digest.images.pixels` reads them);
    ``language`` is the article's or its feed's language, if stated.
    ``feed_date`` is the feed's own date (feed-level updated/lastBuildDate,
    else pubDate), in the same forms as ``date``, or None; the loader dates
    an entry without a date of its own by it (see :mod:`digest.sources`).
    ``normalize`` ignores it, so an article's id never depends on it.
    ``notes`` are problems the reader met that did not stop the article (a
    field it ignored, a date it could not read), each naming the line or
    field; the loader turns each into a warning naming the source.
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
    feed_date: Any = None
    notes: list[str] = field(default_factory=list)
    image_alt: str | None = None
    image_width: Any = None
    image_height: Any = None
    language: str | None = None


@dataclass(frozen=True)
class Article:
    """A normalized article.

    - ``id``: stable across runs (feed guid/id, else URL, else a hash of title
      and date); used to drop duplicates and to remember what was sent.
    - ``published``: timezone-aware datetime, or None when the source had no
      usable date (such articles are never selected). A feed entry without a
      date of its own is dated by :func:`digest.sources.load_articles` with
      the feed's date or modification time; a Markdown post never is.
    - ``tags``: slugs (case-folded, spaces/underscores to hyphens, Unicode
      letters kept), in source order, without duplicates.
    - ``summary_html``: sanitized HTML (simple inline markup; http/https/mailto/tel
      links only), safe to put in a template unescaped.
    - ``summary_text``: the same as plain text (entities decoded, curly quotes
      kept), for the text part.
    - ``url``: an absolute URL or None; ``image``: the lead image
      (:mod:`digest.images`), an absolute https URL or None, with its own
      ``image_alt`` and pixel ``image_width``/``image_height`` when the
      source gave them.
    - ``tag_names``: the tags as their authors wrote them ("Telescopes &
      Gear"), one per slug of ``tags``, for showing; ``tags`` are for matching.
    - ``language``: the article's own language (a BCP 47 tag such as ``ar``)
      when its source says it, else None.
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
    image_alt: str | None = None
    image_width: int | None = None
    image_height: int | None = None
    language: str | None = None
    tag_names: tuple[str, ...] = ()


# --- tags -------------------------------------------------------------------


def slugify_tag(text: object) -> str:
    """A tag as a slug: ``"Angry React"`` -> ``"angry-react"``.

    Case-folded (so ``Straße`` and ``STRASSE`` meet), NFKC-normalized; spaces,
    underscores, slashes (hierarchical terms like ``Technology/Java``,
    ``ci/cd``) and commas (a feed category ``x,y`` is ``x-y``, not ``xy``)
    become hyphens; letters, digits and combining marks of every
    script are kept (``배포`` stays ``배포``); other punctuation is dropped;
    hyphens collapse and are trimmed. May return ``""`` (e.g. for ``"!!"``).
    """
    value = unicodedata.normalize("NFKC", str(text)).casefold()
    value = re.sub(r"[\s_/,]+", "-", value)
    value = "".join(ch for ch in value if ch == "-" or ch.isalnum() or unicodedata.category(ch).startswith("M"))
    return re.sub(r"-{2,}", "-", value).strip("-")


def merge_tags(values: Iterable[Any]) -> tuple[str, ...]:
    """Slugs from raw tag values, in order, without duplicates.

    Each value is a list (its items are whole tags, as feed categories like
    ``"Data Structure"`` are), a string (split on commas if it has any, else
    on whitespace, as Jekyll splits ``tags: a b c``) or None.
    """
    return tuple(_tags_as_written(values))


def tag_names(values: Iterable[Any]) -> tuple[str, ...]:
    """The tags of :func:`merge_tags` as their authors wrote them (the first
    spelling of each slug, whitespace collapsed): ``"Telescopes & Gear"`` for
    ``telescopes-gear``. Same length and order as ``merge_tags(values)``."""
    return tuple(_tags_as_written(values).values())


def _tags_as_written(values: Iterable[Any]) -> dict[str, str]:
    """slug -> the first spelling of it, in order."""
    slugs: dict[str, str] = {}
    for value in values:
        if value is None:
            continue
        if isinstance(value, str):
            parts = value.split(",") if "," in value else value.split()
        elif isinstance(value, (list, tuple, set)):
            parts = [item for item in value if item is not None and not isinstance(item, (dict, list))]
        else:  # a number or a date written as a tag
            parts = [value]
        for part in parts:
            if slug := slugify_tag(part):
                slugs.setdefault(slug, " ".join(str(part).split()))
    return slugs


_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*$")
RTL_LANGUAGES = {"ar", "arc", "ckb", "dv", "fa", "he", "iw", "ks", "ku", "ps", "sd", "syr", "ug", "ur", "yi"}


def _language(value: Any) -> str | None:
    """A BCP 47 language tag (``en-US``, ``ar``) from a source, or None when
    it is not one (``en_US`` is read as ``en-US``)."""
    text = str(value).strip().replace("_", "-") if isinstance(value, str) else ""
    return text if _LANGUAGE.match(text) else None


def is_rtl(language: str | None) -> bool:
    """Whether text in ``language`` (a BCP 47 tag) is written right to left:
    Arabic, Hebrew, Persian, Urdu and the other scripts of
    :data:`RTL_LANGUAGES`, by the tag's primary subtag."""
    return bool(language) and language.split("-")[0].lower() in RTL_LANGUAGES


# --- dates --------------------------------------------------------------------

# Forms seen in real front matter and feeds that neither ISO 8601 nor RFC 2822
# parsing accepts. Slash dates are read apart (see ``_slash_date``).
_DATE_FORMATS = (
    "%d %b %Y",  # 25 Aug 2024 (Astro)
    "%d %B %Y",  # 6 December 2024
    "%b %d, %Y",  # Aug 25, 2024
    "%B %d, %Y",  # August 25, 2024
    "%b %d %Y",  # Nov 26 2026
    "%B %d %Y",  # November 26 2026
    "%Y/%m/%d %H:%M:%S",  # year first: only one reading
    "%Y/%m/%d",
    "%a %b %d %H:%M:%S %Z %Y",  # Ruby Time#to_s: Sun Aug 17 16:51:14 UTC 2008
    "%a %b %d %H:%M:%S %z %Y",
)
_ISO_SINGLE_DIGIT_HOUR = re.compile(r"^(\d{4}-\d\d-\d\d[T ])(\d)(:\d\d)")
# An ISO 8601 shape whose fields may still be out of range (2026-02-30, hour 25, year 0).
_ISO_SHAPE = re.compile(r"^(\d{4,})-(\d{1,2})-(\d{1,2})(?:[T ](\d{1,2}):(\d{1,2})(?::(\d{1,2}))?)?")
_TIME = r"(?:[ T](\d{1,2}):(\d\d)(?::(\d\d))?)?$"
# 08/02/2013 12:00:00 (Norfolk County Council RSS), 11/26/2026: day or month first.
SLASH_DATE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})" + _TIME)
# 26.11.2026: day first, as German, Russian and other dotted dates are written (DIN 5008).
_DOTTED_DATE = re.compile(r"^(\d{1,2})\.(\d{1,2})\.(\d{4})" + _TIME)
# Articles are dated within these years; datetime's own limits (1 and 9999) are
# kept far off so that time zone shifts and window arithmetic cannot overflow,
# and a 2-digit year read by strptime as the year 17 is refused.
MIN_YEAR, MAX_YEAR = 1000, 9000
UNIX_TIME_DIGITS = (9, 11)  # 1973 to 5138: a bare number of other lengths is not a Unix time
_DATE_HINT = "write it like 2026-11-26 or 2026-11-26T09:30:00+01:00"


def parse_date(value: Any) -> datetime | date | None:
    """Read a date the way readers find them; None when it is not a date
    (:func:`date_problem` says why).

    Accepts ``datetime``/``date`` objects, ``time.struct_time`` (feedparser's,
    always UTC), Unix timestamps (a number or a string of 9-11 digits) and
    strings: ISO 8601 (also with a space before the offset or a single-digit
    hour), RFC 2822 (``email.utils``, which also reads 2-digit years and named
    zones like ``EST``), day-first dotted dates (``26.11.2026``), slash dates
    with only one reading (``26/11/2026``, ``11/26/2026``; ``03/04/2026`` is
    refused as ambiguous) and the forms in ``_DATE_FORMATS``. Years outside
    ``MIN_YEAR``..``MAX_YEAR`` are refused. Never raises. The result may be
    naive; :func:`aware` settles that.
    """
    return _read_date(value)[0]


def date_problem(value: Any) -> str | None:
    """Why ``value`` is not a date, for a warning (``"ambiguous date
    03/04/2026: use 2026-04-03 or 2026-03-04"``, ``"unreadable date
    2026-11-26T25:61:00 (hour must be in 0..23)"``); None when it is one, or
    when there is no value at all (None, empty text)."""
    return _read_date(value)[1]


def _read_date(value: Any) -> tuple[datetime | date | None, str | None]:
    """(date, None), or (None, why not); (None, None) for no value."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, None
    if isinstance(value, bool):
        return None, f"unreadable date {str(value).lower()}: a yes/no value, not a date"
    if isinstance(value, (datetime, date)):
        return _in_range(value, value.isoformat())
    if isinstance(value, time.struct_time):
        # feedparser passes a leap second (:60) through; datetime has none.
        try:
            moment = datetime(*value[:5], min(value.tm_sec, 59), tzinfo=UTC)
        except (ValueError, OverflowError) as exc:
            return None, f"unreadable date ({exc})"
        return _in_range(moment, moment.isoformat())
    if isinstance(value, (int, float)):
        return _unix_time(value, str(value))
    if isinstance(value, dt_time):
        return None, f"unreadable date {value}: a time of day, not a date"
    if not isinstance(value, str):
        shown = "" if isinstance(value, (list, tuple, set, dict)) else f" {_short(value)}"
        return None, f"unreadable date{shown}: {value_kind(value)}, not a date"
    text = " ".join(value.split())
    low, high = UNIX_TIME_DIGITS
    if re.fullmatch(rf"\d{{{low},{high}}}", text):
        return _unix_time(int(text), text)
    for candidate in (text, _ISO_SINGLE_DIGIT_HOUR.sub(r"\g<1>0\2\3", text)):
        try:
            return _in_range(datetime.fromisoformat(candidate.replace("Z", "+00:00")), text)
        except ValueError:
            pass
    if text.isdigit():  # 2026: a year alone is no day
        return _unix_time(int(text), text)
    if match := SLASH_DATE.match(text):
        return _slash_date(match, text)
    if match := _DOTTED_DATE.match(text):
        return _numeric_date(match.group(3), match.group(2), match.group(1), match.groups()[3:], text)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        pass
    else:
        if moment.tzinfo is None and text.endswith("-0000"):
            # RFC 2822 §3.3: -0000 is UTC from a system that does not know its zone.
            moment = moment.replace(tzinfo=UTC)
        return _in_range(moment, text)
    for form in _DATE_FORMATS:
        try:
            return _in_range(datetime.strptime(text, form), text)
        except ValueError:
            continue
    if match := _ISO_SHAPE.match(text):
        # Shaped like ISO 8601 but not a real moment: say which field is wrong.
        return _numeric_date(*match.groups()[:3], match.groups()[3:], text)
    return None, f"unreadable date {_short(text)}: {_DATE_HINT}"


def _in_range(moment: datetime | date, shown: str) -> tuple[datetime | date | None, str | None]:
    if MIN_YEAR <= moment.year <= MAX_YEAR:
        return moment, None
    return None, f"unreadable date {_short(shown)} (year {moment.year} is outside {MIN_YEAR}..{MAX_YEAR})"


def _unix_time(number: float, shown: str) -> tuple[datetime | None, str | None]:
    low, high = UNIX_TIME_DIGITS
    if (isinstance(number, float) and not math.isfinite(number)) or not 10 ** (low - 1) <= number < 10**high:
        return None, f"unreadable date {_short(shown)}: a number, but not a Unix time ({low} to {high} digits)"
    return datetime.fromtimestamp(int(number), UTC), None


def _numeric_date(year: str, month: str, day: str, clock: Sequence[str | None], shown: str) -> tuple[datetime | None, str | None]:
    """The date from its numeric fields, or why they make none."""
    try:
        moment = datetime(int(year), int(month), int(day), *(int(part) for part in clock if part is not None))
    except (ValueError, OverflowError) as exc:
        return None, f"unreadable date {_short(shown)} ({exc})"
    return _in_range(moment, shown)


def _slash_date(match: re.Match[str], text: str) -> tuple[datetime | None, str | None]:
    """A slash date read day first and month first: taken when only one
    reading is a date (or both are the same day), refused when they differ,
    since the site's convention is not known."""
    first, second, year = match.group(1), match.group(2), match.group(3)
    clock = match.groups()[3:]
    readings = {moment for moment, _ in (_numeric_date(year, second, first, clock, text), _numeric_date(year, first, second, clock, text)) if moment}
    if len(readings) == 1:
        return readings.pop(), None
    if not readings:
        return _numeric_date(year, second, first, clock, text)
    day_first, month_first = sorted(readings, key=lambda moment: (moment.month != int(second)))
    return None, f"ambiguous date {text}: use {day_first:%Y-%m-%d} or {month_first:%Y-%m-%d}"


def value_kind(value: object) -> str:
    """What a value of front matter or JSON is, in words, for a message:
    "a list", "a mapping", "a number", "a yes/no value", "binary data"."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (list, tuple, set)):
        return "a list"
    if isinstance(value, (bytes, bytearray)):
        return "binary data"
    if isinstance(value, bool):
        return "a yes/no value"
    if isinstance(value, (int, float)):
        return "a number"
    return f"a {type(value).__name__}"


def _short(value: object, limit: int = 40) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def aware(value: datetime | date | None, tz: tzinfo) -> datetime | None:
    """A timezone-aware datetime: a naive datetime is read in ``tz`` (the
    site's ``timezone`` setting); a bare date is midnight in ``tz``."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    return value if value.tzinfo is not None and value.utcoffset() is not None else value.replace(tzinfo=tz)


# --- excerpts ---------------------------------------------------------------------

# A sentence ends at . ! ? or … (maybe followed by closing quotes or brackets)
# before a space or the end, or at a full-width CJK stop.
_SENTENCE_END = re.compile(r"[.!?…][\"'”’»)\]]*(?=\s|$)|[。！？][”’」』）]*")


def excerpt(text: str, words: int = EXCERPT_WORDS) -> str:
    """The start of ``text``, about ``words`` words, never cut inside a word.

    Text within the budget is returned whole. Otherwise the cut falls at the
    last sentence end in the second half of the budget, else after the last
    whole word with "…" appended. Text without spaces (Chinese, Japanese) is
    measured in characters (see ``char_budget``). Curly quotes, ellipses and
    every other character are kept as they are.
    """
    text = " ".join(text.split())
    tokens = text.split(" ")
    max_chars = char_budget(text, words)
    if len(tokens) <= words and len(text) <= max_chars:
        return text
    cut = " ".join(tokens[:words])
    if len(cut) > max_chars:
        cut = cut[:max_chars]
        space = cut.rfind(" ")
        if space > max_chars // 2:
            cut = cut[:space]
    ends = [m.end() for m in _SENTENCE_END.finditer(cut) if m.end() >= len(cut) // 2]
    if ends:
        return cut[: ends[-1]]
    return cut.rstrip(" ,;:–—-(") + "…"


def char_budget(text: str, words: int) -> int:
    """``words`` as a number of characters for ``text``'s script."""
    sample = text[:1000]
    per_word = CJK_CHARS_PER_WORD if len(_CJK.findall(sample)) * 3 > len(sample) else CHARS_PER_WORD
    return words * per_word


def word_count(text: str) -> int:
    """Words in ``text``; each CJK character counts as one word (their
    reading speed in characters is close to the English one in words)."""
    return len(_CJK.findall(text)) + len(_CJK.sub(" ", text).split())


def reading_minutes(text: str) -> int:
    """Reading time in whole minutes at ``WORDS_PER_MINUTE``, at least 1."""
    return max(1, math.ceil(word_count(text) / WORDS_PER_MINUTE))


# --- links and HTML ---------------------------------------------------------------


def absolute_url(value: str | None, base: str | None) -> str | None:
    """``value`` resolved against ``base`` (RFC 3986 §5 via ``urljoin``) when
    the result is an http(s) URL; None otherwise (``javascript:``, ``data:``,
    a relative link with no absolute base). Spaces and non-ASCII characters
    are percent-encoded (UTF-8) so that the URL is safe in a header or href."""
    if not value or not value.strip():
        return None
    try:
        parts = urlsplit(urljoin(base or "", value.strip()))
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    safe = "/:@!$&'()*+,;=%~"  # RFC 3986 sub-delims and the like; "%" keeps escapes as they are
    return urlunsplit(
        (parts.scheme, parts.netloc, quote(parts.path, safe), quote(parts.query, safe + "?"), quote(parts.fragment, safe + "?"))
    )


def sanitize_html(fragment: str, base: str | None) -> str:
    """Untrusted HTML reduced to ``SUMMARY_TAGS`` with nh3 (ammonia): scripts
    and styles dropped with their content, other tags unwrapped, links made
    absolute against ``base`` and kept only for http/https/mailto/tel, each with
    ``rel="noopener"``; ``tel:`` links only when they are a phone number
    (:data:`TEL_URI`)."""

    def resolve(tag: str, attribute: str, value: str) -> str | None:
        if tag == "a" and attribute == "href":
            if value.strip().lower().startswith("mailto:"):
                return value.strip()
            if value.strip().lower().startswith("tel:"):
                return value.strip() if TEL_URI.match(value.strip()) else None
            return absolute_url(value, base)
        return value

    return nh3.clean(
        fragment,
        tags=SUMMARY_TAGS,
        attributes={"a": {"href"}},
        url_schemes=LINK_SCHEMES,
        link_rel="noopener",
        attribute_filter=resolve,
    ).strip()


# --- normalize -----------------------------------------------------------------------


def normalize(raw: RawArticle, *, site_url: str, tz: tzinfo) -> Article:
    """Turn a reader's :class:`RawArticle` into an :class:`Article`.

    Rules: links absolute against ``raw.base_url``,
    else the article's own URL, else ``site_url`` (the site's home page, as in
    settings); a naive date is read in ``tz`` (the site's time zone); tags merged into slugs; a summary is sanitized
    (and cut to an excerpt when it is really a whole article, as feeds often
    put the full post in their description); without one, the excerpt comes
    from the body's first paragraphs. Raises :class:`SourceError` when the
    record has neither a title nor any text to make one from.
    """
    base = raw.base_url if absolute_url(raw.base_url, None) else site_url
    if raw.url:
        url = absolute_url(raw.url, base)
    elif raw.slug:
        url = absolute_url(quote(raw.slug.strip("/")) + "/", site_url)
    else:
        url = None
    link_base = raw.base_url if absolute_url(raw.base_url, None) else (url or site_url)

    body = text_blocks(raw.body_html)  # parsed once: long feed bodies dominate the cost
    body_text = prose(body)
    summary_html, summary_text = _summary(raw.summary_html, body_text, link_base)

    title = " ".join((raw.title or "").split())
    if not title:
        title = excerpt(summary_text or body_text, words=10)
    if not title:
        raise SourceError("an entry has no title and no text")

    published = aware(parse_date(raw.date), tz)
    own = LeadImage(raw.image, raw.image_alt, pixels(raw.image_width), pixels(raw.image_height)) if raw.image else None
    image = lead_image([own, first_body_image(raw.body_html), first_body_image(raw.summary_html)], link_base)
    return Article(
        id=_stable_id(raw.guid, url, title, published, base),
        title=title,
        url=url,
        published=published,
        tags=merge_tags(raw.tags),
        summary_html=summary_html,
        summary_text=summary_text,
        author=" ".join((raw.author or "").split()) or None,
        image=image.url if image else None,
        reading_minutes=reading_minutes(" ".join(text for _, text in body) or summary_text),
        source=raw.source,
        image_alt=image.alt if image else None,
        image_width=image.width if image else None,
        image_height=image.height if image else None,
        language=_language(raw.language),
        tag_names=tag_names(raw.tags),
    )


def _summary(summary_html: str | None, body_text: str, base: str | None) -> tuple[str, str]:
    """(summary_html, summary_text) from a summary if it has text, else from the body."""
    text = html_to_text(summary_html)
    if text and len(text.split()) <= SUMMARY_MAX_WORDS and len(text) <= char_budget(text, SUMMARY_MAX_WORDS):
        return sanitize_html(summary_html or "", base), text
    short = excerpt(text or body_text)
    return html.escape(short, quote=False), short


def identity(article: Article) -> tuple[str, str]:
    """How ``article`` is known: ``("guid", id)`` for a feed entry's own id,
    ``("URL", url)`` for an article known by its link (a Markdown post, an
    entry without a guid, or whose guid is its permalink), ``("hash", id)``
    for one with neither (a hash of title and date)."""
    if article.id.startswith("sha256:"):
        return "hash", article.id
    if article.url is not None and article.id == article.url:
        return "URL", article.url
    return "guid", article.id


def same_article(a: Article, b: Article) -> bool:
    """Whether ``a`` and ``b`` are one article: the same id; or the same URL
    when at least one of them is known by its URL only. Two entries with
    guids of their own that share a link are two articles (event listings
    and podcasts do this; RSS 2.0 makes the guid the entry's identity)."""
    if a.id == b.id:
        return True
    if a.url is None or a.url != b.url:
        return False
    return identity(a)[0] != "guid" or identity(b)[0] != "guid"


def _stable_id(guid: str | None, url: str | None, title: str, published: datetime | None, base: str) -> str:
    guid = (guid or "").strip()
    if guid:
        # A guid is only unique within its feed (RSS 2.0, JSON Feed 1.1); a bare
        # "1" or "23246627" gets the feed's address in front so feeds cannot collide.
        return guid if ":" in guid else f"{base}#{guid}"
    if url:
        return url
    stamp = published.isoformat() if published else ""
    return "sha256:" + hashlib.sha256(f"{title}\n{stamp}".encode()).hexdigest()
