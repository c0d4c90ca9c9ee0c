"""The ledger's rows about one reader, in one marked place beside
:mod:`digest.ledger` (which keeps issues and deliveries): what each reader
was sent (:func:`reader_history`, for per-reader windows,
:mod:`digest.frequencies`), a person's deliveries and the events about
them (:func:`person_deliveries`, an access request), and their
pseudonymization (:func:`pseudonymize`, an erasure: :mod:`digest.privacy`).

Each reads the ledger's SQLite tables directly, on a connection of its own
or the caller's (inside the caller's transaction); ``subscriber_id`` is the
case-folded address the delivery rows carry.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from datetime import datetime
from pathlib import Path

# A row counts as sent when accepted, unknown or sending: maybe sent is never sent again.
_SENT = "d.status IN ('accepted', 'unknown', 'sending') AND d.issue_key IS NOT ?"


def reader_history(path: Path | str, *, except_issue: str | None = None) -> tuple[dict[str, datetime], dict[str, set[str]]]:
    """What each reader was sent, per the ledger file ``path``, leaving out
    issue ``except_issue`` (the one being planned): subscriber id -> the end
    of the window of the last scheduled issue they were sent (aware UTC),
    and subscriber id -> the article ids of the special editions
    (``--issue``) they were sent. Empty when the file has no deliveries."""
    with closing(sqlite3.connect(path)) as db:
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


def _has_deliveries(db: sqlite3.Connection) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'deliveries'").fetchone() is not None



def person_deliveries(db: sqlite3.Connection, subscriber_id: str) -> list[dict]:
    """Every delivery row of ``subscriber_id`` (a case-folded address) on
    ``db``, oldest first, each with its ``events`` (a list of dicts); empty
    when the file has no deliveries table yet."""
    if not _has_deliveries(db):
        return []
    columns = "id, issue_key, email, list_name, variant_key, status, attempts, message_id, last_error, created_at, updated_at"
    rows = db.execute(f"SELECT {columns} FROM deliveries WHERE subscriber_id = ? ORDER BY created_at, id", (subscriber_id,)).fetchall()
    found = []
    for row in rows:
        entry = dict(zip(columns.split(", "), row, strict=True))
        events = db.execute(
            "SELECT event, detail, occurred_at, recorded_at FROM events WHERE delivery_id = ? ORDER BY recorded_at", (entry.pop("id"),)
        ).fetchall()
        entry["events"] = [dict(zip(("event", "detail", "occurred_at", "recorded_at"), e, strict=True)) for e in events]
        found.append(entry)
    return found


def pseudonymize(db: sqlite3.Connection, subscriber_id: str, pseudonym: str, scrub) -> tuple[int, int]:
    """Replace the address of ``subscriber_id`` in its delivery rows by
    ``pseudonym`` (address and subscriber id), on ``db`` inside the caller's
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
            "UPDATE deliveries SET email = ?, subscriber_id = ?, last_error = ? WHERE id = ?",
            (pseudonym, pseudonym, scrub(row[0]) if row[0] else row[0], delivery_id),
        )
        for rowid, detail in db.execute("SELECT rowid, detail FROM events WHERE delivery_id = ?", (delivery_id,)).fetchall():
            events += 1
            if detail:
                db.execute("UPDATE events SET detail = ? WHERE rowid = ?", (scrub(detail), rowid))
    return len(ids), events


