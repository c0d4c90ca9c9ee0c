"""Sources: where articles come from. One reader per format, as pelican has.

CONTRACT STUB — the sources helper replaces the bodies; signatures stay.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from digest.articles import Article
from digest.settings import Settings


@dataclass
class LoadResult:
    """Articles from all sources (normalized, duplicates dropped) and one
    warning line per file or feed that was skipped, naming it and the reason."""

    articles: list[Article]
    warnings: list[str]


def load_articles(sources: Sequence[str], settings: Settings) -> LoadResult:
    raise NotImplementedError
