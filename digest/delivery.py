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

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from digest.errors import DigestError, ProviderAuthError, UsageError
from digest.issue import Issue
from digest.ledger import IN_MEMORY, Delivery, DeliveryStatus, Ledger
from digest.moments import parse_duration
from digest.providers import Provider
from digest.recipients import Recipient, RecipientResult, Status
from digest.rendering import RenderedVariant, render_variant
from digest.settings import Settings
from digest.subscribers import Subscriber

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
        render_variant(variant.articles, issue.context, settings, variant_key=variant.key, tags=variant.tags)
        for variant in issue.variants
    ]


def batches(items: Sequence, size: int) -> Iterator[Sequence]:
    """``items`` in consecutive slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


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
    recipient_for: Callable[[Subscriber, Settings], Recipient] | None = None,
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
    first sent: subscribers who joined since wait for the next issue. Batches hold at most
    ``provider.max_batch_size`` (SendGrid: 1000) and ``settings.batch_size``
    recipients of one variant; ``settings.concurrency``
    batches are in flight at once. Retryable recipients get up to
    ``settings.retry_rounds`` more rounds, ``settings.retry_delay`` seconds apart.
    ``progress`` is called with the number of recipients of each finished batch.

    Returns a :class:`SendReport`. Raises :class:`digest.errors.LedgerBusyError`
    when another send holds the ledger; when the provider refuses our
    credentials or sender the run stops at once, the batch is left retryable
    and the report's ``stopped`` says why. The provider is closed either way.
    """
    if recipient_for is None:
        from digest.unsubscribe import recipient_for
    own_ledger = ledger is None
    ledger = Ledger(IN_MEMORY) if own_ledger else ledger
    key = issue.context.key
    report = SendReport(issue_key=key, provider=provider.name)
    try:
        rendered = list(rendered) if rendered is not None else render_issue(issue, settings)
        # Signed links are made per batch, when it is sent, not held for the whole audience.
        people: dict[str, tuple[Subscriber, int]] = {}
        for index, variant in enumerate(issue.variants):
            for subscriber in variant.subscribers:
                people[subscriber.key] = (subscriber, index)
            report.variants.append(
                VariantReport(
                    number=variant.number,
                    key=variant.key,
                    articles=len(variant.articles),
                    recipients=len(variant.subscribers),
                    html_bytes=len(rendered[index].html.encode("utf-8")),
                    subject=rendered[index].subject,
                    notes=rendered[index].notes,
                )
            )
        with ledger.run_lock():
            ledger.create_issue(
                key,
                issue.context.window_start,
                issue.context.window_end,
                [a.id for a in issue.selection.articles],
                scheduled_at,
            )
            if not any(ledger.counts(key).values()):
                # The audience is frozen when the issue is first queued: who
                # joins later gets the next issue, not a rerun of this one.
                ledger.enqueue(key, ((_row_of(subscriber), issue.variants[index].key) for subscriber, index in people.values()))
            report.recovered = ledger.recover_crashed(key)
            if retry_rejected:
                report.requeued = ledger.requeue_rejected(key, except_reasons=ON_PURPOSE)
            accepted_before = ledger.counts(key)[DeliveryStatus.ACCEPTED]
            for round_number in range(settings.retry_rounds + 1):
                # Unknown rows are resent once, in the first round, and only when asked.
                rows = ledger.pending(key, resend_unknown=resend_unknown and round_number == 0)
                if not rows:
                    break
                if round_number:
                    log.info("round %d: %d recipients to try again", round_number + 1, len(rows))
                    sleep(settings.retry_delay)
                size = min(provider.max_batch_size, settings.batch_size)
                jobs = _jobs(rows, people, size, ledger, lambda s: recipient_for(s, settings))
                try:
                    _run_jobs(jobs, issue, rendered, provider, ledger, settings.concurrency, report, progress)
                except ProviderAuthError as exc:
                    report.stopped = str(exc)
                    break
                if report.gave_up:
                    break
            ledger.update_issue_status(key)
            report.counts = {status.value: n for status, n in ledger.counts(key).items() if n}
            report.accepted_now = report.counts.get(DeliveryStatus.ACCEPTED.value, 0) - accepted_before
            problems = [*ledger.problems(key), *_still_retryable(ledger, key)]
            report.skipped = [p for p in problems if p.last_error in ON_PURPOSE]
            report.problems = [p for p in problems if p.last_error not in ON_PURPOSE]
    finally:
        provider.close()
        if own_ledger:
            ledger.close()
    return report


def _row_of(subscriber: Subscriber) -> Recipient:
    """What the ledger keeps of a recipient (address, id, list): no links yet."""
    return Recipient(subscriber.email, subscriber.name, subscriber.key, subscriber.list_name, unsubscribe_url="")


def _jobs(
    rows: Sequence[Delivery],
    people: dict[str, tuple[Subscriber, int]],
    size: int,
    ledger: Ledger,
    recipient_for: Callable[[Subscriber], Recipient],
) -> Iterator[tuple[int, list[int], list[Recipient]]]:
    """Group pending rows into batches of one variant each: (variant index,
    row ids, recipients), the recipients made as each batch is taken. Rows
    whose subscriber has left the audience since the issue was queued are
    closed as rejected, never sent."""
    by_variant: dict[int, list[tuple[int, Subscriber]]] = {}
    gone: list[int] = []
    for row in rows:
        found = people.get(row.subscriber_id)
        if found is None:
            gone.append(row.id)
            continue
        subscriber, index = found
        by_variant.setdefault(index, []).append((row.id, subscriber))
    if gone:
        ledger.mark_sending(gone)
        ledger.record_results([(row_id, RecipientResult("", Status.REJECTED, reason=GONE)) for row_id in gone])
    for index, members in sorted(by_variant.items()):
        for chunk in batches(members, size):
            yield index, [row_id for row_id, _ in chunk], [recipient_for(subscriber) for _, subscriber in chunk]


def _run_jobs(jobs, issue, rendered, provider, ledger, concurrency, report, progress) -> None:
    """Send ``jobs`` with at most ``concurrency`` in flight; stop submitting
    at the first :class:`ProviderAuthError` and re-raise it."""

    def send(job) -> int:
        index, row_ids, recipients = job
        # Someone may have unsubscribed (digest serve) or bounced while this run was going.
        stopped = _suppressed_now(ledger, recipients)
        if stopped:
            ledger.mark_sending([row_id for row_id, r in zip(row_ids, recipients, strict=True) if r.subscriber_id in stopped])
            ledger.record_results(
                [(row_id, RecipientResult(r.email, Status.REJECTED, reason=SUPPRESSED)) for row_id, r in zip(row_ids, recipients, strict=True) if r.subscriber_id in stopped]
            )
            kept = [(row_id, r) for row_id, r in zip(row_ids, recipients, strict=True) if r.subscriber_id not in stopped]
            if not kept:
                return len(row_ids), None
            row_ids, recipients = [row_id for row_id, _ in kept], [r for _, r in kept]
        ledger.mark_sending(row_ids)  # committed before the request: a crash now means "unknown"
        try:
            results = provider.send_batch(rendered[index], recipients, issue.context.key)
        except DigestError as exc:
            # Refused outright (credentials, sender) or misconfigured (TLS, login):
            # raised before anything was sent, so these stay to be sent later.
            ledger.record_results([(row_id, RecipientResult("", Status.RETRYABLE, reason=str(exc))) for row_id in row_ids])
            raise
        if len(results) != len(row_ids):
            raise RuntimeError(f"{provider.name} answered {len(results)} results for {len(row_ids)} recipients")
        ledger.record_results(zip(row_ids, results, strict=True), article_ids=[a.id for a in issue.variants[index].articles])
        log.info("batch of %d (variant %d): %s", len(row_ids), issue.variants[index].number, _summary(results))
        not_taken = all(r.status is Status.RETRYABLE for r in results)
        return len(row_ids), (results[-1].reason if not_taken else None)

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        pending_jobs = iter(jobs)
        running = set()
        failure = None
        streak = 0  # consecutive batches the provider took nobody of
        while failure is None and report.gave_up is None:
            while len(running) < concurrency and (job := next(pending_jobs, None)) is not None:
                running.add(pool.submit(send, job))
            if not running:
                break
            done, running = wait(running, return_when=FIRST_EXCEPTION)
            for future in done:
                if future.exception() is not None:
                    failure = failure or future.exception()
                    continue
                count, not_taken = future.result()
                report.requests += 1
                report.sent_now += count
                if progress:
                    progress(count)
                streak = streak + 1 if not_taken else 0
                if streak >= GIVE_UP_AFTER:
                    # Down or unreachable: leave the rest queued for the next run
                    # rather than retrying every batch for minutes.
                    report.gave_up = f"the provider took none of {streak} batches in a row (last: {not_taken})"
        wait(running)  # let batches already in flight finish and be recorded
        for future in running:
            if future.exception() is None:
                report.requests += 1
                report.sent_now += future.result()[0]
        if failure is not None:
            raise failure


def _suppressed_now(ledger: Ledger, recipients: Sequence[Recipient]) -> set[str]:
    """Subscriber ids of ``recipients`` suppressed in the ledger file right
    now (one query per list in the batch)."""
    if ledger.in_memory or not ledger.path.is_file():
        return set()
    from digest.suppressions import suppressed_keys

    stopped: set[str] = set()
    for list_name in {r.list_name for r in recipients}:
        keys = suppressed_keys(ledger.path, list_name)
        stopped.update(r.subscriber_id for r in recipients if r.list_name == list_name and r.subscriber_id in keys)
    return stopped


def _summary(results: Sequence[RecipientResult]) -> str:
    return ", ".join(f"{n} {status}" for status, n in Counter(r.status.value for r in results).items())


def _still_retryable(ledger: Ledger, key: str) -> list[Delivery]:
    return [row for row in ledger.pending(key) if row.status is DeliveryStatus.RETRYABLE]


def check_not_too_late(issue: Issue, not_after: str | None, *, now: datetime | None = None) -> None:
    """Raise :class:`digest.errors.UsageError` when ``now`` (default: the
    current time) is later than ``not_after`` (a duration such as ``36h``)
    after the issue's scheduled time: a machine restored from a snapshot
    must not send last week's issue days late. Issues named with ``--issue``
    have no scheduled time and are never too late."""
    if not not_after or issue.scheduled_at is None:
        return
    now = now or datetime.now(UTC)
    if now > issue.scheduled_at + parse_duration(not_after):
        raise UsageError(
            f"issue {issue.context.key} was scheduled for {issue.scheduled_at.isoformat()}; it is now "
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
    from digest.unsubscribe import recipient_for

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
