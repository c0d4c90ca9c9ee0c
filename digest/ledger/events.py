"""Delivery events: what the provider reported about a delivery after the
send (SendGrid's Event Webhook), recorded against the ledger's rows."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from digest.ledger.model import moment_text, now_text


def record_events(db: Any, events: Iterable) -> int:
    """Record what the provider reported about delivery rows after the send
    (SendGrid's Event Webhook: ``delivered``, ``bounce``, ``dropped``), on
    ``db`` inside the caller's transaction, so the caller can write other
    rows (suppressions) in the same one. ``db`` is a connection from
    :func:`digest.suppressions.connect` to a ledger already at
    :data:`digest.ledger.model.SCHEMA_VERSION` (open it once with
    :class:`Ledger`).

    Each event has the attributes ``issue_key`` and ``subscriber_id`` (the
    delivery row's, as sent in the provider's custom args), ``event``,
    ``event_id`` (the provider's id of the report: SendGrid's
    ``sg_event_id``), ``detail`` (str or None) and ``occurred_at`` (aware
    datetime or None), e.g. :class:`digest.web.webhook.DeliveryEvent`. Events that
    match no delivery row (a test send, mail from another system) are
    skipped; a report recorded before (providers deliver webhooks at least
    once) adds nothing. Returns how many events were new."""
    now = now_text()
    added = 0
    for event in events:
        row = db.execute(
            "SELECT id FROM deliveries WHERE issue_key = ? AND subscriber_id = ?",
            (event.issue_key, event.subscriber_id),
        ).fetchone()
        if row is None:
            continue
        occurred = moment_text(event.occurred_at) if event.occurred_at else None
        added += db.execute(
            "INSERT INTO events (delivery_id, event, event_id, detail, occurred_at, recorded_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (row[0], event.event, event.event_id, event.detail, occurred, now),
        ).rowcount
    return added
