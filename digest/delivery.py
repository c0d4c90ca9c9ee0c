"""Delivery: render each variant once, record every recipient in the ledger,
then hand them to a provider in batches and record one result per recipient.

The loop follows an outbox discipline (see :mod:`digest.ledger`): all
delivery rows are written before the first request; a batch is marked
``sending`` (committed) before its request and gets its results right after.
So a run that is killed at any moment can be run again with the same issue
key: it sends only what is still queued or retryable, and turns what was in
flight into ``unknown`` instead of sending it twice.

The provider decides where messages go (outbox files, SendGrid, SMTP); the
dry run and test sends use an in-memory ledger, so they go through this same
loop without touching the ledger file.
"""

from __future__ import annotations

import gc
import logging
import os
import secrets
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from digest.errors import DigestError, ProviderAuthError, UsageError
from digest.issue import Issue
from digest.ledger import IN_MEMORY, Claim, Delivery, DeliveryStatus, IssueRecord, Ledger
from digest.members import Members
from digest.moments import parse_duration
from digest.providers import Provider
from digest.recipients import RecipientResult, Status
from digest.rendering import RenderedVariant, render_variant
from digest.seen import SeenKeys
from digest.settings import Settings
from digest.subscribers import Subscriber
from digest.suppressions import address_key
from digest.unsubscribe import recipient_for, recipient_with_links

log = logging.getLogger(__name__)

GONE = "no longer in the audience (unsubscribed, suppressed or removed) since the issue was queued"
GIVE_UP_AFTER = 3  # batches in a row that the provider took nobody of: it is down
SUPPRESSED = "suppressed (unsubscribed, bounced or complained) while the issue was being sent"
ON_PURPOSE = (GONE, SUPPRESSED)  # "rejected" by us, not by the provider: not a failure


@dataclass
class VariantReport:
    """One variant as sent: its number, key, article and recipient counts,
    HTML size in bytes (after inlining, before personalization), and the
    notes of the size budget."""

    number: int
    key: str
    articles: int
    recipients: int
    html_bytes: int
    subject: str
    notes: tuple[str, ...] = ()


@dataclass
class SendReport:
    """What a run did.

    ``counts`` are the issue's delivery rows per status at the end (so a
    resumed issue counts what earlier runs sent too); ``problems`` the rows
    rejected, unknown or still retryable, with reasons; ``sent_now`` how many
    recipients this run handed to the provider; ``recovered`` how many rows a
    crashed run had left in flight (now unknown); ``requests`` how many
    ``send_batch`` calls were made.
    """

    issue_key: str
    provider: str
    variants: list[VariantReport] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[Delivery] = field(default_factory=list)
    sent_now: int = 0
    recovered: int = 0
    requests: int = 0
    stopped: str | None = None  # why the run stopped early (provider refused us), else None
    gave_up: str | None = None  # why the run left recipients queued (provider down), else None
    requeued: int = 0  # rejected recipients queued again by --retry-rejected
    accepted_now: int = 0  # of sent_now (attempted), how many the provider accepted

    @property
    def recipients(self) -> int:
        return sum(self.counts.values())

    skipped: list[Delivery] = field(default_factory=list)  # left out on purpose: suppressed or left the list

    @property
    def complete(self) -> bool:
        """True when every recipient of the issue was accepted, or skipped on
        purpose (unsubscribed, bounced or removed while the issue went out)."""
        return self.recipients == self.counts.get(DeliveryStatus.ACCEPTED.value, 0) + len(self.skipped)


def render_issue(issue: Issue, settings: Settings) -> list[RenderedVariant]:
    """Render every variant of ``issue`` once, in variant order."""
    return [
        replace(render_variant(variant.articles, issue.context, settings, variant_key=variant.key, tags=variant.tags), number=variant.number)
        for variant in issue.variants
    ]


def send_issue(
    issue: Issue,
    provider: Provider,
    settings: Settings,
    *,
    ledger: Ledger | None = None,
    scheduled_at: datetime | None = None,
    resend_unknown: bool = False,
    retry_rejected: bool = False,
    rendered: Sequence[RenderedVariant] | None = None,
    progress: Callable[[int], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> SendReport:
    """Send ``issue`` to every subscriber of its variants through ``provider``.

    ``ledger`` records the issue and one delivery row per recipient (None: an
    in-memory ledger, for the dry run and test sends). Sending the same issue
    key again resumes it: only queued and retryable rows are sent, and
    ``unknown`` ones too with ``resend_unknown``, and the ones the provider
    rejected (not those left out on purpose) once more with
    ``retry_rejected``. The audience is the one queued when the issue was
    first sent: subscribers who joined since wait for the next issue, and
    readers who left since are closed, never sent. On a shared ledger
    (PostgreSQL) an issue another worker has queued is sent as it was
    queued (see :func:`send_queued`). Batches hold at most
    ``provider.max_batch_size`` (SendGrid: 1000) and ``settings.batch_size``
    recipients of one variant; ``settings.concurrency``
    batches are in flight at once. Retryable recipients get up to
    ``settings.retry_rounds`` more rounds, ``settings.retry_delay`` seconds
    apart. ``progress`` is called with the number of recipients of each
    finished batch.

    Returns a :class:`SendReport`. Raises :class:`digest.errors.LedgerBusyError`
    when another send holds a ledger file; when the provider refuses our
    credentials or sender the run stops at once, the batch is left retryable
    and the report's ``stopped`` says why. The provider is closed either way.
    """
    own_ledger = ledger is None
    ledger = Ledger(IN_MEMORY) if own_ledger else ledger
    key = issue.context.key
    report = SendReport(issue_key=key, provider=provider.name)
    try:
        rendered = list(rendered) if rendered is not None else render_issue(issue, settings)
        for index, variant in enumerate(issue.variants):
            report.variants.append(_variant_report(variant.number, rendered[index], len(variant.subscribers), len(variant.articles)))
        with ledger.run_lock():
            queue_issue(issue, ledger, rendered, scheduled_at=scheduled_at)
            numbers = {variant.variant_key: variant.number for variant in rendered}
            _deliver(ledger, key, provider, settings, report, resend_unknown, progress, sleep, retry_rejected=retry_rejected, numbers=numbers)
    finally:
        provider.close()
        if own_ledger:
            ledger.close()
    return report


def queue_issue(issue: Issue, ledger: Ledger, rendered: Sequence[RenderedVariant], *, scheduled_at: datetime | None = None) -> bool:
    """Write ``issue`` into ``ledger`` before anything is sent: the issue,
    one queued row per subscriber of its variants, and ``rendered`` (its
    variants, in order), in one transaction (see
    :meth:`digest.ledger.Ledger.queue_issue`). The audience is frozen when
    the issue is first queued: on a resume nobody is added (who joined since
    gets the next issue), and readers who left since are closed, never sent
    (only ids are held). Returns False when a shared
    ledger had the issue queued by another worker already (nothing written)."""
    key = issue.context.key
    resumed = ledger.get_issue(key) is not None
    articles = [a.id for a in issue.selection.articles]
    queued = ledger.queue_issue(key, issue.context.window_start, issue.context.window_end, articles, scheduled_at, _entries(issue), rendered)
    if resumed and queued:
        present = SeenKeys()
        for subscriber in issue.subscribers:
            present.add(subscriber.key, 1)
        ledger.close_rows([row_id for row_id, sid in ledger.pending_ids(key) if sid not in present], GONE)
    return queued


def _entries(issue: Issue) -> Iterator[tuple[str, str, str, str, str]]:
    """What the ledger keeps of each subscriber of ``issue``'s variants
    (email, name, subscriber id, list name, variant key; no links yet),
    variant by variant (a batch's rows then share the ledger's pages:
    interleaved, SQLite wrote 4 times as much per batch): in one pass over
    the issue's roster when the variants are its groups (as planned)."""
    everyone = issue.subscribers
    roster = everyone.roster if isinstance(everyone, Members) else None
    keys = {v.subscribers.group: v.key for v in issue.variants if isinstance(v.subscribers, Members) and v.subscribers.roster is roster}
    if roster is not None and len(keys) == len(issue.variants):
        return (
            (email, name, address_key(email), list_name, keys[group])
            for group, email, name, list_name in roster.addresses()
            if group in keys
        )
    return ((s.email, s.name, s.key, s.list_name, variant.key) for variant in issue.variants for s in variant.subscribers)


def send_queued(
    ledger: Ledger,
    key: str,
    provider: Provider,
    settings: Settings,
    *,
    resend_unknown: bool = False,
    retry_rejected: bool = False,
    progress: Callable[[int], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> SendReport:
    """Send issue ``key``, queued in ``ledger`` by another worker, as it was
    queued: its stored variants to its recipient rows, claiming batches as
    :func:`send_issue` does. Needs neither the content nor the subscriber
    lists: a worker on another machine needs only the ledger and the
    provider settings (and ``secret_key``, ``public_url`` for the links).
    Returns a :class:`SendReport`; the provider is closed either way."""
    report = SendReport(issue_key=key, provider=provider.name)
    try:
        sizes = ledger.variant_counts(key)
        for number, stored in enumerate(ledger.variants(key), start=1):
            variant = RenderedVariant(**stored)
            report.variants.append(_variant_report(number, variant, sizes.get(variant.variant_key, 0), len(variant.article_ids)))
        with ledger.run_lock():
            _deliver(ledger, key, provider, settings, report, resend_unknown, progress, sleep, retry_rejected=retry_rejected)
    finally:
        provider.close()
    return report


def _variant_report(number: int, variant: RenderedVariant, recipients: int, articles: int) -> VariantReport:
    return VariantReport(
        number=number,
        key=variant.variant_key,
        articles=articles,
        recipients=recipients,
        html_bytes=len(variant.html.encode("utf-8")),
        subject=variant.subject,
        notes=variant.notes,
    )


def worker_id() -> str:
    """This worker, as claims name it: host, process id and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def _deliver(
    ledger, key, provider, settings, report, resend_unknown, progress, sleep, *, retry_rejected: bool = False,
    numbers: dict[str, int] | None = None,
) -> None:
    """Claim and send the pending rows of issue ``key`` until none is left,
    in rounds (see :func:`send_issue`); fill ``report``. ``numbers`` gives
    each variant key its number as planning numbered it (the outbox names
    its files by it)."""
    numbers = numbers or {}
    variants = {stored["variant_key"]: RenderedVariant(**stored, number=numbers.get(stored["variant_key"], 0)) for stored in ledger.variants(key)}
    me = worker_id()
    report.recovered = ledger.recover_crashed(key)
    if retry_rejected:
        report.requeued = ledger.requeue_rejected(key, except_reasons=ON_PURPOSE)
    accepted_before = ledger.counts(key)[DeliveryStatus.ACCEPTED]
    # What is alive now (a planned audience of a million) lives until the end:
    # the collector need not walk it again for every batch's garbage.
    gc.freeze()
    try:
        _rounds(ledger, key, provider, settings, report, resend_unknown, sleep, me, progress, variants)
    finally:
        gc.unfreeze()
    if not ledger.exclusive:
        _settle(ledger, key, settings, sleep)
    ledger.update_issue_status(key)
    report.counts = {status.value: n for status, n in ledger.counts(key).items() if n}
    report.accepted_now = report.counts.get(DeliveryStatus.ACCEPTED.value, 0) - accepted_before
    problems = [*ledger.problems(key), *ledger.retryable(key)]
    report.skipped = [p for p in problems if p.last_error in ON_PURPOSE]
    report.problems = [p for p in problems if p.last_error not in ON_PURPOSE]


def _rounds(ledger, key, provider, settings, report, resend_unknown, sleep, me, progress, variants) -> None:
    """The first round and up to ``settings.retry_rounds`` more for retryable rows."""
    for round_number in range(settings.retry_rounds + 1):
        if round_number:
            if not ledger.retryable(key):
                break
            log.info("round %d: recipients to try again", round_number + 1)
            sleep(settings.retry_delay)
        claim = {
            "issue_key": key,
            "limit": min(provider.max_batch_size, settings.batch_size),
            # A round never takes its own retryable rows again: the next round does.
            "worker": f"{me}/{round_number}",
            "lease": settings.lease,
            # Unknown rows are resent once, in the first round, and only when asked.
            "resend_unknown": resend_unknown and round_number == 0,
            "suppressed": SUPPRESSED,
        }
        try:
            _run_workers(claim, variants, provider, ledger, settings, report, progress)
        except ProviderAuthError as exc:
            report.stopped = str(exc)
            break
        if report.gave_up:
            break


def _settle(ledger: Ledger, key: str, settings: Settings, sleep: Callable[[float], None]) -> None:
    """On a shared ledger, wait for the batches other workers still hold to
    be answered, or for their leases to expire (then they become unknown), so
    the issue's counts are final when this worker reports."""
    deadline = time.monotonic() + settings.lease + 5
    while time.monotonic() < deadline:
        ledger.recover_crashed(key)
        if ledger.in_flight(key)[0] == 0:
            return
        sleep(0.2)


def _run_workers(claim, variants, provider, ledger, settings, report, progress) -> None:
    """Run ``settings.concurrency`` threads that each claim a batch, send it,
    and record its results while claiming the next (one transaction), until
    nothing is left; stop all at the first :class:`ProviderAuthError` (then
    re-raised) or when the provider takes nobody :data:`GIVE_UP_AFTER`
    batches in a row."""
    lock = threading.Lock()
    stop = threading.Event()
    failures: list[BaseException] = []
    streak = [0]  # consecutive batches the provider took nobody of

    def finished(count: int, not_taken: str | None, requests: int) -> None:
        with lock:
            report.requests += requests
            report.sent_now += count
            if progress:
                progress(count)
            streak[0] = streak[0] + 1 if not_taken else 0
            if streak[0] >= GIVE_UP_AFTER and report.gave_up is None:
                # Down or unreachable: leave the rest queued for the next run
                # rather than retrying every batch for minutes.
                report.gave_up = f"the provider took none of {streak[0]} batches in a row (last: {not_taken})"
                stop.set()

    def work() -> None:
        taken = ledger.claim(**claim)
        while taken.rows or taken.suppressed:
            if taken.suppressed:
                finished(taken.suppressed, None, 0)
            if not taken.rows:
                taken = ledger.claim(**claim)
                continue
            if stop.is_set():
                ledger.release(taken.rows)  # never sent: as they were, for the next run
                return
            variant = variants[taken.variant_key]
            row_ids = [row.id for row in taken.rows]
            try:
                recipients = [recipient_with_links(settings, row.email, row.name, row.subscriber_id, row.list_name) for row in taken.rows]
                results = provider.send_batch(variant, recipients, claim["issue_key"])
            except DigestError as exc:
                # Refused outright (credentials, sender) or misconfigured (TLS, login):
                # raised before anything was sent, so these stay to be sent later.
                ledger.record_results([(row_id, RecipientResult("", Status.RETRYABLE, reason=str(exc))) for row_id in row_ids])
                raise
            if len(results) != len(row_ids):
                raise RuntimeError(f"{provider.name} answered {len(results)} results for {len(row_ids)} recipients")
            answered = zip(row_ids, results, strict=True)
            if stop.is_set():
                ledger.record_results(answered, article_ids=variant.article_ids)
                taken = Claim([])
            else:
                _, taken = ledger.record_and_claim(answered, article_ids=variant.article_ids, **claim)
            log.info("batch of %d (variant %s): %s", len(row_ids), variant.variant_key, _summary(results))
            not_taken = all(r.status is Status.RETRYABLE for r in results)
            finished(len(row_ids), results[-1].reason if not_taken else None, 1)

    def guarded() -> None:
        try:
            work()
        except BaseException as exc:
            with lock:
                failures.append(exc)
            stop.set()

    threads = [threading.Thread(target=guarded, name=f"digest-send-{n}", daemon=True) for n in range(settings.concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise next((f for f in failures if isinstance(f, ProviderAuthError)), failures[0])


def _summary(results: Sequence[RecipientResult]) -> str:
    return ", ".join(f"{n} {status}" for status, n in Counter(r.status.value for r in results).items())


def check_not_too_late(issue: Issue | IssueRecord, not_after: str | None, *, now: datetime | None = None) -> None:
    """Raise :class:`digest.errors.UsageError` when ``now`` (default: the
    current time) is later than ``not_after`` (a duration such as ``36h``)
    after the issue's scheduled time: a machine restored from a snapshot
    must not send last week's issue days late (``issue`` may be the ledger's
    record of it, for a worker that did not plan it). Issues named with ``--issue``
    have no scheduled time and are never too late."""
    if not not_after or issue.scheduled_at is None:
        return
    now = now or datetime.now(UTC)
    key = issue.key if isinstance(issue, IssueRecord) else issue.context.key
    if now > issue.scheduled_at + parse_duration(not_after):
        raise UsageError(
            f"issue {key} was scheduled for {issue.scheduled_at.isoformat()}; it is now "
            f"{now.isoformat(timespec='seconds')}, later than --not-after {not_after}: not sending"
        )


def send_test(
    issue: Issue, rendered: Sequence[RenderedVariant], settings: Settings, address: str, as_subscriber: str | None = None
) -> tuple[Subscriber, int, str]:
    """Send one message to ``address`` through the configured provider, as
    ``as_subscriber`` (default: the largest variant's first subscriber)
    would get it, its subject prefixed ``[TEST]``; the ledger is not
    touched. Returns (the subscriber it stands for, their variant number,
    the subject). Raises :class:`digest.errors.UsageError` for a bad address
    or an unknown subscriber, :class:`digest.errors.DigestError` when the
    provider does not accept it."""
    from email_validator import EmailNotValidError, validate_email

    from digest.providers import get_provider

    try:
        address = validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise UsageError(f"--test-to {address!r}: {exc}") from None
    index, person = 0, issue.variants[0].subscribers[0]
    if as_subscriber:
        wanted = as_subscriber.strip().casefold()
        found = [(i, s) for i, v in enumerate(issue.variants) for s in v.subscribers if s.key == wanted]
        if not found:
            raise UsageError(f"--as-subscriber {as_subscriber}: not in this issue's audience")
        index, person = found[0]
    # Personalized as the reader, but every link is the test address's own:
    # clicking "unsubscribe" in a test must not unsubscribe a real reader.
    recipient = recipient_for(replace(person, email=address), settings)
    test = replace(rendered[index], subject=f"[TEST] {rendered[index].subject}")
    provider = get_provider(settings)
    try:
        (result,) = provider.send_batch(test, [recipient], f"test-{issue.context.key}")
    finally:
        provider.close()
    if result.status is not Status.ACCEPTED:
        raise DigestError(f"test message to {address} was {result.status.value}: {result.reason}")
    return person, issue.variants[index].number, test.subject
