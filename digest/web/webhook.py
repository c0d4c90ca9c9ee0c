"""SendGrid's Event Webhook: ``POST /webhooks/sendgrid`` of ``digest serve``.

Only fresh, signed, unique events change anything:

- signed: the ECDSA P-256 signature over the timestamp header followed by
  the raw body (SendGrid's "Getting started with the Event Webhook security
  features") is checked with the official library's helper against
  ``sendgrid_webhook_public_key``; the signature must be strict DER (the
  one encoding a signer produces: RFC 5480, X.690 §10). Without a key the
  endpoint refuses every request (403) unless ``webhook_allow_unsigned``;
- fresh: the signed timestamp may be at most ``webhook_max_age`` seconds
  from now (default 300), so a batch captured last week is refused;
- unique: each event's ``sg_event_id`` (else a hash of the event) is
  remembered in the ledger, and an event seen before changes nothing. A
  replayed batch, also one whose signature was re-encoded (an ECDSA
  signature (r, s) has a twin (r, n - s) that verifies too), is a no-op.
  SendGrid signs with either form, so the twin cannot simply be refused.

``bounce``, ``dropped``, ``spamreport``, ``unsubscribe`` and
``group_unsubscribe`` events become suppressions, and ``delivered``,
``bounce`` and ``dropped`` events are recorded against their delivery rows
in the ledger (matched through our ``issue_key`` and ``subscriber_id``
custom args); all of a batch in one transaction: a malformed batch gets
400 and records nothing.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from digest import suppressions
from digest.errors import SettingsError
from digest.ledger import Ledger
from digest.ledger import record_events as ledger_events
from digest.ledger.model import WEBHOOK_EVENTS_TABLE

if TYPE_CHECKING:
    from digest.settings import Settings

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"

# SendGrid event -> our suppression reason. Event names from SendGrid's
# "Event Webhook reference" (delivery and engagement events).
SUPPRESSING_EVENTS = {
    "bounce": "bounced",
    "dropped": "bounced",
    "spamreport": "spam-report",
    "unsubscribe": "unsubscribed",
    "group_unsubscribe": "unsubscribed",
}
# `dropped` reasons that concern the message, not the address: SendGrid drops
# the mail but the address is fine (its reference lists these reasons).
MESSAGE_DROP_REASONS = ("spam content", "smtpapi", "quota")
# Recorded against the delivery rows: the events that say whether a message
# arrived (Event Webhook reference, "delivery events").
DELIVERY_EVENTS = ("delivered", "bounce", "dropped")
MEMORY_DAYS = 30  # event ids are kept this long; a replay older than that fails the timestamp check anyway
# In the ledger, beside the suppressions it guards (part of its schema from
# version 5, and made here too in a file an older digest wrote).
_SEEN_SCHEMA = WEBHOOK_EVENTS_TABLE


def verifier(public_key: str | None):
    """The official helper for ``public_key`` (the base64 DER key SendGrid
    shows under Mail Settings > Signed Event Webhook), or None. Raises
    :class:`SettingsError` for a value that is not such a key."""
    if not public_key:
        return None
    from sendgrid.helpers.eventwebhook import EventWebhook

    try:
        return EventWebhook(public_key.strip())
    except Exception as exc:  # noqa: BLE001 - the helper's key library (starkbank-ecdsa, ecdsa or cryptography by version) raises its own errors
        raise SettingsError(
            "setting 'sendgrid_webhook_public_key' (digest.toml, or DIGEST_SENDGRID_WEBHOOK_PUBLIC_KEY): "
            f"not a public key as SendGrid shows it (base64, no PEM lines): {exc}"
        ) from None


def refusal(check, body: bytes, headers, settings: Settings, now: float | None = None) -> str | None:
    """Why the request with ``body`` and ``headers`` may not be taken (one
    line), or None. ``check`` is :func:`verifier`'s helper, or None (no
    key: refused unless ``webhook_allow_unsigned``); ``now`` Unix seconds."""
    if check is None:
        if settings.webhook_allow_unsigned:
            return None
        return "the Event Webhook is off: set sendgrid_webhook_public_key (or webhook_allow_unsigned = true)"
    signature, stamp = headers.get(SIGNATURE_HEADER), headers.get(TIMESTAMP_HEADER)
    if not signature or not stamp:
        return "missing Event Webhook signature or timestamp"
    try:
        age = abs((time.time() if now is None else now) - int(stamp))
    except ValueError:
        return "the Event Webhook timestamp is not Unix seconds"
    if age > settings.webhook_max_age:
        return f"the Event Webhook timestamp is {age:.0f} s from now, more than {settings.webhook_max_age:.0f} s"
    if not _strict_der(signature) or not _verified(check, body, signature, stamp):
        return "invalid Event Webhook signature"
    return None


def _verified(check, body: bytes, signature: str, stamp: str) -> bool:
    try:
        return bool(check.verify_signature(body.decode("utf-8"), signature, stamp))
    except Exception:  # noqa: BLE001 - undecodable body, signature not base64 or not DER: each helper version raises its own error
        return False


def _strict_der(signature: str) -> bool:
    """Whether ``signature`` (base64) is an ECDSA-Sig-Value in strict DER:
    SEQUENCE of two positive INTEGERs, short-form lengths, minimal integer
    encodings, nothing after. BER variants of the same (r, s) verify in
    lenient parsers; a signer never makes them."""
    try:
        der = base64.b64decode(signature, validate=True)
    except ValueError:
        return False
    if len(der) < 8 or der[0] != 0x30 or der[1] != len(der) - 2 or der[1] > 0x7F:
        return False
    rest = der[2:]
    for _ in range(2):
        if len(rest) < 3 or rest[0] != 0x02 or rest[1] == 0 or rest[1] > 0x7F or len(rest) < 2 + rest[1]:
            return False
        value = rest[2 : 2 + rest[1]]
        if value[0] & 0x80 or (len(value) > 1 and value[0] == 0 and not value[1] & 0x80):
            return False  # negative, or a needless leading zero
        rest = rest[2 + rest[1] :]
    return not rest


@dataclass(frozen=True)
class SuppressionEvent:
    """An event that stops mail to ``email``: our ``reason``, the ``source``
    (``sendgrid:<event>``) and the event's id (see :func:`parse_events`)."""

    email: str
    reason: str
    source: str
    event_id: str = ""


@dataclass(frozen=True)
class DeliveryEvent:
    """What SendGrid reports about one message we sent (``event`` is one of
    :data:`DELIVERY_EVENTS`), to be recorded against its delivery row, found
    by the ``issue_key`` and ``subscriber_id`` custom args the SendGrid
    provider sends. ``event_id`` is SendGrid's ``sg_event_id`` (else a hash
    of the event); ``occurred_at`` its ``timestamp`` (Unix seconds) as an
    aware UTC datetime, or None; ``detail`` the bounce or drop reason."""

    issue_key: str
    subscriber_id: str
    event: str
    event_id: str
    detail: str | None
    occurred_at: datetime | None


@dataclass(frozen=True)
class EventBatch:
    """One Event Webhook request: the events that suppress an address and
    the events about our delivery rows (one SendGrid event may be both)."""

    suppressions: list[SuppressionEvent]
    deliveries: list[DeliveryEvent]


def event_id(event: dict) -> str:
    """SendGrid's ``sg_event_id`` of ``event`` (unique per event, the Event
    Webhook reference), or else ``sha256:`` and a hash of the event's
    canonical JSON."""
    given = event.get("sg_event_id")
    if isinstance(given, str) and given:
        return given
    canonical = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def parse_events(body: bytes) -> EventBatch:
    """The events of an Event Webhook batch (a JSON array of objects, each
    with a string ``event``) that matter to us: suppressing ones (with an
    ``email``) and delivery ones carrying our custom args; other events
    (``processed``, ``open``...) are checked and skipped.

    A ``bounce`` of type ``blocked`` (a temporary refusal, SendGrid's Blocks
    list) and a ``dropped`` for a reason about the message rather than the
    address do not suppress, but are still recorded against the delivery
    row. Raises :class:`ValueError` naming the first malformed item: the
    whole batch is then refused."""
    try:
        batch = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"not JSON ({type(exc).__name__})") from None
    if not isinstance(batch, list):
        raise ValueError("expected a JSON array of events")
    found, deliveries = [], []
    for index, event in enumerate(batch):
        if not isinstance(event, dict) or not isinstance(event.get("event"), str):
            raise ValueError(f"item {index} is not an event object with an 'event' name")
        name, ident = event["event"], event_id(event)
        if name in SUPPRESSING_EVENTS:
            email = event.get("email")
            if not isinstance(email, str) or "@" not in email or not email.strip():
                raise ValueError(f"item {index} ({name}) has no email address")
            reason = _reason(name, event)
            if reason is not None:
                found.append(SuppressionEvent(email.strip(), reason, f"sendgrid:{name}", ident))
        if name in DELIVERY_EVENTS and (delivery := _delivery_event(index, name, event, ident)):
            deliveries.append(delivery)
    return EventBatch(found, deliveries)


def _delivery_event(index: int, name: str, event: dict, ident: str) -> DeliveryEvent | None:
    """The delivery event of ``event``, or None when it lacks our custom args
    (mail sent by something else). SendGrid puts custom args at the top level
    of each event, as the strings we sent."""
    issue_key, subscriber_id = event.get("issue_key"), event.get("subscriber_id")
    if issue_key is None or subscriber_id is None:
        return None
    if not isinstance(issue_key, str) or not isinstance(subscriber_id, str):
        raise ValueError(f"item {index} ({name}): custom args issue_key and subscriber_id must be strings")
    stamp = event.get("timestamp")
    try:
        occurred = datetime.fromtimestamp(stamp, UTC) if isinstance(stamp, int | float) and not isinstance(stamp, bool) else None
    except (OverflowError, OSError, ValueError):
        raise ValueError(f"item {index} ({name}): timestamp {stamp!r} is not a time") from None
    reason = event.get("reason") if isinstance(event.get("reason"), str) else None
    kind = event.get("type")
    detail = f"{kind}: {reason}" if name == "bounce" and isinstance(kind, str) and reason else reason
    return DeliveryEvent(issue_key, subscriber_id, name, ident, detail, occurred)


def _reason(name: str, event: dict) -> str | None:
    if name == "bounce" and str(event.get("type", "")).casefold() == "blocked":
        return None
    if name == "dropped":
        why = str(event.get("reason", "")).casefold()
        if any(part in why for part in MESSAGE_DROP_REASONS):
            return None
        if "unsubscribe" in why:
            return "unsubscribed"
        if "spam" in why:
            return "spam-report"
    return SUPPRESSING_EVENTS[name]


def record_events(ledger: Path | str, batch: EventBatch) -> tuple[int, int]:
    """Record ``batch`` in the ledger file: its suppressions (for every list)
    and its delivery events (against their delivery rows), all in one
    transaction: all or nothing. Events whose id the ledger has seen before
    (a replay, or SendGrid retrying a delivery) change nothing. Returns (new
    suppressions, new delivery events)."""
    Ledger(ledger).close()  # creates the ledger's tables, or brings an older file up to date
    with suppressions.transaction(ledger) as conn:  # committed at the end, rolled back on an error
        ids = [e.event_id for e in batch.suppressions] + [e.event_id for e in batch.deliveries]
        fresh = remember(conn, ids)
        added = sum(suppressions.add(conn, e.email, e.reason, e.source) for e in batch.suppressions if e.event_id in fresh)
        return added, ledger_events(conn, [e for e in batch.deliveries if e.event_id in fresh])


def remember(db: sqlite3.Connection, event_ids: Iterable[str]) -> set[str]:
    """Note ``event_ids`` as taken, on ``db`` inside the caller's
    transaction, and return those not seen before: the events to act on.
    Ids older than :data:`MEMORY_DAYS` are forgotten."""
    now = datetime.now(UTC)
    db.execute(_SEEN_SCHEMA)
    db.execute("DELETE FROM webhook_events WHERE received_at < ?", ((now - timedelta(days=MEMORY_DAYS)).isoformat(),))
    fresh = set()
    for event_id in dict.fromkeys(event_ids):
        inserted = db.execute(
            "INSERT INTO webhook_events (event_id, received_at) VALUES (?, ?) ON CONFLICT DO NOTHING", (event_id, now.isoformat())
        )
        if inserted.rowcount:
            fresh.add(event_id)
    return fresh
