"""Commands that send an issue and report on it: send, status."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from digest.cli.options import issue_request, report_findings, report_planning, selection_options, source_options, warn
from digest.errors import DigestError, ProviderAuthError, SettingsError, UsageError
from digest.settings import DEFAULT_SECRET, Settings, load_settings


@click.command()
@source_options
@selection_options
@click.option("--dry-run", is_flag=True, help="Write every message to the outbox folder instead of sending (the ledger is not used).")
@click.option("--outbox", type=click.Path(path_type=Path), help="Outbox folder of the dry run (default: the 'outbox' setting).")
@click.option("--issue", "issue_key", metavar="KEY", help="Name the issue yourself (a special edition) instead of taking its key from the schedule.")
@click.option("--resend-unknown", is_flag=True, help="Also send to recipients whose earlier request may or may not have been taken (status unknown).")
@click.option("--include-sent", is_flag=True, help="Select articles even if an earlier issue carried them.")
@click.option("--not-after", metavar="DURATION", help="Refuse to send when started later than this after the issue's scheduled time (e.g. 36h); default: the 'not_after' setting.")
@click.option("--test-to", metavar="ADDRESS", help="Send one test message to ADDRESS through the real provider (subject prefixed [TEST]; never recorded).")
@click.option("--as-subscriber", metavar="EMAIL", help="With --test-to: the variant and personalization of this subscriber (default: the largest variant's first).")
@click.option("--force", is_flag=True, help="Send even when the built-in checks (digest lint) find errors.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
def send(settings: Settings, dry_run, outbox, issue_key, resend_unknown, include_sent, not_after, test_to, as_subscriber, force, as_json, **options) -> None:
    """Send the current issue to every subscriber, exactly once each.

    The issue is the one the 'schedule' setting places at or before --as-of
    (default now): its key (2026-W48), its window, its scheduled time. The
    ledger records every recipient before the first request, so running the
    same command again after a crash or a kill resumes the issue: it sends
    only what is still queued or retryable, never twice.

    Readers choose how often (daily, weekly, monthly): each frequency of
    the audience gets its own issue, at its own send time from the
    'schedule' setting, and each reader the articles since the last issue
    they were sent. A dry run of several frequencies writes each into
    outbox/FREQUENCY; --json prints one object per issue, one per line.

    \b
    Examples:
      digest send --dry-run                     every message as .eml in ./outbox
      digest send --dry-run --as-of 2026-11-30  that Monday's issue, today
      digest send --test-to me@example.org --as-subscriber ada@example.org
      digest send --not-after 36h               from cron: refuse a late send
      digest send --issue 2026-W48 --resend-unknown
    \b
    Exit codes: 0 every recipient accepted, or nothing to send; 1 some
    recipients rejected, unknown or still retryable (listed); 2 bad usage or
    settings, errors found by the built-in checks, or too late (--not-after);
    3 the provider refused our credentials or sender; 75 another send holds
    the ledger.
    """
    if outbox:
        settings = settings.model_copy(update={"outbox": outbox})
    if dry_run and test_to:
        raise UsageError("--dry-run and --test-to do not go together")
    if settings.provider == "outbox" and not dry_run:
        # Writing files is not sending: recording the issue as sent would keep
        # a later real provider from ever sending it.
        warn("the 'provider' setting is outbox: this is a dry run (set provider to sendgrid or smtp to send)")
        dry_run, test_to = True, None
    real = not dry_run and not test_to
    if not dry_run and settings.secret_key.get_secret_value() == DEFAULT_SECRET:
        raise SettingsError(
            "setting 'secret_key' (digest.toml, or DIGEST_SECRET_KEY) still has its default value: "
            "anyone could forge unsubscribe links; set a long random secret before sending"
        )
    from digest.issue import issue_frequencies

    whole = bool(issue_key or options.get("since") or options.get("until"))
    frequencies, audience = issue_frequencies(settings, options.get("list_name"), whole=whole, as_subscriber=as_subscriber if test_to else None)
    if test_to:  # one test message: the issue of the first frequency (or of --as-subscriber's)
        frequencies = frequencies[:1]
    incomplete = False
    for frequency in frequencies:
        # A dry run of several frequencies writes each issue into its own outbox folder.
        target = settings.model_copy(update={"outbox": Path(settings.outbox) / frequency}) if dry_run and len(frequencies) > 1 else settings
        report = _send_one_issue(
            target, frequency, dry_run=dry_run, real=real, issue_key=issue_key, resend_unknown=resend_unknown, include_sent=include_sent,
            not_after=not_after, test_to=test_to, as_subscriber=as_subscriber, force=force, as_json=as_json, options=options,
            audience=audience,
        )
        incomplete = incomplete or (report is not None and not report.complete)
    if incomplete:
        raise click.exceptions.Exit(1)


def _send_one_issue(
    settings: Settings, frequency, *, dry_run, real, issue_key, resend_unknown, include_sent, not_after, test_to, as_subscriber, force, as_json, options,
    audience,
):
    """Plan, check and send the issue of ``frequency`` (None: everyone);
    print its summary and return its report (None when there was nothing to
    send or it was a test). Raises what ``send`` documents."""
    from digest.delivery import check_not_too_late, render_issue, send_issue
    from digest.issue import plan_issue, resume_or_new
    from digest.ledger import Ledger
    from digest.providers import get_provider

    # The ledger file is created only when something is sent: a refused or
    # empty run leaves no trace.
    ledger = Ledger.from_settings(settings) if real and Path(settings.ledger).exists() else None
    try:
        request = issue_request(settings, **options, key=issue_key, frequency=frequency)
        if ledger is not None:
            request = resume_or_new(request, ledger, settings, include_sent=include_sent)
        issue = plan_issue(settings, request, audience=audience)
        report_planning(issue)
        if not issue.subscribers:
            # A list that reads as nobody is a broken list, not a quiet week: cron must see it.
            why = f"{len(issue.audience_problems)} problems above" if issue.audience_problems else "it is empty"
            raise SettingsError(f"no subscriber to send to in {settings.subscribers} ({why})")
        if not issue.selection.articles or not issue.variants:
            _say(as_json, {"issue": issue.context.key, "status": "nothing to send"}, f"{issue.context.key}: nothing to send")
            return None
        if real:
            check_not_too_late(issue, not_after or settings.not_after)
            if issue.scheduled_at and issue.scheduled_at > datetime.now(UTC):
                warn(f"issue {issue.context.key} is scheduled for {issue.scheduled_at.astimezone(settings.tz):%Y-%m-%d %H:%M}; sending it now, as --as-of asks")
        rendered = render_issue(issue, settings)
        if report_findings(issue, rendered, settings) and not dry_run and not force:
            raise UsageError("the built-in checks found errors (above); fix them, or send with --force")
        if test_to:
            _send_test(issue, rendered, settings, test_to, as_subscriber)
            return None
        if real:
            from digest.archive import keep_page

            if ledger is None:
                ledger = Ledger.from_settings(settings)
            keep_page(ledger, issue, settings)  # the archive's page: the issue as it went out
        provider = get_provider(settings, dry_run=dry_run)
        with _progress(issue.recipient_count, as_json, dry_run) as progress:
            report = send_issue(
                issue,
                provider,
                settings,
                ledger=ledger,
                scheduled_at=issue.scheduled_at,
                resend_unknown=resend_unknown,
                rendered=rendered,
                progress=progress,
            )
    finally:
        if ledger is not None:
            ledger.close()
    _print_send_report(report, issue, settings, dry_run=dry_run, as_json=as_json)
    if report.stopped:
        raise ProviderAuthError(report.stopped)
    return report




def _say(as_json: bool, data: dict, text: str) -> None:
    click.echo(json.dumps(data, ensure_ascii=False) if as_json else text)


def _send_test(issue, rendered, settings: Settings, address: str, as_subscriber: str | None) -> None:
    from digest.delivery import send_test

    person, number, subject = send_test(issue, rendered, settings, address, as_subscriber)
    click.echo(f"test message sent to {address} as {person.email} (variant {number}): {subject}")


@contextlib.contextmanager
def _progress(total: int, quiet: bool, dry_run: bool):
    """A progress bar on a terminal; plain log lines (one per batch) for cron;
    neither for a dry run, which writes files in a moment and says so after."""
    if dry_run:
        yield None
        return
    if quiet or not sys.stdout.isatty():
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
        yield None
        return
    with click.progressbar(length=total, label="sending", file=sys.stderr) as bar:
        yield bar.update


def _print_send_report(report, issue, settings: Settings, *, dry_run: bool, as_json: bool) -> None:
    summary = {
        "issue": report.issue_key,
        "provider": report.provider,
        "dry_run": dry_run,
        "subject": report.variants[0].subject if report.variants else None,
        "articles": len(issue.selection.articles),
        "variants": [
            {"number": v.number, "key": v.key, "articles": v.articles, "recipients": v.recipients, "html_kb": round(v.html_bytes / 1024, 1), "notes": list(v.notes)}
            for v in report.variants
        ],
        "recipients": report.recipients,
        "counts": report.counts,
        "sent_now": report.sent_now,
        "requests": report.requests,
        "recovered_unknown": report.recovered,
        "problems": [{"email": p.email, "status": p.status.value, "reason": p.last_error} for p in report.problems],
        "skipped": [p.email for p in report.skipped],
        "stopped": report.stopped,
        "gave_up": report.gave_up,
    }
    if as_json:
        click.echo(json.dumps(summary, ensure_ascii=False))
        return
    shown = 20  # a cron log needs the count and a few examples; digest status lists them all
    for problem in report.problems[:shown]:
        click.echo(f"{problem.status.value}: {problem.email}: {problem.last_error or ''}")
    if len(report.problems) > shown:
        click.echo(f"... and {len(report.problems) - shown} more: digest status --issue {report.issue_key} lists them all")
    if report.skipped:
        click.echo(f"{len(report.skipped)} left out on purpose (unsubscribed, bounced or removed while the issue went out)")
    if report.gave_up:
        click.echo(f"stopped early: {report.gave_up}; the rest stay queued: run the same command again later")
    if report.recovered:
        click.echo(f"{report.recovered} recipients were in flight when a previous run stopped: now unknown (see digest status; --resend-unknown sends them)")
    sizes = ", ".join(f"{v.html_bytes / 1024:.1f}" for v in report.variants)
    counts = ", ".join(f"{n} {status}" for status, n in sorted(report.counts.items()))
    click.echo(f"subject: {summary['subject']}")
    where = f" -> {settings.outbox}/index.html" if report.provider == "outbox" else ""
    click.echo(
        f"{'dry run' if dry_run else 'issue ' + report.issue_key}: {report.recipients} recipients in "
        f"{len(report.variants)} variants, {summary['articles']} articles, HTML {sizes} KB; {counts}"
        f"{'' if dry_run else f' ({report.sent_now} handed to {report.provider} in this run)'}{where}"
    )


@click.command()
@click.option("--issue", "issue_key", metavar="KEY", help="Only this issue (default: every issue, newest first).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--ledger", type=click.Path(dir_okay=False, path_type=Path), help="Ledger file (default: the 'ledger' setting).")
def status(issue_key, as_json, ledger) -> None:
    """Show what each issue's send did: counts by status, and the
    recipients rejected, unknown or still retryable, with reasons.

    \b
    Examples:
      digest status
      digest status --issue 2026-W48 --json
    """
    from digest.ledger import Ledger

    settings = load_settings(ledger=ledger)
    if not Path(settings.ledger).exists():
        raise DigestError(f"no ledger at {settings.ledger}: nothing has been sent yet")
    with Ledger.from_settings(settings) as book:
        records = [book.get_issue(issue_key)] if issue_key else book.issues()
        if issue_key and records[0] is None:
            raise DigestError(f"no issue {issue_key} in {settings.ledger}")
        issues = []
        for record in records:
            problems = [*book.problems(record.key), *[r for r in book.pending(record.key) if r.status.value == "retryable"]]
            issues.append(
                {
                    "issue": record.key,
                    "status": record.status,
                    "created_at": record.created_at.isoformat(),
                    "scheduled_at": record.scheduled_at.isoformat() if record.scheduled_at else None,
                    "articles": len(record.article_ids),
                    "counts": {s.value: n for s, n in book.counts(record.key).items() if n},
                    "problems": [{"email": p.email, "status": p.status.value, "attempts": p.attempts, "reason": p.last_error} for p in problems],
                }
            )
    if as_json:
        click.echo(json.dumps({"issues": issues}, ensure_ascii=False))
        return
    for entry in issues:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(entry["counts"].items())) or "no recipients"
        click.echo(f"{entry['issue']} ({entry['status']}, {entry['articles']} articles): {counts}")
        for problem in entry["problems"]:
            click.echo(f"  {problem['status']}: {problem['email']} after {problem['attempts']} attempt(s): {problem['reason'] or ''}")


@click.command("schedule")
@click.option("--as-of", "as_of", metavar="WHEN", help="Reference time (default now); a naive time is in the site's timezone.")
@click.option("--subscribers", type=click.Path(path_type=Path), metavar="FILE_OR_DIR", help="A subscriber CSV or a folder of them; replaces the 'subscribers' setting.")
@click.option("--count", type=click.IntRange(1, 50), default=3, show_default=True, help="How many coming issues to list per frequency.")
def schedule(as_of, subscribers, count) -> None:
    """Each frequency readers chose (daily, weekly, monthly): its send time,
    how many readers it has, the issue a send now would handle, and the
    next issues with their keys and send times (in the site's timezone and
    in UTC).

    \b
    Examples:
      digest schedule
      digest schedule --as-of 2026-11-30 --count 5
    """
    from digest.audience import load_audience
    from digest.frequencies import frequency_of
    from digest.moments import parse_as_of
    from digest.schedule import CADENCES, current_issue, next_issues, schedule_of

    settings = load_settings(subscribers=subscribers)
    moment = parse_as_of(as_of, settings.tz) if as_of else datetime.now(UTC)
    readers: dict[str, int] = {}
    try:
        for reader in load_audience(settings).subscribers:
            readers[frequency_of(reader, settings)] = readers.get(frequency_of(reader, settings), 0) + 1
    except DigestError as exc:  # no list yet: the times still show
        warn(str(exc))
    entries = [settings.schedule] if isinstance(settings.schedule, str) else settings.schedule
    named = {entry.split()[0].lower() for entry in entries}
    for cadence in CADENCES:
        if cadence not in named and not readers.get(cadence):
            continue
        plan = schedule_of(settings.schedule, cadence)
        origin = "" if cadence in named else " (default time: not in the schedule setting)"
        now = current_issue(plan, moment, settings.tz)
        click.echo(f"{cadence}: {readers.get(cadence, 0)} readers{origin}; a send now handles {now.key} ({_when(now.scheduled_at, settings)})")
        for upcoming in next_issues(plan, moment, settings.tz, count):
            click.echo(f"  next {upcoming.key}: {_when(upcoming.scheduled_at, settings)}")


def _when(moment: datetime, settings: Settings) -> str:
    local = moment.astimezone(settings.tz)
    return f"{local:%a %Y-%m-%d %H:%M} {settings.timezone}, {moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
