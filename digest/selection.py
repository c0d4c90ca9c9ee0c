"""Selection: which articles go into an issue.

An article is selected when its publication time falls in the window
``start < published <= end`` (so consecutive windows neither overlap nor leave
gaps), it has one of the wanted tags (any-of; none wanted = all), none of the
excluded tags, and it was not sent in an earlier issue. Newest first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo

from digest.articles import Article
from digest.errors import UsageError

DEFAULT_WINDOW = timedelta(days=7)

_DURATION = re.compile(r"^\s*(\d+)\s*(w|d|h|m)\s*$", re.IGNORECASE)
_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes"}


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
    ``already_sent`` those left out because an earlier issue carried them.
    """

    window: Window
    articles: tuple[Article, ...]
    undated: tuple[Article, ...] = ()
    already_sent: tuple[Article, ...] = ()
    considered: int = 0
    tags: frozenset[str] = field(default_factory=frozenset)
    exclude_tags: frozenset[str] = field(default_factory=frozenset)


def parse_duration(text: str) -> timedelta:
    """``"7d"``, ``"24h"``, ``"90m"``, ``"2w"`` -> a timedelta. Raises
    :class:`UsageError` for anything else."""
    match = _DURATION.match(text)
    if not match:
        raise UsageError(f"not a duration: {text!r} (use e.g. 7d, 24h, 90m, 2w)")
    try:
        return timedelta(**{_UNITS[match.group(2).lower()]: int(match.group(1))})
    except OverflowError:
        raise UsageError(f"duration too long: {text!r}") from None


def parse_moment(text: str, tz: tzinfo) -> datetime:
    """An ISO date (``2026-11-30``, midnight) or datetime (``2026-11-30T08:00``,
    optionally with an offset); naive values are read in ``tz``. Returns an
    aware datetime. Raises :class:`UsageError` naming the value."""
    value = text.strip()
    try:
        if len(value) == 10:
            moment = datetime.combine(date.fromisoformat(value), time())
        else:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"not a date or time: {text!r} (use e.g. 2026-11-30 or 2026-11-30T08:00)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=tz)


def parse_as_of(text: str, tz: tzinfo) -> datetime:
    """The reference time of a run: like :func:`parse_moment`, except that a
    bare date means the end of that day (23:59:59.999999 in ``tz``), so
    ``--as-of 2026-11-30`` is the issue sent on that day whatever its hour."""
    moment = parse_moment(text, tz)
    if not 1970 <= moment.year <= 9998:  # the schedule looks back and forth around it
        raise UsageError(f"--as-of {text!r} is out of range (years 1970 to 9998)")
    if len(text.strip()) == 10:
        moment = datetime.combine(moment.date(), time.max, tzinfo=moment.tzinfo)
    return moment


def parse_bound(text: str, as_of: datetime, tz: tzinfo) -> datetime:
    """A window bound: a duration before ``as_of`` (``7d``) or a moment (see
    :func:`parse_moment`)."""
    if _DURATION.match(text):
        try:
            return as_of - parse_duration(text)
        except OverflowError:
            raise UsageError(f"{text!r} before {as_of.date()} is before year 1") from None
    return parse_moment(text, tz)


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
    considered = 0
    for article in articles:
        considered += 1
        if wanted and wanted.isdisjoint(article.tags):
            continue
        if unwanted and not unwanted.isdisjoint(article.tags):
            continue
        if article.published is None:
            undated.append(article)
            continue
        if article.published not in window:
            continue
        if article.id in already_sent:
            sent.append(article)
            continue
        chosen.append(article)
    chosen.sort(key=lambda a: (a.published, a.title), reverse=True)
    if limit is not None:
        chosen = chosen[:limit]
    return Selection(window, tuple(chosen), tuple(undated), tuple(sent), considered, wanted, unwanted)



def select_by_ids(articles: Iterable[Article], ids: Iterable[str], window: Window) -> tuple[Selection, int]:
    """The articles whose id is in ``ids`` (a resumed issue keeps its
    articles whatever the window says now), newest first, and how many of
    ``ids`` were not found."""
    wanted = set(ids)
    chosen = [a for a in articles if a.id in wanted]
    chosen.sort(key=lambda a: (a.published is not None, a.published or window.end, a.title), reverse=True)
    return Selection(window, tuple(chosen), considered=len(chosen)), len(wanted - {a.id for a in chosen})
