"""What sign-up and the privacy commands keep in the ledger: consent, the
sign-up throttle, used confirmation links, and the keyed hashes of people
who asked to be forgotten.

Like :mod:`digest.suppressions`, this module owns its tables in the ledger
(``settings.ledger``: a SQLite file or a ``postgresql://`` URL), so one
backup holds the whole state. The tables are part of the ledger's schema
(:data:`digest.ledger.model.CONSENT_TABLES`, version 6), and
:func:`digest.suppressions.connect` creates them in a SQLite file no
ledger has opened yet. Every function takes what
:func:`digest.suppressions.using` takes: a path or URL (a connection for
the call) or an open connection (the caller's transaction). All of
sign-up's and erasure's additions to the ledger are here, in one place:

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
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from digest.ledger import postgresql
from digest.suppressions import Db, address_key, present, transaction, using

SIGNUP_METHOD = "double opt-in via form"
Connection = sqlite3.Connection | postgresql.Connection


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


def _now() -> datetime:
    return datetime.now(UTC)


def _text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def claim_signup_email(path: Db, hashed: str, *, every: timedelta = timedelta(hours=1), now: datetime | None = None) -> bool:
    """Whether a confirmation email may go to the address with keyed hash
    ``hashed`` now: True (and noted) when none went in the last ``every``,
    else False. One statement, so concurrent requests for one address get
    one True between them. Notes older than ``every`` are dropped."""
    now = now or _now()
    cutoff = _text(now - every)
    with using(path) as conn:
        conn.execute("DELETE FROM signup_sends WHERE sent_at < ?", (cutoff,))
        cursor = conn.execute(
            "INSERT INTO signup_sends (address_hash, sent_at) VALUES (?, ?) "
            "ON CONFLICT (address_hash) DO UPDATE SET sent_at = excluded.sent_at WHERE signup_sends.sent_at < ?",
            (hashed, _text(now), cutoff),
        )
        return cursor.rowcount == 1


def signup_pending(path: Db, hashed: str, *, every: timedelta = timedelta(hours=1)) -> bool:
    """Whether a confirmation email went to the address with keyed hash
    ``hashed`` in the last ``every``."""
    with using(path) as conn:
        row = conn.execute("SELECT sent_at FROM signup_sends WHERE address_hash = ?", (hashed,)).fetchone()
    return row is not None and row[0] >= _text(_now() - every)


def release_signup_email(path: Db, hashed: str) -> None:
    """Forget the note of :func:`claim_signup_email` (the email could not be
    sent: the reader may try again at once)."""
    with using(path) as conn:
        conn.execute("DELETE FROM signup_sends WHERE address_hash = ?", (hashed,))


def use_confirmation(conn: Connection, token: str, *, keep_for: timedelta) -> bool:
    """Note that confirmation ``token`` was used, on ``conn`` inside the
    caller's transaction (see :func:`write_transaction`); False when it had been
    used before. Notes older than ``keep_for`` (the tokens' lifetime: older
    tokens are refused anyway) are dropped."""
    now = _now()
    conn.execute("DELETE FROM used_confirmations WHERE used_at < ?", (_text(now - keep_for),))
    digest = hashlib.sha256(token.encode()).hexdigest()
    # ON CONFLICT: on PostgreSQL a second use waits for the first to commit, then inserts nothing.
    cursor = conn.execute(
        "INSERT INTO used_confirmations (token_sha256, used_at) VALUES (?, ?) ON CONFLICT DO NOTHING", (digest, _text(now))
    )
    return cursor.rowcount == 1


@contextmanager
def write_transaction(path: Path | str) -> Iterator[Connection]:
    """One write transaction on the ledger at ``path`` (a file or a
    ``postgresql://`` URL) for :func:`use_confirmation`,
    :func:`record_consent`, :func:`erase` and :func:`unforget`; committed
    at the end, rolled back on error, then closed. On SQLite it takes the
    write lock at once (``BEGIN IMMEDIATE``), so two confirmations of one
    token are serialized; on PostgreSQL the second waits on the first's
    ``used_confirmations`` row. Raises :class:`digest.errors.DigestError`
    (one line) when the ledger cannot be written."""
    with transaction(path) as conn:
        if isinstance(conn, sqlite3.Connection):
            # Freed space is zeroed, so erased rows (digest.privacy) leave no bytes behind.
            conn.execute("PRAGMA secure_delete = ON")
        yield conn


def record_consent(
    conn: Connection, address: str, list_name: str, *, method: str = SIGNUP_METHOD, ip_address: str | None = None,
    requested_at: datetime | None = None,
) -> None:
    """Record (or renew) ``address``'s consent for ``list_name``, confirmed now."""
    conn.execute(
        "INSERT INTO consents (address_key, list_name, method, ip_address, requested_at, confirmed_at) VALUES (?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (address_key, list_name) DO UPDATE SET method = excluded.method, ip_address = excluded.ip_address, "
        "requested_at = excluded.requested_at, confirmed_at = excluded.confirmed_at",
        (address_key(address), list_name, method, ip_address, _text(requested_at) if requested_at else None, _text(_now())),
    )


def consents_of(path: Db, address: str) -> list[Consent]:
    """Every consent ``address`` gave, by list name."""
    with using(path) as conn:
        rows = conn.execute(
            "SELECT list_name, method, ip_address, requested_at, confirmed_at FROM consents WHERE address_key = ? ORDER BY list_name",
            (address_key(address),),
        ).fetchall()
    return [
        Consent(name, method, ip, datetime.fromisoformat(asked) if asked else None, datetime.fromisoformat(confirmed))
        for name, method, ip, asked, confirmed in rows
    ]


def unforget(conn: Connection, hashed: str) -> bool:
    """Drop the erasure mark of ``hashed`` (the person signed up again:
    their own new request). Returns whether there was one."""
    return conn.execute("DELETE FROM forgotten WHERE address_hash = ?", (hashed,)).rowcount == 1


def forgotten_hashes(path: Path | str) -> dict[str, datetime]:
    """The keyed hash of every erased address -> when it was erased; empty
    when no ledger file is at ``path`` (it is not created)."""
    if not present(path):
        return {}
    with using(path) as conn:
        return {hashed: datetime.fromisoformat(at) for hashed, at in conn.execute("SELECT address_hash, forgotten_at FROM forgotten")}


def forgotten_at(path: Path | str, hashed: str) -> datetime | None:
    """When the address with keyed hash ``hashed`` was erased, or None."""
    if not present(path):
        return None
    with using(path) as conn:
        row = conn.execute("SELECT forgotten_at FROM forgotten WHERE address_hash = ?", (hashed,)).fetchone()
    return datetime.fromisoformat(row[0]) if row else None


def erase(conn: Connection, address: str, hashed: str) -> dict[str, int]:
    """Delete ``address``'s consent, preferences, frequency, suppressions
    and sign-up note on ``conn`` (inside the caller's transaction), and
    mark ``hashed`` as forgotten. Returns how many rows went, by table."""
    key = address_key(address)
    counts = {}
    for table in ("consents", "preferences", "frequencies", "suppressions"):
        counts[table] = conn.execute(f"DELETE FROM {table} WHERE address_key = ?", (key,)).rowcount  # noqa: S608 - table names are ours
    counts["signup_sends"] = conn.execute("DELETE FROM signup_sends WHERE address_hash = ?", (hashed,)).rowcount
    conn.execute("INSERT INTO forgotten (address_hash, forgotten_at) VALUES (?, ?) ON CONFLICT DO NOTHING", (hashed, _text(_now())))
    return counts
