"""The ledger: every issue and every delivery, so that a send can be resumed
after a crash, or shared by many workers, without losing or doubling anyone.

Laid out as Django's database backends are: :mod:`digest.ledger.model` (the
tables, their migrations and the records), :mod:`digest.ledger.base` (the
queries, written once), and one module per database:
:mod:`digest.ledger.sqlite` (a file, the default) and
:mod:`digest.ledger.postgresql` (a server that many sending machines share).
``Ledger(target)`` opens the one ``target`` names; the send loop does not
know which it has.

The send loop follows an outbox discipline, as dependable list managers do:

1. ``queue_issue`` writes the issue, one ``queued`` row per recipient and the
   rendered variants, in one transaction, before the first provider call;
2. ``claim`` marks a batch ``sending`` (with the worker's id and a lease) and
   commits *before* the request;
3. ``record_and_claim`` stores what the provider answered, and claims the
   next batch, in one transaction.

A crash between 2 and 3 leaves rows ``sending``; they become ``unknown``
(``recover_crashed``: at the next run on a file, which holds the run lock;
when their lease expires on a shared ledger): the request may or may not
have been taken, so they are resent only when the operator says so. The
ledger stores data only; it knows nothing of rendering or providers'
protocols.
"""

from digest.ledger import postgresql, sqlite
from digest.ledger.base import Claim, Ledger, scheme_of
from digest.ledger.events import record_events
from digest.ledger.model import IN_MEMORY, SCHEMA_VERSION, Delivery, DeliveryStatus, IssueRecord

__all__ = [
    "IN_MEMORY",
    "SCHEMA_VERSION",
    "Claim",
    "Delivery",
    "DeliveryStatus",
    "IssueRecord",
    "Ledger",
    "exists",
    "postgresql",
    "record_events",
    "scheme_of",
    "sqlite",
]


def exists(target: object) -> bool:
    """Whether a ledger is at ``target`` already: a file that exists, or any
    PostgreSQL URL (the server holds it; its tables are made on first use)."""
    from pathlib import Path

    return bool(scheme_of(target)) or Path(str(target)).exists()
