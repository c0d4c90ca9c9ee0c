"""The ledger: a SQLite file that remembers every issue and every delivery, so
that a send can be resumed after a crash without losing or doubling anyone.

The send loop follows an outbox discipline, as dependable list managers do:

1. ``create_issue`` and ``enqueue`` write one ``queued`` row per recipient, in
   one transaction, before the first provider call;
2. ``claim_batch`` marks a batch ``sending`` and commits *before* the request;
3. ``record_results`` stores what the provider answered right after it.

A crash between 2 and 3 leaves rows ``sending``; the next run, holding the run
lock, turns them into ``unknown`` (``recover_crashed``): the request may or
may not have been taken, so they are resent only when the operator says so.
The ledger stores data only; it knows nothing of rendering or providers'
protocols.

Times are stored as ISO 8601 text in UTC.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from digest.errors import DigestError, LedgerBusyError
from digest.files import create_private, open_private
from digest.recipients import Recipient, RecipientResult, Status

if TYPE_CHECKING:
    from digest.settings import Settings

SCHEMA_VERSION = 4
IN_MEMORY = ":memory:"
_NO_FILE = object()  # the run lock of an in-memory ledger

_SCHEMA = """
CREATE TABLE issues (
    key          TEXT PRIMARY KEY,
    window_start TEXT NOT NULL,
    window_end   TEXT NOT NULL,
    article_ids  TEXT NOT NULL,          -- JSON array of article ids
    scheduled_at TEXT,                   -- NULL for an issue named with --issue
    created_at   TEXT NOT NULL,
    status       TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'finished'))
);
CREATE TABLE deliveries (
    id            INTEGER PRIMARY KEY,
    issue_key     TEXT NOT NULL REFERENCES issues (key),
    email         TEXT NOT NULL,
    subscriber_id TEXT NOT NULL,
    list_name     TEXT NOT NULL,
    variant_key   TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN
                      ('queued', 'sending', 'accepted', 'rejected', 'retryable', 'unknown')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    message_id    TEXT,
    last_error    TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    UNIQUE (issue_key, subscriber_id)
);
CREATE INDEX deliveries_by_status ON deliveries (issue_key, status, variant_key);
CREATE TABLE sent_articles (
    article_id TEXT NOT NULL,
    issue_key  TEXT NOT NULL REFERENCES issues (key),
    PRIMARY KEY (article_id, issue_key)
);
"""

# What each version adds to the one before; a new file gets _SCHEMA and then
# every migration, an older file only the migrations it lacks, so its rows stay.
_MIGRATIONS = {
    2: """
CREATE TABLE events (
    delivery_id INTEGER NOT NULL REFERENCES deliveries (id),
    event       TEXT NOT NULL,      -- what the provider reported later: delivered, bounce, dropped
    event_id    TEXT NOT NULL,      -- the provider's id of the report, so a repeated report adds nothing
    detail      TEXT,               -- the provider's reason (bounce or drop), if any
    occurred_at TEXT,               -- when the provider saw it (UTC), if it said
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (delivery_id, event, event_id)
);
""",
    # The issue as sent, for the web archive's page ("View in your browser"):
    # kept before the first request, so no issue row exists yet to refer to.
    3: """
CREATE TABLE issue_pages (
    issue_key TEXT PRIMARY KEY,
    subject   TEXT NOT NULL,
    preheader TEXT NOT NULL,
    html      TEXT NOT NULL,        -- the archive page, rendered at send time (no one's address or links)
    created_at TEXT NOT NULL
);
""",
    # Issues refused by --not-after: their window goes into the next issue, also the first one sent.
    4: """
CREATE TABLE refused_issues (
    issue_key    TEXT PRIMARY KEY,
    window_start TEXT NOT NULL,
    window_end   TEXT NOT NULL,
    list_names   TEXT NOT NULL,     -- JSON array: the lists it would have gone to
    reason       TEXT NOT NULL,
    refused_at   TEXT NOT NULL
);
""",
}

_CRASHED = "interrupted while sending: the provider may or may not have taken it"


class DeliveryStatus(StrEnum):
    """The state of one delivery row. The last four share their values with
    :class:`digest.providers.Status`."""

    QUEUED = "queued"  # written before the first request, not yet tried
    SENDING = "sending"  # its request is (or was, if we crashed) in flight
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    RETRYABLE = "retryable"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class IssueRecord:
    """One issue (edition) in the ledger. Datetimes are aware (UTC);
    ``scheduled_at`` is None for an issue named on the command line."""

    key: str
    window_start: datetime
    window_end: datetime
    article_ids: tuple[str, ...]
    scheduled_at: datetime | None
    created_at: datetime
    status: str  # "open" while anything is queued, sending or retryable; then "finished"


@dataclass(frozen=True)
class Delivery:
    """One recipient of one issue. ``attempts`` counts the requests made for
    it; ``last_error`` is the provider's reason for the last non-acceptance."""

    id: int
    issue_key: str
    email: str
    subscriber_id: str
    list_name: str
    variant_key: str
    status: DeliveryStatus
    attempts: int
    message_id: str | None
    last_error: str | None
    created_at: str
    updated_at: str


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _text(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("the ledger stores aware datetimes only")
    return moment.astimezone(UTC).isoformat()


class Ledger:
    """The ledger file at ``path`` (the ``ledger`` setting, default
    ``./digest.db``), opened in WAL mode with a busy timeout of
    ``busy_timeout`` seconds; the schema is created when absent and its
    version checked (``PRAGMA user_version``).

    One connection, shared by the send loop's worker threads: every method
    holds an internal lock, and every write is one ``BEGIN IMMEDIATE``
    transaction. Raises :class:`DigestError` when the file is not a ledger
    or was written by a newer digest.
    """

    def __init__(self, path: Path | str, *, busy_timeout: float = 10.0) -> None:
        # ":memory:" is a ledger of one run that touches no file: the dry run and
        # test sends go through the same send loop without reading or writing
        # the real ledger.
        self.in_memory = str(path) == IN_MEMORY
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._lock = threading.RLock()
        self._run_lock_handle = None
        if not self.in_memory and not self.path.parent.is_dir():
            raise DigestError(f"the folder of the ledger {self.path} does not exist: create it, or set 'ledger'")
        try:
            create_private(self.path)  # SQLite gives its -wal and -shm files the same mode
            self._db = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise DigestError(f"cannot open the ledger {self.path}: {exc}") from None
        self._db.row_factory = sqlite3.Row
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

    @classmethod
    def from_settings(cls, settings: Settings) -> Ledger:
        """The ledger named by ``settings.ledger``."""
        return cls(settings.ledger)

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
                scripts = [_SCHEMA] if version == 0 else []
                scripts += [_MIGRATIONS[v] for v in range(max(version, 1) + 1, SCHEMA_VERSION + 1)]
                for script in scripts:
                    for statement in script.split(";"):
                        if statement.strip():
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

    def _rows(self, sql: str, params: Sequence = ()) -> list[dict]:
        with self._lock:
            return [dict(row) for row in self._db.execute(sql, params).fetchall()]

    def close(self) -> None:
        """Release the run lock (if held) and close the connection."""
        self._release_run_lock()
        with self._lock:
            self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # The run lock ---------------------------------------------------------------------------

    @contextmanager
    def run_lock(self) -> Iterator[None]:
        """Hold the exclusive run lock for the block: only one send runs
        against a ledger at a time.

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

    def _release_run_lock(self) -> None:
        handle, self._run_lock_handle = self._run_lock_handle, None
        if handle is not None and handle is not _NO_FILE:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()

    # Issues ---------------------------------------------------------------------------------

    def create_issue(
        self,
        key: str,
        window_start: datetime,
        window_end: datetime,
        article_ids: Sequence[str],
        scheduled_at: datetime | None = None,
    ) -> IssueRecord:
        """Record issue ``key`` with its window (aware datetimes) and article
        ids, and return it. When ``key`` exists already (a resume), it is
        returned unchanged: a resumed issue keeps its articles."""
        with self._write() as db:
            db.execute(
                "INSERT INTO issues (key, window_start, window_end, article_ids, scheduled_at, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING",
                (
                    key,
                    _text(window_start),
                    _text(window_end),
                    json.dumps(list(article_ids)),
                    _text(scheduled_at) if scheduled_at else None,
                    _now(),
                ),
            )
        return self.get_issue(key)

    def get_issue(self, key: str) -> IssueRecord | None:
        """Issue ``key``, or None when the ledger has no such issue."""
        rows = self._rows("SELECT * FROM issues WHERE key = ?", (key,))
        return _issue(rows[0]) if rows else None

    def issues(self) -> list[IssueRecord]:
        """Every issue, newest first (by creation time)."""
        return [_issue(row) for row in self._rows("SELECT * FROM issues ORDER BY created_at DESC, rowid DESC")]

    def update_issue_status(self, key: str) -> str:
        """Set issue ``key`` to ``finished`` when no row is queued, sending or
        retryable, else ``open``; return the status."""
        with self._write() as db:
            open_rows = db.execute(
                "SELECT count(*) FROM deliveries WHERE issue_key = ? AND status IN ('queued', 'sending', 'retryable')",
                (key,),
            ).fetchone()[0]
            status = "open" if open_rows else "finished"
            db.execute("UPDATE issues SET status = ? WHERE key = ?", (status, key))
        return status

    # Deliveries -----------------------------------------------------------------------------

    def enqueue(self, issue_key: str, entries: Iterable[tuple[Recipient, str]]) -> int:
        """Write one ``queued`` row per (recipient, variant key) of
        ``entries``, all in one transaction, and return how many were new.

        Idempotent: a recipient (by ``subscriber_id``) already in the issue
        keeps its row untouched, whatever its status, so calling this again on
        a resume adds only recipients who joined since. ``entries`` may be a
        generator; it is consumed once.
        """
        now = _now()
        rows = (
            (issue_key, recipient.email, recipient.subscriber_id, recipient.list_name, variant_key, now, now)
            for recipient, variant_key in entries
        )
        with self._write() as db:
            before = db.total_changes
            db.executemany(
                "INSERT INTO deliveries (issue_key, email, subscriber_id, list_name, variant_key, status, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'queued', ?, ?) "
                "ON CONFLICT (issue_key, subscriber_id) DO NOTHING",
                rows,
            )
            return db.total_changes - before

    def recover_crashed(self, issue_key: str) -> int:
        """Turn the rows a crashed run left ``sending`` into ``unknown`` and
        return how many. Only safe while holding :meth:`run_lock` (a live run's
        rows are ``sending`` too), so it refuses otherwise (RuntimeError)."""
        if self._run_lock_handle is None:
            raise RuntimeError("recover_crashed needs the run lock")
        with self._write() as db:
            return db.execute(
                "UPDATE deliveries SET status = 'unknown', last_error = ?, updated_at = ? "
                "WHERE issue_key = ? AND status = 'sending'",
                (_CRASHED, _now(), issue_key),
            ).rowcount

    def pending(self, issue_key: str, *, resend_unknown: bool = False) -> list[Delivery]:
        """Rows still to send, by variant then row id: ``queued`` and
        ``retryable``, and ``unknown`` too with ``resend_unknown``."""
        statuses = _pending_statuses(resend_unknown)
        return [
            _delivery(row)
            for row in self._rows(
                f"SELECT * FROM deliveries WHERE issue_key = ? AND status IN ({','.join('?' * len(statuses))}) "
                "ORDER BY variant_key, id",
                (issue_key, *statuses),
            )
        ]

    def mark_sending(self, ids: Sequence[int]) -> None:
        """Mark rows ``ids`` ``sending`` (one more attempt each) and commit,
        before their request goes out."""
        with self._write():
            self._mark_sending(ids)

    def _mark_sending(self, ids: Sequence[int]) -> None:
        now = _now()
        self._db.executemany(
            "UPDATE deliveries SET status = 'sending', attempts = attempts + 1, updated_at = ? WHERE id = ?",
            [(now, row_id) for row_id in ids],
        )

    def claim_batch(
        self, issue_key: str, variant_key: str, limit: int, *, resend_unknown: bool = False
    ) -> list[Delivery]:
        """Take up to ``limit`` pending rows of one variant (see
        :meth:`pending`; queued rows first), mark them ``sending`` and
        commit, in one transaction; return them as they were before the mark
        (with their previous status and attempts). Empty when nothing is
        left."""
        statuses = _pending_statuses(resend_unknown)
        with self._write() as db:
            claimed = [
                _delivery(dict(row))
                for row in db.execute(
                    # No ORDER BY: the index yields rows in id order per status and
                    # the LIMIT stops the scan early (sorting would read them all).
                    f"SELECT * FROM deliveries WHERE issue_key = ? AND variant_key = ? "
                    f"AND status IN ({','.join('?' * len(statuses))}) LIMIT ?",
                    (issue_key, variant_key, *statuses, limit),
                )
            ]
            self._mark_sending([delivery.id for delivery in claimed])
        return claimed

    def record_results(
        self, results: Iterable[tuple[int, RecipientResult]], *, article_ids: Iterable[str] = ()
    ) -> int:
        """Store the provider's answer for each (row id, result), in one
        transaction, and return how many rows changed. Only rows marked
        ``sending`` are updated, so a late or repeated answer cannot undo a
        later state. When any result is accepted, ``article_ids`` (the
        variant's articles) are recorded as sent in the same transaction, so
        later issues skip them."""
        now = _now()
        rows, accepted = [], []
        for row_id, result in results:
            status = DeliveryStatus(Status(result.status).value)
            if status is DeliveryStatus.ACCEPTED:
                accepted.append(row_id)
            error = None if status is DeliveryStatus.ACCEPTED else result.reason
            rows.append((status.value, result.message_id, error, now, row_id))
        article_ids = list(article_ids)
        with self._write() as db:
            before = db.total_changes
            db.executemany(
                "UPDATE deliveries SET status = ?, message_id = coalesce(?, message_id), last_error = ?, "
                "updated_at = ? WHERE id = ? AND status = 'sending'",
                rows,
            )
            changed = db.total_changes - before
            if article_ids and accepted:
                issue_keys = db.execute(
                    f"SELECT DISTINCT issue_key FROM deliveries WHERE id IN ({','.join('?' * len(accepted))})",
                    accepted,
                ).fetchall()
                db.executemany(
                    "INSERT INTO sent_articles (article_id, issue_key) VALUES (?, ?) ON CONFLICT DO NOTHING",
                    [(article_id, key) for (key,) in issue_keys for article_id in article_ids],
                )
        return changed

    def counts(self, issue_key: str) -> dict[DeliveryStatus, int]:
        """Rows of ``issue_key`` per status; every status is present (0 when none)."""
        counts = dict.fromkeys(DeliveryStatus, 0)
        for row in self._rows(
            "SELECT status, count(*) AS n FROM deliveries WHERE issue_key = ? GROUP BY status", (issue_key,)
        ):
            counts[DeliveryStatus(row["status"])] = row["n"]
        return counts

    def problems(self, issue_key: str) -> list[Delivery]:
        """The rejected and unknown rows of ``issue_key``, with their reasons
        in ``last_error``, by status then address."""
        return [
            _delivery(row)
            for row in self._rows(
                "SELECT * FROM deliveries WHERE issue_key = ? AND status IN ('rejected', 'unknown') "
                "ORDER BY status, email",
                (issue_key,),
            )
        ]

    # The archive page ---------------------------------------------------------------------

    def keep_page(self, issue_key: str, subject: str, preheader: str, html: str) -> bool:
        """Keep the web archive's page of ``issue_key`` (subject, preheader,
        HTML) as it was rendered when the issue went out. The first page kept
        stays (a resumed send does not replace it); returns whether this one
        was kept."""
        with self._write() as db:
            return db.execute(
                "INSERT INTO issue_pages (issue_key, subject, preheader, html, created_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (issue_key) DO NOTHING",
                (issue_key, subject, preheader, html, _now()),
            ).rowcount == 1

    def page(self, issue_key: str) -> dict[str, str] | None:
        """The page kept for ``issue_key``: ``{"subject", "preheader", "html"}``,
        or None (an issue sent before pages were kept, or never sent)."""
        rows = self._rows("SELECT subject, preheader, html FROM issue_pages WHERE issue_key = ?", (issue_key,))
        return rows[0] if rows else None

    # Articles -------------------------------------------------------------------------------

    def sent_article_ids(self, *, except_issue: str | None = None) -> set[str]:
        """Ids of the articles that went out (to at least one recipient) in
        any issue, leaving out ``except_issue`` (the one being resumed)."""
        rows = self._rows(
            "SELECT DISTINCT article_id FROM sent_articles WHERE issue_key IS NOT ?", (except_issue,)
        )
        return {row["article_id"] for row in rows}

    # History for the cron job: windows, rejected recipients, where articles went --------------

    def last_sent_window_end(self, list_names: Iterable[str], before: datetime) -> datetime | None:
        """The window end of the latest scheduled issue (not one named with
        ``--issue``) accepted for a recipient of ``list_names``, ending
        before ``before`` (aware); None when none did."""
        names = sorted(set(list_names))
        rows = self._rows(
            "SELECT window_end FROM issues WHERE scheduled_at IS NOT NULL AND EXISTS ("
            "SELECT 1 FROM deliveries WHERE issue_key = issues.key AND status = 'accepted' "
            f"AND list_name IN ({','.join('?' * len(names))}))",
            names,
        )
        ends = [end for row in rows if (end := datetime.fromisoformat(row["window_end"])) < before]
        return max(ends, default=None)

    def record_refusal(self, issue_key: str, window_start: datetime, window_end: datetime, list_names: Iterable[str], reason: str) -> None:
        """Remember that issue ``issue_key`` (its window, aware datetimes,
        and the lists it was for) was refused (``--not-after``), so that
        the next issue's window takes it in. The first refusal stays."""
        with self._write() as db:
            db.execute(
                "INSERT INTO refused_issues (issue_key, window_start, window_end, list_names, reason, refused_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (issue_key) DO NOTHING",
                (issue_key, _text(window_start), _text(window_end), json.dumps(sorted(set(list_names))), reason, _now()),
            )

    def first_refused_window_start(self, list_names: Iterable[str], before: datetime) -> datetime | None:
        """The earliest window start of the issues refused for ``list_names``
        whose window ends at or before ``before`` (aware), or None."""
        names = set(list_names)
        starts = [
            datetime.fromisoformat(row["window_start"])
            for row in self._rows("SELECT window_start, window_end, list_names FROM refused_issues")
            if names & set(json.loads(row["list_names"])) and datetime.fromisoformat(row["window_end"]) <= before
        ]
        return min(starts, default=None)

    def requeue_rejected(self, issue_key: str, *, except_reasons: Iterable[str] = ()) -> int:
        """Queue the ``rejected`` rows of ``issue_key`` again (``--retry-rejected``),
        except those whose ``last_error`` is in ``except_reasons`` (left out on
        purpose); return how many."""
        kept = [*except_reasons, ""]  # NOT IN needs one value at least
        with self._write() as db:
            return db.execute(
                "UPDATE deliveries SET status = 'queued', updated_at = ? WHERE issue_key = ? AND status = 'rejected' "
                f"AND coalesce(last_error, '-') NOT IN ({','.join('?' * len(kept))})",
                (_now(), issue_key, *kept),
            ).rowcount

    def issues_of_articles(self, article_ids: Iterable[str]) -> dict[str, str]:
        """article id -> key of the first issue that carried it, for those of ``article_ids`` that went out."""
        wanted = set(article_ids)
        rows = self._rows(
            "SELECT s.article_id, s.issue_key FROM sent_articles s JOIN issues i ON i.key = s.issue_key "
            "ORDER BY i.created_at DESC, i.rowid DESC"
        )
        return {row["article_id"]: row["issue_key"] for row in rows if row["article_id"] in wanted}


def record_events(db: sqlite3.Connection, events: Iterable) -> int:
    """Record what the provider reported about delivery rows after the send
    (SendGrid's Event Webhook: ``delivered``, ``bounce``, ``dropped``), on
    ``db`` inside the caller's transaction, so the caller can write other
    rows (suppressions) in the same one. ``db`` must be a connection to a
    ledger already at :data:`SCHEMA_VERSION` (open it once with
    :class:`Ledger`).

    Each event has the attributes ``issue_key`` and ``subscriber_id`` (the
    delivery row's, as sent in the provider's custom args), ``event``,
    ``event_id`` (the provider's id of the report: SendGrid's
    ``sg_event_id``), ``detail`` (str or None) and ``occurred_at`` (aware
    datetime or None), e.g. :class:`digest.web.webhook.DeliveryEvent`. Events that
    match no delivery row (a test send, mail from another system) are
    skipped; a report recorded before (providers deliver webhooks at least
    once) adds nothing. Returns how many events were new."""
    now = _now()
    added = 0
    for event in events:
        row = db.execute(
            "SELECT id FROM deliveries WHERE issue_key = ? AND subscriber_id = ?",
            (event.issue_key, event.subscriber_id),
        ).fetchone()
        if row is None:
            continue
        occurred = _text(event.occurred_at) if event.occurred_at else None
        added += db.execute(
            "INSERT INTO events (delivery_id, event, event_id, detail, occurred_at, recorded_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (row[0], event.event, event.event_id, event.detail, occurred, now),
        ).rowcount
    return added


def _pending_statuses(resend_unknown: bool) -> tuple[str, ...]:
    statuses = (DeliveryStatus.QUEUED.value, DeliveryStatus.RETRYABLE.value)
    return (*statuses, DeliveryStatus.UNKNOWN.value) if resend_unknown else statuses


def _issue(row: dict) -> IssueRecord:
    return IssueRecord(
        key=row["key"],
        window_start=datetime.fromisoformat(row["window_start"]),
        window_end=datetime.fromisoformat(row["window_end"]),
        article_ids=tuple(json.loads(row["article_ids"])),
        scheduled_at=datetime.fromisoformat(row["scheduled_at"]) if row["scheduled_at"] else None,
        created_at=datetime.fromisoformat(row["created_at"]),
        status=row["status"],
    )


def _delivery(row: dict) -> Delivery:
    return Delivery(**{**row, "status": DeliveryStatus(row["status"])})
