"""The command line. Commands parse options, call plain functions of the
pipeline and print; every error a user can fix is one line on stderr and a
documented exit code (see README.md):

0 everything went out, or nothing to send, or already sent; 1 some
recipients rejected or unknown, or problems found; 2 bad usage or settings; 3 the provider refused
our credentials or sender; 75 another send holds the ledger.
"""

from __future__ import annotations

import os
import sys

import click

from digest.cli import content, ledger, lists, schedule, sending, web
from digest.errors import DigestError
from digest.settings import load_settings


class DigestGroup(click.Group):
    """Turns a :class:`DigestError` into one line on stderr and its exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            # click's own ways out (--help, a usage error, Ctrl-C, an exit
            # code a command chose): click prints and exits as documented.
            raise
        except DigestError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            ctx.exit(exc.exit_code)
        except BrokenPipeError:  # `digest status | head -1`: the reader went away
            _drop_stdout()
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
    for secret in (settings.sendgrid_api_key, settings.smtp_password, settings.secret_key, *settings.previous_secret_keys):
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


for command in (
    content.articles, content.preview, content.lint,
    sending.send, sending.status, schedule.schedule,
    lists.audience, lists.subscribers, lists.suppressions,
    web.serve, web.archive, web.signup_form,
    ledger.ledger,
):  # fmt: skip
    cli.add_command(command)


def _drop_stdout() -> None:
    """Point standard output (file descriptor 1) at /dev/null once the
    reader of its pipe went away, so that what is still buffered, and the
    flush at exit, meet no second broken pipe: the recipe of Python's
    documentation (signal module, "Note on SIGPIPE"). Replacing
    ``sys.stdout`` instead would leave the broken stream to be flushed at
    exit and an unclosed file behind (a ResourceWarning)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


def main() -> None:
    """The console script ``digest`` and ``python -m digest``.

    Output cut short by its reader (``digest status | head -1``, ``digest
    --help | head -1``) ends quietly with exit 1, as click and Python do,
    never with a traceback: output still buffered is flushed here, where a
    broken pipe can be caught, not at the interpreter's exit."""
    try:
        cli.main(prog_name="digest")
    except SystemExit as done:
        code = done.code
    else:  # pragma: no cover - click's standalone mode always exits
        code = 0
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except BrokenPipeError:
        _drop_stdout()
        code = 1
    sys.exit(code)
