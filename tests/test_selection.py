"""Selection: the window, tags, already-sent articles and order."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from rendering_samples import article as sample_article

from digest.errors import UsageError
from digest.moments import parse_bound, parse_duration
from digest.selection import make_window, select_articles

AS_OF = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def article(title, published, tags=(), id=None):
    return sample_article(0, id=id or title, title=title, url=f"https://example.org/{title}", published=published, tags=tuple(tags))


def test_default_window_is_the_seven_days_before_as_of():
    window = make_window(AS_OF, UTC)
    assert window.end == AS_OF
    assert window.start == AS_OF - timedelta(days=7)


def test_window_is_half_open_so_consecutive_issues_neither_overlap_nor_gap():
    window = make_window(AS_OF, UTC)
    at_start = article("at-start", window.start)
    at_end = article("at-end", window.end)
    selected = select_articles([at_start, at_end], window).articles
    assert [a.title for a in selected] == ["at-end"]
    next_window = make_window(AS_OF + timedelta(days=7), UTC)
    assert [a.title for a in select_articles([at_start, at_end], next_window).articles] == []
    previous = make_window(AS_OF - timedelta(days=7), UTC)
    assert [a.title for a in select_articles([at_start, at_end], previous).articles] == ["at-start"]


@pytest.mark.parametrize(("text", "delta"), [("7d", timedelta(days=7)), ("24h", timedelta(hours=24)), ("90m", timedelta(minutes=90)), ("2w", timedelta(weeks=2))])
def test_durations(text, delta):
    assert parse_duration(text) == delta
    assert parse_bound(text, AS_OF, UTC) == AS_OF - delta


def test_dates_are_read_in_the_site_timezone():
    paris = ZoneInfo("Europe/Paris")
    assert parse_bound("2026-11-01", AS_OF, paris) == datetime(2026, 11, 1, tzinfo=paris)
    assert parse_bound("2026-11-01T08:00+00:00", AS_OF, paris) == datetime(2026, 11, 1, 8, tzinfo=UTC)


@pytest.mark.parametrize("bad", ["last week", "7 days", "2026-13-01", ""])
def test_bad_bounds_are_one_clear_error(bad):
    with pytest.raises(UsageError, match="not a"):
        parse_bound(bad, AS_OF, UTC)


def test_reversed_window_is_refused():
    with pytest.raises(UsageError, match="empty window"):
        make_window(AS_OF, UTC, since="2026-12-05")


def test_tags_any_of_exclusions_limit_and_newest_first():
    window = make_window(AS_OF, UTC, since="30d")
    a = article("a", AS_OF - timedelta(days=1), ["privacy"])
    b = article("b", AS_OF - timedelta(days=2), ["cycling", "privacy"])
    c = article("c", AS_OF - timedelta(days=3), ["cycling"])
    d = article("d", AS_OF - timedelta(days=4), ["gardening"])
    pool = [d, c, b, a]
    assert [x.title for x in select_articles(pool, window).articles] == ["a", "b", "c", "d"]
    assert [x.title for x in select_articles(pool, window, tags=["privacy", "gardening"]).articles] == ["a", "b", "d"]
    assert [x.title for x in select_articles(pool, window, exclude_tags=["cycling"]).articles] == ["a", "d"]
    assert [x.title for x in select_articles(pool, window, limit=2).articles] == ["a", "b"]


def test_undated_and_already_sent_articles_are_left_out_and_listed():
    window = make_window(AS_OF, UTC)
    undated = article("undated", None)
    sent = article("sent", AS_OF - timedelta(days=1))
    fresh = article("fresh", AS_OF - timedelta(days=1))
    selection = select_articles([undated, sent, fresh], window, already_sent=frozenset({"sent"}))
    assert [a.title for a in selection.articles] == ["fresh"]
    assert selection.undated == (undated,)
    assert selection.already_sent == (sent,)


@pytest.mark.parametrize(("as_of", "since"), [(datetime(1, 1, 1, tzinfo=UTC), None), (AS_OF, "99999999d")])
def test_windows_beyond_the_calendar_are_a_usage_error(as_of, since):
    with pytest.raises(UsageError):
        make_window(as_of, UTC, since=since)


def test_as_of_outside_the_calendar_the_schedule_needs_is_a_usage_error():
    from digest.moments import parse_as_of

    with pytest.raises(UsageError, match="out of range"):
        parse_as_of("0001-01-01", UTC)
    assert parse_as_of("2026-11-30", UTC) == datetime(2026, 11, 30, 23, 59, 59, 999999, tzinfo=UTC)
