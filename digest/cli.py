"""The command line. Commands parse options, call plain functions of the
pipeline and print; every error a user can fix is one line on stderr and a
documented exit code (see README.md):

0 everything went out, or nothing to send; 1 some recipients rejected or
unknown, or problems found; 2 bad usage or settings; 3 the provider refused
our credentials or sender; 75 another send holds the ledger.
"""

from __future__ import annotations

import functools
import webbrowser
from datetime import UTC, datetime
from pathlib import Path

import click

from digest.errors import DigestError
from digest.settings import Settings, load_settings


class DigestGroup(click.Group):
    """Turns a :class:`DigestError` into one line on stderr and its exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DigestError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            ctx.exit(exc.exit_code)


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


def source_options(command):
    """--content and --subscribers: override the settings for a one-off run."""

    @click.option(
        "--content",
        "content",
        multiple=True,
        metavar="PATH_OR_URL",
        help="A Markdown folder, a feed file or an http(s) feed URL (repeatable); replaces the 'sources' setting.",
    )
    @click.option(
        "--subscribers",
        "subscribers",
        type=click.Path(path_type=Path),
        metavar="FILE_OR_DIR",
        help="A subscriber CSV or a folder of them; replaces the 'subscribers' setting.",
    )
    @functools.wraps(command)
    def wrapper(*args, content, subscribers, **kwargs):
        overrides = {"sources": list(content) or None, "subscribers": subscribers}
        return command(*args, settings=load_settings(**overrides), **kwargs)

    return wrapper


def selection_options(command):
    """--as-of, --since, --until, --tag, --exclude-tag, --limit, --intro."""
    options = [
        click.option("--as-of", "as_of", metavar="WHEN", help="Reference time (default now), e.g. 2026-12-01 or 2026-12-01T08:00; naive times are in the site's timezone."),
        click.option("--since", metavar="WHEN", help="Start of the window: a duration before --as-of (7d, 24h) or a date. Default: 7 days before --until."),
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
    from digest.selection import parse_moment

    moment = parse_moment(as_of, settings.tz) if as_of else datetime.now(UTC)
    intro_text = None
    if intro:
        path = Path(intro)
        intro_text = path.read_text(encoding="utf-8") if path.is_file() else intro
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
    for line in issue.source_warnings:
        warn(line)
    if issue.selection.undated:
        listed = "; ".join(f"{a.title} ({a.source})" for a in issue.selection.undated)
        warn(f"{len(issue.selection.undated)} article(s) without a date left out: {listed}")
    for problem in issue.audience_problems:
        warn(f"subscriber skipped: {problem}")


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
@click.option("--text", "as_text", is_flag=True, help="The plain-text part instead of the HTML.")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="File to write (default: preview.html or preview.txt in the outbox folder).")
@click.option("--open", "open_browser", is_flag=True, help="Open the preview in the browser.")
def preview(settings: Settings, for_tags, subscriber, as_text, output, open_browser, **options) -> None:
    """Render the issue as one subscriber would get it, to a file.

    \b
    Examples:
      digest preview --open
      digest preview --for-tags "privacy;security" --text
      digest preview --subscriber ada@example.org -o ada.html
    """
    from digest.audience import Subscriber, parse_tags
    from digest.issue import plan_issue

    if subscriber:
        from digest.audience import load_subscribers

        everyone, _ = load_subscribers(Path(settings.subscribers))
        person = next((s for s in everyone if s.key == subscriber.strip().casefold()), None)
        if person is None:
            raise DigestError(f"no subscriber {subscriber} in {settings.subscribers}")
    else:
        person = Subscriber(email="preview@example.org", name="Reader", tags=frozenset(parse_tags(for_tags or "")), list_name="preview", line=0)
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
@source_options
@selection_options
@click.option("--dry-run", is_flag=True, help="Write every message to the outbox folder instead of sending.")
@click.option("--outbox", type=click.Path(path_type=Path), help="Outbox folder of the dry run (default ./outbox).")
def send(settings: Settings, dry_run, outbox, **options) -> None:
    """Send the current issue to every subscriber.

    \b
    Examples:
      digest send --dry-run                    every message as .eml in ./outbox
      digest send --dry-run --as-of 2026-12-01 next Tuesday's issue, today
    \b
    Exit codes: 0 all accepted or nothing to send; 1 some rejected or
    unknown; 2 bad usage or settings; 3 provider refused credentials or
    sender; 75 another send holds the ledger.
    """
    from digest.delivery import send_issue
    from digest.issue import plan_issue
    from digest.providers import get_provider

    if outbox:
        settings = settings.model_copy(update={"outbox": outbox})
    if not dry_run and settings.provider != "outbox":
        raise DigestError("real sending is not available yet; use --dry-run")
    issue = plan_issue(settings, issue_request(settings, **options))
    report_planning(issue)
    if not issue.selection.articles or not issue.variants:
        click.echo("nothing to send")
        return
    report = send_issue(issue, get_provider(settings, dry_run=True), settings)
    sizes = ", ".join(f"{v.html_bytes / 1024:.1f}" for v in report.variants)
    click.echo(f"subject: {report.variants[0].subject}")
    click.echo(
        f"dry run: {len(report.results)} recipients in {len(report.variants)} variants, "
        f"{len(issue.selection.articles)} articles, HTML {sizes} KB -> {settings.outbox}/index.html"
    )
