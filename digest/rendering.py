"""Rendering: one variant -> subject, preheader, HTML (CSS inlined) and text.

CONTRACT STUB — the rendering helper replaces the bodies; signatures stay.

Rendering happens once per variant. Per-person values (name, unsubscribe URL,
preferences URL) are left as placeholders in the rendered HTML and text, and
filled per recipient by :func:`personalize` (outbox, SMTP) or by SendGrid
substitutions built from :func:`substitutions`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from digest.articles import Article
from digest.providers import Recipient
from digest.settings import Settings


@dataclass(frozen=True)
class IssueContext:
    """What every variant of one issue shares: its key (e.g. ``2026-W48`` or
    ``preview``), its time (aware) and window, and the editor's note (Markdown)."""

    key: str
    as_of: datetime
    window_start: datetime
    window_end: datetime
    intro_markdown: str | None = None


@dataclass(frozen=True)
class RenderedVariant:
    """A variant rendered once: ``html`` (inlined, UTF-8 text) and ``text``
    carry placeholders for per-person values; ``notes`` says what the size
    budget changed (empty when nothing)."""

    variant_key: str
    subject: str
    preheader: str
    html: str
    text: str
    article_ids: tuple[str, ...]
    notes: tuple[str, ...] = ()


def render_variant(
    articles: Sequence[Article], context: IssueContext, settings: Settings, *, variant_key: str, tags: frozenset[str] = frozenset()
) -> RenderedVariant:
    raise NotImplementedError


def inline_css(html: str, base_url: str | None) -> str:
    """The one place premailer is called (so it can be swapped)."""
    raise NotImplementedError


def personalize(rendered: RenderedVariant, recipient: Recipient) -> tuple[str, str]:
    """(html, text) of ``rendered`` with ``recipient``'s values filled in
    (HTML-escaped in the HTML, as-is in the text)."""
    raise NotImplementedError


def substitutions(recipient: Recipient) -> dict[str, str]:
    """SendGrid substitutions for ``recipient``: placeholder -> value, for both parts."""
    raise NotImplementedError
