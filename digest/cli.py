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
    for line in issue.warnings():
        warn(line)


def report_findings(issue, rendered, settings: Settings) -> bool:
    """Print the built-in checks of every variant (:func:`digest.lint.lint_issue`)
    as warnings; return whether any is an error."""
    from digest.lint import has_errors, lint_issue

    errors = False
    for variant, findings in zip(issue.variants, lint_issue(issue, rendered, settings), strict=True):
        for finding in findings:
            warn(f"variant {variant.number}: {finding}")
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
@click.option("--text", "as_text", is_flag=True, help="The plain-text part instead of the HTML.")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="File to write (default: preview.html or preview.txt in the outbox folder).")
@click.option("--open", "open_browser", is_flag=True, help="Open the preview in the browser.")
@click.option("--screenshot", "screenshot_file", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE.png", help="Save a picture of the HTML taken in headless Chromium instead of the HTML file.")
@click.option("--width", type=click.IntRange(200, 2000), default=600, show_default=True, help="Width of the screenshot in CSS pixels (375: a phone).")
@click.option("--dark", is_flag=True, help="Take the screenshot in dark mode (prefers-color-scheme: dark).")
@click.option("--serve", is_flag=True, help="Run a local preview server of every variant instead (Ctrl-C stops it).")
@click.option("--port", type=click.IntRange(1, 65535), default=8026, show_default=True, help="Port of --serve, on 127.0.0.1.")
def preview(settings: Settings, for_tags, subscriber, as_text, output, open_browser, screenshot_file, width, dark, serve, port, **options) -> None:
    """Render the issue as one subscriber would get it, to a file; or take
    its picture; or serve every variant for editors to look at.

    \b
    Examples:
      digest preview --open
      digest preview --for-tags "privacy;security" --text
      digest preview --subscriber ada@example.org -o ada.html
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
    if subscriber:
        from digest.audience import load_audience

        audience = load_audience(settings, options.get("list_name"))
        everyone = audience.subscribers + [s for s, _ in audience.suppressed]
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
    index.html and an Atom feed, feed.xml. Pages are rendered again from
    the articles still in the sources.

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


# Subscribers, suppressions and the web app (issue 4) ------------------------------------------


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
    list. Known addresses are left as they are; rows whose status says the
    person left are not imported; bad rows are listed with their lines.

    \b
    Example:
      digest subscribers import ~/Downloads/members_export.csv --list garden
    """
    from digest.audience import import_subscribers

    target = _write_target(settings, list_name)
    result = import_subscribers(target, file)
    for problem in result.problems:
        warn(f"not imported: {problem}")
    click.echo(
        f"imported {len(result.added)} into {target}; {result.already} already there, "
        f"{result.left} had left, {len(result.problems)} bad rows"
    )


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
