"""What every ledger backend shares: the queries of the send loop, the status
and the archive, written once in SQL that SQLite and PostgreSQL both run
(``?`` placeholders; the PostgreSQL backend passes them on as ``%s``).

A backend (:mod:`digest.ledger.sqlite`, :mod:`digest.ledger.postgresql`)
supplies the connection, the transaction, the clock of claims and the locks;
:class:`Ledger` picks one from its target, as ``Ledger(settings.ledger)``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from digest.ledger.model import (
    CRASHED,
    DELIVERY_COLUMNS,
    LEASE_EXPIRED,
    STATUSES,
    Delivery,
    DeliveryStatus,
    IssueRecord,
    delivery_of,
    issue_of,
    lease_text,
    moment_text,
    now_text,
    pending_statuses,
)
from digest.ledger.sql import chunks, dicts, marks
from digest.recipients import Recipient, RecipientResult

if TYPE_CHECKING:
    from digest.settings import Settings

_BACKENDS: dict[str, type[Ledger]] = {}


def register(scheme: str, backend: type[Ledger]) -> None:
    """Make ``backend`` the ledger class of targets of ``scheme`` ("" for a
    file path); each backend module registers itself when imported."""
    _BACKENDS[scheme] = backend


def scheme_of(target: object) -> str:
    """``postgresql`` for a ``postgresql://`` or ``postgres://`` URL, else ``""`` (a file)."""
    text = str(target)
    return "postgresql" if text.startswith(("postgresql://", "postgres://")) else ""


@dataclass(frozen=True)
class Claim:
    """One claimed batch: ``rows`` (of one variant, now ``sending``, as they
    were before the claim) and ``suppressed``, how many rows of the batch
    were closed instead because their address is suppressed."""

    rows: list[Delivery]
    suppressed: int = 0

    @property
    def variant_key(self) -> str | None:
        return self.rows[0].variant_key if self.rows else None


class Ledger:
    """The ledger at ``target``: a SQLite file path (the default,
    ``digest.db``; ``:memory:`` for a run that records nothing) or a
    ``postgresql://user@host/dbname`` URL. ``Ledger(target)`` returns the
    backend for it; the send loop does not know which it has.

    ``exclusive`` is True when one send at a time holds the ledger (SQLite,
    with :meth:`run_lock`); a shared ledger (PostgreSQL) lets many workers
    send one issue, each claiming batches under a lease. Methods are
    thread-safe. Raises :class:`DigestError` when the target is not a
    ledger or was written by a newer digest.
    """

    exclusive = True
    in_memory = False
    issue_order = "rowid"  # what numbers issues created in the same second
    lock_rows = ""  # the clause that keeps other workers off rows being claimed

    def __new__(cls, target: object = None, *args: Any, **kwargs: Any) -> Ledger:
        if cls is Ledger:
            cls = _BACKENDS[scheme_of(target)]
        return super().__new__(cls)

    @classmethod
    def from_settings(cls, settings: Settings) -> Ledger:
        """The ledger named by ``settings.ledger``."""
        return cls(settings.ledger)

    # What a backend provides ----------------------------------------------------------------

    name: str  # how errors name this ledger (a path, or a URL without its password)

    def _write(self) -> AbstractContextManager[Any]:
        """One write transaction; yields something with ``execute`` and ``executemany``."""
        raise NotImplementedError

    def _read(self) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def _clock(self, db: Any) -> datetime:
        """Now, as every worker sees it (the database's clock when shared)."""
        raise NotImplementedError

    def _queue_lock(self, db: Any, issue_key: str) -> None:
        """Hold, until the transaction ends, the lock under which an issue is queued."""

    def queue_lock(self, issue_key: str) -> AbstractContextManager[None]:
        """Hold, for the block, the lock under which issue ``issue_key`` is
        queued, so that of many workers arriving at once only the first
        reads the content and the lists and queues the issue; the others
        wait, then find it queued. Nothing to hold on an exclusive ledger
        (its run lock keeps other sends out)."""
        return nullcontext()

    def _after_copy(self, db: Any) -> None:
        """What the target of a copy does once every row is in (renumbering)."""

    def run_lock(self) -> AbstractContextManager[None]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _rows(self, sql: str, params: Sequence = ()) -> list[dict]:
        with self._read() as db:
            return dicts(db.execute(sql, params))

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
            self._insert_issue(db, key, window_start, window_end, article_ids, scheduled_at)
        return self.get_issue(key)

    def _insert_issue(self, db, key, window_start, window_end, article_ids, scheduled_at) -> None:
        db.execute(
            "INSERT INTO issues (key, window_start, window_end, article_ids, scheduled_at, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING",
            (
                key,
                moment_text(window_start),
                moment_text(window_end),
                json.dumps(list(article_ids)),
                moment_text(scheduled_at) if scheduled_at else None,
                now_text(),
            ),
        )

    def get_issue(self, key: str) -> IssueRecord | None:
        """Issue ``key``, or None when the ledger has no such issue."""
        rows = self._rows("SELECT * FROM issues WHERE key = ?", (key,))
        return issue_of(rows[0]) if rows else None

    def issues(self) -> list[IssueRecord]:
        """Every issue, newest first (by creation time)."""
        return [issue_of(row) for row in self._rows(f"SELECT * FROM issues ORDER BY created_at DESC, {self.issue_order} DESC")]

    def update_issue_status(self, key: str) -> str:
        """Set issue ``key`` to ``finished`` when no row is queued, sending or
        retryable, else ``open``; return the status."""
        with self._write() as db:
            (row,) = dicts(db.execute(
                "SELECT count(*) AS n FROM deliveries WHERE issue_key = ? AND status IN ('queued', 'sending', 'retryable')",
                (key,),
            ))
            status = "open" if row["n"] else "finished"
            db.execute("UPDATE issues SET status = ? WHERE key = ?", (status, key))
        return status

    def queue_issue(
        self,
        key: str,
        window_start: datetime,
        window_end: datetime,
        article_ids: Sequence[str],
        scheduled_at: datetime | None,
        entries: Iterable[tuple[str, str, str, str, str]],
        variants: Iterable[Any],
    ) -> bool:
        """Queue issue ``key`` in one transaction, under the issue's queue
        lock: the issue (as :meth:`create_issue`), one ``queued`` row per
        (email, name, subscriber id, list name, variant key) of ``entries``
        (as :meth:`enqueue` writes them; only when the issue has no row yet:
        its audience is frozen once queued), and
        ``variants`` as rendered (objects with ``variant_key``, ``subject``,
        ``preheader``, ``html``, ``text``, ``article_ids``, ``notes``, ``nonce``; a
        variant stored before is kept). Returns True when this call queued
        it; False when a shared ledger had it queued already (by another
        worker: then nothing is written, and ``entries`` is not read)."""
        with self._write() as db:
            self._queue_lock(db, key)
            found = dicts(db.execute("SELECT queued_at FROM issues WHERE key = ?", (key,)))
            if found and found[0]["queued_at"] and not self.exclusive:
                return False
            self._insert_issue(db, key, window_start, window_end, article_ids, scheduled_at)
            if not dicts(db.execute("SELECT count(*) AS n FROM deliveries WHERE issue_key = ?", (key,)))[0]["n"]:
                # The audience is frozen when the issue is first queued: who
                # joins later gets the next issue, not a rerun of this one.
                self._enqueue(db, key, entries)
            db.executemany(
                "INSERT INTO variants (issue_key, variant_key, subject, preheader, html, text, article_ids, notes, nonce) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (issue_key, variant_key) DO NOTHING",
                [
                    (key, v.variant_key, v.subject, v.preheader, v.html, v.text, json.dumps(list(v.article_ids)), json.dumps(list(v.notes)), v.nonce)
                    for v in variants
                ],
            )
            db.execute("UPDATE issues SET queued_at = ? WHERE key = ? AND queued_at IS NULL", (now_text(), key))
        return True

    def variants(self, issue_key: str) -> list[dict]:
        """The variants of ``issue_key`` as stored when it was queued, by key:
        dicts of ``variant_key``, ``subject``, ``preheader``, ``html``,
        ``text``, ``article_ids`` (tuple), ``notes`` (tuple) and ``nonce``."""
        rows = self._rows(
            "SELECT variant_key, subject, preheader, html, text, article_ids, notes, nonce FROM variants WHERE issue_key = ? ORDER BY variant_key",
            (issue_key,),
        )
        return [{**row, "article_ids": tuple(json.loads(row["article_ids"])), "notes": tuple(json.loads(row["notes"]))} for row in rows]

    # Deliveries -----------------------------------------------------------------------------

    def enqueue(self, issue_key: str, entries: Iterable[tuple[Recipient, str]]) -> int:
        """Write one ``queued`` row per (recipient, variant key) of
        ``entries``, all in one transaction, and return how many were new.

        Idempotent: a recipient (by ``subscriber_id``) already in the issue
        keeps its row untouched, whatever its status, so calling this again on
        a resume adds only recipients who joined since. ``entries`` may be a
        generator; it is consumed once.
        """
        with self._write() as db:
            return self._enqueue(db, issue_key, ((r.email, r.name, r.subscriber_id, r.list_name, v) for r, v in entries))

    def _enqueue(self, db, issue_key: str, entries: Iterable[tuple[str, str, str, str, str]]) -> int:
        # entries: (email, name, subscriber id, list name, variant key), as queue_issue takes them.
        now = now_text()
        added = 0
        for chunk in chunks(((issue_key, *entry, now, now) for entry in entries), 5000):
            added += db.executemany(
                "INSERT INTO deliveries (issue_key, email, name, subscriber_id, list_name, variant_key, status, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, ?) "
                # A row queued before rows kept names (schema 3) gets it now, for its message.
                "ON CONFLICT (issue_key, subscriber_id) DO UPDATE SET name = excluded.name "
                "WHERE deliveries.name = '' AND excluded.name <> ''",
                chunk,
            ).rowcount
        return added

    def _stopped(self, db: Any) -> tuple[str, tuple, str]:
        """Which ``sending`` rows were left by a worker that stopped: (an SQL
        condition on ``deliveries``, its parameters, the reason recorded when
        they become ``unknown``). On an exclusive ledger every ``sending``
        row, which holds only while no send runs (the caller holds the run
        lock, or found it free); on a shared one the rows whose lease has run
        out by the database's clock."""
        if self.exclusive:
            return "1 = 1", (), CRASHED
        return "(lease_until IS NULL OR lease_until < ?)", (lease_text(self._clock(db)),), LEASE_EXPIRED

    def recover_crashed(self, issue_key: str) -> int:
        """Turn rows left ``sending`` by a worker that stopped into
        ``unknown`` and return how many: on an exclusive ledger every
        ``sending`` row (only safe while holding :meth:`run_lock`, so it
        refuses otherwise with RuntimeError); on a shared one the rows whose
        lease has expired."""
        if self.exclusive and not self._holds_run_lock():
            raise RuntimeError("recover_crashed needs the run lock")
        with self._write() as db:
            stopped, params, reason = self._stopped(db)
            return db.execute(
                "UPDATE deliveries SET status = 'unknown', last_error = ?, updated_at = ? "
                f"WHERE issue_key = ? AND status = 'sending' AND {stopped}",
                (reason, now_text(), issue_key, *params),
            ).rowcount

    def send_running(self) -> bool:
        """Whether a send holds this ledger's run lock now. Only an
        exclusive ledger has one; on a shared ledger the leases of its rows
        tell (see :meth:`in_flight_now`), so this is False there."""
        return False

    def in_flight_now(self, issue_key: str) -> tuple[int, int]:
        """The ``sending`` rows of ``issue_key``, as (being sent now,
        interrupted): the interrupted ones were left by a send that stopped
        (killed, crashed, its machine lost) and are the rows the next send's
        :meth:`recover_crashed` turns ``unknown``, by the same rule: on an
        exclusive ledger every ``sending`` row while no send holds the run
        lock, on a shared one the rows whose lease has run out."""
        sending, _ = self.in_flight(issue_key)
        if not sending or (self.exclusive and self.send_running()):
            return sending, 0
        with self._read() as db:
            stopped, params, _ = self._stopped(db)
            (row,) = dicts(db.execute(
                f"SELECT count(*) AS n, coalesce(sum(CASE WHEN {stopped} THEN 1 ELSE 0 END), 0) AS stopped "
                "FROM deliveries WHERE issue_key = ? AND status = 'sending'",
                (*params, issue_key),
            ))
        return row["n"] - row["stopped"], row["stopped"]

    def _holds_run_lock(self) -> bool:
        return True

    def in_flight(self, issue_key: str) -> tuple[int, str | None]:
        """(rows of ``issue_key`` being sent now, the latest end of their leases)."""
        (row,) = self._rows(
            "SELECT count(*) AS n, max(lease_until) AS until FROM deliveries WHERE issue_key = ? AND status = 'sending'",
            (issue_key,),
        )
        return row["n"], row["until"]

    def pending(self, issue_key: str, *, resend_unknown: bool = False) -> list[Delivery]:
        """Rows still to send, by variant then row id: ``queued`` and
        ``retryable``, and ``unknown`` too with ``resend_unknown``."""
        statuses = pending_statuses(resend_unknown)
        with self._read() as db:
            return _deliveries(db, f"issue_key = ? AND status IN ({marks(statuses)}) ORDER BY variant_key, id", (issue_key, *statuses))

    def pending_ids(self, issue_key: str, page: int = 5000) -> Iterator[tuple[int, str]]:
        """(row id, subscriber id) of every queued or retryable row of
        ``issue_key``, read ``page`` rows at a time."""
        last = 0
        while True:
            rows = self._rows(
                "SELECT id, subscriber_id FROM deliveries WHERE issue_key = ? AND status IN ('queued', 'retryable') AND id > ? "
                "ORDER BY id LIMIT ?",
                (issue_key, last, page),
            )
            yield from ((row["id"], row["subscriber_id"]) for row in rows)
            if len(rows) < page:
                return
            last = rows[-1]["id"]

    def close_rows(self, ids: Sequence[int], reason: str) -> None:
        """Close rows ``ids`` as rejected by us for ``reason`` (counted as an attempt)."""
        with self._write() as db:
            for chunk in chunks(ids, 1000):
                db.execute(
                    f"UPDATE deliveries SET status = 'rejected', attempts = attempts + 1, last_error = ?, updated_at = ? WHERE id IN ({marks(chunk)})",
                    (reason, now_text(), *chunk),
                )

    def release(self, rows: Sequence[Delivery]) -> None:
        """Give back claimed ``rows`` (as :meth:`claim` returned them) that
        were never sent: each goes back to its status before the claim, its
        attempt not counted, so the next run or another worker sends it."""
        with self._write() as db:
            db.executemany(
                "UPDATE deliveries SET status = ?, attempts = ?, worker = ?, lease_until = NULL WHERE id = ? AND status = 'sending'",
                [(row.status.value, row.attempts, row.worker, row.id) for row in rows],
            )

    def variant_counts(self, issue_key: str) -> dict[str, int]:
        """Rows of ``issue_key`` per variant key."""
        rows = self._rows("SELECT variant_key, count(*) AS n FROM deliveries WHERE issue_key = ? GROUP BY variant_key", (issue_key,))
        return {row["variant_key"]: row["n"] for row in rows}

    def mark_sending(self, ids: Sequence[int]) -> None:
        """Mark rows ``ids`` ``sending`` (one more attempt each) and commit,
        before their request goes out."""
        with self._write() as db:
            self._mark_sending(db, ids)

    def _mark_sending(self, db, ids: Sequence[int], worker: str | None = None, lease_until: str | None = None) -> None:
        if ids:
            db.execute(
                "UPDATE deliveries SET status = 'sending', attempts = attempts + 1, worker = ?, lease_until = ?, updated_at = ? "
                f"WHERE id IN ({marks(ids)})",
                (worker, lease_until, now_text(), *ids),
            )

    def claim_batch(self, issue_key: str, variant_key: str, limit: int, *, resend_unknown: bool = False) -> list[Delivery]:
        """Take up to ``limit`` pending rows of one variant (see
        :meth:`pending`), mark them ``sending`` and commit, in one
        transaction; return them as they were before the mark (with their
        previous status and attempts). Empty when nothing is left."""
        with self._write() as db:
            claimed = self._pick(db, issue_key, variant_key, limit, pending_statuses(resend_unknown), None)
            self._mark_sending(db, [d.id for d in claimed])
        return claimed

    def _pick(self, db, issue_key, variant_key, limit, statuses, worker) -> list[Delivery]:
        # No ORDER BY: the index yields rows in id order per status and the
        # LIMIT stops the scan early (sorting would read them all).
        return _deliveries(
            db,
            f"issue_key = ? AND variant_key = ? AND status IN ({marks(statuses)}) AND (worker IS NULL OR worker <> ?) LIMIT ?{self.lock_rows}",
            (issue_key, variant_key, *statuses, worker or "", limit),
        )

    def claim(
        self, issue_key: str, limit: int, *, worker: str, lease: float, resend_unknown: bool = False, suppressed: str = "suppressed"
    ) -> Claim:
        """Claim the next batch of ``issue_key`` for ``worker``: up to
        ``limit`` pending rows of one variant that ``worker`` has not tried
        already (so a round never takes its own retryable rows again), marked
        ``sending`` with ``worker`` and a lease of ``lease`` seconds, in one
        committed transaction; rows of other workers' claims in progress are
        skipped (``FOR UPDATE SKIP LOCKED`` on PostgreSQL). Rows whose
        address is suppressed right now (for their list or every list) are
        closed as rejected with the reason ``suppressed`` instead, so a
        reader who left during the send is not mailed. An empty claim means
        nothing is left."""
        with self._write() as db:
            return self._claim(db, issue_key, limit, worker, lease, resend_unknown, suppressed)

    def _claim(self, db, issue_key, limit, worker, lease, resend_unknown, suppressed) -> Claim:
        statuses = pending_statuses(resend_unknown)
        first = dicts(db.execute(
            f"SELECT variant_key FROM deliveries WHERE issue_key = ? AND status IN ({marks(statuses)}) "
            f"AND (worker IS NULL OR worker <> ?) LIMIT 1{self.lock_rows}",
            (issue_key, *statuses, worker),
        ))
        if not first:
            return Claim([])
        rows = self._pick(db, issue_key, first[0]["variant_key"], limit, statuses, worker)
        if not rows:
            return Claim([])
        stopped = {
            row["id"]
            for row in dicts(db.execute(
                "SELECT d.id FROM deliveries d JOIN suppressions s ON s.address_key = d.subscriber_id "
                f"AND s.list_name IN (d.list_name, '') WHERE d.id IN ({marks(rows)})",
                [row.id for row in rows],
            ))
        }
        if stopped:
            db.execute(
                "UPDATE deliveries SET status = 'rejected', attempts = attempts + 1, last_error = ?, worker = ?, updated_at = ? "
                f"WHERE id IN ({marks(stopped)})",
                (suppressed, worker, now_text(), *stopped),
            )
            rows = [row for row in rows if row.id not in stopped]
        until = lease_text(self._clock(db) + timedelta(seconds=lease))
        self._mark_sending(db, [row.id for row in rows], worker, until)
        return Claim(rows, len(stopped))

    def record_results(self, results: Iterable[tuple[int, RecipientResult]], *, article_ids: Iterable[str] = ()) -> int:
        """Store the provider's answer for each (row id, result), in one
        transaction, and return how many rows changed. Only rows marked
        ``sending`` are updated, so a late or repeated answer cannot undo a
        later state. When any result is accepted, ``article_ids`` (the
        variant's articles) are recorded as sent in the same transaction, so
        later issues skip them."""
        with self._write() as db:
            return self._record(db, results, article_ids)

    def record_and_claim(
        self, results: Iterable[tuple[int, RecipientResult]], *, article_ids: Iterable[str] = (), **claim: Any
    ) -> tuple[int, Claim]:
        """:meth:`record_results` and then :meth:`claim` (``claim`` are its
        keyword arguments, ``issue_key`` and ``limit`` included) in one
        transaction: one commit per batch instead of two. Returns (rows
        changed, the next claim)."""
        with self._write() as db:
            changed = self._record(db, results, article_ids)
            return changed, self._claim(
                db, claim["issue_key"], claim["limit"], claim["worker"], claim["lease"],
                claim.get("resend_unknown", False), claim.get("suppressed", "suppressed"),
            )

    def _record(self, db, results: Iterable[tuple[int, RecipientResult]], article_ids: Iterable[str]) -> int:
        now = now_text()
        # One UPDATE per outcome: a batch's answers are mostly alike (SendGrid
        # gives the whole request one message id).
        groups: dict[tuple[str, str | None, str | None], list[int]] = {}
        for row_id, result in results:
            status = STATUSES[result.status]  # a Status: the same values
            error = None if status is DeliveryStatus.ACCEPTED else result.reason
            groups.setdefault((status.value, result.message_id, error), []).append(row_id)
        changed = 0
        for (status, message_id, error), ids in groups.items():
            for chunk in chunks(ids, 1000):
                changed += db.execute(
                    "UPDATE deliveries SET status = ?, message_id = coalesce(?, message_id), last_error = ?, updated_at = ? "
                    f"WHERE status = 'sending' AND id IN ({marks(chunk)})",
                    (status, message_id, error, now, *chunk),
                ).rowcount
        accepted = [ids[0] for (status, _, _), ids in groups.items() if status == "accepted"]
        article_ids = list(article_ids)
        if article_ids and accepted:
            keys = dicts(db.execute(f"SELECT DISTINCT issue_key FROM deliveries WHERE id IN ({marks(accepted)})", accepted))
            db.executemany(
                "INSERT INTO sent_articles (article_id, issue_key) VALUES (?, ?) ON CONFLICT DO NOTHING",
                [(article_id, row["issue_key"]) for row in keys for article_id in article_ids],
            )
        return changed

    def counts(self, issue_key: str) -> dict[DeliveryStatus, int]:
        """Rows of ``issue_key`` per status; every status is present (0 when none)."""
        counts = dict.fromkeys(DeliveryStatus, 0)
        for row in self._rows("SELECT status, count(*) AS n FROM deliveries WHERE issue_key = ? GROUP BY status", (issue_key,)):
            counts[DeliveryStatus(row["status"])] = row["n"]
        return counts

    def problems(self, issue_key: str) -> list[Delivery]:
        """The rejected and unknown rows of ``issue_key``, with their reasons
        in ``last_error``, by status then address."""
        with self._read() as db:
            return _deliveries(db, "issue_key = ? AND status IN ('rejected', 'unknown') ORDER BY status, email", (issue_key,))

    def retryable(self, issue_key: str) -> list[Delivery]:
        """The rows of ``issue_key`` still retryable, by variant then id."""
        with self._read() as db:
            return _deliveries(db, "issue_key = ? AND status = 'retryable' ORDER BY variant_key, id", (issue_key,))

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
                (issue_key, subject, preheader, html, now_text()),
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
            "SELECT DISTINCT article_id FROM sent_articles WHERE issue_key <> ?", (except_issue or "",)
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
            f"AND list_name IN ({marks(names)}))",
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
                (issue_key, moment_text(window_start), moment_text(window_end), json.dumps(sorted(set(list_names))), reason, now_text()),
            )

    def refusals(self) -> list[dict]:
        """Every refused issue, newest first: dicts of ``issue``, ``refused_at``
        (ISO text, UTC) and ``reason``."""
        rows = self._rows("SELECT issue_key, refused_at, reason FROM refused_issues ORDER BY refused_at DESC")
        return [{"issue": row["issue_key"], "refused_at": row["refused_at"], "reason": row["reason"]} for row in rows]

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
                f"AND coalesce(last_error, '-') NOT IN ({marks(kept)})",
                (now_text(), issue_key, *kept),
            ).rowcount

    def issues_of_articles(self, article_ids: Iterable[str]) -> dict[str, str]:
        """article id -> key of the first issue that carried it, for those of ``article_ids`` that went out."""
        wanted = set(article_ids)
        rows = self._rows(
            "SELECT s.article_id, s.issue_key FROM sent_articles s JOIN issues i ON i.key = s.issue_key "
            f"ORDER BY i.created_at DESC, i.{self.issue_order} DESC"
        )
        return {row["article_id"]: row["issue_key"] for row in rows if row["article_id"] in wanted}

    # Copying --------------------------------------------------------------------------------

    def table_rows(self, table: str, page: int = 5000) -> Iterator[list[dict]]:
        """Every row of ``table`` (one of :data:`digest.ledger.model.TABLES`),
        ``page`` rows at a time, in the order they were written."""
        order = {"issues": self.issue_order, "deliveries": "id"}.get(table, "1")
        offset = 0
        while rows := self._rows(f"SELECT * FROM {table} ORDER BY {order} LIMIT ? OFFSET ?", (page, offset)):
            yield [{k: v for k, v in row.items() if k not in ("seq", "rowid")} for row in rows]
            offset += len(rows)


def _deliveries(db, condition: str, params: Sequence) -> list[Delivery]:
    """The rows of ``deliveries`` matching ``condition`` (SQL after WHERE,
    with ? marks for ``params``) as :class:`Delivery` objects."""
    return [delivery_of(row) for row in db.execute(f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE {condition}", params).fetchall()]
