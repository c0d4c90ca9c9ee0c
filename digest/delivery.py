"""Delivery: render each variant once, then hand its recipients to a provider
in batches and collect one result per recipient.

The provider decides where messages go (outbox files, SendGrid, SMTP); this
loop is the same for all of them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from digest.audience import Subscriber
from digest.issue import Issue
from digest.providers import Provider, Recipient, RecipientResult, Status
from digest.rendering import RenderedVariant, render_variant
from digest.settings import Settings


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
    """What a run did: per-variant figures and per-recipient results."""

    issue_key: str
    provider: str
    variants: list[VariantReport] = field(default_factory=list)
    results: list[RecipientResult] = field(default_factory=list)

    @property
    def counts(self) -> Counter[str]:
        return Counter(result.status.value for result in self.results)

    @property
    def failed(self) -> list[RecipientResult]:
        return [r for r in self.results if r.status is not Status.ACCEPTED]


def render_issue(issue: Issue, settings: Settings) -> list[RenderedVariant]:
    """Render every variant of ``issue`` once, in variant order."""
    return [
        render_variant(variant.articles, issue.context, settings, variant_key=variant.key, tags=variant.tags)
        for variant in issue.variants
    ]


def batches(items: Sequence[Recipient], size: int) -> Iterator[Sequence[Recipient]]:
    """``items`` in consecutive slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def send_issue(
    issue: Issue,
    provider: Provider,
    settings: Settings,
    *,
    recipient_for: Callable[[Subscriber, Settings], Recipient] | None = None,
) -> SendReport:
    """Render each variant of ``issue`` once and send it to its subscribers
    through ``provider``, in batches of ``provider.max_batch_size``.

    Returns a :class:`SendReport`; raises what the provider raises for a
    run-stopping failure (:class:`digest.errors.ProviderAuthError`). The
    provider is closed at the end either way.
    """
    if recipient_for is None:
        from digest.unsubscribe import recipient_for
    report = SendReport(issue_key=issue.context.key, provider=provider.name)
    try:
        for variant, rendered in zip(issue.variants, render_issue(issue, settings), strict=True):
            recipients = [recipient_for(subscriber, settings) for subscriber in variant.subscribers]
            report.variants.append(
                VariantReport(
                    number=variant.number,
                    key=variant.key,
                    articles=len(variant.articles),
                    recipients=len(recipients),
                    html_bytes=len(rendered.html.encode("utf-8")),
                    subject=rendered.subject,
                    notes=rendered.notes,
                )
            )
            for batch in batches(recipients, provider.max_batch_size):
                report.results.extend(provider.send_batch(rendered, batch, issue.context.key))
    finally:
        provider.close()
    return report
