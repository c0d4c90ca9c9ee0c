"""The command line. Commands parse options, call plain functions of the
pipeline and print; every error a user can fix is one line on stderr and a
documented exit code (see README.md):

0 everything went out, or nothing to send; 1 some recipients rejected or
unknown, or problems found; 2 bad usage or settings; 3 the provider refused
our credentials or sender; 75 another send holds the ledger.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sys
import webbrowser
from datetime import UTC, datetime
from pathlib import Path

import click

from digest.errors import DigestError, ProviderAuthError, SettingsError, UsageError
from digest.settings import DEFAULT_SECRET, Settings, load_settings


class DigestGroup(click.Group):
    """Turns a :class:`DigestError` into one line on stderr and its exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DigestError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            ctx.exit(exc.exit_code)
        except BrokenPipeError:  # `digest status | head`: the reader went away
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (Python's advice: no second error at exit)
            ctx.exit(1)
        except OSError as exc:  # a folder that cannot be written, a file where a folder was expected
            where = f": {exc.filename}" if exc.filename else ""
            click.secho(f"error: {exc.strerror or exc}{where}", fg="red", err=True)
            ctx.exit(1)
        except Exception as exc:  # a bug: still one line, and never a secret
            if os.environ.get("DIGEST_DEBUG"):
                raise
            click.secho(f"error: unexpected {type(exc).__name__}: {_redacted(str(exc))} (DIGEST_DEBUG=1 shows the traceback)", fg="red", err=True)
            ctx.exit(1)


def _redacted(text: str) -> str:
    """``text`` without any secret of the settings (an API key in an error message)."""
    try:
        settings = load_settings()
    except DigestError:
        return text
    for secret in (settings.sendgrid_api_key, settings.smtp_password, settings.secret_key):
        value = secret.get_secret_value() if secret is not None else ""
        if len(value) >= 4:
            text = text.replace(value, "***")
    return text


@click.group(cls=DigestGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="digest")
def cli() -> None:
    """Build a newsletter digest from your articles and send it.

    \b
    Examples:
      digest articles --since 30d            what would go into the issue
      digest preview --tag privacy --open    see it as a privacy reader will
      digest send --dry-run                  write every message to ./outbox
    Settings come from digest.toml, .env and DIGEST_* variables.
    """


def main() -> None:
    """The console script ``digest`` and ``python -m digest``."""
    cli(prog_name="digest")


# Options shared by the commands that plan an issue -----------------------------------------


# Shared by the commands that plan an issue and those that read or edit lists.
subscribers_option = click.option(
    "--subscribers",
    "subscribers",
    type=click.Path(path_type=Path),
    metavar="FILE_OR_DIR",
    help="A subscriber CSV or a folder of them; replaces the 'subscribers' setting.",
)
list_option = click.option(
    "--list",
    "list_name",
    metavar="NAME",
    help="The subscriber list (file stem); default: the 'default_list' setting, else the only list, else all.",
)


def source_options(command):
    """--content and --subscribers: override the settings for a one-off run;
    --list: which subscriber list (passed on as ``list_name``)."""

    @click.option(
        "--content",
        "content",
        multiple=True,
        metavar="PATH_OR_URL",
        help="A Markdown folder, a feed file or an http(s) feed URL (repeatable); replaces the 'sources' setting.",
    )
    @subscribers_option
    @list_option
    @functools.wraps(command)
    def wrapper(*args, content, subscribers, **kwargs):
        overrides = {"sources": list(content) or None, "subscribers": subscribers}
        return command(*args, settings=load_settings(**overrides), **kwargs)

    return wrapper


def selection_options(command):
    """--as-of, --since, --until, --tag, --exclude-tag, --limit, --intro."""
    options = [
        click.option("--as-of", "as_of", metavar="WHEN", help="Reference time (default now): the issue is the one the schedule places at or before it. A date means the end of that day (2026-11-30: that Monday's issue); or a time, 2026-11-30T08:00. Naive times are in the site's timezone."),
        click.option("--since", metavar="WHEN", help="Start of the window: a duration before --as-of (7d, 24h) or a date. Default: the issue's window from the schedule (previous send to this one)."),
        click.option("--until", metavar="WHEN", help="End of the window (default --as-of)."),
        click.option("--tag", "tags", multiple=True, metavar="TAG", help="Only articles with this tag (repeatable: any of them)."),
        click.option("--exclude-tag", "exclude_tags", multiple=True, metavar="TAG", help="Leave out articles with this tag (repeatable)."),
        click.option("--limit", type=click.IntRange(min=1), help="At most this many articles, newest first."),
        click.option("--intro", metavar="FILE_OR_TEXT", help="An editor's note in Markdown (a file path or the text itself) shown at the top."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def issue_request(settings: Settings, *, as_of, since, until, tags, exclude_tags, limit, intro, **extra):
    """Turn selection options into an :class:`digest.issue.IssueRequest`."""
    from digest.issue import IssueRequest
    from digest.selection import parse_as_of

    moment = parse_as_of(as_of, settings.tz) if as_of else datetime.now(UTC)
    intro_text = None
    if intro:
        path = Path(intro)
        if path.is_file():
            intro_text = path.read_text(encoding="utf-8")
        elif path.suffix.lower() in {".md", ".markdown", ".txt"}:
            raise UsageError(f"--intro {intro}: no such file")
        else:
            intro_text = intro
    return IssueRequest(
        as_of=moment,
        since=since,
        until=until,
        tags=tuple(tags),
        exclude_tags=tuple(exclude_tags),
        limit=limit,
        intro_markdown=intro_text,
        **extra,
    )


def warn(message: str) -> None:
    click.secho(f"warning: {message}", fg="yellow", err=True)


def report_planning(issue) -> None:
    """Print what planning skipped: unreadable sources, undated articles, bad rows."""
    for line in issue.warnings():
        warn(line)


def report_findings(issue, rendered, settings: Settings) -> bool:
    """Print the built-in checks of every variant (:func:`digest.lint.lint_issue`)
    as warnings; return whether any is an error."""
    from digest.lint import has_errors, lint_issue

    errors = False
    for variant, findings in zip(issue.variants, lint_issue(issue, rendered, settings), strict=True):
        for finding in findings:
            where = f" ({finding.where})" if finding.where else ""
            colour = "red" if finding.severity == "error" else "yellow"
            click.secho(f"{finding.severity}: variant {variant.number}: {finding.message}{where}", fg=colour, err=True)
        errors = errors or has_errors(findings)
    return errors


# Commands --------------------------------------------------------------------------------


@cli.command()
@source_options
@selection_options
def articles(settings: Settings, **options) -> None:
    """List the articles an issue would hold, newest first, and why.

    \b
    Examples:
      digest articles
      digest articles --since 30d --tag privacy
      digest articles --content ~/blog/content --content https://example.org/feed.xml
    """
    from digest.issue import plan_issue

    issue = plan_issue(settings, issue_request(settings, **options), subscribers=[])
    report_planning(issue)
    selection = issue.selection
    click.echo(
        f"window {selection.window.start.isoformat()} .. {selection.window.end.isoformat()}: "
        f"{len(selection.articles)} of {selection.considered} articles selected"
    )
    for article in selection.articles:
        published = article.published.astimezone(settings.tz).strftime("%Y-%m-%d %H:%M")
        tags = ", ".join(article.tags) or "(no tags)"
        click.echo(f"{published}  {article.title}\n                  tags: {tags}  source: {article.source}")
    for article in selection.already_sent:
        click.echo(f"already sent, left out: {article.title}")


@cli.command()
@source_options
@selection_options
@click.option("--for-tags", "for_tags", metavar="TAGS", help="Preview as a subscriber with these tags (;-separated).")
@click.option("--subscriber", metavar="EMAIL", help="Preview as this subscriber of the list.")
@click.option("--variant", "variant_number", type=click.IntRange(min=1), metavar="N", help="Preview variant N as `digest audience` lists it, as its first subscriber gets it.")
@click.option("--text", "as_text", is_flag=True, help="The plain-text part instead of the HTML.")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="File to write (default: preview.html or preview.txt in the outbox folder).")
@click.option("--open", "open_browser", is_flag=True, help="Open the preview in the browser.")
@click.option("--screenshot", "screenshot_file", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE.png", help="Save a picture of the HTML taken in headless Chromium instead of the HTML file.")
@click.option("--width", type=click.IntRange(200, 2000), default=600, show_default=True, help="Width of the screenshot in CSS pixels (375: a phone).")
@click.option("--dark", is_flag=True, help="Take the screenshot in dark mode (prefers-color-scheme: dark).")
@click.option("--serve", is_flag=True, help="Run a local preview server of every variant instead (Ctrl-C stops it).")
@click.option("--port", type=click.IntRange(1, 65535), default=8026, show_default=True, help="Port of --serve, on 127.0.0.1.")
def preview(settings: Settings, for_tags, subscriber, variant_number, as_text, output, open_browser, screenshot_file, width, dark, serve, port, **options) -> None:
    """Render the issue as one subscriber would get it, to a file; or take
    its picture; or serve every variant for editors to look at.

    \b
    Examples:
      digest preview --open
      digest preview --for-tags "privacy;security" --text
      digest preview --subscriber ada@example.org -o ada.html
      digest preview --variant 2 --text
      digest preview --screenshot phone.png --width 375 --dark
      digest preview --serve --port 8026     then open http://127.0.0.1:8026/
    """
    from digest.audience import Subscriber, parse_tags
    from digest.issue import plan_issue

    if serve:
        from digest.preview import serve_preview

        # Settings are read again on every page load, so digest.toml edits show.
        params = click.get_current_context().params
        overrides = {"sources": list(params["content"]) or None, "subscribers": params["subscribers"]}
        click.echo(f"preview on http://127.0.0.1:{port}/ (reload the page after an edit; Ctrl-C stops)")
        serve_preview(lambda: load_settings(**overrides), lambda loaded: issue_request(loaded, **options), port)
        return
    if variant_number and (subscriber or for_tags):
        raise UsageError("--variant goes with neither --subscriber nor --for-tags")
    if variant_number:
        from dataclasses import replace

        # The real audience, numbered as `digest audience` numbers it; then only that variant.
        issue = plan_issue(settings, issue_request(settings, **options))
        chosen = [v for v in issue.variants if v.number == variant_number]
        if not chosen:
            raise UsageError(f"--variant {variant_number}: this issue has {len(issue.variants)} variant(s) (see digest audience)")
        issue, person = replace(issue, variants=chosen), chosen[0].subscribers[0]
    elif subscriber:
        from digest.audience import load_audience

        audience = load_audience(settings, options.get("list_name"))
        everyone = audience.subscribers + [s for s, _ in audience.suppressed]
        person = next((s for s in everyone if s.key == subscriber.strip().casefold()), None)
        if person is None:
            raise DigestError(f"no subscriber {subscriber} in {settings.subscribers}")
    else:
        person = Subscriber(email="preview@example.org", name="Reader", tags=frozenset(parse_tags(for_tags or "")), list_name="preview", line=0)
    if not variant_number:
        issue = plan_issue(settings, issue_request(settings, **options), subscribers=[person])
    report_planning(issue)
    if not issue.variants:
        click.echo("nothing to send: no article in the window matches")
        return
    from digest.delivery import render_issue
    from digest.rendering import personalize
    from digest.unsubscribe import recipient_for

    rendered = render_issue(issue, settings)[0]
    html_part, text_part = personalize(rendered, recipient_for(person, settings))
    body = text_part if as_text else html_part
    if screenshot_file:
        from digest.preview import screenshot

        target = screenshot(html_part, screenshot_file, width=width, dark=dark)
    else:
        target = output or Path(settings.outbox) / ("preview.txt" if as_text else "preview.html")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(body, encoding="utf-8")
    click.echo(f"subject: {rendered.subject}")
    click.echo(f"preheader: {rendered.preheader}")
    click.echo(f"{len(issue.variants[0].articles)} articles, {len(body.encode('utf-8')) / 1024:.1f} KB -> {target}")
    for note in rendered.notes:
        click.echo(f"size budget: {note}")
    if open_browser:
        webbrowser.open(target.resolve().as_uri())


@cli.command()
@click.argument("out_dir", metavar="DIR", type=click.Path(file_okay=False, path_type=Path))
@click.option("--ledger", type=click.Path(dir_okay=False, path_type=Path), help="Ledger file of the sent issues (default: the 'ledger' setting).")
def archive(out_dir, ledger) -> None:
    """Write the web archive of every issue that went out into DIR: a page
    per issue (the "view in browser" target, published at archive_url),
    index.html and an Atom feed, feed.xml. A page is the issue as it was
    sent (digest send keeps it in the ledger); an issue sent before pages
    were kept is rendered again from the articles still in the sources.

    \b
    Examples:
      digest archive public/archive
      digest archive site/letters --ledger /var/lib/digest/digest.db
    """
    from digest.archive import write_archive

    settings = load_settings(ledger=ledger)
    result = write_archive(Path(settings.ledger), out_dir, settings)
    for line in result.warnings:
        warn(line)
    click.echo(f"{len(result.pages)} issues -> {out_dir / 'index.html'}, {out_dir / 'feed.xml'}")


@cli.command()
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
    from digest.delivery import check_not_too_late, render_issue, send_issue
    from digest.issue import plan_issue, resume_or_new
    from digest.ledger import Ledger
    from digest.providers import get_provider

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
    # The ledger file is created only when something is sent: a refused or
    # empty run leaves no trace.
    ledger = Ledger.from_settings(settings) if real and Path(settings.ledger).exists() else None
    try:
        request = issue_request(settings, **options, key=issue_key)
        if ledger is not None:
            request = resume_or_new(request, ledger, settings, include_sent=include_sent)
        issue = plan_issue(settings, request)
        report_planning(issue)
        if not issue.subscribers:
            # A list that reads as nobody is a broken list, not a quiet week: cron must see it.
            why = f"{len(issue.audience_problems)} problems above" if issue.audience_problems else "it is empty"
            raise SettingsError(f"no subscriber to send to in {settings.subscribers} ({why})")
        if not issue.selection.articles or not issue.variants:
            _say(as_json, {"issue": issue.context.key, "status": "nothing to send"}, "nothing to send")
            return
        if real:
            check_not_too_late(issue, not_after or settings.not_after)
            if issue.scheduled_at and issue.scheduled_at > datetime.now(UTC):
                warn(f"issue {issue.context.key} is scheduled for {issue.scheduled_at.astimezone(settings.tz):%Y-%m-%d %H:%M}; sending it now, as --as-of asks")
        rendered = render_issue(issue, settings)
        if report_findings(issue, rendered, settings) and not dry_run and not force:
            raise UsageError("the built-in checks found errors (above); fix them, or send with --force")
        if test_to:
            _send_test(issue, rendered, settings, test_to, as_subscriber)
            return
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
    if not report.complete:
        raise click.exceptions.Exit(1)


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


@cli.command()
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


@cli.command()
@source_options
@selection_options
def lint(settings: Settings, **options) -> None:
    """Run the built-in checks on every variant of the issue: HTML size
    against Gmail's clipping, images without alt or size, non-https or
    relative links, template leftovers, missing text part, missing
    unsubscribe link or headers. Exit 1 when any is an error.

    \b
    Examples:
      digest lint
      digest lint --as-of 2026-11-30 --content drafts/
    """
    from digest.delivery import render_issue
    from digest.issue import plan_issue

    issue = plan_issue(settings, issue_request(settings, **options))
    report_planning(issue)
    if not issue.variants:
        click.echo("nothing to send")
        return
    errors = report_findings(issue, render_issue(issue, settings), settings)
    click.echo(f"{len(issue.variants)} variants checked: {'errors found' if errors else 'no errors'}")
    if errors:
        raise click.exceptions.Exit(1)


@cli.command()
@source_options
@selection_options
def audience(settings: Settings, **options) -> None:
    """Show each variant of the issue: the tags that chose it, its article
    count and its number of subscribers (after suppressions).

    \b
    Examples:
      digest audience
      digest audience --as-of 2026-11-30 --list garden
    """
    from digest.issue import plan_issue

    issue = plan_issue(settings, issue_request(settings, **options))
    report_planning(issue)
    for variant in issue.variants:
        tags = ", ".join(sorted(variant.tags)) or "every tag"
        click.echo(f"variant {variant.number} [{variant.key}]: {len(variant.articles)} articles, {len(variant.subscribers)} subscribers ({tags})")
    left_out = len(issue.subscribers) - issue.recipient_count
    click.echo(f"{issue.recipient_count} recipients in {len(issue.variants)} variants; {left_out} subscribers get nothing this time")


# Subscribers, suppressions and the web app ------------------------------------------------------


def list_options(command):
    """--subscribers and --list for the commands that read or edit lists."""

    @subscribers_option
    @list_option
    @functools.wraps(command)
    def wrapper(*args, subscribers, **kwargs):
        return command(*args, settings=load_settings(subscribers=subscribers), **kwargs)

    return wrapper


def _write_target(settings: Settings, list_name: str | None) -> Path:
    from digest.audience import list_file

    return list_file(Path(settings.subscribers), list_name, settings.default_list)


@cli.group()
def subscribers() -> None:
    """Check, list and edit subscriber lists (CSV files in subscribers/).

    \b
    Examples:
      digest subscribers check
      digest subscribers list --list garden
      digest subscribers add ada@example.org --name "Ada" --tags "roses;bees"
      digest subscribers import mailchimp-export.csv --list garden
    """


@subscribers.command("check")
@list_options
def subscribers_check(settings: Settings, list_name) -> None:
    """Validate the list(s): print each bad row and duplicate with its file
    and line; exit 1 if there is any.

    \b
    Examples:
      digest subscribers check
      digest subscribers check --list garden
    """
    from digest.audience import choose_lists, load_subscribers

    files = choose_lists(Path(settings.subscribers), list_name, settings.default_list)
    found, problems = load_subscribers(Path(settings.subscribers), list_name=list_name, default_list=settings.default_list)
    for problem in problems:
        click.echo(str(problem))
    click.echo(f"{len(found)} valid subscribers, {len(problems)} problems in {', '.join(str(f) for f in files) or 'no list'}")
    if problems:
        raise click.exceptions.Exit(1)


@subscribers.command("list")
@list_options
@click.option("--ledger", type=click.Path(path_type=Path), help="Ledger file with the suppressions (default: the 'ledger' setting).")
def subscribers_list(settings: Settings, list_name, ledger) -> None:
    """The effective audience: who gets the next issue, with their tags
    (stored preferences applied), then the suppressed, marked as such.

    \b
    Examples:
      digest subscribers list
      digest subscribers list --list garden | grep suppressed
    """
    from digest.audience import load_audience

    audience = load_audience(settings, list_name, ledger=ledger)
    for problem in audience.problems:
        warn(f"subscriber skipped: {problem}")
    for person in audience.subscribers:
        click.echo(f"{person.email}\t{person.name}\t{';'.join(sorted(person.tags)) or '(every tag)'}\t{person.list_name}")
    for person, why in audience.suppressed:
        click.echo(f"{person.email}\t{person.name}\tsuppressed: {why.reason} ({why.source}, {why.created_at:%Y-%m-%d})\t{person.list_name}")
    click.echo(f"{len(audience.subscribers)} subscribers, {len(audience.suppressed)} suppressed", err=True)


@subscribers.command("add")
@list_options
@click.argument("email")
@click.option("--name", default="", help="The subscriber's name.")
@click.option("--tags", default="", metavar="TAGS", help="Tags, ;-separated (none: every article).")
def subscribers_add(settings: Settings, list_name, email, name, tags) -> None:
    """Add EMAIL at the end of a list (created if absent); other rows are
    left byte for byte.

    \b
    Examples:
      digest subscribers add ada@example.org --name "Ada Lovelace" --tags "roses;bees"
      digest subscribers add bob@example.org --list kitchen
    """
    from digest.audience import add_subscriber

    target = _write_target(settings, list_name)
    added = add_subscriber(target, email, name, [tags])
    click.echo(f"added {added.email} to {target}")


@subscribers.command("remove")
@list_options
@click.argument("email")
def subscribers_remove(settings: Settings, list_name, email) -> None:
    """Remove EMAIL's row from a list (other rows stay byte for byte). To
    stop mail to an address whatever the lists say, use
    `digest suppressions add` instead.

    \b
    Example:
      digest subscribers remove ada@example.org --list garden
    """
    from digest.audience import remove_subscriber

    target = _write_target(settings, list_name)
    removed = remove_subscriber(target, email)
    click.echo(f"removed {removed} row(s) of {email.strip()} from {target}")


@subscribers.command("import")
@list_options
@click.argument("file", type=click.Path(path_type=Path))
def subscribers_import(settings: Settings, list_name, file) -> None:
    """Merge FILE (a CSV: ours, or an export from another service, columns
    matched by name such as "Email Address", "First Name", "Tags") into a
    list. Known addresses are left as they are; people whose status says
    they left (unsubscribed, cleaned, complained) are not imported and are
    recorded as suppressions, so they are never mailed even if they are on
    the list already; bad rows are listed with their lines.

    \b
    Example:
      digest subscribers import ~/Downloads/members_export.csv --list garden
    """
    from digest.audience import import_subscribers

    target = _write_target(settings, list_name)
    result = import_subscribers(target, file, ledger=Path(settings.ledger))
    for problem in result.problems:
        warn(f"not imported: {problem}")
    click.echo(result.summary(target))


@subscribers.command("export")
@list_options
@click.option("-o", "--output", type=click.Path(path_type=Path), help="File to write (atomically); default: standard output.")
def subscribers_export(settings: Settings, list_name, output) -> None:
    """Write the audience as CSV (email,name,tags,list,status): subscribers
    with their effective tags, and suppressed addresses with the reason as
    status, so another service does not mail people who left.

    \b
    Examples:
      digest subscribers export --list garden -o garden-export.csv
      digest subscribers export > everyone.csv
    """
    from digest.audience import export_audience, load_audience, write_atomic

    text = export_audience(load_audience(settings, list_name))
    if output:
        write_atomic(output, text.encode("utf-8"))
        click.echo(f"wrote {output}")
    else:
        click.echo(text, nl=False)


@cli.group()
def suppressions() -> None:
    """Addresses that are never mailed, whatever the lists say (kept in the ledger).

    \b
    Examples:
      digest suppressions list
      digest suppressions add ada@example.org --reason manual
      digest suppressions remove ada@example.org
    """


def _ledger_option(command):
    return click.option("--ledger", type=click.Path(path_type=Path), help="Ledger file (default: the 'ledger' setting).")(command)


@suppressions.command("list")
@_ledger_option
@click.option("--list", "list_name", metavar="NAME", help="Only those that apply to this list (its own and the global ones).")
def suppressions_list(ledger, list_name) -> None:
    """Every suppression, oldest first: address, reason, source, list, time.

    \b
    Example:
      digest suppressions list --list garden
    """
    from digest import suppressions as store

    path = ledger or load_settings().ledger
    found = store.list_suppressions(path, list_name) if Path(path).is_file() else []
    for item in found:
        click.echo(f"{item.address}\t{item.reason}\t{item.source}\t{item.list_name or '(every list)'}\t{item.created_at.isoformat()}")
    click.echo(f"{len(found)} suppressions", err=True)


@suppressions.command("add")
@_ledger_option
@click.argument("email")
@click.option("--reason", type=click.Choice(["manual", "unsubscribed", "bounced", "spam-report"]), default="manual", show_default=True)
@click.option("--list", "list_name", metavar="NAME", help="Only for this list (default: every list).")
def suppressions_add(ledger, email, reason, list_name) -> None:
    """Never mail EMAIL again (on every list, or on --list NAME).

    \b
    Example:
      digest suppressions add ada@example.org --reason bounced
    """
    from digest import suppressions as store
    from digest.audience import normalize_address

    address = normalize_address(email)
    added = store.add(ledger or load_settings().ledger, address, reason, "cli", list_name)
    click.echo(f"suppressed {address} ({reason}, {list_name or 'every list'})" if added else f"{address} was already suppressed")


@suppressions.command("remove")
@_ledger_option
@click.argument("email")
@click.option("--list", "list_name", metavar="NAME", help="Only the suppression for this list (default: all of EMAIL's).")
def suppressions_remove(ledger, email, list_name) -> None:
    """Lift EMAIL's suppressions so the lists apply again.

    \b
    Example:
      digest suppressions remove ada@example.org
    """
    from digest import suppressions as store

    removed = store.remove(ledger or load_settings().ledger, email, list_name)
    if not removed:
        raise DigestError(f"{email.strip()} is not suppressed{' on ' + list_name if list_name else ''}")
    click.echo(f"lifted {removed} suppression(s) of {email.strip()}")


@cli.command()
@click.option("--host", help="Address to listen on (default: the 'serve_host' setting, 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port (default: the 'serve_port' setting, 8025).")
def serve(host, port) -> None:
    """Run the web app: one-click unsubscribe (POST /unsubscribe), the
    unsubscribe and preferences pages, and SendGrid's Event Webhook
    (POST /webhooks/sendgrid). Put it behind your https site and set
    public_url to where it is reachable.

    \b
    Examples:
      digest serve
      DIGEST_PUBLIC_URL=https://news.example.org digest serve --port 9000
    """
    from digest.web import serve as run

    run(load_settings(serve_host=host, serve_port=port))
