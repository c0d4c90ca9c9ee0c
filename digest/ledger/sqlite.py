"""The SQLite backend: a ledger file on one machine (the default,
``ledger = "digest.db"``), or ``:memory:`` for a run that records nothing
(the dry run and test sends go through the same send loop without touching
the real ledger). One send at a time holds it (:meth:`SQLiteLedger.run_lock`).
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from digest.errors import DigestError, LedgerBusyError
from digest.files import create_private, open_private
from digest.ledger.base import Ledger, register
from digest.ledger.model import IN_MEMORY, MIGRATIONS, SCHEMA, SCHEMA_VERSION, statements

_NO_FILE = object()  # the run lock of an in-memory ledger


class SQLiteLedger(Ledger):
    """The ledger file at ``path``, opened in WAL mode with a busy timeout
    of ``busy_timeout`` seconds; the schema is created when absent and its
    version checked (``PRAGMA user_version``).

    One connection, shared by the send loop's threads: every method holds an
    internal lock, and every write is one ``BEGIN IMMEDIATE`` transaction.
    """

    def __init__(self, path: Path | str, *, busy_timeout: float = 10.0) -> None:
        self.in_memory = str(path) == IN_MEMORY
        self.path = Path(path)
        self.name = str(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._lock = threading.RLock()
        self._run_lock_handle = None
        if not self.in_memory and not self.path.parent.is_dir():
            raise DigestError(f"the folder of the ledger {self.path} does not exist: create it, or set 'ledger'")
        try:
            if not self.in_memory:
                create_private(self.path)  # SQLite gives its -wal and -shm files the same mode
            self._db = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise DigestError(f"cannot open the ledger {self.path}: {exc}") from None
        try:
            self._db.execute("PRAGMA journal_mode = WAL")
            # FULL: a committed 'sending' mark must survive a power cut too, or
            # a batch could be sent twice after one.
            self._db.execute("PRAGMA synchronous = FULL")
            self._db.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise DigestError(f"the ledger {self.path} is not a digest ledger (SQLite): {exc}") from None

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise DigestError(
                f"the ledger {self.path} has schema version {version}, newer than this digest knows "
                f"({SCHEMA_VERSION}); upgrade digest"
            )
        if version < SCHEMA_VERSION:
            with self._write():
                version = self._db.execute("PRAGMA user_version").fetchone()[0]  # another process may have won
                scripts = [SCHEMA.format(id="INTEGER PRIMARY KEY", seq="")] if version == 0 else []
                scripts += [MIGRATIONS[v] for v in range(max(version, 1) + 1, SCHEMA_VERSION + 1)]
                for script in scripts:
                    for statement in statements(script):
                        self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._db

    def _clock(self, db) -> datetime:
        return datetime.now(UTC)  # one machine: its own clock

    def close(self) -> None:
        """Release the run lock (if held) and close the connection."""
        self._release_run_lock()
        with self._lock:
            self._db.close()

    # The run lock ---------------------------------------------------------------------------

    def _holds_run_lock(self) -> bool:
        return self._run_lock_handle is not None

    @contextmanager
    def run_lock(self) -> Iterator[None]:
        """Hold the exclusive run lock for the block: only one send runs
        against a ledger file at a time.

        An ``flock`` on ``<ledger>.lock`` beside the database: the kernel
        drops it when the process ends, even by SIGKILL, so a crash never
        leaves a stale lock. Raises :class:`LedgerBusyError` (exit 75) at once
        when another process (or another Ledger object) holds it.
        """
        if self.in_memory:  # nobody else can see this ledger
            self._run_lock_handle = _NO_FILE
            try:
                yield
            finally:
                self._run_lock_handle = None
            return
        handle = os.fdopen(open_private(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_APPEND), "a+", encoding="ascii")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise LedgerBusyError(
                f"another send is using the ledger {self.path} (process {holder}); "
                "try again when it has finished"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._run_lock_handle = handle
        try:
            yield
        finally:
            self._release_run_lock()

    def send_running(self) -> bool:
        """Whether a send (this object, or another process) holds the run
        lock now. Probed with a shared, non-blocking ``flock`` released at
        once, on the lock file opened read-only (never created): a send that
        starts in that instant meets a busy ledger (exit 75) and is run again."""
        if self._holds_run_lock():
            return True
        if self.in_memory or not self.lock_path.exists():
            return False
        with open(self.lock_path, "rb") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
        return False

    def _release_run_lock(self) -> None:
        handle, self._run_lock_handle = self._run_lock_handle, None
        if handle is not None and handle is not _NO_FILE:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()


register("", SQLiteLedger)
