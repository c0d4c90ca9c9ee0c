"""The audience of one issue: the subscribers of the chosen lists minus
suppressions, with their chosen tags, and the variants they fall into.

**The audience** of an issue is the list's rows minus the suppressions of
the ledger and the people erased on their request (``digest subscribers
forget`` keeps only a keyed hash: a row that brings such an address back is
suppressed), with the tags and frequency readers chose on the preferences
page in place of their CSV row's (:func:`load_audience`).

**Variants.** Subscribers whose selected article sets are equal form one
:class:`Variant`; the digest is rendered once per variant, never once per
subscriber.

:func:`export_audience` writes CSV for spreadsheets and other services, with
cells that a spreadsheet would run as formulas defused. Reading and editing
the lists themselves is :mod:`digest.subscribers`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import marshal
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from digest.articles import Article
from digest.consent import address_hash, forgotten_hashes
from digest.frequencies import ReaderWindows
from digest.members import Members, Roster
from digest.subscribers import Overlap, Problem, Subscriber, choose_lists, iter_rows, merge_rows
from digest.suppressions import Suppression, all_frequencies, all_preferences, present, suppressed_key_set, suppressions_for

if TYPE_CHECKING:
    from digest.settings import Settings


@dataclass(frozen=True)
class Variant:
    """Subscribers who get the same articles. ``number`` counts from 1 in the
    order variants are listed; ``key`` is a short hash of the article ids, the
    same in every run for the same set."""

    number: int
    key: str
    articles: tuple[Article, ...]
    subscribers: Sequence[Subscriber]  # a Members of the roster, or a tuple
    tags: frozenset[str]  # the union of the tags that chose these articles; empty = all


# The audience: lists, suppressions and preferences -----------------------------------------


@dataclass
class Audience:
    """Who an issue goes to. ``subscribers``: the rows of the chosen lists
    minus suppressions, with stored preferences in place of CSV tags;
    ``suppressed``: the rows left out and why; ``problems``: rows skipped;
    ``lists``: the list files read; ``merged``: how many readers on more
    than one list were merged into one, known once ``subscribers`` is read."""

    subscribers: Sequence[Subscriber] | Iterator[Subscriber]  # an iterator when streamed
    suppressed: list[tuple[Subscriber, Suppression]]
    problems: list[Problem]
    lists: list[Path]
    merged: int = 0


def load_audience(
    settings: Settings,
    list_name: str | None = None,
    *,
    path: Path | None = None,
    ledger: Path | str | None = None,
    use_ledger: bool = True,
    stream: bool = False,
) -> Audience:
    """The audience of ``settings.subscribers`` (or ``path``), for
    ``list_name`` (see :func:`choose_lists`).

    Suppressions and preferences come from ``ledger`` (default
    ``settings.ledger``; none with ``use_ledger=False``). A ledger file that
    does not exist means none, and is not created: planning and dry runs
    write nothing. With ``stream``, ``subscribers`` is an iterator that reads
    the lists as it is consumed (once), and ``suppressed`` and ``problems``
    are complete when it is exhausted: a million rows are never held (pack
    it with :func:`digest.members.pack` to read it more than once). Raises
    :class:`DigestError` for a missing list or an unreadable ledger.
    """
    files = choose_lists(Path(path or settings.subscribers), list_name, settings.default_list)
    ledger = ledger or settings.ledger
    audience = Audience([], [], [], files)
    state = _LedgerState(ledger if use_ledger and present(ledger) else None, settings.secret_key.get_secret_value())
    rows = _audience_rows(files, state, audience, settings.frequency_default)
    audience.subscribers = rows if stream else list(rows)
    return audience


def _audience_rows(files: list[Path], state: _LedgerState, audience: Audience, default_frequency: str) -> Iterator[Subscriber]:
    """The subscribers of ``files`` kept for ``audience``, whose
    ``problems``, ``suppressed`` and ``merged`` fill meanwhile.

    An address on several lists is one reader: its rows, each with its own
    list's suppressions and stored choices applied, are merged as they come
    (:func:`digest.subscribers.merge_rows`) and the one reader is held,
    packed, until the lists are read (only such addresses:
    :class:`digest.subscribers.Overlap` finds them); a row
    suppressed on its list takes no part, so a reader who left one list
    gets the others' tags only."""
    if len(files) < 2:
        yield from _kept_rows(iter_rows(files), state, audience)
        return
    overlap = Overlap(files)
    order = {file.stem: number for number, file in enumerate(files)}
    held: list[bytes | None] = []  # by slot: the merged reader so far, packed (about 100 bytes)
    merged = bytearray()  # by slot: 1 once a second row was merged in
    for subscriber in _kept_rows(_noted(iter_rows(overlap.order), overlap), state, audience):
        slot = overlap.slot(subscriber)
        if not slot:
            yield subscriber
            continue
        if slot > len(held):
            held.extend([None] * (slot - len(held)))
            merged.extend(bytes(slot - len(merged)))
        before = held[slot - 1]
        if before is not None:
            earlier = _unpacked(before)
            pair = (earlier, subscriber) if order[earlier.list_name] <= order[subscriber.list_name] else (subscriber, earlier)
            subscriber = merge_rows(pair, default_frequency)
            merged[slot - 1] = 1
        held[slot - 1] = _packed(subscriber)
    audience.merged = merged.count(1)
    audience.problems.sort(key=lambda problem: order.get(Path(problem.file).stem, 0))  # in list order, as read before
    for record in held:
        if record is not None:
            subscriber = _unpacked(record)
            yield replace(subscriber, tags=state.tag_sets.setdefault(subscriber.tags, subscriber.tags))


def _noted(items: Iterator[Subscriber | Problem], overlap: Overlap) -> Iterator[Subscriber | Problem]:
    for item in items:
        if isinstance(item, Subscriber):
            overlap.note(item)
        yield item


def _packed(subscriber: Subscriber) -> bytes:
    s = subscriber
    return marshal.dumps((s.email, s.name, tuple(s.tags), s.list_name, s.line, s.frequency))


def _unpacked(record: bytes) -> Subscriber:
    email, name, tags, list_name, line, frequency = marshal.loads(record)
    return Subscriber(email, name, frozenset(tags), list_name, line, frequency)


def _kept_rows(items: Iterator[Subscriber | Problem], state: _LedgerState, audience: Audience) -> Iterator[Subscriber]:
    """The rows of ``items`` not suppressed on their list nor erased, each
    with the tags and frequency chosen for that list; ``audience``'s
    ``problems`` and ``suppressed`` fill meanwhile."""
    held: list[Subscriber] = []
    erased: list[tuple[Subscriber, Suppression]] = []
    for item in items:
        if isinstance(item, Problem):
            audience.problems.append(item)
            continue
        stopped, _ = state.lookup(item)
        if stopped:
            held.append(item)
        elif (gone := state.erased(item)) is not None:
            erased.append((item, gone))
        else:
            yield state.chosen(item)
    suppressed = state.why(held)
    audience.suppressed.extend(suppressed + erased)
    # A suppression lifted between the two queries: that reader is kept.
    lifted = {id(s) for s in held} - {id(s) for s, _ in suppressed}
    yield from (state.chosen(s) for s in held if id(s) in lifted)


@dataclass
class _LedgerState:
    """Suppressions and preferences per list, each read in one query the
    first time a subscriber of that list is met."""

    ledger: Path | str | None
    secret: str = ""
    suppressions: dict[str, frozenset[str]] = field(default_factory=dict)
    preferences: dict[str, dict[str, frozenset[str]]] = field(default_factory=dict)
    frequencies: dict[str, dict[str, str]] = field(default_factory=dict)
    tag_sets: dict[frozenset[str], frozenset[str]] = field(default_factory=dict)
    forgotten: dict[str, datetime] | None = None

    def lookup(self, subscriber: Subscriber) -> tuple[bool, frozenset[str] | None]:
        """(whether ``subscriber`` is suppressed, the tags they chose or None)."""
        if self.ledger is None:
            return False, None
        name = subscriber.list_name
        if name not in self.suppressions:
            # Only the keys: a long history is mostly people no longer on the list.
            self.suppressions[name] = suppressed_key_set(self.ledger, name)
            self.preferences[name] = all_preferences(self.ledger, name)
            self.frequencies[name] = all_frequencies(self.ledger, name)
        key = subscriber.key
        chosen = self.preferences[name].get(key)
        if chosen is not None:
            chosen = self.tag_sets.setdefault(chosen, chosen)  # one object per distinct choice
        return key in self.suppressions[name], chosen

    def why(self, held: list[Subscriber]) -> list[tuple[Subscriber, Suppression]]:
        """``held`` (subscribers :meth:`lookup` found suppressed), each with its suppression."""
        found: dict[str, dict[str, Suppression]] = {}
        for name in {s.list_name for s in held}:
            found[name] = suppressions_for(self.ledger, name, (s.key for s in held if s.list_name == name))
        return [(s, found[s.list_name][s.key]) for s in held if s.key in found[s.list_name]]

    def chosen(self, subscriber: Subscriber) -> Subscriber:
        """``subscriber`` with the tags and frequency they chose, if they did."""
        chosen = self.lookup(subscriber)[1]
        if chosen is not None:
            subscriber = replace(subscriber, tags=chosen)
        frequency = self.frequencies.get(subscriber.list_name, {}).get(subscriber.key)
        return subscriber if frequency is None else replace(subscriber, frequency=frequency)

    def erased(self, subscriber: Subscriber) -> Suppression | None:
        """The suppression that stands for an erasure on request (``digest
        subscribers forget`` keeps only the address's keyed hash), or None."""
        if self.ledger is None:
            return None
        if self.forgotten is None:
            self.forgotten = forgotten_hashes(self.ledger)
        at = self.forgotten.get(address_hash(self.secret, subscriber.key)) if self.forgotten else None
        return Suppression(subscriber.email, "forgotten", "erased on request (digest subscribers forget)", None, at) if at else None


# Variants ----------------------------------------------------------------------------------


def wants(subscriber_tags: frozenset[str], article: Article) -> bool:
    """Whether a subscriber with these tags gets this article (empty = every tag)."""
    return not subscriber_tags or not subscriber_tags.isdisjoint(article.tags)


def build_variants(
    articles: Sequence[Article], subscribers: Iterable[Subscriber], windows: ReaderWindows | None = None
) -> list[Variant]:
    """Group subscribers by the articles they get, keeping the selection's order
    (see :func:`group_audience`)."""
    return group_audience(articles, subscribers, windows)[0]


def group_audience(
    articles: Sequence[Article], subscribers: Iterable[Subscriber], windows: ReaderWindows | None = None
) -> tuple[list[Variant], Members]:
    """(the variants, everyone) of ``subscribers``, read once as a stream.

    Subscribers are written to a :class:`digest.members.Roster` as they come,
    each with its variant, so memory holds a count per variant and one
    article set per distinct (tags, window), never the list: each variant's
    ``subscribers`` and everyone (those who get nothing too) are
    :class:`digest.members.Members` that read the roster again.

    With ``windows`` (per-reader frequency, :mod:`digest.frequencies`), a
    subscriber gets only the articles published after their own window's
    start and not in their excluded set. Subscribers with an empty article
    set get nothing and are in no variant. Variants are numbered by size
    (largest first), then by key, so numbering is stable between runs with
    the same input. The article set is worked out once per distinct (tags,
    window), not once per subscriber.
    """
    groups: dict[tuple[str, ...], int] = {}  # article ids -> group number in the roster
    tags_by_group: list[set[str]] = []
    everyone_by_group: list[bool] = []  # a member follows every tag
    memo: dict[tuple, int] = {}
    by_id = {article.id: article for article in articles}
    roster = Roster()
    for subscriber in subscribers:
        start, excluded = windows.of(subscriber) if windows is not None else (None, frozenset())
        memo_key = (subscriber.tags, start, excluded)
        group = memo.get(memo_key)
        if group is None:
            ids = tuple(
                a.id
                for a in articles
                if wants(subscriber.tags, a) and (start is None or (a.published is not None and a.published > start)) and a.id not in excluded
            )
            group = groups.setdefault(ids, len(groups)) if ids else -1
            if group == len(tags_by_group):
                tags_by_group.append(set())
                everyone_by_group.append(False)
            if group >= 0:
                tags_by_group[group].update(subscriber.tags)
                everyone_by_group[group] = everyone_by_group[group] or not subscriber.tags
            memo[memo_key] = group
        roster.add(subscriber, group)
    roster.seal()
    keyed = [(variant_key(ids), ids, group) for ids, group in groups.items()]
    keyed.sort(key=lambda item: (-roster.counts.get(item[2], 0), item[0]))
    variants = [
        Variant(
            number=number,
            key=key,
            articles=tuple(by_id[i] for i in ids),
            subscribers=Members(roster, group),
            tags=frozenset() if everyone_by_group[group] else frozenset(tags_by_group[group]),
        )
        for number, (key, ids, group) in enumerate(keyed, start=1)
    ]
    return variants, Members(roster)


def variant_key(article_ids: Sequence[str]) -> str:
    """A short stable name for an article set (12 hex characters of SHA-256)."""
    return hashlib.sha256("\n".join(article_ids).encode()).hexdigest()[:12]


# Cells a spreadsheet would run as a formula start with one of these (OWASP,
# "CSV Injection"): = + - @, and tab or CR, which some programs skip first.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: str) -> str:
    """``value`` for a CSV cell that a spreadsheet shows as text and never
    runs: with a leading apostrophe when it starts like a formula (OWASP
    "CSV Injection"). Only for exports: lists keep their values as typed."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def export_audience(audience: Audience) -> str:
    """The audience as CSV text (``email,name,tags,list,status``): every
    subscriber with their effective tags and ``subscribed``, then every
    suppressed one with the suppression's reason as status, so another
    service importing it does not mail people who left. Every cell goes
    through :func:`spreadsheet_safe`: names come from sign-up forms, and an
    address may start with ``=`` or ``-`` too."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["email", "name", "tags", "list", "status"])
    everyone = [(s, "subscribed") for s in audience.subscribers] + [(s, why.reason) for s, why in audience.suppressed]
    for subscriber, status in everyone:
        cells = [subscriber.email, subscriber.name, ";".join(sorted(subscriber.tags)), subscriber.list_name, status]
        writer.writerow([spreadsheet_safe(cell) for cell in cells])
    return out.getvalue()
