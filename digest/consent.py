"""What sign-up and the privacy commands keep in the ledger file: consent,
the sign-up throttle, used confirmation links, and the keyed hashes of
people who asked to be forgotten.

Like :mod:`digest.suppressions`, this module owns its tables in the ledger
file (``settings.ledger``) and creates them when absent, so one backup holds
the whole state. All of sign-up's and erasure's additions to the ledger are
here, in one place:

- ``consents``: who confirmed, for which list, when, how ("double opt-in
  via form") and, only if the operator turns ``consent_record_ip`` on, from
  which IP address (GDPR Art. 7(1): the controller must be able to show
  consent was given);
- ``signup_sends``: when the last confirmation email went to an address,
  by its keyed hash, so repeated requests send at most one an hour without
  keeping the address of someone who never confirmed;
- ``used_confirmations``: the SHA-256 of each confirmation token used, so a
  link confirms once;
- ``forgotten``: the keyed hash of each address erased by ``digest
  subscribers forget`` (GDPR Art. 17): no address, yet a later import or
  list edit that brings the address back is recognised and not mailed.

Keyed hashes are HMAC-SHA256 of the case-folded address with a key derived
from ``secret_key`` (:func:`address_hash`); without the secret they cannot be
reversed by trying addresses. Rotating ``secret_key`` makes old hashes
unrecognisable. Times are ISO 8601 text in UTC.
"""

from __future__ import annotations

import hashlib
import hmac
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from digest.errors import DigestError
from digest.ledger import scheme_of
from digest.suppressions import address_key, connect

_SCHEMA = """
CREATE TABLE IF NOT EXISTS consents (
    address_key TEXT NOT NULL,
    list_name TEXT NOT NULL,
    method TEXT NOT NULL,
    ip_address TEXT,
    requested_at TEXT,
    confirmed_at TEXT NOT NULL,
    PRIMARY KEY (address_key, list_name)
);
CREATE TABLE IF NOT EXISTS signup_sends (
    address_hash TEXT PRIMARY KEY,
    sent_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS used_confirmations (
    token_sha256 TEXT PRIMARY KEY,
    used_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS forgotten (
    address_hash TEXT PRIMARY KEY,
    forgotten_at TEXT NOT NULL
);
"""
_TABLES = {"consents", "signup_sends", "used_confirmations", "forgotten"}
SIGNUP_METHOD = "double opt-in via form"


@dataclass(frozen=True)
class Consent:
    """One confirmed sign-up: ``list_name``, ``method``, ``ip_address``
    (None unless recorded), ``requested_at`` (when the form was posted) and
    ``confirmed_at`` (aware UTC datetimes)."""

    list_name: str
    method: str
    ip_address: str | None
    requested_at: datetime | None
    confirmed_at: datetime


def address_hash(secret: str, address: str) -> str:
    """The keyed hash of ``address`` (HMAC-SHA256, hex) under ``secret``
    (``settings.secret_key``), compared case-insensitively as addresses are
    (:func:`digest.suppressions.address_key`)."""
    key = hmac.new(secret.encode(), b"digest.address-hash.v1", hashlib.sha256).digest()
    return hmac.new(key, address_key(address).encode(), hashlib.sha256).hexdigest()


@contextmanager
def _db(path: Path | str) -> Iterator[sqlite3.Connection]:
    """The ledger file with this module's tables, committed at the end (one
    transaction) or rolled back on error, then closed. Raises
    :class:`DigestError` for a ``postgresql://`` ledger: these records are
    kept in a SQLite ledger only, for now."""
    if scheme_of(path):
        raise DigestError("sign-up, consent and erasure records need a SQLite ledger for now, not a postgresql:// one")
    with closing(connect(path)) as conn:
        present = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not _TABLES <= present:
            conn.executescript(_SCHEMA)
        with conn:
            yield conn


def _now() -> datetime:
    return datetime.now(UTC)


def _text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def claim_signup_email(path: Path | str, hashed: str, *, every: timedelta = timedelta(hours=1), now: datetime | None = None) -> bool:
    """Whether a confirmation email may go to the address with keyed hash
    ``hashed`` now: True (and noted) when none went in the last ``every``,
    else False. One statement, so concurrent requests for one address get
    one True between them. Notes older than ``every`` are dropped."""
    now = now or _now()
    cutoff = _text(now - every)
    with _db(path) as conn:
        conn.execute("DELETE FROM signup_sends WHERE sent_at < ?", (cutoff,))
        cursor = conn.execute(
            "INSERT INTO signup_sends (address_hash, sent_at) VALUES (?, ?) "
            "ON CONFLICT (address_hash) DO UPDATE SET sent_at = excluded.sent_at WHERE signup_sends.sent_at < ?",
            (hashed, _text(now), cutoff),
        )
        return cursor.rowcount == 1


def signup_pending(path: Path | str, hashed: str, *, every: timedelta = timedelta(hours=1)) -> bool:
    """Whether a confirmation email went to the address with keyed hash
    ``hashed`` in the last ``every``."""
    with _db(path) as conn:
        row = conn.execute("SELECT sent_at FROM signup_sends WHERE address_hash = ?", (hashed,)).fetchone()
    return row is not None and row[0] >= _text(_now() - every)


def release_signup_email(path: Path | str, hashed: str) -> None:
    """Forget the note of :func:`claim_signup_email` (the email could not be
    sent: the reader may try again at once)."""
    with _db(path) as conn:
        conn.execute("DELETE FROM signup_sends WHERE address_hash = ?", (hashed,))


def use_confirmation(conn: sqlite3.Connection, token: str, *, keep_for: timedelta) -> bool:
    """Note that confirmation ``token`` was used, on ``conn`` inside the
    caller's transaction (see :func:`write_transaction`); False when it had been
    used before. Notes older than ``keep_for`` (the tokens' lifetime: older
    tokens are refused anyway) are dropped."""
    now = _now()
    conn.execute("DELETE FROM used_confirmations WHERE used_at < ?", (_text(now - keep_for),))
    digest = hashlib.sha256(token.encode()).hexdigest()
    cursor = conn.execute("INSERT OR IGNORE INTO used_confirmations (token_sha256, used_at) VALUES (?, ?)", (digest, _text(now)))
    return cursor.rowcount == 1


@contextmanager
def write_transaction(path: Path | str) -> Iterator[sqlite3.Connection]:
    """One write transaction on the ledger file (``BEGIN IMMEDIATE``: taken
    at once, so two confirmations of one token are serialized) for
    :func:`use_confirmation`, :func:`record_consent` and
    :func:`unforget`; committed at the end, rolled back on error."""
    with _db(path) as conn:
        # Freed space is zeroed, so erased rows (digest.privacy) leave no bytes behind.
        conn.execute("PRAGMA secure_delete = ON")
        conn.execute("BEGIN IMMEDIATE")
        yield conn


def record_consent(
    conn: sqlite3.Connection, address: str, list_name: str, *, method: str = SIGNUP_METHOD, ip_address: str | None = None,
    requested_at: datetime | None = None,
) -> None:
    """Record (or renew) ``address``'s consent for ``list_name``, confirmed now."""
    conn.execute(
        "INSERT INTO consents (address_key, list_name, method, ip_address, requested_at, confirmed_at) VALUES (?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (address_key, list_name) DO UPDATE SET method = excluded.method, ip_address = excluded.ip_address, "
        "requested_at = excluded.requested_at, confirmed_at = excluded.confirmed_at",
        (address_key(address), list_name, method, ip_address, _text(requested_at) if requested_at else None, _text(_now())),
    )


def consents_of(path: Path | str, address: str) -> list[Consent]:
    """Every consent ``address`` gave, by list name."""
    with _db(path) as conn:
        rows = conn.execute(
            "SELECT list_name, method, ip_address, requested_at, confirmed_at FROM consents WHERE address_key = ? ORDER BY list_name",
            (address_key(address),),
        ).fetchall()
    return [
        Consent(name, method, ip, datetime.fromisoformat(asked) if asked else None, datetime.fromisoformat(confirmed))
        for name, method, ip, asked, confirmed in rows
    ]


def unforget(conn: sqlite3.Connection, hashed: str) -> bool:
    """Drop the erasure mark of ``hashed`` (the person signed up again:
    their own new request). Returns whether there was one."""
    return conn.execute("DELETE FROM forgotten WHERE address_hash = ?", (hashed,)).rowcount == 1


def forgotten_hashes(path: Path | str) -> dict[str, datetime]:
    """The keyed hash of every erased address -> when it was erased; empty
    when ``path`` does not exist (it is not created)."""
    if scheme_of(path) or not Path(path).is_file():
        return {}
    with _db(path) as conn:
        return {hashed: datetime.fromisoformat(at) for hashed, at in conn.execute("SELECT address_hash, forgotten_at FROM forgotten")}


def forgotten_at(path: Path | str, hashed: str) -> datetime | None:
    """When the address with keyed hash ``hashed`` was erased, or None."""
    if scheme_of(path) or not Path(path).is_file():
        return None
    with _db(path) as conn:
        row = conn.execute("SELECT forgotten_at FROM forgotten WHERE address_hash = ?", (hashed,)).fetchone()
    return datetime.fromisoformat(row[0]) if row else None


def erase(conn: sqlite3.Connection, address: str, hashed: str) -> dict[str, int]:
    """Delete ``address``'s consent, preferences, frequency, suppressions
    and sign-up note on ``conn`` (inside the caller's transaction), and
    mark ``hashed`` as forgotten. Returns how many rows went, by table."""
    key = address_key(address)
    counts = {}
    for table in ("consents", "preferences", "frequencies", "suppressions"):
        counts[table] = conn.execute(f"DELETE FROM {table} WHERE address_key = ?", (key,)).rowcount  # noqa: S608 - table names are ours
    counts["signup_sends"] = conn.execute("DELETE FROM signup_sends WHERE address_hash = ?", (hashed,)).rowcount
    conn.execute("INSERT OR IGNORE INTO forgotten (address_hash, forgotten_at) VALUES (?, ?)", (hashed, _text(_now())))
    return counts
