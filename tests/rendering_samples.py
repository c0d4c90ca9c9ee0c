"""Articles, an issue and recipients of our own for the rendering, message and
lint tests (built directly as :class:`Article` objects, as normalization
leaves them: sanitized summary HTML, plain summary text, aware dates)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from digest.articles import Article
from digest.recipients import Recipient
from digest.rendering import IssueContext

SHARED = Path(__file__).resolve().parents[2] / "shared"
EMAIL_LINT = SHARED / "tools" / "email_lint.py"
AS_OF = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
WORDS = "allotment beans compost dahlias espalier fennel gooseberries hedging irises jasmine kale leeks".split()


def article(number: int, **fields) -> Article:
    """Article ``number``, one hour older than article ``number - 1``, with a
    summary of about 55 words (curly quotes included) and tags chosen by
    ``number``; ``fields`` override anything."""
    words = " ".join(WORDS[(number + i) % len(WORDS)] for i in range(48))
    text = f"The “{WORDS[number % len(WORDS)]}” report for plot {number}: it’s {words}."
    values = {
        "id": f"https://gazette.example.org/posts/{number}/",
        "title": f"Plot {number}: notes on {WORDS[number % len(WORDS)]}",
        "url": f"https://gazette.example.org/posts/{number}/",
        "published": AS_OF - timedelta(hours=number + 1),
        "tags": (("privacy", "rust"), ("python",), ("privacy",))[number % 3],
        "summary_html": f"<p>{text.replace('report', '<em>report</em>', 1)}</p>",
        "summary_text": text,
        "author": "Ada" if number % 2 else None,
        "image": f"https://gazette.example.org/images/{number}.jpg" if number % 4 == 0 else None,
        "reading_minutes": 1 + number % 7,
        "source": "tests",
    }
    values.update(fields)
    return Article(**values)


def articles(count: int) -> list[Article]:
    """``count`` articles, newest first (as selection orders them)."""
    return [article(number) for number in range(count)]


def issue(intro: str | None = None) -> IssueContext:
    """The issue of the week before :data:`AS_OF`."""
    return IssueContext(key="2026-W49", as_of=AS_OF, window_start=AS_OF - timedelta(days=7), window_end=AS_OF, intro_markdown=intro)


def recipient(number: int = 0, *, name: str = "Ada Lovelace", email: str | None = None) -> Recipient:
    """A recipient with a signed-looking one-click link (with ``&``, which the
    HTML part must escape) and a mailto for List-Unsubscribe."""
    address = email or f"reader{number}@example.org"
    return Recipient(
        email=address,
        name=name,
        subscriber_id=address.casefold(),
        list_name="gardeners",
        unsubscribe_url=f"https://gazette.example.org/unsubscribe?token=t{number}.sig-gardeners",
        preferences_url=f"https://gazette.example.org/preferences?token=t{number}.sig",
        unsubscribe_mailto="mailto:unsubscribe@gazette.example.org?subject=unsubscribe",
    )


def run_email_lint(*files: Path, fail_on: str = "warning") -> subprocess.CompletedProcess:
    """``../shared/tools/email_lint.py --fail-on fail_on FILES`` in this Python;
    skips the test when the tool or its dependencies are missing."""
    if not EMAIL_LINT.is_file():
        pytest.skip(f"email_lint.py is not at {EMAIL_LINT} (../shared is absent)")
    pytest.importorskip("lxml", reason="email_lint.py needs lxml (the 'test' extra)")
    pytest.importorskip("tinycss2", reason="email_lint.py needs tinycss2 (the 'test' extra)")
    pytest.importorskip("cssselect", reason="email_lint.py needs cssselect (the 'test' extra)")
    return subprocess.run(
        [sys.executable, str(EMAIL_LINT), "--fail-on", fail_on, *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
    )
