"""One issue (one edition of the digest), planned from the settings: its
articles, its audience split into variants, and everything worth a warning.

Planning reads sources and subscriber lists but sends and writes nothing, so
``digest articles``, ``digest preview``, ``digest audience`` and
``digest send`` all start here and agree on what the issue holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from digest.articles import Article, slugify_tag
from digest.audience import Audience, Variant, group_audience, load_audience
from digest.errors import DigestError
from digest.frequencies import ReaderWindows, frequency_of
from digest.members import pack
from digest.rendering import IssueContext
from digest.schedule import ScheduledIssue, current_issue, schedule_of, window_since_last_send
from digest.selection import Selection, Window, make_window, select_articles, select_by_ids
from digest.settings import Settings
from digest.sources import DATE_LINES, FeedCache, load_articles
from digest.subscribers import Problem, Subscriber
from digest.words import plural


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
    key: str | None = None  # None: the key the schedule gives (e.g. 2026-W48)
    article_ids: tuple[str, ...] | None = None  # a resumed issue keeps the articles it was created with
    intro_markdown: str | None = None
    already_sent: frozenset[str] = frozenset()
    list_name: str | None = None
    window_start: datetime | None = None  # None: the schedule's period; see resume_or_new
    # The issue of one frequency (its schedule, its readers); None: everyone, the schedule's first send time.
    frequency: str | None = None
    # What the ledger says each reader was sent (digest.ledger.readers.reader_history): with it, each
    # reader's window starts where the last issue they were sent ended. None: one window for everyone.
    history: tuple[dict, dict] | None = None


@dataclass
class Issue:
    """A planned issue: ``selection`` (articles, newest first), ``variants``
    (subscribers grouped by the articles they get), ``subscribers`` (the whole
    audience after suppressions), and the warnings to show before sending."""

    context: IssueContext
    selection: Selection
    variants: list[Variant]
    subscribers: Sequence[Subscriber]  # a digest.members.Members: read again from the issue's roster
    source_warnings: list[str] = field(default_factory=list)
    audience_problems: list[Problem] = field(default_factory=list)
    scheduled_at: datetime | None = None
    sources_failed: list[str] = field(default_factory=list)  # "<where>: <reason>" per file or URL not read
    duplicates: list[tuple[Article, Article]] = field(default_factory=list)  # (left out, the same article kept)
    every_source_failed: bool = False

    @property
    def recipient_count(self) -> int:
        return sum(len(v.subscribers) for v in self.variants)

    def warnings(self) -> list[str]:
        """What planning skipped, one line each: unreadable sources and
        dates, undated articles (by title, the first ``DATE_LINES``, then
        "and N more"), subscriber rows with problems."""
        lines = list(self.source_warnings)
        undated = self.selection.undated
        lines.extend(f"left out, no date: {a.title} ({a.source})" for a in undated[:DATE_LINES])
        if len(undated) > DATE_LINES:
            lines.append(f"and {plural(len(undated) - DATE_LINES, 'more article')} without a date left out")
        lines.extend(f"{'subscriber skipped' if p.kind == 'row' else 'subscriber list'}: {p}" for p in self.audience_problems)
        return lines


def plan_issue(
    settings: Settings,
    request: IssueRequest,
    *,
    subscribers: Iterable[Subscriber] | None = None,
    audience: Audience | None = None,
    feeds: FeedCache | None = None,
) -> Issue:
    """Load the articles of ``settings.sources``, select them for ``request``
    and group the audience into variants.

    The issue is the one ``settings.schedule`` places at or before
    ``request.as_of``: its key (unless ``request.key`` names one) and, unless
    ``since``/``until`` are given, its window.

    ``subscribers`` replaces the lists of ``settings.subscribers`` (tests,
    previews for one person); ``audience`` is the audience already loaded
    (one load for the issues of every frequency). With ``request.frequency``
    the issue is that frequency's (its schedule, its readers); with
    ``request.history`` each reader's window starts where the last issue
    they were sent ended (:mod:`digest.frequencies`).; ``feeds``
    answers for feed URLs without fetching (:class:`digest.sources.FeedCache`,
    a server's). Raises :class:`digest.errors.DigestError` for a
    bad request (e.g. an empty window); unreadable sources and subscriber rows
    become warnings and problems instead.
    """
    as_of = request.as_of or datetime.now(UTC)
    scheduled = current_issue(schedule_of(settings.schedule, request.frequency), as_of, settings.tz)
    problems: list[Problem] = []
    if subscribers is None:
        # The chosen list minus the ledger's suppressions, with stored preferences,
        # packed into a roster as it is read: never a million objects at once.
        loaded_audience = audience or load_audience(settings, request.list_name, stream=True)
        subscribers, problems = loaded_audience.subscribers, loaded_audience.problems
    per_reader = not (request.since or request.until) and request.history is not None and not request.key
    if per_reader and not isinstance(subscribers, Sequence):
        subscribers = pack(subscribers)  # read twice below: the readers' windows, then variants
    everyone = subscribers

    def readers() -> Iterator[Subscriber]:
        """The issue's readers (of its frequency), one at a time."""
        if request.frequency is None:
            return iter(everyone)
        return (s for s in everyone if frequency_of(s, settings) == request.frequency)

    windows = None
    # Without --since/--until the window is the scheduled issue's: from the
    # previous scheduled time to this one, so consecutive issues tile.
    if request.since or request.until:
        window = make_window(as_of, settings.tz, request.since, request.until)
    elif per_reader:
        # Each reader from the end of the last issue they were sent; readers never
        # sent one from the list's history (refused issues) or the schedule's period.
        start = min(scheduled.window_start, request.window_start or scheduled.window_start)
        windows = ReaderWindows(start, *request.history)
        window = Window(min(windows.earliest(readers()), scheduled.window_end), scheduled.window_end)
    elif request.window_start is not None:
        window = Window(request.window_start, scheduled.window_end)
    else:
        window = scheduled.window
    loaded = load_articles(settings.sources, settings, fetched_at=as_of, feeds=feeds)
    warnings = list(loaded.warnings)
    if request.article_ids is not None:
        selection, missing = select_by_ids(loaded.articles, request.article_ids, window)
        if missing:
            warnings.append(f"{plural(missing, 'article')} of this issue no longer in the sources, left out")
    else:
        selection = select_articles(
            loaded.articles,
            window,
            tags=[slugify_tag(t) for t in request.tags],
            exclude_tags=[slugify_tag(t) for t in request.exclude_tags],
            limit=request.limit,
            # Per-reader windows already leave out what each reader was sent.
            already_sent=request.already_sent if windows is None else frozenset(),
        )
    context = IssueContext(
        key=request.key or scheduled.key,
        as_of=as_of,
        window_start=window.start,
        window_end=window.end,
        intro_markdown=request.intro_markdown,
        scheduled_at=scheduled.scheduled_at,
    )
    variants, readers_of_issue = group_audience(selection.articles, readers(), windows)
    return Issue(
        context=context,
        selection=selection,
        variants=variants,
        subscribers=readers_of_issue,
        source_warnings=warnings,
        audience_problems=problems,
        scheduled_at=None if request.key else scheduled.scheduled_at,
        sources_failed=list(loaded.failed),
        duplicates=list(loaded.duplicates),
        every_source_failed=loaded.every_source_failed,
    )


def issue_key(request: IssueRequest, settings: Settings) -> str:
    """The key of the issue ``request`` names: its own, else the schedule's at ``request.as_of`` (default now)."""
    return request.key or current_issue(schedule_of(settings.schedule, request.frequency), request.as_of or datetime.now(UTC), settings.tz).key


def resume_or_new(request: IssueRequest, ledger, settings: Settings, *, include_sent: bool = False) -> IssueRequest:
    """``request`` adjusted for what the ledger (:class:`digest.ledger.Ledger`)
    knows: an issue already in it (a resume) keeps the articles and window
    it was created with; a new one starts its window where the last issue
    that went out to its list ended (:func:`history_window`) and leaves out
    the articles earlier issues carried, unless ``include_sent``. Unless
    ``include_sent``, the request also carries what each reader was sent,
    so that each reader's window starts where the last issue they were sent
    ended (:mod:`digest.frequencies`)."""
    from digest.ledger.readers import reader_history

    scheduled = current_issue(schedule_of(settings.schedule, request.frequency), request.as_of or datetime.now(UTC), settings.tz)
    key = request.key or scheduled.key
    # Read on a connection of its own: a SQLite file's path or a PostgreSQL ledger's URL.
    target = getattr(ledger, "url", None) or ledger.path
    history = None if include_sent or ledger.in_memory else reader_history(target, except_issue=key)
    existing = ledger.get_issue(key)
    if existing is not None:
        # With per-reader windows the start only serves readers never sent an issue:
        # the same as when the issue was created (the list's history before it).
        per_reader = history is not None and not request.key
        start = history_window(scheduled, ledger, settings, request.list_name).start if per_reader else existing.window_start
        return replace(request, article_ids=existing.article_ids, window_start=start, history=history)
    sent = frozenset() if include_sent else frozenset(ledger.sent_article_ids(except_issue=key))
    start = history_window(scheduled, ledger, settings, request.list_name).start
    return replace(request, already_sent=sent, window_start=start, history=history)


def history_window(scheduled: ScheduledIssue, ledger, settings: Settings, list_name: str | None) -> Window:
    """The window of ``scheduled`` for the list(s) ``list_name`` picks
    (``--list``; default as :func:`digest.subscribers.choose_lists`): from
    the end of the last issue that went out to them (the ledger's history)
    to its scheduled time; for the first issue the schedule's period, or
    from the start of the issues refused before it (``--not-after``).

    The start is a function of (list, ledger history) only: per-subscriber
    frequencies can ask the same of their own cadence."""
    from pathlib import Path

    from digest.subscribers import choose_lists

    names = [f.stem for f in choose_lists(Path(settings.subscribers), list_name, settings.default_list)]
    last_end = ledger.last_sent_window_end(names, scheduled.window_end)
    refused = ledger.first_refused_window_start(names, scheduled.window_start) if last_end is None else None
    return window_since_last_send(scheduled, last_end, refused)


def issue_frequencies(
    settings: Settings, list_name: str | None = None, *, whole: bool = False, as_subscriber: str | None = None
) -> tuple[list[str | None], Audience | None]:
    """The frequencies one send handles, and the audience they came from
    (pass it on to :func:`plan_issue`): those of the audience's readers (of
    ``list_name``), in the order daily, weekly, monthly, each getting its own
    issue; ``[None]`` (one issue for everyone) when ``whole`` (an issue named
    with ``--issue``, a window given with ``--since``/``--until``); only the
    frequency of ``as_subscriber`` when given (a test send)."""
    from digest.schedule import CADENCES

    if whole:
        return [None], None
    try:
        audience = load_audience(settings, list_name, stream=True)
    except DigestError:
        # No lists here (a worker on a shared ledger needs none: the issue is queued
        # there already): one issue, the schedule's first; planning says what is wrong.
        return [None], None
    found: set[str] = set()
    # Packed as it is read (the issues of each frequency read it again), never held as objects.
    audience.subscribers = readers = pack(r for r in audience.subscribers if not found.add(frequency_of(r, settings)))
    if as_subscriber:
        wanted = as_subscriber.strip().casefold()
        readers = [r for r in readers if r.key == wanted] or readers
    if as_subscriber and readers is not audience.subscribers:
        found = {frequency_of(reader, settings) for reader in readers}
    found = found or {settings.frequency_default}
    chosen = [cadence for cadence in CADENCES if cadence in found]
    return (chosen[:1] if as_subscriber else chosen), audience
