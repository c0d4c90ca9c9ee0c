"""Recipients: who one message goes to, and what became of them.

The ground floor shared by rendering, messages, providers, delivery and the
ledger: a provider answers with one :class:`RecipientResult` per
:class:`Recipient`, the only thing the ledger needs from it. Imports nothing
of ours.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True)
class Recipient:
    """One person a message goes to, with the per-person values of a variant.

    ``email`` keeps the local part's case as given; ``subscriber_id`` is stable
    (the normalized address); ``unsubscribe_url`` is the signed one-click link
    (RFC 8058) and ``unsubscribe_mailto`` the mailto form for RFC 2369, or None.
    """

    email: str
    name: str
    subscriber_id: str
    list_name: str
    unsubscribe_url: str
    preferences_url: str | None = None
    unsubscribe_mailto: str | None = None


class Status(StrEnum):
    """What became of one recipient of one request."""

    ACCEPTED = "accepted"  # the provider took it (message id known)
    REJECTED = "rejected"  # final: the provider refused this recipient
    RETRYABLE = "retryable"  # not taken; safe to try again later
    UNKNOWN = "unknown"  # the request may or may not have been taken


@dataclass(frozen=True)
class RecipientResult:
    email: str
    status: Status
    message_id: str | None = None
    reason: str | None = None
