"""Moving a ledger: every row of a SQLite ledger file copied into an empty
PostgreSQL ledger (``digest ledger migrate --to postgresql://...``), so no
history is lost when a publisher outgrows one machine.

Rows keep their ids (events refer to delivery rows by id) and their text as
stored, so ``digest status`` and ``digest archive`` print the same from
either.
"""

from __future__ import annotations

from pathlib import Path

from digest.errors import DigestError, SettingsError, UsageError, without_password
from digest.ledger.base import Ledger, scheme_of
from digest.ledger.model import TABLES
from digest.ledger.postgresql import LEDGER_SETTING


def copy_ledger(source: Path | str, target: str) -> dict[str, int]:
    """Copy every table of the ledger file ``source`` into the ledger at
    ``target`` (a ``postgresql://`` URL), in one transaction of the target:
    all or nothing. Holds the source's run lock meanwhile, so no send
    writes to it half-way. Returns the rows copied per table (in
    :data:`digest.ledger.model.TABLES` order).

    Raises :class:`digest.errors.UsageError` (exit 2, one line naming
    ``--ledger`` or ``--to``) when ``source`` is not a ledger file, when
    ``target`` is not a PostgreSQL URL, cannot be reached or is not a
    ledger, and when the target holds any row already (copying into a
    ledger in use would mix two histories); and
    :class:`digest.errors.LedgerBusyError` when a send holds the source."""
    if scheme_of(target) != "postgresql":
        shown = without_password(target) if "://" in str(target) else target
        raise UsageError(f"--to {shown!r}: not a PostgreSQL ledger; give postgresql://user@host/dbname (or postgres://...)")
    if scheme_of(source) or not Path(source).is_file():
        raise UsageError(f"--ledger: no ledger file at {without_password(str(source))} to copy (give the SQLite file with --ledger, or set 'ledger')")
    copied: dict[str, int] = {}
    with _opened(source, "--ledger") as old, old.run_lock(), _opened(target, "--to") as new:
        with new._write() as db:
            for table in TABLES:
                if db.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None:
                    raise UsageError(f"--to {new.name}: already has {table}; copy only into an empty ledger (a new database)")
            for table in TABLES:
                copied[table] = 0
                for rows in old.table_rows(table):
                    columns = list(rows[0])
                    db.executemany(
                        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                        [tuple(row[c] for c in columns) for row in rows],
                    )
                    copied[table] += len(rows)
            new._after_copy(db)
    return copied


def _opened(target: Path | str, option: str) -> Ledger:
    """The ledger at ``target``, opened; a file that is not a ledger, a
    server that cannot be reached, a database that is missing or not a
    ledger is a wrong ``option`` (exit 2), named without its password."""
    try:
        return Ledger(target)
    except DigestError as exc:
        if exc.exit_code not in (DigestError.exit_code, SettingsError.exit_code):  # busy (75) and the like keep their own code
            raise
        raise UsageError(f"{option}: {str(exc).removeprefix(LEDGER_SETTING)}") from None
