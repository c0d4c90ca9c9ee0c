"""Lead images: the one picture an article shows in the email.

Where it comes from, first found wins: the source's own image (front matter
``image``/``cover``/``thumbnail``..., a feed's ``media:thumbnail``,
``media:content``, image enclosure or JSON Feed ``image``), else the first
``<img>`` of the article's body. Only an absolute https URL is used: mail
apps block or flag plain http, and a relative one has no base in an email.

How big: the layout's column (:data:`COLUMN_WIDTH`), or the source's own
width when it says it is smaller (an image is never stretched); a height only
when the source gives both sides (then the proportions are known), else CSS
``height:auto`` keeps them.
"""

from __future__ import annotations

from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit

COLUMN_WIDTH = 552  # the 600px column less 2 x 24px of cell padding (templates/styles.css .cell)
MAX_SIDE = 10_000  # pixels; a bigger "width" in a feed is a mistake, not a size


@dataclass(frozen=True)
class LeadImage:
    """An image as its source describes it: ``url`` (absolute https),
    ``alt`` (its own text, None when it has none) and its pixel ``width``
    and ``height`` when the source says them."""

    url: str
    alt: str | None = None
    width: int | None = None
    height: int | None = None


def pixels(value: Any) -> int | None:
    """A pixel size from a feed, front matter or an ``<img>`` attribute
    (``600``, ``"600"``, ``"600px"``); None for anything else, zero, or more
    than ``MAX_SIDE``."""
    if isinstance(value, bool):
        return None
    text = str(value).strip().lower().removesuffix("px").strip() if value is not None else ""
    if not text.isdigit() or not text.isascii():
        return None
    number = int(text)
    return number if 0 < number <= MAX_SIDE else None


def lead_image(candidates: list[LeadImage | None], base: str | None) -> LeadImage | None:
    """The first candidate whose URL, resolved against ``base``, is absolute
    https (others skipped), with that URL."""
    for candidate in candidates:
        if candidate is None or not candidate.url:
            continue
        try:
            url = urljoin(base or "", candidate.url.strip())
            parts = urlsplit(url)
        except ValueError:
            continue
        if parts.scheme == "https" and parts.netloc and not any(c in url for c in ' "<>\r\n'):
            return LeadImage(url, _alt(candidate.alt), candidate.width, candidate.height)
    return None


def _alt(text: str | None) -> str | None:
    text = " ".join((text or "").split())
    return text or None


class _FirstImage(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: LeadImage | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.found is None and tag == "img":
            values = dict(attrs)
            src = values.get("src") or ""
            if src.strip():
                self.found = LeadImage(src, values.get("alt"), pixels(values.get("width")), pixels(values.get("height")))


def first_body_image(body_html: str | None) -> LeadImage | None:
    """The first ``<img>`` with a ``src`` in an article's body, as written
    (relative URLs are resolved by :func:`lead_image`)."""
    if not body_html or "<img" not in body_html.lower():
        return None
    parser = _FirstImage()
    parser.feed(body_html)
    parser.close()
    return parser.found


def display_size(image: LeadImage, column: int = COLUMN_WIDTH) -> tuple[int, int | None]:
    """(width, height) attributes for ``image`` in a column ``column`` pixels
    wide: the column, or the image's own width when smaller; the height
    scaled the same way when the source gave both sides, else None."""
    width = min(column, image.width) if image.width else column
    if image.width and image.height:
        return width, max(1, round(image.height * width / image.width))
    return width, None
