"""Options shared by the commands, the issue request they make, and the
warnings they print."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from pathlib import Path

import click

from digest.errors import SettingsError, UsageError
from digest.settings import Settings, load_settings

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
    from digest.moments import parse_as_of

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


def stop_unless_a_source_was_read(issue, settings: Settings) -> None:
    """Raise :class:`SettingsError` (exit 2) when there is no source at all
    (an empty ``sources``, e.g. ``DIGEST_SOURCES=$UNSET``), or listing each
    source and why when not one could be read: a typo in a folder or a dead
    feed is not a quiet week, for `send` as for `preview`, `articles`,
    `lint` and `audience`. Some sources failing is only the warnings
    :func:`report_planning` printed."""
    if not settings.sources:
        raise SettingsError(
            "setting 'sources' is empty: no folder or feed to read articles from "
            "(set it in digest.toml or DIGEST_SOURCES, or give --content)"
        )
    if issue.every_source_failed:
        raise SettingsError(f"no source could be read ({'; '.join(issue.sources_failed)})")


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
