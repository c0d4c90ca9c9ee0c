"""Commands about content: what an issue holds (articles), how it looks
(preview) and whether it is safe to send (lint)."""

from __future__ import annotations

import webbrowser
from pathlib import Path

import click

from digest.cli.options import issue_request, report_findings, report_planning, selection_options, source_options, stop_unless_a_source_was_read
from digest.errors import UsageError
from digest.settings import Settings, load_settings
from digest.words import plural


@click.command()
@source_options
@selection_options
@click.option("--explain", is_flag=True, help="Also show each article's identity (guid, URL or hash) and every article left out, with why.")
def articles(settings: Settings, explain, **options) -> None:
    """List the articles an issue would hold, newest first, and why.

    With a ledger (after a send), the window is the one `digest send` would
    use: since the last issue that went out. Times are in the site's zone.

    \b
    Examples:
      digest articles
      digest articles --since 30d --tag privacy
      digest articles --explain --as-of 2026-11-30
      digest articles --content ~/blog/content --content https://example.org/feed.xml
    """
    from digest.articles import identity
    from digest.issue import plan_issue, resume_or_new
    from digest.ledger import Ledger, exists
    from digest.schedule import describe

    request = issue_request(settings, **options)
    sent_in: dict[str, str] = {}
    if exists(settings.ledger):
        with Ledger.from_settings(settings) as ledger:
            request = resume_or_new(request, ledger, settings)
            issue = plan_issue(settings, request, subscribers=[])
            if explain:
                ids = [a.id for a, _ in issue.selection.left_out] + [a.id for a in issue.selection.articles]
                sent_in = ledger.issues_of_articles(ids)
    else:
        issue = plan_issue(settings, request, subscribers=[])
    report_planning(issue)
    stop_unless_a_source_was_read(issue, settings)
    selection = issue.selection
    click.echo(
        f"window {describe(selection.window.start, settings.tz)} .. {describe(selection.window.end, settings.tz)}: "
        f"{len(selection.articles)} of {plural(selection.considered + len(issue.duplicates), 'article')} selected"
    )
    for article in selection.articles:
        published = article.published.astimezone(settings.tz).strftime("%Y-%m-%d %H:%M")
        tags = ", ".join(article.tags) or "(no tags)"
        click.echo(f"{published}  {article.title}\n                  tags: {tags}  source: {article.source}")
        if explain:
            kind, value = identity(article)
            click.echo(f"                  identity: {kind} {value}")
    if not explain:
        for article in selection.already_sent:
            click.echo(f"already sent, left out: {article.title}")
        if issue.duplicates:
            click.echo(f"{plural(len(issue.duplicates), 'duplicate')} left out (--explain lists them)")
        return
    left_out = [(a, f"duplicate of {kept.title!r} ({kept.source}, {' '.join(identity(kept))})") for a, kept in issue.duplicates]
    for article, why in selection.left_out:
        if why == "already sent" and article.id in sent_in:
            why = f"already sent in {sent_in[article.id]}"
        elif why == "outside the window":
            why = f"outside the window (published {article.published.astimezone(settings.tz):%Y-%m-%d %H:%M})"
        left_out.append((article, why))
    if left_out:
        click.echo(f"left out ({len(left_out)}):")
    for article, why in left_out:
        kind, value = identity(article)
        click.echo(f"  {article.title} ({article.source}; {kind} {value}): {why}")


@click.command()
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
    from digest.issue import plan_issue
    from digest.subscribers import Subscriber, parse_tags

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
            raise UsageError(f"--variant {variant_number}: this issue has {plural(len(issue.variants), 'variant')} (see digest audience)")
        issue, person = replace(issue, variants=chosen), chosen[0].subscribers[0]
    elif subscriber:
        from digest.audience import load_audience

        audience = load_audience(settings, options.get("list_name"))
        everyone = audience.subscribers + [s for s, _ in audience.suppressed]
        person = next((s for s in everyone if s.key == subscriber.strip().casefold()), None)
        if person is None:
            raise UsageError(f"no subscriber {subscriber} in {settings.subscribers}")
    else:
        person = Subscriber(email="preview@example.org", name="Reader", tags=frozenset(parse_tags(for_tags or "")), list_name="preview", line=0)
    if not variant_number:
        issue = plan_issue(settings, issue_request(settings, **options), subscribers=[person])
    report_planning(issue)
    stop_unless_a_source_was_read(issue, settings)
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
    click.echo(f"{plural(len(issue.variants[0].articles), 'article')}, {len(body.encode('utf-8')) / 1024:.1f} KB -> {target}")
    for note in rendered.notes:
        click.echo(f"size budget: {note}")
    if open_browser:
        webbrowser.open(target.resolve().as_uri())


@click.command()
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
    stop_unless_a_source_was_read(issue, settings)
    if not issue.variants:
        click.echo("nothing to send")
        return
    errors = report_findings(issue, render_issue(issue, settings), settings)
    click.echo(f"{plural(len(issue.variants), 'variant')} checked: {'errors found' if errors else 'no errors'}")
    if errors:
        raise click.exceptions.Exit(1)
