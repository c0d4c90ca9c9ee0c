"""The schedule: which issue a send belongs to.

The ``schedule`` setting names a cadence and a local send time in the site's
``timezone``::

    daily 07:30
    weekly monday 08:00
    monthly 1 09:00

or a list of them, one send time per frequency readers may choose
(:func:`parse_schedules`); a frequency the setting leaves out goes at
:data:`DEFAULT_SEND_TIMES`.

From it and a reference time (``--as-of``, default now), :func:`current_issue`
finds the latest scheduled time at or before the reference time, so cron
calling late still sends the current issue, and cron calling twice gets the
same key (a resume, never a second issue). Each issue's window runs from the
previous scheduled time to its own, so consecutive issues neither overlap nor
leave gaps. The send time is a wall-clock time: 08:00 stays 08:00 local across
daylight-saving changes (zoneinfo does the arithmetic).
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Literal

from digest.errors import SettingsError
from digest.selection import Window

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

_EXAMPLES = "e.g. 'daily 07:30', 'weekly monday 08:00', 'monthly 1 09:00'"
CADENCES = ("daily", "weekly", "monthly")
DEFAULT_SEND_TIMES = {"daily": "daily 08:00", "weekly": "weekly monday 08:00", "monthly": "monthly 1 08:00"}
_TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True)
class Schedule:
    """A parsed ``schedule`` setting.

    ``weekday`` is 0 (Monday) .. 6 (Sunday) for weekly schedules; ``day`` is
    the day of the month 1..31 for monthly ones (in a shorter month the issue
    goes out on its last day); ``at`` is the local wall-clock send time.
    """

    cadence: Literal["daily", "weekly", "monthly"]
    at: time
    weekday: int | None = None
    day: int | None = None


@dataclass(frozen=True)
class ScheduledIssue:
    """One issue as the schedule places it.

    ``key``: ``2026-W48`` (ISO 8601 week of the scheduled local date) for
    weekly, ``2026-11-29`` for daily, ``2026-11`` for monthly schedules.
    ``scheduled_at``, ``window_start`` and ``window_end`` are aware datetimes
    in UTC (``.astimezone(tz)`` shows the local time): Python subtracts and
    compares datetimes that share a ``tzinfo`` by wall-clock time, which is
    off by an hour across a DST change, so these never share the site's zone.
    The window is ``(window_start, window_end]`` with ``window_start`` the
    previous scheduled time and ``window_end == scheduled_at``.
    """

    key: str
    scheduled_at: datetime
    window_start: datetime
    window_end: datetime

    @property
    def window(self) -> Window:
        """The window as selection uses it."""
        return Window(self.window_start, self.window_end)


def parse_schedule(text: str) -> Schedule:
    """Parse the ``schedule`` setting (case-insensitive; weekdays may be
    abbreviated to three letters). Raises :class:`SettingsError` naming the
    setting and the accepted forms."""
    words = text.strip().lower().split()

    def bad(why: str) -> SettingsError:
        return SettingsError(f"setting 'schedule' (digest.toml, or DIGEST_SCHEDULE): {why} in {text!r}; {_EXAMPLES}")

    if not words or words[0] not in ("daily", "weekly", "monthly"):
        raise bad("expected daily, weekly or monthly first")
    expected = {"daily": 2, "weekly": 3, "monthly": 3}[words[0]]
    if len(words) != expected:
        raise bad(f"expected {expected} words")
    match = _TIME.match(words[-1])
    if not match:
        raise bad(f"{words[-1]!r} is not a time of day HH:MM")
    at = time(int(match.group(1)), int(match.group(2)))
    if words[0] == "daily":
        return Schedule("daily", at)
    if words[0] == "weekly":
        weekday = next((i for i, name in enumerate(WEEKDAYS) if len(words[1]) >= 3 and name.startswith(words[1])), None)
        if weekday is None:
            raise bad(f"{words[1]!r} is not a weekday")
        return Schedule("weekly", at, weekday=weekday)
    if not words[1].isdigit() or not 1 <= int(words[1]) <= 31:
        raise bad(f"{words[1]!r} is not a day of the month 1..31")
    return Schedule("monthly", at, day=int(words[1]))


def parse_schedules(value: str | Sequence[str]) -> dict[str, Schedule]:
    """The ``schedule`` setting as cadence -> :class:`Schedule`, in the
    order written: one entry (a string) or several (a list, each cadence at
    most once). Raises :class:`SettingsError` naming the setting."""
    entries = [value] if isinstance(value, str) else list(value)
    if not entries:
        raise SettingsError(f"setting 'schedule' (digest.toml, or DIGEST_SCHEDULE): empty; {_EXAMPLES}")
    found: dict[str, Schedule] = {}
    for entry in entries:
        schedule = parse_schedule(entry)
        if schedule.cadence in found:
            raise SettingsError(f"setting 'schedule' (digest.toml, or DIGEST_SCHEDULE): two {schedule.cadence} send times; give each frequency one")
        found[schedule.cadence] = schedule
    return found


def schedule_of(value: str | Sequence[str] | Schedule, frequency: str | None = None) -> Schedule:
    """The schedule of ``frequency`` (daily, weekly, monthly) in the setting
    ``value``, else its :data:`DEFAULT_SEND_TIMES`; with ``frequency`` None,
    the setting's first entry (a setting of one entry keeps its meaning)."""
    if isinstance(value, Schedule):
        return value
    entries = parse_schedules(value)
    if frequency is None:
        return next(iter(entries.values()))
    return entries.get(frequency) or parse_schedule(DEFAULT_SEND_TIMES[frequency])


def current_issue(schedule: Schedule | str | Sequence[str], as_of: datetime, tz: tzinfo) -> ScheduledIssue:
    """The issue due at ``as_of``: the latest scheduled time <= ``as_of``.

    ``as_of`` is an aware datetime (a naive one is read in ``tz``); ``tz`` is
    the site's time zone (a ``ZoneInfo``). A send time that does not exist on
    a spring-forward day moves forward by the gap (02:30 -> 03:30); one that
    occurs twice on a fall-back day is the first occurrence (PEP 495 fold=0).
    Raises :class:`SettingsError` for a bad schedule string.
    """
    schedule = schedule_of(schedule)
    if as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=tz)
    day = _on_or_before(schedule, as_of.astimezone(tz).date())
    scheduled_at = _local(schedule, day, tz)
    if scheduled_at > as_of:
        day = _on_or_before(schedule, day - timedelta(days=1))
        scheduled_at = _local(schedule, day, tz)
    previous = _local(schedule, _on_or_before(schedule, day - timedelta(days=1)), tz)
    return ScheduledIssue(_key(schedule, day), scheduled_at, previous, scheduled_at)


def next_issue(schedule: Schedule | str | Sequence[str], issue: ScheduledIssue, tz: tzinfo) -> ScheduledIssue:
    """The issue the schedule places right after ``issue``; its window
    starts where ``issue``'s ends."""
    schedule = schedule_of(schedule)
    day = issue.scheduled_at.astimezone(tz).date()
    if schedule.cadence == "daily":
        following = day + timedelta(days=1)
    elif schedule.cadence == "weekly":
        following = day + timedelta(days=7)
    else:
        year, month = (day.year, day.month + 1) if day.month < 12 else (day.year + 1, 1)
        following = _monthly_date(year, month, schedule.day)
    scheduled_at = _local(schedule, following, tz)
    return ScheduledIssue(_key(schedule, following), scheduled_at, issue.scheduled_at, scheduled_at)


def upcoming(schedule: Schedule | str | Sequence[str], as_of: datetime, tz: tzinfo, count: int) -> list[ScheduledIssue]:
    """The ``count`` issues scheduled after ``as_of`` (aware), soonest first."""
    issue = current_issue(schedule, as_of, tz)
    found = []
    for _ in range(count):
        issue = next_issue(schedule, issue, tz)
        found.append(issue)
    return found


def window_since_last_send(
    issue: ScheduledIssue, last_sent_end: datetime | None, first_refused_start: datetime | None = None
) -> Window:
    """The window of ``issue`` given the history of its list: it starts
    where the window of the last issue that actually went out ended
    (``last_sent_end``, aware; "since the last send", as Mailchimp's RSS
    campaigns do), so the articles of a missed or refused issue go into the
    next one. With no such issue before it (the first issue ever), the
    schedule's period, reaching back to the start of the earliest issue
    refused before it (``first_refused_start``), if any. Ends at the
    issue's scheduled time."""
    if last_sent_end is not None and last_sent_end < issue.window_end:
        return Window(last_sent_end, issue.window_end)
    if first_refused_start is not None and first_refused_start < issue.window_start:
        return Window(first_refused_start, issue.window_end)
    return issue.window


def describe(moment: datetime, tz: tzinfo) -> str:
    """``moment`` as a person reads it in the site's zone: ``Mon 7 Dec 08:00 Europe/Berlin``."""
    local = moment.astimezone(tz)
    return f"{local:%a} {local.day} {local:%b %H:%M} {getattr(tz, 'key', None) or local.tzname()}"


def how_late(delay: timedelta) -> str:
    """A delay in words: ``2 days 3 h 5 min``, ``40 min``, ``less than a minute``."""
    minutes = int(delay.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = [f"{days} day{'s' if days != 1 else ''}"] if days else []
    parts += [f"{hours} h"] if hours else []
    parts += [f"{minutes} min"] if minutes else []
    return " ".join(parts) or "less than a minute"


def _on_or_before(schedule: Schedule, day: date) -> date:
    """The latest scheduled date <= ``day``."""
    if schedule.cadence == "daily":
        return day
    if schedule.cadence == "weekly":
        return day - timedelta(days=(day.weekday() - schedule.weekday) % 7)
    this_month = _monthly_date(day.year, day.month, schedule.day)
    if this_month <= day:
        return this_month
    year, month = (day.year, day.month - 1) if day.month > 1 else (day.year - 1, 12)
    return _monthly_date(year, month, schedule.day)


def _monthly_date(year: int, month: int, day: int) -> date:
    """``day`` of the month, or the month's last day when it is shorter."""
    return date(year, month, min(day, calendar.monthrange(year, month)[1]))


def _local(schedule: Schedule, day: date, tz: tzinfo) -> datetime:
    """The send time on ``day`` (a wall-clock time in ``tz``) as an aware UTC
    datetime; zoneinfo reads a time inside a DST gap with the offset before
    the gap, which moves it forward by the gap."""
    return datetime.combine(day, schedule.at, tzinfo=tz).astimezone(UTC)


def _key(schedule: Schedule, day: date) -> str:
    if schedule.cadence == "daily":
        return day.isoformat()
    if schedule.cadence == "weekly":
        year, week, _ = day.isocalendar()
        return f"{year}-W{week:02d}"
    return f"{day.year}-{day.month:02d}"
