"""One issue (one edition of the digest), planned from the settings: its
articles, its audience split into variants, and everything worth a warning.

Planning reads sources and subscriber lists but sends and writes nothing, so
``digest articles``, ``digest preview``, ``digest audience`` and
``digest send`` all start here and agree on what the issue holds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from digest.articles import slugify_tag
from digest.audience import Problem, Subscriber, Variant, build_variants, load_audience
from digest.rendering import IssueContext
from digest.selection import Selection, make_window, select_articles
from digest.settings import Settings
from digest.sources import load_articles


@dataclass(frozen=True)
class IssueRequest:
    """What the caller (usually the CLI) asks for. Times are aware datetimes;
    ``since``/``until`` are the raw ``--since``/``--until`` text (a duration
    before ``as_of`` or a date); ``tags``/``exclude_tags`` are free text,
    slugified here."""

    as_of: datetime | None = None
    since: str | None = None
    until: str | None = None
    tags: tuple[str, ...] = ()
    exclude_tags: tuple[str, ...] = ()
    limit: int | None = None
    key: str = "preview"
    intro_markdown: str | None = None
    already_sent: frozenset[str] = frozenset()
    list_name: str | None = None


@dataclass
class Issue:
    """A planned issue: ``selection`` (articles, newest first), ``variants``
    (subscribers grouped by the articles they get), ``subscribers`` (the whole
    audience after suppressions), and the warnings to show before sending."""

    context: IssueContext
    selection: Selection
    variants: list[Variant]
    subscribers: list[Subscriber]
    source_warnings: list[str] = field(default_factory=list)
    audience_problems: list[Problem] = field(default_factory=list)

    @property
    def recipient_count(self) -> int:
        return sum(len(v.subscribers) for v in self.variants)

    def warnings(self) -> list[str]:
        """What planning skipped, one line each: unreadable sources, undated
        articles (listed), subscriber rows with problems."""
        lines = list(self.source_warnings)
        if self.selection.undated:
            listed = "; ".join(f"{a.title} ({a.source})" for a in self.selection.undated)
            lines.append(f"{len(self.selection.undated)} article(s) without a date left out: {listed}")
        lines.extend(f"subscriber skipped: {problem}" for problem in self.audience_problems)
        return lines


def plan_issue(
    settings: Settings,
    request: IssueRequest,
    *,
    subscribers: Iterable[Subscriber] | None = None,
) -> Issue:
    """Load the articles of ``settings.sources``, select them for ``request``
    and group the audience into variants.

    ``subscribers`` replaces the lists of ``settings.subscribers`` (tests,
    previews for one person). Raises :class:`digest.errors.DigestError` for a
    bad request (e.g. an empty window); unreadable sources and subscriber rows
    become warnings and problems instead.
    """
    as_of = request.as_of or datetime.now(UTC)
    window = make_window(as_of, settings.tz, request.since, request.until)
    loaded = load_articles(settings.sources, settings, fetched_at=as_of)
    selection = select_articles(
        loaded.articles,
        window,
        tags=[slugify_tag(t) for t in request.tags],
        exclude_tags=[slugify_tag(t) for t in request.exclude_tags],
        limit=request.limit,
        already_sent=request.already_sent,
    )
    problems: list[Problem] = []
    if subscribers is None:
        # The chosen list minus the ledger's suppressions, with stored preferences.
        loaded_audience = load_audience(settings, request.list_name)
        subscribers, problems = loaded_audience.subscribers, loaded_audience.problems
    audience = list(subscribers)
    context = IssueContext(
        key=request.key,
        as_of=as_of,
        window_start=window.start,
        window_end=window.end,
        intro_markdown=request.intro_markdown,
    )
    return Issue(
        context=context,
        selection=selection,
        variants=build_variants(selection.articles, audience),
        subscribers=audience,
        source_warnings=loaded.warnings,
        audience_problems=problems,
    )
