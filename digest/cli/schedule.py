"""The schedule command: which issues come next, and what a send now would do."""

from __future__ import annotations

import json
from pathlib import Path

import click

from digest.cli.options import list_option
from digest.settings import load_settings


@click.command()
@click.option("--as-of", "as_of", metavar="WHEN", help="Reference time (default now); naive times are in the site's timezone.")
@click.option("--count", type=click.IntRange(1, 100), default=4, show_default=True, help="How many issues after the current one.")
@list_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def schedule(as_of, count, list_name, as_json) -> None:
    """Show the issue a send now would handle and the next issues: keys,
    windows and send times in the site's timezone and in UTC.

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

    from digest.issue import history_window
    from digest.ledger import Ledger
    from digest.moments import parse_as_of
    from digest.schedule import current_issue, describe, next_issue
    from digest.selection import Window

    settings = load_settings()
    moment = parse_as_of(as_of, settings.tz) if as_of else datetime.now(UTC)
    current = current_issue(settings.schedule, moment, settings.tz)
    window, state = current.window, "not sent yet"
    if Path(settings.ledger).exists():
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

    now = entry(current, window.start, state)
    following, issue = [], current
    for _ in range(count):
        issue = next_issue(settings.schedule, issue, settings.tz)
        following.append(entry(issue, issue.window_start))
    if as_json:
        click.echo(json.dumps({"timezone": settings.timezone, "as_of": moment.isoformat(), "now": now, "next": following}, ensure_ascii=False))
        return
    click.echo(f"schedule: {settings.schedule} ({settings.timezone}, whatever the server's time zone)")
    click.echo(f"a send now handles {now['issue']}: {now['status']}; scheduled {now['scheduled']} ({_utc(now['scheduled_at'])}); window {now['window']}")
    for item in following:
        click.echo(f"{item['issue']}: {item['scheduled']} ({_utc(item['scheduled_at'])}); window {item['window']}")


def _utc(iso: str) -> str:
    return iso.replace("T", " ").replace("+00:00", " UTC")
