"""A person's own data: everything digest keeps about one address
(:func:`describe`, GDPR Art. 15 access) and its erasure (:func:`forget`,
Art. 17).

Where a person's address lives: the rows of the subscriber lists; in the
ledger file, their suppressions, topic and frequency choices, consent,
delivery rows (with the provider's reasons) and the events reported about
those deliveries. Erasure removes the rows, deletes the choices, consent and
suppressions, and replaces the address in delivery rows by a pseudonym made
from its keyed hash (the counts of each issue stay true). What remains is
that keyed hash in the ``forgotten`` table (:mod:`digest.consent`): an
import or an edited list that brings the address back is recognised, and the
address is not imported or mailed, though nobody can read it from the file.

The ledger is either backend (a SQLite file or a ``postgresql://`` URL),
read and written through :func:`digest.suppressions.using`. Erasure
rewrites a ledger file (SQLite ``secure_delete`` and ``VACUUM``, then a WAL
checkpoint that empties the ``-wal`` file), so the old bytes are gone from
the disk file too, not just unreachable; on PostgreSQL it vacuums the tables
it changed, so the deleted row versions are removed at once rather than at
the next autovacuum (the server's write-ahead log and backups keep them
until they age out).
"""

from __future__ import annotations

import re
import sqlite3
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from digest import consent, suppressions
from digest.addresses import normalize_address
from digest.errors import DigestError
from digest.ledger import postgresql, scheme_of
from digest.ledger.readers import person_deliveries, pseudonymize
from digest.listedits import locked, remove_subscriber
from digest.subscribers import list_files, raw_records
from digest.suppressions import address_key

if TYPE_CHECKING:
    from digest.settings import Settings


def _address(email: str) -> str:
    try:
        return normalize_address(email)
    except DigestError:
        return email.strip()  # not a valid address, but it may still sit in a list: look for it as written


def _secret(settings: Settings) -> str:
    return settings.secret_key.get_secret_value()


def _lists(settings: Settings) -> list[Path]:
    try:
        return list_files(Path(settings.subscribers))
    except DigestError:  # no lists yet
        return []


def describe(settings: Settings, email: str) -> dict:
    """Everything kept about ``email`` (compared case-insensitively), as a
    JSON-ready dict: ``email``; ``lists`` (each row: list, file, line and its
    values by our field names); ``choices`` (per list: stored tags and
    frequency, None when never chosen); ``consents``; ``suppressions``;
    ``deliveries`` (issue, status, attempts, dates, the provider's reasons,
    and the webhook ``events`` about each); ``signup_pending`` (a
    confirmation email went out in the last hour); ``forgotten_at`` (when
    it was erased, if it was). Times are ISO 8601 in UTC."""
    address = _address(email)
    key = address_key(address)
    rows = []
    for file in _lists(settings):
        for row, values in raw_records(file):
            if address_key(values["email"]) == key:
                rows.append({"list": file.stem, "file": str(file), "line": row.line, **{k: v for k, v in values.items() if v}})
    ledger = settings.ledger
    found: dict = {"email": address, "lists": rows, "choices": {}, "consents": [], "suppressions": [], "deliveries": []}
    found["signup_pending"], found["forgotten_at"] = False, None
    if not suppressions.present(ledger):
        return found
    hashed = consent.address_hash(_secret(settings), address)
    names = sorted({r["list"] for r in rows} | {c.list_name for c in consent.consents_of(ledger, address)})
    for name in names:
        tags = suppressions.get_preferences(ledger, address, name)
        found["choices"][name] = {"tags": sorted(tags) if tags is not None else None, "frequency": suppressions.get_frequency(ledger, address, name)}
    found["consents"] = [
        {"list": c.list_name, "method": c.method, "ip_address": c.ip_address, "requested_at": _iso(c.requested_at), "confirmed_at": _iso(c.confirmed_at)}
        for c in consent.consents_of(ledger, address)
    ]
    found["suppressions"] = [
        {"list": s.list_name or "(every list)", "reason": s.reason, "source": s.source, "created_at": _iso(s.created_at)}
        for s in suppressions.list_suppressions(ledger)
        if s.key == key
    ]
    found["deliveries"] = person_deliveries(ledger, key)
    found["signup_pending"] = consent.signup_pending(ledger, hashed)
    found["forgotten_at"] = _iso(consent.forgotten_at(ledger, hashed))
    return found


def _iso(moment) -> str | None:
    return moment.isoformat() if moment else None


# What the summary calls each table's rows: (one, several).
_NAMES = {
    "consents": ("consent", "consents"),
    "preferences": ("topic choice", "topic choices"),
    "frequencies": ("frequency choice", "frequency choices"),
    "suppressions": ("suppression", "suppressions"),
    "signup_sends": ("sign-up note", "sign-up notes"),
    "deliveries": ("delivery pseudonymized", "deliveries pseudonymized"),
    "events": ("event pseudonymized", "events pseudonymized"),
}


@dataclass
class Erasure:
    """What :func:`forget` removed: rows per list file, and per table of the
    ledger file (deliveries and events are pseudonymized, not deleted)."""

    email: str
    list_rows: dict[str, int] = field(default_factory=dict)
    ledger_rows: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        """One line for the operator, e.g. ``forgot ada@example.org: 1 list
        row (garden), 1 consent, 2 deliveries pseudonymized...``."""
        rows = sum(self.list_rows.values())
        parts = [f"{rows} list row{'' if rows == 1 else 's'}" + (f" ({', '.join(sorted(self.list_rows))})" if self.list_rows else "")]
        parts += [f"{n} {_NAMES[table][n != 1]}" for table, n in self.ledger_rows.items() if n]
        return (
            f"forgot {self.email}: " + ", ".join(parts) + ". Only a keyed hash of the address is kept, so a later import "
            "or list edit that brings it back is refused, and it is never mailed"
        )


def forget(settings: Settings, email: str) -> Erasure:
    """Erase ``email`` (compared case-insensitively) everywhere (see the
    module doc) and return what went. Raises :class:`DigestError` when a
    list or the ledger file cannot be written; what was done before stays
    done, and running it again finishes the rest."""
    address = _address(email)
    key = address_key(address)
    erasure = Erasure(address)
    for file in _lists(settings):
        if _holds(file, key):
            erasure.list_rows[file.stem] = remove_subscriber(file, address, missing_ok=True)
    ledger = settings.ledger
    hashed = consent.address_hash(_secret(settings), address)
    pattern = re.compile(re.escape(address), re.IGNORECASE)
    pseudonym = f"forgotten:{hashed[:32]}"
    with consent.write_transaction(ledger) as conn:
        erasure.ledger_rows = consent.erase(conn, address, hashed)
        deliveries, events = pseudonymize(conn, key, pseudonym, lambda text: pattern.sub(pseudonym, text))
        erasure.ledger_rows.update(deliveries=deliveries, events=events)
    _compact(ledger)
    return erasure


def _holds(file: Path, key: str) -> bool:
    with locked(file):
        return any(address_key(values["email"]) == key for _, values in raw_records(file))


def _compact(ledger: Path | str) -> None:
    """Leave no copy of the erased rows in the ledger's tables: a file is
    rewritten without free pages (VACUUM) and its WAL folded back,
    emptying the ``-wal`` file; a PostgreSQL ledger's changed tables are
    vacuumed (their dead row versions removed now, not at the next
    autovacuum). Raises :class:`DigestError` when another process keeps
    the file busy or the server refuses (the erasure itself is recorded;
    run forget again to compact)."""
    if scheme_of(ledger):
        _vacuum_server(str(ledger))
        return
    try:
        with closing(sqlite3.connect(ledger, timeout=10)) as db:
            db.execute("PRAGMA secure_delete = ON")
            db.execute("VACUUM")
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.OperationalError as exc:
        raise DigestError(f"ledger {ledger}: the erasure is recorded but the file could not be compacted ({exc}); run forget again") from None


def _vacuum_server(url: str) -> None:
    conn = postgresql.Connection(url)
    try:
        conn.raw.autocommit = True  # VACUUM cannot run inside a transaction
        conn.execute(f"VACUUM {', '.join(_ERASED_TABLES)}")
    except conn.errors as exc:
        first = str(exc).strip().splitlines()[0]
        raise DigestError(f"ledger {conn.name}: the erasure is recorded but its tables could not be vacuumed ({first}); run forget again") from None
    finally:
        conn.close()


# The tables forget deletes or rewrites rows of.
_ERASED_TABLES = ("consents", "preferences", "frequencies", "suppressions", "signup_sends", "deliveries", "events")
