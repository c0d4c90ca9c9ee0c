"""The ledger's rows about one reader, in one marked place beside
:mod:`digest.ledger` (which keeps issues and deliveries): what each reader
was sent (:func:`reader_history`, for per-reader windows,
:mod:`digest.frequencies`), a person's deliveries and the events about
them (:func:`person_deliveries`, an access request), and their
pseudonymization (:func:`pseudonymize`, an erasure: :mod:`digest.privacy`).

Each reads the ledger's tables on either backend, through
:func:`digest.suppressions.using`: on a connection of its own (a SQLite path
or a ``postgresql://`` URL) or the caller's (inside the caller's
transaction); ``subscriber_id`` is the case-folded address the delivery rows
carry. The SQL is valid on both databases.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime

from digest.suppressions import Db, using

# A row counts as sent when accepted, unknown or sending: maybe sent is never sent again.
# ``<>`` rather than SQLite's ``IS NOT`` (PostgreSQL has no such operator): issue keys are
# never empty, so "" leaves out no issue.
_SENT = "d.status IN ('accepted', 'unknown', 'sending') AND d.issue_key <> ?"


def reader_history(path: Db, *, except_issue: str | None = None) -> tuple[dict[str, datetime], dict[str, set[str]]]:
    """What each reader was sent, per the ledger at ``path`` (a SQLite
    file, a ``postgresql://`` URL or an open connection), leaving out
    issue ``except_issue`` (the one being planned): subscriber id -> the end
    of the window of the last scheduled issue they were sent (aware UTC),
    and subscriber id -> the article ids of the special editions
    (``--issue``) they were sent. Empty when the ledger has no deliveries
    table. Raises :class:`digest.errors.DigestError` when it cannot be read."""
    except_issue = except_issue or ""
    with using(path) as db:
        if not _has_deliveries(db):
            return {}, {}
        ends = db.execute(
            f"SELECT d.subscriber_id, max(i.window_end) FROM deliveries d JOIN issues i ON i.key = d.issue_key "
            f"WHERE {_SENT} AND i.scheduled_at IS NOT NULL GROUP BY d.subscriber_id",
            (except_issue,),
        ).fetchall()
        specials: dict[str, set[str]] = {}
        for subscriber_id, ids in db.execute(
            f"SELECT d.subscriber_id, i.article_ids FROM deliveries d JOIN issues i ON i.key = d.issue_key WHERE {_SENT} AND i.scheduled_at IS NULL",
            (except_issue,),
        ):
            specials.setdefault(subscriber_id, set()).update(json.loads(ids))
    return {subscriber_id: datetime.fromisoformat(end) for subscriber_id, end in ends}, specials


def _has_deliveries(db) -> bool:
    """Whether ``db`` holds the ledger's tables: a SQLite file only
    :mod:`digest.suppressions` has opened may not; a PostgreSQL ledger
    always does (connecting brings its schema up to date)."""
    if not isinstance(db, sqlite3.Connection):
        return True
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'deliveries'").fetchone() is not None


def person_deliveries(db: Db, subscriber_id: str) -> list[dict]:
    """Every delivery row of ``subscriber_id`` (a case-folded address) on
    ``db`` (a path, URL or open connection), oldest first, each with its
    ``events`` (a list of dicts); empty when the ledger has no deliveries
    table yet."""
    columns = "id, issue_key, email, list_name, variant_key, status, attempts, message_id, last_error, created_at, updated_at"
    found = []
    with using(db) as conn:
        if not _has_deliveries(conn):
            return []
        rows = conn.execute(f"SELECT {columns} FROM deliveries WHERE subscriber_id = ? ORDER BY created_at, id", (subscriber_id,)).fetchall()
        for row in rows:
            entry = dict(zip(columns.split(", "), row, strict=True))
            events = conn.execute(
                "SELECT event, detail, occurred_at, recorded_at FROM events WHERE delivery_id = ? ORDER BY recorded_at", (entry.pop("id"),)
            ).fetchall()
            entry["events"] = [dict(zip(("event", "detail", "occurred_at", "recorded_at"), e, strict=True)) for e in events]
            found.append(entry)
    return found


def pseudonymize(db, subscriber_id: str, pseudonym: str, scrub) -> tuple[int, int]:
    """Replace the address of ``subscriber_id`` in its delivery rows by
    ``pseudonym`` (address and subscriber id), and clear their name, on
    ``db`` inside the caller's
    transaction; ``scrub(text)`` removes the address from the provider's
    reasons kept with the rows and their events (a bounce names the
    mailbox). The counts stay true; nobody can be found in them. Returns
    (delivery rows, event rows) changed."""
    if not _has_deliveries(db):
        return 0, 0
    ids = [row[0] for row in db.execute("SELECT id FROM deliveries WHERE subscriber_id = ?", (subscriber_id,))]
    events = 0
    for delivery_id in ids:
        row = db.execute("SELECT last_error FROM deliveries WHERE id = ?", (delivery_id,)).fetchone()
        db.execute(
            "UPDATE deliveries SET email = ?, name = '', subscriber_id = ?, last_error = ? WHERE id = ?",
            (pseudonym, pseudonym, scrub(row[0]) if row[0] else row[0], delivery_id),
        )
        # By the events' key, not SQLite's rowid: PostgreSQL has none.
        for event, event_id, detail in db.execute(
            "SELECT event, event_id, detail FROM events WHERE delivery_id = ?", (delivery_id,)
        ).fetchall():
            events += 1
            if detail:
                db.execute(
                    "UPDATE events SET detail = ? WHERE delivery_id = ? AND event = ? AND event_id = ?",
                    (scrub(detail), delivery_id, event, event_id),
                )
    return len(ids), events
