"""Commands that publish: serve (unsubscribe, preferences, webhooks) and
archive (the static web archive)."""

from __future__ import annotations

from pathlib import Path

import click

from digest.cli.options import warn
from digest.settings import load_settings
from digest.words import plural


@click.command()
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


@click.command()
@click.argument("out_dir", metavar="DIR", type=click.Path(file_okay=False, path_type=Path))
@click.option("--ledger", metavar="FILE_OR_URL", help="Ledger file or postgresql:// URL of the sent issues (default: the 'ledger' setting).")
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
    result = write_archive(settings.ledger, out_dir, settings)
    for line in result.warnings:
        warn(line)
    click.echo(f"{plural(len(result.pages), 'issue')} -> {out_dir / 'index.html'}, {out_dir / 'feed.xml'}")


@click.command("signup-form")
def signup_form() -> None:
    """Print the sign-up form as an HTML snippet to paste into your site: a
    plain <form method="post"> to public_url/subscribe (no JavaScript), with
    the topics of your lists and articles and the frequencies. digest serve
    answers it with "check your inbox" and sends the confirmation email.

    \b
    Example:
      DIGEST_PUBLIC_URL=https://news.example.org digest signup-form > signup.html
    """
    from digest.signup import signup_form as form
    from digest.web.pages import known_tags

    settings = load_settings()
    click.echo(form(settings, known_tags(settings)))
