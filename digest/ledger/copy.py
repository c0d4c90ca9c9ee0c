"""Moving a ledger: every row of a SQLite ledger file copied into an empty
PostgreSQL ledger (``digest ledger migrate --to postgresql://...``), so no
history is lost when a publisher outgrows one machine.

Rows keep their ids (events refer to delivery rows by id) and their text as
stored, so ``digest status`` and ``digest archive`` print the same from
either.
"""

from __future__ import annotations

from pathlib import Path

from digest.errors import DigestError
from digest.ledger.base import Ledger, scheme_of
from digest.ledger.model import TABLES


def copy_ledger(source: Path | str, target: str) -> dict[str, int]:
    """Copy every table of the ledger file ``source`` into the ledger at
    ``target`` (a ``postgresql://`` URL), in one transaction of the target:
    all or nothing. Holds the source's run lock meanwhile, so no send
    writes to it half-way. Returns the rows copied per table (in
    :data:`digest.ledger.model.TABLES` order).

    Raises :class:`DigestError` when ``source`` is not a ledger file, when
    ``target`` is not a PostgreSQL URL or cannot be reached, and when the
    target holds any row already (copying into a ledger in use would mix two
    histories), and :class:`digest.errors.LedgerBusyError` when a send holds
    the source."""
    if scheme_of(source) or not Path(source).is_file():
        raise DigestError(f"no ledger file at {source} to copy")
    if scheme_of(target) != "postgresql":
        raise DigestError(f"--to {target!r}: give a postgresql://user@host/dbname URL")
    copied: dict[str, int] = {}
    with Ledger(source) as old, old.run_lock(), Ledger(target) as new:
        with new._write() as db:
            for table in TABLES:
                if db.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None:
                    raise DigestError(f"the ledger {new.name} already has {table}: copy only into an empty ledger")
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
