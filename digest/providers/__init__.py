"""Providers: how a rendered variant reaches its recipients.

One small interface, as Django's mail backends have: the code above never asks
"is this a dry run?"; it is handed a provider. ``outbox`` writes .eml files
(the dry run), ``sendgrid`` calls SendGrid's v3 Mail Send API, ``smtp`` talks
to an SMTP server. A provider answers with one :class:`RecipientResult` per
recipient, the only thing the ledger needs from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from digest.recipients import Recipient, RecipientResult

if TYPE_CHECKING:
    from digest.rendering import RenderedVariant
    from digest.settings import Settings


class Provider(Protocol):
    """The interface every provider implements.

    ``max_batch_size`` is the most recipients one ``send_batch`` call takes
    (SendGrid: 1000 personalizations per request). ``send_batch`` returns
    exactly one result per recipient, in order, and raises
    :class:`ProviderAuthError` when the provider refuses our credentials or
    sender (the run must stop at once). ``close`` releases connections and
    finishes any files (the outbox's index.html).
    """

    name: str
    max_batch_size: int

    def send_batch(
        self, rendered: RenderedVariant, recipients: Sequence[Recipient], issue_key: str
    ) -> list[RecipientResult]: ...

    def close(self) -> None: ...


def get_provider(settings: Settings, *, dry_run: bool = False) -> Provider:
    """The provider named by ``settings.provider``; the outbox when ``dry_run``."""
    if dry_run or settings.provider == "outbox":
        from digest.providers.outbox import OutboxProvider

        return OutboxProvider(settings.outbox, settings)
    if settings.provider == "sendgrid":
        from digest.providers.sendgrid import SendGridProvider

        return SendGridProvider(settings)
    from digest.providers.smtp import SMTPProvider

    return SMTPProvider(settings)
