"""The schedule command: which issues come next, and what a send now would do."""

from __future__ import annotations

import json

import click

from digest.cli.options import list_option
from digest.settings import load_settings
from digest.words import plural


@click.command()
@click.option("--as-of", "as_of", metavar="WHEN", help="Reference time (default now); naive times are in the site's timezone.")
@click.option("--count", type=click.IntRange(1, 100), default=4, show_default=True, help="How many issues after the current one.")
@list_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def schedule(as_of, count, list_name, as_json) -> None:
    """Show, for each frequency readers chose (daily, weekly, monthly) or
    the schedule names, its send time and readers, the issue a send now
    would handle and the next issues: keys, windows and send times in the
    site's timezone and in UTC.

    The schedule is in the site's 'timezone' setting, whatever the
    server's. The current issue's window starts where the last issue that
    went out to the list ended (the ledger's history); the next ones follow
    on from it, assuming it goes out.

    \b
    Examples:
      digest schedule
      digest schedule --as-of 2026-11-30T09:00 --count 8 --json
    """
    from datetime import UTC, datetime

    from digest.moments import parse_as_of

    settings = load_settings()
    moment = parse_as_of(as_of, settings.tz) if as_of else datetime.now(UTC)
    readers = _readers_by_frequency(settings, list_name)
    views = [
        {"frequency": frequency, "readers": readers.get(frequency, 0), **_view(settings, frequency, moment, count, list_name)}
        for frequency in _frequencies(settings, readers)
    ]
    first = views[0]
    if as_json:
        click.echo(json.dumps({"timezone": settings.timezone, "as_of": moment.isoformat(), "now": first["now"], "next": first["next"], "frequencies": views}, ensure_ascii=False))
        return
    entries = [settings.schedule] if isinstance(settings.schedule, str) else settings.schedule
    click.echo(f"schedule: {', '.join(entries)} ({settings.timezone}, whatever the server's time zone)")
    for view in views:
        click.echo(f"{view['frequency']}: {plural(view['readers'], 'reader')}, {view['send_time']}")
        now = view["now"]
        click.echo(f"a send now handles {now['issue']}: {now['status']}; scheduled {now['scheduled']} ({_utc(now['scheduled_at'])}); window {now['window']}")
        for item in view["next"]:
            click.echo(f"{item['issue']}: {item['scheduled']} ({_utc(item['scheduled_at'])}); window {item['window']}")


def _readers_by_frequency(settings, list_name) -> dict[str, int]:
    """How many readers (after suppressions) chose each frequency; empty without a list."""
    from digest.audience import load_audience
    from digest.errors import DigestError
    from digest.frequencies import frequency_of

    try:
        readers = load_audience(settings, list_name).subscribers
    except DigestError:  # no list yet: the send times still show
        return {}
    counts: dict[str, int] = {}
    for reader in readers:
        counts[frequency_of(reader, settings)] = counts.get(frequency_of(reader, settings), 0) + 1
    return counts


def _frequencies(settings, readers: dict[str, int]) -> list[str]:
    """The frequencies to show: those the schedule setting names and those readers chose, daily first."""
    from digest.schedule import CADENCES, parse_schedules

    shown = set(parse_schedules(settings.schedule)) | set(readers)
    return [cadence for cadence in CADENCES if cadence in shown]


def _view(settings, frequency: str, moment, count: int, list_name) -> dict:
    """The issue of ``frequency`` a send at ``moment`` handles (its status and
    window from the ledger) and the ``count`` next ones, as JSON-ready dicts."""
    from digest.issue import history_window
    from digest.ledger import Ledger, exists
    from digest.schedule import current_issue, describe, next_issue, parse_schedules, schedule_of
    from digest.selection import Window

    plan = schedule_of(settings.schedule, frequency)
    current = current_issue(plan, moment, settings.tz)
    window, state = current.window, "not sent yet"
    if exists(settings.ledger):
        with Ledger.from_settings(settings) as ledger:
            record = ledger.get_issue(current.key)
            if record is not None:
                state = "already sent" if record.status == "finished" else "open: a send now resumes it"
                window = Window(record.window_start, record.window_end)
            else:
                window = history_window(current, ledger, settings, list_name)
    if state == "not sent yet" and settings.not_after:
        from digest.moments import parse_duration

        if moment > current.scheduled_at + parse_duration(settings.not_after):
            state = f"not sent, and too late to send (not_after {settings.not_after})"

    def entry(issue, start, status=None) -> dict:
        data = {
            "issue": issue.key,
            "scheduled": describe(issue.scheduled_at, settings.tz),
            "scheduled_at": issue.scheduled_at.isoformat(),
            "window_start": start.isoformat(),
            "window_end": issue.window_end.isoformat(),
            "window": f"{describe(start, settings.tz)} .. {describe(issue.window_end, settings.tz)}",
        }
        return {**data, "status": status} if status else data

    following, issue = [], current
    for _ in range(count):
        issue = next_issue(plan, issue, settings.tz)
        following.append(entry(issue, issue.window_start))
    named = frequency in parse_schedules(settings.schedule)
    send_time = f"sent {_at(plan)}" + ("" if named else " (the default: the schedule setting names no time for it)")
    return {"send_time": send_time, "now": entry(current, window.start, state), "next": following}


def _at(plan) -> str:
    days = {"daily": "daily", "weekly": f"weekly on {WEEKDAY_NAMES[plan.weekday or 0]}", "monthly": f"monthly on day {plan.day}"}
    return f"{days[plan.cadence]} at {plan.at:%H:%M}"


WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _utc(iso: str) -> str:
    return iso.replace("T", " ").replace("+00:00", " UTC")
