"""Commands about the ledger itself: ledger migrate."""

from __future__ import annotations

import click

from digest.settings import load_settings


@click.group()
def ledger() -> None:
    """The ledger: where issues, deliveries and suppressions are kept."""


@ledger.command("migrate")
@click.option("--to", "target", required=True, metavar="URL", help="The PostgreSQL ledger to copy into: postgresql://user@host/dbname (an empty database).")
@click.option("--ledger", "source", metavar="FILE", help="The SQLite ledger file to copy (default: the 'ledger' setting).")
def migrate(target, source) -> None:
    """Copy a SQLite ledger file, with its whole history (issues,
    deliveries, suppressions, preferences, events, archive pages), into an
    empty PostgreSQL ledger, so several machines can send from it. The file
    is left as it was; afterwards set 'ledger' to the URL.

    \b
    Examples:
      digest ledger migrate --to postgresql://digest@db.example.org/digest
      digest ledger migrate --ledger /var/lib/digest/digest.db --to postgresql:///digest
    """
    from digest.errors import without_password
    from digest.ledger.copy import copy_ledger

    source = source or load_settings().ledger
    copied = copy_ledger(source, target)
    counts = ", ".join(f"{n} {table}" for table, n in copied.items())
    click.echo(f"copied {source} to {without_password(target)}: {counts}")
    click.echo(f"now set ledger = \"{without_password(target)}\" (or DIGEST_LEDGER) on every machine that sends or serves")
