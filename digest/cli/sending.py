"""Commands that send an issue and report on it: send, status."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from digest.cli.options import issue_request, report_findings, report_planning, selection_options, source_options, stop_unless_a_source_was_read, warn
from digest.errors import ProviderAuthError, SettingsError, UsageError
from digest.settings import Settings, load_settings
from digest.tokens import check_secret
from digest.words import plural


@click.command()
@source_options
@selection_options
@click.option("--dry-run", is_flag=True, help="Write every message to the outbox folder instead of sending (the ledger is not used).")
@click.option("--outbox", type=click.Path(path_type=Path), help="Outbox folder of the dry run (default: the 'outbox' setting).")
@click.option("--issue", "issue_key", metavar="KEY", help="Name the issue yourself (a special edition) instead of taking its key from the schedule.")
@click.option("--resend-unknown", is_flag=True, help="Also send to recipients whose earlier request may or may not have been taken (status unknown).")
@click.option("--retry-rejected", is_flag=True, help="Once the cause is fixed (an unverified sender, a bad template): send once more to the recipients the provider rejected in this issue.")
@click.option("--include-sent", is_flag=True, help="Select articles even if an earlier issue carried them.")
@click.option("--not-after", metavar="DURATION", help="Refuse to send when started later than this after the issue's scheduled time (e.g. 36h); default: the 'not_after' setting.")
@click.option("--test-to", metavar="ADDRESS", help="Send one test message to ADDRESS through the real provider (subject prefixed [TEST]; never recorded).")
@click.option("--as-subscriber", metavar="EMAIL", help="With --test-to: the variant and personalization of this subscriber (default: the largest variant's first).")
@click.option("--force", is_flag=True, help="Send even when the built-in checks (digest lint) find errors.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
def send(settings: Settings, dry_run, outbox, issue_key, resend_unknown, retry_rejected, include_sent, not_after, test_to, as_subscriber, force, as_json, **options) -> None:
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

    Run it from cron every hour: it sends each due issue once, otherwise
    says in one line that it went out and when the next is due. The
    window starts where the last issue that went out ended, so a missed
    or refused issue's articles go into the next one.

    \b
    Examples:
      digest send --dry-run                     every message as .eml in ./outbox
      digest send --dry-run --as-of 2026-11-30  that Monday's issue, today
      digest send --test-to me@example.org --as-subscriber ada@example.org
      digest send --not-after 36h               from cron: refuse a late send
      digest send --issue 2026-W48 --resend-unknown
      digest send --retry-rejected              after fixing the sender

    \b
    Exit codes: 0 every recipient accepted, nothing to send, or already
    sent; 1 some recipients rejected, unknown or still retryable (listed);
    2 bad usage or settings (provider outbox without --dry-run, no source
    readable, no list), errors found by the built-in checks, or too late
    (--not-after); 3 the provider refused our credentials or sender; 75
    another send holds the ledger.
    """
    if outbox:
        settings = settings.model_copy(update={"outbox": outbox})
    if dry_run and test_to:
        raise UsageError("--dry-run and --test-to do not go together")
    if settings.provider == "outbox" and not dry_run:
        # A cron job with no provider set must not "succeed" every week by writing files.
        raise SettingsError("the 'provider' setting is outbox, which only writes files: set provider to sendgrid or smtp to send, or pass --dry-run")
    real = not dry_run and not test_to
    if not dry_run:
        check_secret(settings)  # a weak key lets anyone forge unsubscribe links
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
            target, frequency, audience, dry_run=dry_run, real=real, issue_key=issue_key, resend_unknown=resend_unknown,
            retry_rejected=retry_rejected, include_sent=include_sent, not_after=not_after, test_to=test_to, as_subscriber=as_subscriber,
            force=force, as_json=as_json, options=options,
        )
        incomplete = incomplete or (report is not None and not report.complete)
    if dry_run and not force and click.get_current_context().meta.get("checks_failed"):
        # The outbox is written so the editor can look, but a dry run answers
        # as the real send would: that one stops here.
        raise UsageError("the built-in checks found errors (above): a real send would stop; fix them, or send with --force")
    if incomplete:
        raise click.exceptions.Exit(1)


def _send_one_issue(
    settings: Settings, frequency, audience, *, dry_run, real, issue_key, resend_unknown, retry_rejected, include_sent, not_after, test_to,
    as_subscriber, force, as_json, options,
):
    """Plan, check and send the issue of ``frequency`` (None: everyone) to
    ``audience`` (None: read the lists); print its summary and return its
    report (None when there was nothing to send, it had gone out already or
    it was a test). Raises what ``send`` documents."""
    from digest.ledger import Ledger, exists

    # The ledger file is created only when something is sent or refused
    # (--not-after): an empty run leaves no trace.
    ledger = Ledger.from_settings(settings) if real and exists(settings.ledger) else None
    try:
        if ledger is not None:
            # Hourly cron: most runs end here, before sources and templates are loaded.
            done = _already_sent(options["as_of"], issue_key, ledger, settings, resend_unknown or retry_rejected, frequency)
            if done is not None:
                _say(as_json, done, f"{done['issue']} already sent; next: {done['next']}")
                return None
        from digest.delivery import check_not_too_late, queue_issue, send_issue
        from digest.issue import issue_key as key_of
        from digest.providers import get_provider

        request = issue_request(settings, **options, key=issue_key, frequency=frequency)
        if ledger is not None and not ledger.exclusive:
            # A ledger many workers share: the first to take the issue's queue
            # lock plans and queues it; the others find it queued and send it
            # as it was queued, reading neither the content nor the lists.
            key = key_of(request, settings)
            with ledger.queue_lock(key):
                shown = ledger.get_issue(key)
                if shown is None or shown.queued_at is None:
                    planned = _plan(settings, request, ledger, include_sent=include_sent, not_after=not_after, force=force, as_json=as_json,
                                    audience=audience)
                    if planned is None:
                        return None
                    shown, rendered = planned
                    queue_issue(shown, ledger, rendered, scheduled_at=shown.scheduled_at)
                else:
                    check_not_too_late(shown, not_after or settings.not_after, now=request.as_of)
            report = _send_queued(ledger, key, settings, resend_unknown, retry_rejected, as_json)
        else:
            planned = _plan(settings, request, ledger, include_sent=include_sent, not_after=not_after, force=force, as_json=as_json,
                            dry_run=dry_run, test_to=test_to, as_subscriber=as_subscriber, audience=audience)
            if planned is None:
                return None
            shown, rendered = planned
            if real and ledger is None:
                ledger = Ledger.from_settings(settings)
            provider = get_provider(settings, dry_run=dry_run)
            with _progress(shown.recipient_count, as_json, dry_run) as progress:
                report = send_issue(
                    shown,
                    provider,
                    settings,
                    ledger=ledger,
                    scheduled_at=shown.scheduled_at,
                    resend_unknown=resend_unknown,
                    retry_rejected=retry_rejected,
                    rendered=rendered,
                    progress=progress,
                )
    finally:
        if ledger is not None:
            ledger.close()
    _print_send_report(report, shown, settings, dry_run=dry_run, as_json=as_json)
    if report.stopped:
        raise ProviderAuthError(report.stopped)
    return report


def _plan(settings: Settings, request, ledger, *, include_sent, not_after, force, as_json, dry_run=False, test_to=None, as_subscriber=None, audience=None):
    """Plan, render and check the issue ``request`` names, and keep its
    archive page when sending for real. Returns (issue, rendered variants),
    or None when the command is done (nothing to send, a test message sent).
    Raises :class:`UsageError`/:class:`SettingsError` as ``digest send``
    exits; a send refused by ``--not-after`` is remembered in the ledger."""
    from digest.archive import keep_page
    from digest.delivery import check_not_too_late, render_issue
    from digest.issue import plan_issue, resume_or_new

    real = not dry_run and not test_to
    if ledger is not None:
        request = resume_or_new(request, ledger, settings, include_sent=include_sent)
    issue = plan_issue(settings, request, audience=audience)
    report_planning(issue)
    stop_unless_a_source_was_read(issue, settings)  # cron must see a typo in a folder, a dead feed
    if not issue.subscribers:
        # A list that reads as nobody is a broken list, not a quiet week: cron must see it.
        why = f"{plural(len(issue.audience_problems), 'problem')} above" if issue.audience_problems else "it is empty"
        raise SettingsError(f"no subscriber to send to in {settings.subscribers} ({why})")
    if not issue.selection.articles or not issue.variants:
        data = {"issue": issue.context.key, "status": "nothing to send", "sources_failed": issue.sources_failed}
        _say(as_json, data, f"{issue.context.key}: nothing to send" if request.frequency else "nothing to send")
        return None
    if real:
        try:
            check_not_too_late(issue, not_after or settings.not_after, now=issue.context.as_of)
        except UsageError as exc:
            # Remembered, so that the next issue's window takes this one's articles in.
            lists = {person.list_name for person in issue.subscribers}
            with _opened(ledger, settings) as book:
                book.record_refusal(issue.context.key, issue.context.window_start, issue.context.window_end, lists, str(exc))
            raise
        if issue.scheduled_at and issue.scheduled_at > datetime.now(UTC):
            from digest.schedule import describe

            warn(f"issue {issue.context.key} is scheduled for {describe(issue.scheduled_at, settings.tz)}; sending it now, as --as-of asks")
    rendered = render_issue(issue, settings)
    if report_findings(issue, rendered, settings):
        if not dry_run and not force:
            raise UsageError("the built-in checks found errors (above); fix them, or send with --force")
        click.get_current_context().meta["checks_failed"] = True
    if test_to:
        _send_test(issue, rendered, settings, test_to, as_subscriber)
        return None
    if real:
        with _opened(ledger, settings) as book:
            keep_page(book, issue, settings)  # the archive's page: the issue as it went out
    return issue, rendered


@contextlib.contextmanager
def _opened(ledger, settings: Settings):
    """``ledger``, or the settings' ledger opened (and so created) for the block."""
    from digest.ledger import Ledger

    if ledger is not None:
        yield ledger
        return
    with Ledger.from_settings(settings) as opened:
        yield opened


def _send_queued(ledger, key: str, settings: Settings, resend_unknown: bool, retry_rejected: bool, as_json: bool):
    from digest.delivery import send_queued
    from digest.providers import get_provider

    total = sum(ledger.variant_counts(key).values())
    with _progress(total, as_json, False) as progress:
        return send_queued(ledger, key, get_provider(settings), settings, resend_unknown=resend_unknown, retry_rejected=retry_rejected, progress=progress)


def _already_sent(as_of: str | None, issue_key: str | None, ledger, settings: Settings, more_asked: bool, frequency: str | None = None) -> dict | None:
    """The quiet answer of an hourly cron run when the issue due at
    ``as_of`` (--as-of text; default now), or ``issue_key``, is finished and
    every recipient accepted or left out on purpose: its key and the next
    issue's time in the site's zone. None when there is something to do or
    to report, or ``more_asked`` (--resend-unknown, --retry-rejected)."""
    from digest.moments import parse_as_of
    from digest.schedule import current_issue, describe, next_issue, schedule_of

    moment = parse_as_of(as_of, settings.tz) if as_of else datetime.now(UTC)
    schedule = schedule_of(settings.schedule, frequency)  # the frequency's send time (None: the setting's first)
    scheduled = current_issue(schedule, moment, settings.tz)
    key = issue_key or scheduled.key
    record = ledger.get_issue(key)
    if record is None or record.status != "finished" or more_asked:
        return None
    if problems := ledger.problems(key):
        from digest.delivery import ON_PURPOSE

        if any(p.last_error not in ON_PURPOSE for p in problems):
            return None  # rejected or unknown recipients: the resume lists them again and exits 1
    following = next_issue(schedule, scheduled, settings.tz)
    return {
        "issue": key,
        "status": "already sent",
        "counts": {status.value: n for status, n in ledger.counts(key).items() if n},
        "sent_now": 0,
        "accepted_now": 0,
        "next": describe(following.scheduled_at, settings.tz),
        "next_issue": following.key,
        "next_at": following.scheduled_at.isoformat(),
    }


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


def _lateness(issue, settings: Settings) -> dict | None:
    """How late this send is against the issue's scheduled time (at
    ``--as-of``, default now), when it is a minute or more: ``{"seconds",
    "text", "scheduled"}``; None for an issue named with --issue or one on time."""
    from digest.schedule import describe, how_late

    if issue.scheduled_at is None:
        return None
    delay = issue.context.as_of - issue.scheduled_at
    if delay.total_seconds() < 60:
        return None
    return {"seconds": int(delay.total_seconds()), "text": how_late(delay), "scheduled": describe(issue.scheduled_at, settings.tz)}


def _print_send_report(report, issue, settings: Settings, *, dry_run: bool, as_json: bool) -> None:
    """The summary of a send; ``issue`` is the planned issue, or the
    ledger's record of it for a worker that sent it as another queued it."""
    accepted_now = report.accepted_now
    planned = hasattr(issue, "selection")
    titles = [a.title for a in issue.selection.articles] if planned else []
    start, end = (issue.context.window_start, issue.context.window_end) if planned else (issue.window_start, issue.window_end)
    late = None if dry_run or not planned else _lateness(issue, settings)
    summary = {
        "issue": report.issue_key,
        "provider": report.provider,
        "dry_run": dry_run,
        "subject": report.variants[0].subject if report.variants else None,
        "articles": len(issue.selection.articles) if planned else len(issue.article_ids),
        "article_titles": titles,
        "window": {"start": start.isoformat(), "end": end.isoformat()},
        "scheduled_at": issue.scheduled_at.isoformat() if issue.scheduled_at else None,
        "late_seconds": late["seconds"] if late else 0,
        "variants": [
            {"number": v.number, "key": v.key, "articles": v.articles, "recipients": v.recipients, "html_kb": round(v.html_bytes / 1024, 1), "notes": list(v.notes)}
            for v in report.variants
        ],
        "recipients": report.recipients,
        "counts": report.counts,
        "sent_now": report.sent_now,
        "attempted_now": report.sent_now,
        "accepted_now": accepted_now,
        "requests": report.requests,
        "recovered_unknown": report.recovered,
        "requeued_rejected": report.requeued,
        "problems": [{"email": p.email, "status": p.status.value, "reason": p.last_error} for p in report.problems],
        "skipped": [p.email for p in report.skipped],
        "sources_failed": issue.sources_failed if planned else [],
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
        click.echo(f"{plural(len(report.skipped), 'recipient')} left out on purpose (unsubscribed, bounced or removed while the issue went out)")
    if report.gave_up:
        click.echo(f"stopped early: {report.gave_up}; the rest stay queued: run the same command again later")
    if report.recovered:
        click.echo(f"{plural(report.recovered, 'recipient')} in flight when a previous run stopped: now unknown (see digest status; --resend-unknown sends them)")
    if report.requeued:
        click.echo(f"{plural(report.requeued, 'rejected recipient')} queued again (--retry-rejected)")
    sizes = ", ".join(f"{v.html_bytes / 1024:.1f}" for v in report.variants)
    counts = ", ".join(f"{n} {status}" for status, n in sorted(report.counts.items()))
    click.echo(f"subject: {summary['subject']}")
    where = f" -> {settings.outbox}/index.html" if report.provider == "outbox" else ""
    name = "dry run" if dry_run else "issue " + report.issue_key
    if late:
        name += f" ({late['text']} late: scheduled {late['scheduled']})"
    this_run = "" if dry_run else f" ({report.sent_now} attempted through {report.provider} in this run, {accepted_now} accepted)"
    click.echo(
        f"{name}: {plural(report.recipients, 'recipient')} in {plural(len(report.variants), 'variant')}, "
        f"{plural(summary['articles'], 'article')}, HTML {sizes} KB; {counts}{this_run}{where}"
    )


@click.command()
@click.option("--issue", "issue_key", metavar="KEY", help="Only this issue (default: every issue, newest first).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--ledger", metavar="FILE_OR_URL", help="Ledger file or postgresql:// URL (default: the 'ledger' setting).")
def status(issue_key, as_json, ledger) -> None:
    """Show what each issue's send did: counts by status, and the
    recipients rejected, unknown or still retryable, with reasons. Rows
    still `sending` are either being sent now (a send is in progress) or
    were interrupted in flight by a send that stopped: the next send marks
    those unknown, resent only with --resend-unknown.

    \b
    Examples:
      digest status
      digest status --issue 2026-W48 --json
    """
    from digest.ledger import Ledger, exists

    settings = load_settings(ledger=ledger)
    if not exists(settings.ledger):
        # Before the first send there is nothing to report, and nothing wrong.
        _say(as_json, {"issues": []}, f"no issues sent yet (no ledger at {settings.ledger})")
        return
    with Ledger.from_settings(settings) as book:
        records = [book.get_issue(issue_key)] if issue_key else book.issues()
        refused = [r for r in book.refusals() if not issue_key or r["issue"] == issue_key]
        if issue_key and records[0] is None:
            if refused:
                records = []
            else:
                raise UsageError(f"no issue {issue_key} in {book.name}")
        issues = []
        for record in records:
            problems = [*book.problems(record.key), *book.retryable(record.key)]
            sending_now, interrupted = book.in_flight_now(record.key)
            issues.append(
                {
                    "issue": record.key,
                    "status": record.status,
                    "created_at": record.created_at.isoformat(),
                    "scheduled_at": record.scheduled_at.isoformat() if record.scheduled_at else None,
                    "articles": len(record.article_ids),
                    "counts": {s.value: n for s, n in book.counts(record.key).items() if n},
                    # `sending` rows: a send at work, or one that stopped mid-request (see in_flight_now)
                    "in_flight": {"sending_now": sending_now, "interrupted": interrupted},
                    "problems": [{"email": p.email, "status": p.status.value, "attempts": p.attempts, "reason": p.last_error} for p in problems],
                }
            )
        running = book.send_running() or any(entry["in_flight"]["sending_now"] for entry in issues)
    if as_json:
        click.echo(json.dumps({"issues": issues, "refused": refused, "send_in_progress": running}, ensure_ascii=False))
        return
    if not issues and not refused:
        click.echo("no issues sent yet")
    for entry in refused:  # --not-after: its articles go into the next issue that goes out
        click.echo(f"{entry['issue']} (refused {entry['refused_at'][:16].replace('T', ' ')} UTC): {entry['reason']}")
    for entry in issues:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(entry["counts"].items())) or "no recipients"
        click.echo(f"{entry['issue']} ({entry['status']}, {plural(entry['articles'], 'article')}): {counts}")
        for problem in entry["problems"]:
            click.echo(f"  {problem['status']}: {problem['email']} after {plural(problem['attempts'], 'attempt')}: {problem['reason'] or ''}")
        if entry["in_flight"]["sending_now"]:
            click.echo(f"  {plural(entry['in_flight']['sending_now'], 'recipient')} being sent now: a send is in progress")
        if entry["in_flight"]["interrupted"]:
            click.echo(
                f"  {plural(entry['in_flight']['interrupted'], 'recipient')} interrupted in flight: the send stopped while their request "
                "was out, so the provider may or may not have taken them; the next `digest send` marks them unknown "
                "and does not resend them without --resend-unknown"
            )
    if running and not any(entry["in_flight"]["sending_now"] for entry in issues):
        click.echo("a send is in progress")
