"""Built-in checks of a rendered variant and of a built message (``digest
lint``, and the end of every preview and dry run).

Each problem is a :class:`Finding`: an ``error`` (``digest send`` refuses to
send) or a ``warning``, a message, and where it comes from (an article's
title, or a template file and line) when that can be told. The rules follow
``../shared/tools/email_lint.py --list-rules`` and the standards it cites;
this module checks what the digest itself can get wrong.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from digest.articles import TEL_URI, Article
from digest.budget import html_size
from digest.messages import MAX_LINE_OCTETS
from digest.personalization import html_placeholders, text_placeholders
from digest.rendering import (
    GMAIL_CLIP_BYTES,
    PREHEADER_MAX,
    PREHEADER_MIN,
    RenderedVariant,
    default_templates_dir,
)
from digest.settings import Settings

Severity = Literal["error", "warning"]
GMAIL_STYLE_BYTES = 16 * 1024  # Gmail ignores a <style> element above 16 KB (the dark-mode and phone rules with it)
_STYLE_ELEMENT = re.compile(r"<style\b[^>]*>(.*?)</style\s*>", re.IGNORECASE | re.DOTALL)
_LEFTOVER = re.compile(r"\{\{|\{%|\{#")  # Jinja delimiters (jinja.palletsprojects.com "Template Designer")
# An image scaled to its width keeps its proportions with CSS height:auto; no height attribute then.
_AUTO_HEIGHT = re.compile(r"(?:^|;)\s*height\s*:\s*auto\b", re.IGNORECASE)


@dataclass(frozen=True)
class Finding:
    """One problem: ``severity`` ("error" or "warning"), ``code`` (a short
    rule name such as ``link-relative``), ``message``, and ``where`` (e.g.
    ``article 'Title'`` or ``digest.html.j2:12``) or None."""

    severity: Severity
    code: str
    message: str
    where: str | None = None

    def __str__(self) -> str:
        return f"{self.severity}: {self.message}" + (f" ({self.where})" if self.where else "")


def has_errors(findings: Iterable[Finding]) -> bool:
    """Whether any finding is an error (``digest send`` refuses then)."""
    return any(f.severity == "error" for f in findings)


class _Elements(HTMLParser):
    """The images and links of an HTML document, with their line numbers."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.images: list[tuple[dict[str, str | None], int]] = []
        self.links: list[tuple[str, int]] = []
        self.anchors: set[str] = set()  # ids and names: targets of in-email links

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        line = self.getpos()[0]
        self.anchors.update(value for name, value in attrs if name in ("id", "name") and value)
        if tag == "img":
            self.images.append((dict(attrs), line))
        elif tag == "a":
            href = dict(attrs).get("href")
            if href is not None:
                self.links.append((href, line))


def lint_variant(
    rendered: RenderedVariant,
    *,
    articles: Sequence[Article] = (),
    settings: Settings | None = None,
) -> list[Finding]:
    """Check one rendered variant (before personalization).

    - HTML size (UTF-8 bytes, after inlining): error above Gmail's ~102 KB
      clip (the footer with the unsubscribe link would be hidden), warning
      above ``settings.html_budget_kb`` (measured quoted-printable, as
      :func:`digest.budget.html_size`); warning for a ``<style>`` block over
      16 KB after inlining (Gmail drops it whole: the phone and dark-mode
      rules would be lost);
    - images: error without ``alt`` (WCAG 2.2 SC 1.1.1), warning without a
      pixel ``width`` (Outlook shows it at file size) or without a pixel
      ``height`` unless its style says ``height:auto`` (scaled to the
      width), warning for a ``width``/``height`` that is not a bare integer
      (``auto``, ``600px``: invalid HTML), error when the source is
      relative, warning when not https;
    - links: error when relative (email has no base URL) unless an anchor
      whose target is in the email, or of another scheme than https, http,
      mailto, tel (a tel: link must be a phone number, RFC 3966); warning
      for plain http;
    - template leftovers ``{{``, ``{%``, ``{#`` in subject, preheader, HTML
      or text: error;
    - text part: warning when missing; unsubscribe link: error when the
      HTML lacks it (CAN-SPAM), warning when the text lacks it;
    - preheader: warning outside 40 to 100 characters.

    ``articles`` (the variant's) and ``settings`` (its templates) let a
    finding name the article or the template line it comes from.
    """
    findings: list[Finding] = []
    size = len(rendered.html.encode("utf-8"))
    if size > GMAIL_CLIP_BYTES:
        findings.append(Finding("error", "size-gmail-clip", f"HTML is {size / 1024:.1f} KB; Gmail clips above 102 KB and hides the footer"))
    elif settings is not None and html_size(rendered.html) > settings.html_budget_kb * 1024:
        encoded = html_size(rendered.html)
        findings.append(Finding("warning", "size-budget", f"HTML is {encoded / 1024:.1f} KB transfer-encoded, over the {settings.html_budget_kb} KB budget"))

    for css in _STYLE_ELEMENT.findall(re.sub(r"<!--.*?-->", "", rendered.html, flags=re.DOTALL)):
        style_size = len(css.encode("utf-8"))
        if style_size > GMAIL_STYLE_BYTES:
            findings.append(
                Finding("warning", "style-too-large", f"a <style> block is {style_size / 1024:.1f} KB after inlining; Gmail ignores one over 16 KB (phone and dark-mode rules lost)")
            )

    where = _Locator(articles, settings)
    elements = _Elements()
    elements.feed(rendered.html)
    elements.close()
    for attrs, line in elements.images:
        src = (attrs.get("src") or "").strip()
        if attrs.get("alt") is None:
            findings.append(Finding("error", "img-alt", f"image without alt text: {src or '(no src)'}", where(src, line)))
        for name in ("width", "height"):
            value = attrs.get(name)
            if value is not None and not value.strip().isdigit():
                # HTML: a dimension attribute is a non-negative integer; "auto" or "600px" is invalid.
                findings.append(Finding("warning", f"img-{name}", f"image {name}={value!r} is not a number of pixels: {src}", where(src, line)))
            elif value is None and not (name == "height" and _AUTO_HEIGHT.search(attrs.get("style") or "")):
                findings.append(Finding("warning", f"img-{name}", f"image without a pixel {name}: {src}", where(src, line)))
        scheme = urlsplit(src).scheme.lower()
        if not scheme:
            findings.append(Finding("error", "img-relative", f"image with a relative source: {src or '(empty)'}", where(src, line)))
        elif scheme != "https":
            findings.append(Finding("warning", "img-insecure", f"image not on https: {src}", where(src, line)))
    placeholders = html_placeholders(rendered.nonce)
    for href, line in elements.links:
        if href.strip() not in placeholders.values():  # filled per recipient with an https URL (checked in the headers)
            findings.extend(_check_link(href.strip(), where(href, line), elements.anchors))

    for part, value in (("subject", rendered.subject), ("preheader", rendered.preheader), ("HTML", rendered.html), ("text", rendered.text)):
        match = _LEFTOVER.search(value)
        if match:
            snippet = value[max(0, match.start() - 30) : match.end() + 30].replace("\n", " ")
            source = where(value[match.start() : match.end() + 30].split("\n")[0], None)
            # In an article's own text (a post about templating) it is the author's words, not a broken template.
            severity = "warning" if source and source.startswith("article ") else "error"
            findings.append(Finding(severity, "template-leftover", f"unrendered template syntax in the {part}: …{snippet}…", source))

    if not rendered.text.strip():
        findings.append(Finding("warning", "text-missing", "no plain-text part"))
    elif text_placeholders(rendered.nonce)["unsubscribe_url"] not in rendered.text:
        findings.append(Finding("warning", "text-unsubscribe", "the text part has no unsubscribe link"))
    if not any(href.strip() == placeholders["unsubscribe_url"] for href, _ in elements.links):
        findings.append(Finding("error", "unsubscribe-missing", "the HTML has no unsubscribe link (CAN-SPAM; Gmail and Yahoo bulk sender rules)"))
    if not PREHEADER_MIN <= len(rendered.preheader) <= PREHEADER_MAX:
        findings.append(
            Finding("warning", "preheader-length", f"preheader is {len(rendered.preheader)} characters; inbox previews show 40 to 100")
        )
    return findings


def _check_link(href: str, where: str | None, anchors: set[str]) -> list[Finding]:
    scheme = urlsplit(href).scheme.lower()
    if href.startswith("#") and href[1:] in anchors:
        return []  # an anchor whose target is in the email: it stays there
    if not scheme or href.startswith("//"):
        return [Finding("error", "link-relative", f"relative link (email has no base URL): {href or '(empty)'}", where)]
    if scheme == "http":
        return [Finding("warning", "link-insecure", f"link not on https: {href}", where)]
    if scheme == "tel" and not TEL_URI.match(href):
        return [Finding("error", "link-tel", f"tel: link that is not a phone number (RFC 3966): {href}", where)]
    if scheme not in ("https", "mailto", "tel"):
        return [Finding("error", "link-scheme", f"link with a {scheme}: URL: {href}", where)]
    return []


class _Locator:
    """Tells where a URL or snippet of the rendered HTML comes from: the
    article whose link, image or summary holds it, else the template file
    and line that contains it literally, else the line of the rendered HTML."""

    def __init__(self, articles: Sequence[Article], settings: Settings | None) -> None:
        self.articles = articles
        self.templates: list[Path] = []
        if settings is not None:
            folders = [settings.templates_dir] if settings.templates_dir else []
            folders.append(default_templates_dir())
            seen: set[str] = set()
            for folder in folders:
                for path in sorted(Path(folder).rglob("*")):
                    relative = str(path.relative_to(folder))
                    if path.is_file() and relative not in seen:  # the editors' copy hides the default
                        seen.add(relative)
                        self.templates.append(path)

    def __call__(self, needle: str, line: int | None) -> str | None:
        if needle:
            for article in self.articles:
                if needle in (article.url, article.image) or needle in article.summary_html or needle in article.title:
                    return f"article {article.title!r}"
            for path in self.templates:
                try:
                    lines = path.read_text(encoding="utf-8").splitlines()
                except (OSError, UnicodeDecodeError):
                    continue
                for number, text in enumerate(lines, start=1):
                    if needle in text:
                        return f"{path}:{number}"
        return f"line {line} of the HTML" if line else None


def lint_message(message: EmailMessage) -> list[Finding]:
    """Check a built message's headers and structure: From, Subject, Date and
    Message-ID present (RFC 5322 §3.6); List-Unsubscribe with exactly one
    https URI in angle brackets (RFC 2369, RFC 8058 §3.1) and
    List-Unsubscribe-Post ``List-Unsubscribe=One-Click`` (Gmail and Yahoo
    bulk sender rules); text/plain before text/html in a
    multipart/alternative (RFC 2046 §5.1.4) with a charset; no line over
    998 octets (RFC 5322 §2.1.1)."""
    findings: list[Finding] = []
    for name in ("From", "To", "Subject", "Date", "Message-ID"):
        if not message.get(name):
            findings.append(Finding("error" if name in ("From", "To") else "warning", "header-missing", f"no {name} header"))
    value = message.get("List-Unsubscribe")
    if value is None:
        findings.append(Finding("error", "list-unsubscribe", "no List-Unsubscribe header"))
    else:
        uris = re.findall(r"<([^>]*)>", str(value))
        https = [u for u in uris if u.lower().startswith("https:")]
        if not uris or re.sub(r"<[^>]*>", "", str(value)).replace(",", "").strip():
            findings.append(Finding("error", "list-unsubscribe", f"List-Unsubscribe is not a list of <URI>s: {value}"))
        if len(https) != 1:
            findings.append(Finding("error", "list-unsubscribe", f"List-Unsubscribe needs exactly one https URI (RFC 8058), has {len(https)}"))
        if str(message.get("List-Unsubscribe-Post", "")).strip() != "List-Unsubscribe=One-Click":
            findings.append(Finding("error", "list-unsubscribe-post", "List-Unsubscribe-Post must be 'List-Unsubscribe=One-Click'"))
    kinds = [part.get_content_type() for part in message.iter_parts()] if message.is_multipart() else [message.get_content_type()]
    if message.get_content_type() != "multipart/alternative" or kinds != ["text/plain", "text/html"]:
        findings.append(
            Finding("error", "mime-structure", f"expected multipart/alternative with text/plain then text/html, found {message.get_content_type()} {kinds}")
        )
    for part in message.walk():
        if part.get_content_maintype() == "text" and not part.get_param("charset"):
            findings.append(Finding("warning", "mime-charset", f"{part.get_content_type()} part has no charset"))
    long_lines = [n for n, line in enumerate(message.as_bytes().splitlines(), start=1) if len(line) > MAX_LINE_OCTETS]
    if long_lines:
        findings.append(Finding("error", "line-length", f"{len(long_lines)} lines over 998 octets (first: line {long_lines[0]})"))
    return findings


def lint_issue(issue, rendered: Sequence[RenderedVariant], settings: Settings) -> list[list[Finding]]:
    """Check every variant of a planned ``issue`` (:class:`digest.issue.Issue`)
    with its ``rendered`` form (same order): :func:`lint_variant`, then
    :func:`lint_message` on the message built for the variant's first
    subscriber. Returns one list of findings per variant."""
    from digest.messages import build_message
    from digest.unsubscribe import recipient_for

    results = []
    for variant, variant_rendered in zip(issue.variants, rendered, strict=True):
        message = build_message(variant_rendered, recipient_for(variant.subscribers[0], settings), settings, issue_key=issue.context.key)
        results.append([*lint_variant(variant_rendered, articles=variant.articles, settings=settings), *lint_message(message)])
    return results
