"""The size budget: Gmail clips HTML bodies above about 102 KB, hiding the
footer with the unsubscribe link. A variant whose inlined HTML is above
``settings.html_budget_kb`` (as sent 7-bit, :func:`html_size`) is rendered again with shorter excerpts, then the
compact layout for its oldest articles, then its oldest articles as "More this
week" links, then the oldest of those counted in one "N more articles" link to
the issue's web page; the newest few keep the standard layout while they fit,
and the footer is never cut.

Inlining is the costly part of a render, so the search for the smallest
change measures rendered HTML *before* inlining and estimates what inlining
adds (:class:`SizeEstimate`, learnt from the first inlined render): a variant
is inlined at most twice, once as planned and once as reduced.
"""

from __future__ import annotations

import binascii
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from digest.articles import Article
from digest.settings import Settings

SHORT_EXCERPT_WORDS = 20  # first step of the size budget
MAX_BUDGET_TRIES = 6  # renders per size-budget step, after the first
ESTIMATE_MARGIN = 0.03  # the search aims this much under the budget: SizeEstimate is within about 2%
KEEP_NEWEST = 5  # the newest articles the size budget leaves in the standard layout while they fit

_TAG = re.compile(r"""<([a-zA-Z][^\s/>]*)((?:\s+[^\s=/>]+(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s>]+))?)*)\s*/?>""")
_CLASS = re.compile(r"""\sclass=["']([^"']*)["']""")
_STYLE = re.compile(r"""\sstyle=("[^"]*"|'[^']*')""")


@dataclass(frozen=True)
class Plan:
    """How each article is shown; the size budget changes it step by step."""

    excerpt_words: int | None = None  # None: the article's own summary
    compact: frozenset[str] = frozenset()  # ids in the compact layout
    linked: frozenset[str] = frozenset()  # ids listed under "More this week"
    unlisted: frozenset[str] = frozenset()  # ids only counted ("N more articles", a link to the web page)
    notes: tuple[str, ...] = ()


def html_size(html: str) -> int:
    """Bytes of ``html`` as a 7-bit transport carries it: UTF-8, then
    quoted-printable (RFC 2045 §6.7; ``=`` becomes ``=3D``, other bytes over
    127 take three, lines are cut at 76). Gmail's ~102 KB clip counts the
    part as it arrives, and a dry run's ``.eml`` or a server without
    8BITMIME gets it so; over 8BITMIME it is smaller."""
    return len(binascii.b2a_qp(html.encode("utf-8")))


def _oldest_first(articles: Sequence[Article]) -> list[Article]:
    return sorted(articles, key=lambda a: a.published or datetime.min.replace(tzinfo=UTC))


def fit_budget(
    articles: Sequence[Article],
    plan: Plan,
    size: int,
    budget: int,
    size_of: Callable[[Plan], int],
    settings: Settings,
) -> Plan:
    """The plan that brings the HTML below ``budget`` bytes in the steps an
    editor would take, each only as far as needed and oldest articles first:
    shorter excerpts; the compact layout; "More this week" links; last, the
    oldest links left out and counted in one "N more articles" link to the
    issue's web page (where every article is shown). The newest
    ``KEEP_NEWEST`` articles keep the standard layout: they go the same way,
    oldest first, only when they alone are over the budget. ``size`` is the
    HTML's size under ``plan`` (over budget); ``size_of`` gives (or
    estimates) the size under another plan, so the search aims
    ``ESTIMATE_MARGIN`` under the budget. The returned plan's ``notes``
    say what was done, but not the final size (the caller measures it)."""
    initial, start, limit = plan, size, budget
    budget -= math.ceil(budget * ESTIMATE_MARGIN)  # sizes may be estimates, a little low
    plan = replace(plan, excerpt_words=SHORT_EXCERPT_WORDS)
    size = size_of(plan)
    by_age = _oldest_first(articles)
    for spared in ({a.id for a in by_age[-KEEP_NEWEST:]}, set()):
        older = [a for a in by_age if a.id not in spared]
        if size > budget and settings.layout != "compact":
            standard = [a for a in older if a.id not in plan.compact | plan.linked]
            plan, size = _smallest_change(
                standard, lambda k, p=plan, c=standard: replace(p, compact=p.compact | _ids(c[:k])), size, budget, size_of
            )
        if size > budget:
            shown = [a for a in older if a.id not in plan.linked]
            plan, size = _smallest_change(
                shown, lambda k, p=plan, c=shown: replace(p, linked=p.linked | _ids(c[:k])), size, budget, size_of
            )
        if size > budget:
            listed = [a for a in older if a.id in plan.linked - plan.unlisted]
            plan, size = _smallest_change(
                listed, lambda k, p=plan, c=listed: replace(p, unlisted=p.unlisted | _ids(c[:k])), size, budget, size_of
            )
    compact = len(plan.compact - plan.linked)
    in_full = len(articles) - compact - len(plan.linked)
    linked = len(plan.linked - initial.linked - plan.unlisted)
    if compact and in_full:
        compact_step = f"compact layout for {_oldest(compact)}"
    else:
        compact_step = f"compact layout for all {compact} articles left in the email" if compact else ""
    steps = [
        f"HTML was {start / 1024:.1f} KB, over the {limit // 1024} KB budget",
        f"excerpts shortened to about {SHORT_EXCERPT_WORDS} words",
        compact_step,
        f"{_oldest(linked)} listed as 'More this week' links" if linked else "",
        f"{_oldest(len(plan.unlisted))} left out, counted in a link to the issue's web page" if plan.unlisted else "",
    ]
    return replace(plan, notes=tuple(step for step in steps if step))


def final_note(size: int, budget: int) -> str:
    """The last note of a reduced variant: its size once inlined."""
    return f"{'now' if size <= budget else 'still over budget at'} {size / 1024:.1f} KB"


def _oldest(count: int) -> str:
    return "the oldest article" if count == 1 else f"the {count} oldest articles"


def _ids(articles: Sequence[Article]) -> frozenset[str]:
    return frozenset(a.id for a in articles)


def _smallest_change(
    candidates: Sequence[Article],
    plan_for: Callable[[int], Plan],
    start: int,
    budget: int,
    size_of: Callable[[Plan], int],
) -> tuple[Plan, int]:
    """The plan changing the fewest ``candidates`` (oldest first) whose HTML
    fits ``budget``, and its size, or all of them when even that does not
    fit. ``start`` is the size with none changed (over budget).

    The size falls about linearly with the number changed, so each try
    interpolates between the largest count known to be over budget and the
    smallest known to fit (regula falsi): two or three renders, not the
    seven of a bisection over 100 articles."""
    best = plan_for(len(candidates))
    best_size = size_of(best)
    if not candidates or best_size > budget:
        return best, best_size
    low, low_size = 0, start  # over budget
    high, high_size = len(candidates), best_size  # fits
    for _ in range(MAX_BUDGET_TRIES):
        if high - low <= 1:
            break
        guess = low + math.ceil((low_size - budget) / (low_size - high_size) * (high - low))
        guess = min(max(guess, low + 1), high - 1)
        plan = plan_for(guess)
        size = size_of(plan)
        if size <= budget:
            high, high_size, best, best_size = guess, size, plan, size
        else:
            low, low_size = guess, size
    return best, best_size


class SizeEstimate:
    """What inlining adds to a rendered page, learnt from one page and its
    inlined form: the ``style=""`` bytes per kind of element (tag name and
    class), plus what changes once per page (the ``<style>`` block). A page
    built from the same templates is then estimated without inlining it:
    exact when the styles of an element depend on its tag and class only,
    close otherwise (descendant selectors such as ``.compact .title``)."""

    def __init__(self, raw: str, inlined: str) -> None:
        per_kind: dict[tuple[str, str], list[int]] = {}
        for tag in _TAG.finditer(inlined):
            style = _STYLE.search(tag.group(2))
            per_kind.setdefault(_kind(tag), []).append(len(style.group(0).encode("utf-8")) if style else 0)
        self._per_kind = {kind: sum(sizes) / len(sizes) for kind, sizes in per_kind.items()}
        self._rules = _rules(raw)
        # Style bytes grow as the rest does once quoted-printable (html_size).
        self._growth = html_size(inlined) / max(1, len(inlined.encode("utf-8")))
        self._fixed = html_size(inlined) - html_size(raw) - self._styles(raw) * self._growth

    def _styles(self, raw: str) -> float:
        kinds = Counter(_kind(tag) for tag in _TAG.finditer(raw))
        return sum(count * self._per_kind.get(kind, self._guess(kind)) for kind, count in kinds.items())

    def _guess(self, kind: tuple[str, str]) -> float:
        """A kind of element the first render did not have (the compact
        layout, "More this week" links): the declarations of the rules whose
        last tag/class part it matches, ancestors ignored."""
        tag, classes = kind[0], set(kind[1].split())
        declared: dict[str, str] = {}
        for rule_tag, rule_classes, declarations in self._rules:
            if rule_tag in ("", "*", tag) and rule_classes <= classes and (rule_tag or rule_classes):
                declared.update(declarations)
        self._per_kind[kind] = size = float(len(' style=""') + len(";".join(f"{k}:{v}" for k, v in declared.items()))) if declared else 0.0
        return size

    def __call__(self, raw: str) -> int:
        """The estimated UTF-8 size of ``raw`` once inlined."""
        return round(html_size(raw) + self._styles(raw) * self._growth + self._fixed)


_SIMPLE_COMPOUND = re.compile(r"^([a-zA-Z][\w-]*|\*)?((?:\.[\w-]+)*)$")


def _rules(html: str) -> list[tuple[str, set[str], dict[str, str]]]:
    """(tag, classes, declarations) of the style rules in ``html`` whose last
    compound selector is a plain tag and/or classes (the others are left out
    of guesses)."""
    import tinycss2

    css = "\n".join(re.findall(r"<style\b[^>]*>(.*?)</style\s*>", re.sub(r"<!--.*?-->", "", html, flags=re.S), flags=re.S | re.I))
    out = []
    for rule in tinycss2.parse_stylesheet(css, skip_comments=True, skip_whitespace=True):
        if rule.type != "qualified-rule":
            continue
        declarations = {
            d.lower_name: tinycss2.serialize(d.value).strip()
            for d in tinycss2.parse_blocks_contents(rule.content, skip_comments=True, skip_whitespace=True)
            if d.type == "declaration"
        }
        for selector in tinycss2.serialize(rule.prelude).split(","):
            last = re.split(r"[\s>+~]+", selector.strip())[-1]
            if match := _SIMPLE_COMPOUND.match(last):
                out.append(((match.group(1) or "").lower(), set(filter(None, match.group(2).split("."))), declarations))
    return out


def _kind(tag: re.Match[str]) -> tuple[str, str]:
    found = _CLASS.search(tag.group(2))
    return tag.group(1).lower(), " ".join(sorted(found.group(1).split())) if found else ""
