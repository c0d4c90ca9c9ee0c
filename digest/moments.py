"""Moments: durations and dates as people write them on the command line and
in settings (``7d``, ``36h``, ``2026-11-30``, ``2026-11-30T08:00+01:00``).

The ground floor of the package: it imports nothing of ours but ``errors``.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, tzinfo

from digest.errors import UsageError

_DURATION = re.compile(r"^\s*(\d+)\s*(w|d|h|m)\s*$", re.IGNORECASE)
_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes"}


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
