"""Selection: which articles go into an issue.

An article is selected when its publication time falls in the window
``start < published <= end`` (so consecutive windows neither overlap nor leave
gaps), it has one of the wanted tags (any-of; none wanted = all), none of the
excluded tags, and it was not sent in an earlier issue. Newest first.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo

from digest.articles import Article
from digest.errors import UsageError
from digest.moments import parse_bound

DEFAULT_WINDOW = timedelta(days=7)


@dataclass(frozen=True)
class Window:
    """A half-open time window ``(start, end]`` of aware datetimes."""

    start: datetime
    end: datetime

    def __contains__(self, moment: datetime) -> bool:
        return self.start < moment <= self.end


@dataclass(frozen=True)
class Selection:
    """The articles of an issue, newest first, and what was left out and why.

    ``undated`` lists articles without a usable date (never selected);
    ``already_sent`` those left out because an earlier issue carried them;
    ``left_out`` every article not selected with why, in words (outside the
    window, no date, a tag, already sent, beyond the limit).
    """

    window: Window
    articles: tuple[Article, ...]
    undated: tuple[Article, ...] = ()
    already_sent: tuple[Article, ...] = ()
    considered: int = 0
    tags: frozenset[str] = field(default_factory=frozenset)
    exclude_tags: frozenset[str] = field(default_factory=frozenset)
    left_out: tuple[tuple[Article, str], ...] = ()


def make_window(as_of: datetime, tz: tzinfo, since: str | None = None, until: str | None = None) -> Window:
    """The window from ``--since``/``--until`` relative to ``as_of`` (aware);
    by default the 7 days before ``as_of``. Raises :class:`UsageError` when
    the window is empty or reversed."""
    end = parse_bound(until, as_of, tz) if until else as_of
    try:
        start = parse_bound(since, as_of, tz) if since else end - DEFAULT_WINDOW
    except OverflowError:
        raise UsageError(f"no window before {end.date()}: too close to year 1") from None
    if start >= end:
        raise UsageError(f"empty window: since {start.isoformat()} is not before until {end.isoformat()}")
    return Window(start, end)


def select_articles(
    articles: Iterable[Article],
    window: Window,
    *,
    tags: Iterable[str] = (),
    exclude_tags: Iterable[str] = (),
    limit: int | None = None,
    already_sent: frozenset[str] = frozenset(),
) -> Selection:
    """Pick the articles of one issue (see the module docstring for the rules).

    ``tags``/``exclude_tags`` are slugs; ``already_sent`` holds article ids
    from earlier issues; ``limit`` caps the count after sorting newest first.
    """
    wanted, unwanted = frozenset(tags), frozenset(exclude_tags)
    chosen: list[Article] = []
    undated: list[Article] = []
    sent: list[Article] = []
    left_out: list[tuple[Article, str]] = []
    considered = 0
    for article in articles:
        considered += 1
        if wanted and wanted.isdisjoint(article.tags):
            left_out.append((article, f"none of the tags asked for ({', '.join(sorted(wanted))})"))
            continue
        if unwanted and not unwanted.isdisjoint(article.tags):
            left_out.append((article, f"excluded tag {', '.join(sorted(unwanted & set(article.tags)))}"))
            continue
        if article.published is None:
            undated.append(article)
            left_out.append((article, "no date"))
            continue
        if article.published not in window:
            left_out.append((article, "outside the window"))
            continue
        if article.id in already_sent:
            sent.append(article)
            left_out.append((article, "already sent"))
            continue
        chosen.append(article)
    chosen.sort(key=lambda a: (a.published, a.title), reverse=True)
    if limit is not None:
        left_out.extend((article, f"beyond --limit {limit}") for article in chosen[limit:])
        chosen = chosen[:limit]
    return Selection(window, tuple(chosen), tuple(undated), tuple(sent), considered, wanted, unwanted, tuple(left_out))


def select_by_ids(articles: Iterable[Article], ids: Iterable[str], window: Window) -> tuple[Selection, int]:
    """The articles whose id is in ``ids`` (a resumed issue keeps its
    articles whatever the window says now), newest first, and how many of
    ``ids`` were not found."""
    wanted = set(ids)
    chosen = [a for a in articles if a.id in wanted]
    chosen.sort(key=lambda a: (a.published is not None, a.published or window.end, a.title), reverse=True)
    return Selection(window, tuple(chosen), considered=len(chosen)), len(wanted - {a.id for a in chosen})
