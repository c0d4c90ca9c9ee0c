"""Suppressions and stored preferences, kept in the ledger (a SQLite file or
a PostgreSQL database).

A **suppression** is an address that must never be mailed again, whatever the
CSV lists say: the reader unsubscribed, the address bounced, the reader
reported spam, or an operator added it by hand. A suppression either names one
list (a one-click unsubscribe from that list) or, with ``list_name=None``,
covers every list (bounces, spam reports, manual entries by default).

A **preference** is the set of tags a reader chose on the preferences page;
it replaces the tags of their CSV row for that list. Their chosen
**frequency** (daily, weekly or monthly) likewise replaces their row's.

The tables live in the same file as :mod:`digest.ledger` (``settings.ledger``)
so one backup holds the whole state, but this module owns them and creates
them when absent. Every function takes ``db``: a path or ``postgresql://``
URL (opened, committed and closed per call) or an open connection from
:func:`connect`
(the caller commits, so several writes form one transaction, as a webhook
batch needs). Addresses are compared by :func:`address_key` (surrounding
spaces removed, case-folded), the same rule as ``Subscriber.key``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from digest.errors import DigestError, LedgerBusyError
from digest.files import create_private
from digest.ledger import postgresql, scheme_of
from digest.ledger.model import CONSENT_TABLES, SUPPRESSION_TABLES

REASONS = ("unsubscribed", "bounced", "spam-report", "manual")
EVERY_LIST = ""  # stored instead of NULL so that the unique key also holds for global rows
BUSY_TIMEOUT_MS = 5000

# Part of the ledger's schema; created here too in a file only this module or digest.consent has touched.
_SCHEMA = SUPPRESSION_TABLES + CONSENT_TABLES
_TABLES = {"suppressions", "preferences", "frequencies", "consents", "signup_sends", "used_confirmations", "forgotten"}
FREQUENCIES = ("daily", "weekly", "monthly")

Db = Path | str | sqlite3.Connection | postgresql.Connection


@dataclass(frozen=True)
class Suppression:
    """One suppression row. ``list_name`` None means every list;
    ``created_at`` is an aware UTC datetime; ``reason`` is one of
    :data:`REASONS`; ``source`` says who recorded it (``one-click``,
    ``sendgrid:bounce``, ``cli``...)."""

    address: str
    reason: str
    source: str
    list_name: str | None
    created_at: datetime

    @property
    def key(self) -> str:
        return address_key(self.address)


def address_key(address: str) -> str:
    """The form addresses are compared in: spaces around removed, case-folded.

    Mailbox local parts may be case-sensitive (RFC 5321 §2.4) but no real
    provider treats them so, and two rows differing only in case are the same
    reader; we keep the case for sending and fold it for comparing."""
    return address.strip().casefold()


def connect(path: Path | str) -> sqlite3.Connection | postgresql.Connection:
    """Open the ledger file (created if absent) in WAL mode with a busy
    timeout of :data:`BUSY_TIMEOUT_MS`, and create this module's tables and
    :mod:`digest.consent`'s; or,
    for a ``postgresql://`` URL, connect to that ledger (its schema brought
    up to date).

    WAL lets ``digest serve`` record unsubscribes while a send reads the file.
    Raises :class:`LedgerBusyError` when the file stays locked longer than the
    timeout, :class:`DigestError` when it cannot be opened."""
    if scheme_of(path):
        return postgresql.connect(str(path))
    try:
        create_private(Path(path))  # addresses: readable by the owner only
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        present = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not _TABLES <= present:  # no write lock taken when they exist
            conn.executescript(_SCHEMA)
    except sqlite3.OperationalError as exc:
        raise _ledger_error(path, exc) from None
    except sqlite3.DatabaseError as exc:
        raise DigestError(f"ledger {path}: {exc}") from None
    return conn


@contextmanager
def using(db: Db) -> Iterator[sqlite3.Connection | postgresql.Connection]:
    """A connection for one call, to either backend: the caller's own (an
    open connection from :func:`connect` or :func:`transaction`, inside
    the caller's transaction), or, for a SQLite path or a ``postgresql://``
    URL, a fresh one that is committed (or rolled back on error) and closed
    at the end. Statements take ``?`` marks on both. Raises
    :class:`LedgerBusyError` when a file stays locked,
    :class:`DigestError` (one line, no password) for other database errors."""
    if isinstance(db, sqlite3.Connection | postgresql.Connection):
        yield db
        return
    with closing(connect(db)) as conn:
        try:
            with conn:  # commit, or roll back on an exception
                yield conn
        except sqlite3.OperationalError as exc:
            raise _ledger_error(db, exc) from None
        except conn_errors(conn) as exc:
            raise DigestError(f"ledger {conn.name}: {str(exc).strip().splitlines()[0]}") from None


def conn_errors(conn: object) -> tuple[type[BaseException], ...]:
    """The database errors of ``conn`` other than SQLite's, for one readable line."""
    return getattr(conn, "errors", ())


@contextmanager
def transaction(target: Path | str) -> Iterator[sqlite3.Connection | postgresql.Connection]:
    """One write transaction on the ledger at ``target`` (taking SQLite's
    write lock at once, so it cannot fail half-way on a busy file):
    committed at the end, rolled back on an error, then closed. Errors
    are translated as :func:`using` does."""
    with using(target) as conn:
        if isinstance(conn, sqlite3.Connection):
            conn.execute("BEGIN IMMEDIATE")
        yield conn


def present(target: Path | str) -> bool:
    """Whether a ledger is there to read: a file that exists, or a PostgreSQL URL."""
    return bool(scheme_of(target)) or Path(target).is_file()


def _ledger_error(path: object, exc: sqlite3.OperationalError) -> DigestError:
    if "locked" in str(exc) or "busy" in str(exc):
        return LedgerBusyError(f"ledger {path} is locked by another process; try again")
    return DigestError(f"ledger {path}: {exc}")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def add(
    db: Db,
    address: str,
    reason: str,
    source: str,
    list_name: str | None = None,
    *,
    at: datetime | None = None,
) -> bool:
    """Suppress ``address`` for ``list_name`` (None: every list).

    Returns True when a row was added, False when the address was already
    suppressed for that list (the first row is kept: repeating an unsubscribe
    is harmless). Raises :class:`ValueError` for a reason not in
    :data:`REASONS` or an empty address."""
    if reason not in REASONS:
        raise ValueError(f"reason must be one of {', '.join(REASONS)}, not {reason!r}")
    address = address.strip()
    if not address:
        raise ValueError("empty address")
    when = (at or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds")
    with using(db) as conn:
        cursor = conn.execute(
            "INSERT INTO suppressions (address_key, address, reason, source, list_name, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (address_key(address), address, reason, source, list_name or EVERY_LIST, when),
        )
        return cursor.rowcount == 1


def add_many(db: Db, entries: Iterable[tuple[str, str, str | None]], source: str) -> int:
    """Suppress every ``(address, reason, list_name)`` of ``entries`` (as
    :func:`add` does, one ``source`` for all) in one transaction: all or
    none. Returns how many rows were new. Raises :class:`ValueError` as
    :func:`add` does, :class:`DigestError` when the ledger cannot be written."""
    with using(db) as conn:
        return sum(add(conn, address, reason, source, list_name) for address, reason, list_name in entries)


def remove(db: Db, address: str, list_name: str | None = None) -> int:
    """Lift the suppressions of ``address``: only the one for ``list_name``
    when given, else every one (global and per list). Returns how many rows
    went."""
    with using(db) as conn:
        if list_name is None:
            cursor = conn.execute("DELETE FROM suppressions WHERE address_key = ?", (address_key(address),))
        else:
            cursor = conn.execute(
                "DELETE FROM suppressions WHERE address_key = ? AND list_name = ?",
                (address_key(address), list_name),
            )
        return cursor.rowcount


def lift_unsubscribes(db: Db, address: str, list_name: str) -> int:
    """Lift ``address``'s unsubscribes from ``list_name`` and from every list
    (the reader asked to join again); bounces, spam reports and manual
    suppressions stay. Returns how many rows went."""
    with using(db) as conn:
        return conn.execute(
            "DELETE FROM suppressions WHERE address_key = ? AND reason = 'unsubscribed' AND list_name IN (?, ?)",
            (address_key(address), list_name, EVERY_LIST),
        ).rowcount


def list_suppressions(db: Db, list_name: str | None = None) -> list[Suppression]:
    """Every suppression, oldest first; with ``list_name``, those that apply
    to that list (its own and the global ones)."""
    query = "SELECT address, reason, source, list_name, created_at FROM suppressions"
    params: tuple[str, ...] = ()
    if list_name is not None:
        query += " WHERE list_name IN (?, ?)"
        params = (list_name, EVERY_LIST)
    with using(db) as conn:
        rows = conn.execute(query + " ORDER BY created_at, address_key", params).fetchall()
    return [_suppression(row) for row in rows]


def is_suppressed(db: Db, address: str, list_name: str | None = None) -> Suppression | None:
    """The suppression that stops mail to ``address`` on ``list_name`` (a
    global one counts for every list; with ``list_name`` None, any row
    counts), or None."""
    query = "SELECT address, reason, source, list_name, created_at FROM suppressions WHERE address_key = ?"
    params: tuple[str, ...] = (address_key(address),)
    if list_name is not None:
        query += " AND list_name IN (?, ?)"
        params += (list_name, EVERY_LIST)
    with using(db) as conn:
        row = conn.execute(query + " ORDER BY created_at LIMIT 1", params).fetchone()
    return _suppression(row) if row else None


def suppressed_keys(db: Db, list_name: str) -> dict[str, Suppression]:
    """Every address key suppressed for ``list_name`` (its own rows and the
    global ones), mapped to its suppression (the oldest when there are
    several), in one query."""
    return {s.key: s for s in reversed(list_suppressions(db, list_name))}


def suppressed_key_set(db: Db, list_name: str) -> frozenset[str]:
    """The address keys suppressed for ``list_name`` (its own and the global
    ones), in one query and nothing more: filtering an audience of 100,000
    beside a history of 100,000 suppressions is then a set lookup per
    subscriber, without a suppression object for each row."""
    with using(db) as conn:
        # Read as the set fills: no list of every row beside it.
        rows = conn.execute("SELECT address_key FROM suppressions WHERE list_name IN (?, ?)", (list_name, EVERY_LIST))
        return frozenset(row[0] for row in rows)


def suppressions_for(db: Db, list_name: str, keys: Iterable[str]) -> dict[str, Suppression]:
    """The suppression (the oldest) of each of ``keys`` (address keys) on
    ``list_name``, for those suppressed there; one query per 500 keys."""
    wanted = sorted(set(keys))
    found: dict[str, Suppression] = {}
    with using(db) as conn:
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            rows = conn.execute(
                "SELECT address, reason, source, list_name, created_at FROM suppressions "
                f"WHERE list_name IN (?, ?) AND address_key IN ({','.join('?' * len(chunk))}) ORDER BY created_at DESC",
                (list_name, EVERY_LIST, *chunk),
            ).fetchall()
            found.update((suppression.key, suppression) for suppression in map(_suppression, rows))
    return found


def _suppression(row: tuple[str, str, str, str, str]) -> Suppression:
    address, reason, source, list_name, created_at = row
    return Suppression(address, reason, source, list_name or None, datetime.fromisoformat(created_at))


def set_preferences(db: Db, address: str, list_name: str, tags: Iterable[str]) -> None:
    """Store the tags ``address`` chose for ``list_name`` (slugs; an empty
    set means every tag, as an empty CSV cell does), replacing earlier ones."""
    chosen = json.dumps(sorted(set(tags)))
    with using(db) as conn:
        conn.execute(
            "INSERT INTO preferences (address_key, list_name, tags, updated_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (address_key, list_name) DO UPDATE SET tags = excluded.tags, updated_at = excluded.updated_at",
            (address_key(address), list_name, chosen, _now()),
        )


def get_preferences(db: Db, address: str, list_name: str) -> frozenset[str] | None:
    """The tags ``address`` chose for ``list_name``, or None if they never chose."""
    with using(db) as conn:
        row = conn.execute(
            "SELECT tags FROM preferences WHERE address_key = ? AND list_name = ?",
            (address_key(address), list_name),
        ).fetchone()
    return frozenset(json.loads(row[0])) if row else None


def all_preferences(db: Db, list_name: str) -> dict[str, frozenset[str]]:
    """Every stored choice for ``list_name``: address key -> tags (one query)."""
    with using(db) as conn:
        rows = conn.execute("SELECT address_key, tags FROM preferences WHERE list_name = ?", (list_name,)).fetchall()
    return {key: frozenset(json.loads(tags)) for key, tags in rows}


def set_frequency(db: Db, address: str, list_name: str, frequency: str) -> None:
    """Store the frequency ``address`` chose for ``list_name`` (one of
    :data:`FREQUENCIES`), replacing an earlier one. Raises
    :class:`ValueError` for another value."""
    if frequency not in FREQUENCIES:
        raise ValueError(f"frequency must be one of {', '.join(FREQUENCIES)}, not {frequency!r}")
    with using(db) as conn:
        conn.execute(
            "INSERT INTO frequencies (address_key, list_name, frequency, updated_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (address_key, list_name) DO UPDATE SET frequency = excluded.frequency, updated_at = excluded.updated_at",
            (address_key(address), list_name, frequency, _now()),
        )


def all_frequencies(db: Db, list_name: str) -> dict[str, str]:
    """Every stored frequency for ``list_name``: address key -> frequency (one query)."""
    with using(db) as conn:
        rows = conn.execute("SELECT address_key, frequency FROM frequencies WHERE list_name = ?", (list_name,)).fetchall()
    return dict(rows)


def get_frequency(db: Db, address: str, list_name: str) -> str | None:
    """The frequency ``address`` chose for ``list_name``, or None if they never chose."""
    with using(db) as conn:
        row = conn.execute(
            "SELECT frequency FROM frequencies WHERE address_key = ? AND list_name = ?", (address_key(address), list_name)
        ).fetchone()
    return row[0] if row else None
