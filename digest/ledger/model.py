"""The ledger's shared model: its tables, their migrations, and the records
read from them. Both backends (:mod:`digest.ledger.sqlite`,
:mod:`digest.ledger.postgresql`) create the same tables from this text, so a
ledger copied from one to the other (:mod:`digest.ledger.copy`) keeps every
row as it was.

Times are stored as ISO 8601 text in UTC, in both databases: what ``digest
status`` prints is the same whichever holds it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from enum import StrEnum

SCHEMA_VERSION = 6
IN_MEMORY = ":memory:"

# ``{id}`` is the dialect's auto-numbered key, ``{seq}`` an extra column that
# numbers issues where the database has no rowid (PostgreSQL).
SCHEMA = """
CREATE TABLE issues (
    key          TEXT PRIMARY KEY,
    window_start TEXT NOT NULL,
    window_end   TEXT NOT NULL,
    article_ids  TEXT NOT NULL,          -- JSON array of article ids
    scheduled_at TEXT,                   -- NULL for an issue named with --issue
    created_at   TEXT NOT NULL,
    status       TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'finished')){seq}
);
CREATE TABLE deliveries (
    id            {id},
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

# Suppressions, preferences and frequencies (owned by :mod:`digest.suppressions`, which
# creates them in a SQLite file it opens on its own): part of the ledger's
# schema from version 5, so a PostgreSQL ledger has them too.
SUPPRESSION_TABLES = """
CREATE TABLE IF NOT EXISTS suppressions (
    address_key TEXT NOT NULL,
    address TEXT NOT NULL,
    reason TEXT NOT NULL CHECK (reason IN ('unsubscribed', 'bounced', 'spam-report', 'manual')),
    source TEXT NOT NULL,
    list_name TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    PRIMARY KEY (address_key, list_name)
);
CREATE TABLE IF NOT EXISTS preferences (
    address_key TEXT NOT NULL,
    list_name TEXT NOT NULL,
    tags TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (address_key, list_name)
);
CREATE TABLE IF NOT EXISTS frequencies (
    address_key TEXT NOT NULL,
    list_name TEXT NOT NULL,
    frequency TEXT NOT NULL CHECK (frequency IN ('daily', 'weekly', 'monthly')),
    updated_at TEXT NOT NULL,
    PRIMARY KEY (address_key, list_name)
);
"""

# What sign-up and erasure keep (owned by :mod:`digest.consent`; see its
# docstring for each table): part of the ledger's schema from version 6, so a
# PostgreSQL ledger has them too. ``IF NOT EXISTS``: a SQLite file where an
# older digest's consent.py made them keeps them, rows and all.
CONSENT_TABLES = """
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

# SendGrid's event ids seen by digest serve (a replay changes nothing); made by
# digest.web.webhook too, in a file an older digest wrote.
WEBHOOK_EVENTS_TABLE = """
CREATE TABLE IF NOT EXISTS webhook_events (
    event_id    TEXT PRIMARY KEY,   -- SendGrid's sg_event_id, else a hash of the event
    received_at TEXT NOT NULL       -- UTC, ISO 8601
)"""

# What each version adds to the one before; a new ledger gets SCHEMA and then
# every migration, an older one only the migrations it lacks, so its rows stay.
MIGRATIONS = {
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
    # Many workers on one issue: each row keeps what its message needs (the
    # name), who claimed it and until when; the issue keeps its variants as
    # rendered, so a worker needs neither the content nor the lists.
    5: """
ALTER TABLE deliveries ADD COLUMN name TEXT NOT NULL DEFAULT '';
ALTER TABLE deliveries ADD COLUMN worker TEXT;
ALTER TABLE deliveries ADD COLUMN lease_until TEXT;
ALTER TABLE issues ADD COLUMN queued_at TEXT;
CREATE TABLE variants (
    issue_key   TEXT NOT NULL REFERENCES issues (key),
    variant_key TEXT NOT NULL,
    subject     TEXT NOT NULL,
    preheader   TEXT NOT NULL,
    html        TEXT NOT NULL,      -- inlined, with the per-person placeholders
    text        TEXT NOT NULL,
    article_ids TEXT NOT NULL,      -- JSON array
    notes       TEXT NOT NULL,      -- JSON array: what the size budget changed
    nonce       TEXT NOT NULL,      -- the render's placeholder nonce: html and text carry it
    PRIMARY KEY (issue_key, variant_key)
);
""" + SUPPRESSION_TABLES + ";" + WEBHOOK_EVENTS_TABLE,
    # Sign-up's consent records, its throttle, used confirmation links and
    # erased addresses' keyed hashes: a PostgreSQL ledger keeps them too.
    6: CONSENT_TABLES,
}

# Every table, parents first: the order a copy writes them in.
TABLES = ("issues", "deliveries", "sent_articles", "events", "issue_pages", "refused_issues", "variants", "suppressions", "preferences", "frequencies", "webhook_events",
          "consents", "signup_sends", "used_confirmations", "forgotten")

CRASHED = "interrupted while sending: the provider may or may not have taken it"
LEASE_EXPIRED = "its worker stopped while sending (lease expired): the provider may or may not have taken it"


def statements(script: str) -> list[str]:
    """The SQL statements of ``script`` (no ``;`` inside our literals)."""
    return [statement for statement in script.split(";") if statement.strip()]


class DeliveryStatus(StrEnum):
    """The state of one delivery row. The last four share their values with
    :class:`digest.recipients.Status`."""

    QUEUED = "queued"  # written before the first request, not yet tried
    SENDING = "sending"  # its request is (or was, if we crashed) in flight
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    RETRYABLE = "retryable"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class IssueRecord:
    """One issue (edition) in the ledger. Datetimes are aware (UTC);
    ``scheduled_at`` is None for an issue named on the command line;
    ``queued_at`` is None until every recipient is queued and the variants
    stored (then any worker can send it)."""

    key: str
    window_start: datetime
    window_end: datetime
    article_ids: tuple[str, ...]
    scheduled_at: datetime | None
    created_at: datetime
    status: str  # "open" while anything is queued, sending or retryable; then "finished"
    queued_at: datetime | None = None


@dataclass(frozen=True)
class Delivery:
    """One recipient of one issue. ``attempts`` counts the requests made for
    it; ``last_error`` is the provider's reason for the last non-acceptance;
    ``worker`` the last worker that claimed it, ``lease_until`` (ISO 8601,
    UTC) until when its claim holds."""

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
    name: str = ""
    worker: str | None = None
    lease_until: str | None = None


def now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def moment_text(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("the ledger stores aware datetimes only")
    return moment.astimezone(UTC).isoformat()


def lease_text(moment: datetime) -> str:
    """Lease ends are compared as text: always the same width (microseconds)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def issue_of(row: dict) -> IssueRecord:
    return IssueRecord(
        key=row["key"],
        window_start=datetime.fromisoformat(row["window_start"]),
        window_end=datetime.fromisoformat(row["window_end"]),
        article_ids=tuple(json.loads(row["article_ids"])),
        scheduled_at=datetime.fromisoformat(row["scheduled_at"]) if row["scheduled_at"] else None,
        created_at=datetime.fromisoformat(row["created_at"]),
        status=row["status"],
        queued_at=datetime.fromisoformat(row["queued_at"]) if row.get("queued_at") else None,
    )


# A dict lookup, not DeliveryStatus(value): a send converts two statuses per recipient.
STATUSES = {status.value: status for status in DeliveryStatus}
# The deliveries columns in Delivery's field order: a row selected so becomes a
# Delivery by position (a send reads one row per recipient).
DELIVERY_COLUMNS = ", ".join(field.name for field in fields(Delivery))
_STATUS_AT = [field.name for field in fields(Delivery)].index("status")


def delivery_of(row: Sequence) -> Delivery:
    """The :class:`Delivery` of a row selected as :data:`DELIVERY_COLUMNS`."""
    values = list(row)
    values[_STATUS_AT] = STATUSES[values[_STATUS_AT]]
    return Delivery(*values)


def pending_statuses(resend_unknown: bool) -> tuple[str, ...]:
    statuses = (DeliveryStatus.QUEUED.value, DeliveryStatus.RETRYABLE.value)
    return (*statuses, DeliveryStatus.UNKNOWN.value) if resend_unknown else statuses
