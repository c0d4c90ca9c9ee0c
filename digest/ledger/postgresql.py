"""The PostgreSQL backend (psycopg 3): one ledger that many sending machines
share, set as ``ledger = "postgresql://user@host/dbname"`` (or
``DIGEST_LEDGER``).

Any number of ``digest send`` workers may run on one issue: the first
queues it under a transaction-scoped advisory lock
(``pg_advisory_xact_lock``), then every worker claims batches with
``SELECT ... FOR UPDATE SKIP LOCKED`` (PostgreSQL 9.5+), so no two claim the
same row, and marks them ``sending`` with its worker id and a lease read
from the database's clock (``now()``), so machines with skewed clocks agree
on when a lease has expired.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from digest.errors import DigestError, LedgerBusyError, SettingsError
from digest.ledger.base import Ledger, register
from digest.ledger.model import MIGRATIONS, SCHEMA, SCHEMA_VERSION, statements

LEDGER_SETTING = "setting 'ledger': "  # where a URL comes from, unless a command names its own option
# Any fixed number: the advisory lock under which the schema is created or migrated.
_SCHEMA_LOCK = 0x646967657374  # "digest"


def display_name(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    try:
        parts = urlsplit(url)
    except ValueError:  # not even a URL: whatever stands before an @ may be a password
        return re.sub(r"//[^/?#]*@", "//***@", url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    netloc = f"{parts.username}@{host}" if parts.username else host
    port = parts.netloc.rpartition("@")[2].rpartition("]")[2].partition(":")[2]  # as written: a malformed one too
    if port:
        netloc += f":{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class Connection:
    """A psycopg connection that takes the ledger's ``?`` placeholders and
    behaves as :class:`sqlite3.Connection` does where our code relies on it:
    ``execute``/``executemany`` return the cursor, and ``with connection:``
    commits (or rolls back) without closing."""

    def __init__(self, url: str, *, connect_timeout: int = 10) -> None:
        import psycopg

        self.name = display_name(url)
        self.errors: tuple[type[BaseException], ...] = (psycopg.Error,)
        try:
            urlsplit(url).port  # noqa: B018 - raises ValueError for a malformed host or port
        except ValueError as exc:
            raise SettingsError(f"{LEDGER_SETTING}{self.name} is not a valid postgresql:// URL ({exc})") from None
        try:
            self.raw = psycopg.connect(url, connect_timeout=connect_timeout, application_name="digest")
        except psycopg.Error as exc:
            raise DigestError(f"cannot connect to the ledger {self.name}: {_first_line(exc)}") from None

    def execute(self, sql: str, params: Sequence = ()) -> Any:
        return self.raw.execute(sql.replace("?", "%s"), tuple(params))

    def executemany(self, sql: str, rows: Sequence[Sequence]) -> Any:
        cursor = self.raw.cursor()
        rows = list(rows)
        if rows:
            cursor.executemany(sql.replace("?", "%s"), rows)
        return cursor

    def commit(self) -> None:
        self.raw.commit()

    def rollback(self) -> None:
        self.raw.rollback()

    def close(self) -> None:
        self.raw.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if kind is None:
            self.raw.commit()
        else:
            self.raw.rollback()


def connect(url: str) -> Connection:
    """A connection to the ledger at ``url``, its schema created or brought
    up to date first. Raises :class:`DigestError` (one line, no password)
    when the server cannot be reached or the database is not a ledger."""
    conn = Connection(url)
    try:
        _migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _migrate(conn: Connection) -> None:
    import psycopg

    try:
        with conn:
            conn.execute("SELECT pg_advisory_xact_lock(?)", (_SCHEMA_LOCK,))
            present = conn.execute("SELECT to_regclass('digest_schema') IS NOT NULL").fetchone()[0]
            version = conn.execute("SELECT version FROM digest_schema").fetchone()[0] if present else 0
            if version > SCHEMA_VERSION:
                raise DigestError(
                    f"the ledger {conn.name} has schema version {version}, newer than this digest knows "
                    f"({SCHEMA_VERSION}); upgrade digest"
                )
            if version == SCHEMA_VERSION:
                return
            if version == 0:
                tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename = 'deliveries'").fetchone()[0]
                if tables:
                    raise DigestError(f"the database {conn.name} has a 'deliveries' table but is not a digest ledger")
                scripts = [SCHEMA.format(id="BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", seq=",\n    seq BIGINT GENERATED ALWAYS AS IDENTITY")]
                conn.execute("CREATE TABLE digest_schema (version INTEGER NOT NULL)")
                conn.execute("INSERT INTO digest_schema VALUES (0)")
            else:
                scripts = []
            scripts += [MIGRATIONS[v] for v in range(max(version, 1) + 1, SCHEMA_VERSION + 1)]
            for script in scripts:
                for statement in statements(script):
                    conn.execute(statement)
            conn.execute("UPDATE digest_schema SET version = ?", (SCHEMA_VERSION,))
    except psycopg.Error as exc:
        raise DigestError(f"ledger {conn.name}: {_first_line(exc)}") from None


class PostgreSQLLedger(Ledger):
    """The ledger in the PostgreSQL database at ``url``; shared by any
    number of workers (``exclusive`` is False). One connection, shared by
    the send loop's threads under a lock; every write is one transaction."""

    exclusive = False
    issue_order = "seq"
    lock_rows = " FOR UPDATE SKIP LOCKED"

    def __init__(self, url: str, **_: Any) -> None:
        import psycopg

        self.url = str(url)
        self.name = display_name(self.url)
        self.path = None
        self._errors = (psycopg.Error,)
        self._busy = (psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)
        self._conn = connect(self.url)
        self._lock = threading.RLock()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._lock, self._translated():
            try:
                yield self._conn
            except BaseException:
                self._conn.rollback()
                raise
            self._conn.commit()

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._write() as db:  # ends the read's transaction: no snapshot held between calls
            yield db

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except self._busy as exc:
            raise LedgerBusyError(f"ledger {self.name}: {_first_line(exc)}; try again") from None
        except self._errors as exc:
            raise DigestError(f"ledger {self.name}: {_first_line(exc)}") from None

    def _clock(self, db: Connection) -> datetime:
        return db.execute("SELECT now()").fetchone()[0]

    def _queue_lock(self, db: Connection, issue_key: str) -> None:
        db.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", (_queue_lock_name(issue_key),))

    @contextmanager
    def queue_lock(self, issue_key: str) -> Iterator[None]:
        """A session-level advisory lock on the issue (the same one
        :meth:`queue_issue` takes for its transaction; they nest), released
        at the end of the block, or by the server when this worker dies."""
        with self._write() as db:
            db.execute("SELECT pg_advisory_lock(hashtextextended(?, 0))", (_queue_lock_name(issue_key),))
        try:
            yield
        finally:
            with self._write() as db:
                db.execute("SELECT pg_advisory_unlock(hashtextextended(?, 0))", (_queue_lock_name(issue_key),))

    def _after_copy(self, db: Connection) -> None:
        # Rows were copied with their ids: new rows must be numbered after them.
        db.execute("SELECT setval(pg_get_serial_sequence('deliveries', 'id'), (SELECT coalesce(max(id), 0) + 1 FROM deliveries), false)")

    def run_lock(self):
        """Nothing to hold: workers share a PostgreSQL ledger (claims and
        leases keep them apart)."""
        return nullcontext()

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _queue_lock_name(issue_key: str) -> str:
    return f"digest issue {issue_key}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


register("postgresql", PostgreSQLLedger)
