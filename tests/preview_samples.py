"""A small site of our own for the preview, browser and archive tests: Markdown
articles with front matter (one with a very long title word and a very long
URL, the content that breaks narrow layouts), a subscriber list that splits
into three variants, and a digest.toml naming them."""

from __future__ import annotations

import textwrap
from datetime import datetime
from pathlib import Path

from digest.issue import IssueRequest

AS_OF = datetime.fromisoformat("2026-12-01T08:00:00+00:00")

LONG_WORD = "Supercalifragilisticexpialidocious" * 4
LONG_URL = "https://example.org/archive/2026/11/" + "a-very-long-path-segment-" * 8 + "end"

ARTICLES = {
    "privacy-week.md": ("Privacy week: what changed", "2026-11-28T09:00:00+00:00", "privacy", "A look at the week’s “privacy” news."),
    "python-tips.md": ("Ten small Python tips", "2026-11-27", "python", "Short tips for everyday scripts."),
    "long-one.md": (f"A title with {LONG_WORD} in it", "2026-11-26", "privacy, python", f"Read it at {LONG_URL} before Friday."),
}


def write_article(folder: Path, name: str, title: str, date: str, tags: str, summary: str) -> Path:
    """One Markdown article with YAML front matter."""
    path = folder / name
    path.write_text(
        f'---\ntitle: "{title}"\ndate: {date}\ntags: [{tags}]\nsummary: "{summary}"\n---\n{summary}\n\nMore text.\n',
        encoding="utf-8",
    )
    return path


def write_site(root: Path) -> Path:
    """Articles in ``root/content``, subscribers in ``root/readers.csv``
    (privacy only, python only, every tag: three variants) and
    ``root/digest.toml``; returns ``root``."""
    content = root / "content"
    content.mkdir(parents=True)
    for name, fields in ARTICLES.items():
        write_article(content, name, *fields)
    (root / "readers.csv").write_text(
        "email,name,tags\nada@example.org,Ada,privacy\nguido@example.org,Guido,python\nall@example.org,Al,\n",
        encoding="utf-8",
    )
    (root / "digest.toml").write_text(
        textwrap.dedent(
            """\
            site_name = "Sample Digest"
            site_url = "https://sample.example.org/"
            sender_email = "news@sample.example.org"
            sources = ["content"]
            subscribers = "readers.csv"
            """
        ),
        encoding="utf-8",
    )
    return root


def sample_request(settings=None) -> IssueRequest:
    """The request of every test: the week before :data:`AS_OF`."""
    return IssueRequest(as_of=AS_OF, key="2026-W49")
