"""The audience: subscribers, their tags, and the variants they fall into.

A subscriber list is a CSV file with a header row ``email,name,tags`` (tags
``;``-separated; empty means every tag). Subscribers whose selected article
sets are equal form one :class:`Variant`; the digest is rendered once per
variant, never once per subscriber.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from email_validator import EmailNotValidError, validate_email

from digest.articles import Article
from digest.errors import DigestError


@dataclass(frozen=True)
class Subscriber:
    """One valid row of a subscriber list.

    ``email`` is as written (local part's case kept, domain lower-cased);
    ``key`` is the case-folded address used to find duplicates and
    suppressions. ``tags`` are slugs; empty means every tag.
    """

    email: str
    name: str
    tags: frozenset[str]
    list_name: str
    line: int

    @property
    def key(self) -> str:
        return self.email.casefold()


@dataclass(frozen=True)
class Problem:
    """A row that was skipped, with where it is and why."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


@dataclass(frozen=True)
class Variant:
    """Subscribers who get the same articles. ``number`` counts from 1 in the
    order variants are listed; ``key`` is a short hash of the article ids, the
    same in every run for the same set."""

    number: int
    key: str
    articles: tuple[Article, ...]
    subscribers: tuple[Subscriber, ...]
    tags: frozenset[str]  # the union of the tags that chose these articles; empty = all


def list_files(path: Path) -> list[Path]:
    """The CSV lists at ``path``: the file itself, or every ``*.csv`` in the folder."""
    if path.is_dir():
        return sorted(path.glob("*.csv"))
    if path.is_file():
        return [path]
    raise DigestError(f"no subscriber list at {path}")


def load_subscribers(path: Path) -> tuple[list[Subscriber], list[Problem]]:
    """Read one CSV list or a folder of them.

    Returns the valid subscribers (first occurrence wins for an address found
    twice, compared case-insensitively) and the problems found (invalid address
    per email-validator's syntax rules, no DNS lookups; duplicates; a missing
    ``email`` column). Raises :class:`DigestError` when the path does not exist.
    """
    subscribers: list[Subscriber] = []
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    for file in list_files(path):
        rows, file_problems = _read_list(file)
        problems.extend(file_problems)
        for subscriber in rows:
            if subscriber.key in seen:
                problems.append(
                    Problem(str(file), subscriber.line, f"duplicate of {seen[subscriber.key]}: {subscriber.email}")
                )
                continue
            seen[subscriber.key] = f"{file.name}:{subscriber.line}"
            subscribers.append(subscriber)
    return subscribers, problems


def _read_list(file: Path) -> tuple[list[Subscriber], list[Problem]]:
    rows: list[Subscriber] = []
    problems: list[Problem] = []
    try:
        # utf-8-sig drops a byte order mark; newline="" lets csv read CRLF and quoted newlines.
        with file.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            fields = [f.strip().lower() for f in reader.fieldnames or []]
            if "email" not in fields:
                return [], [Problem(str(file), 1, "header has no 'email' column (expected email,name,tags)")]
            reader.fieldnames = fields
            for record in reader:
                line = reader.line_num
                raw_email = (record.get("email") or "").strip()
                if not raw_email:
                    problems.append(Problem(str(file), line, "no email address"))
                    continue
                try:
                    checked = validate_email(raw_email, check_deliverability=False)
                except EmailNotValidError as exc:
                    problems.append(Problem(str(file), line, f"invalid address {raw_email!r}: {exc}"))
                    continue
                status = (record.get("status") or "").strip().lower()
                if status in {"unsubscribed", "inactive", "bounced", "cleaned"}:
                    continue
                rows.append(
                    Subscriber(
                        email=checked.normalized,
                        name=(record.get("name") or "").strip(),
                        tags=frozenset(parse_tags(record.get("tags") or "")),
                        list_name=file.stem,
                        line=line,
                    )
                )
    except UnicodeDecodeError as exc:
        problems.append(Problem(str(file), 1, f"not UTF-8 text ({exc.reason})"))
    except csv.Error as exc:
        problems.append(Problem(str(file), 1, f"not a readable CSV file: {exc}"))
    return rows, problems


def parse_tags(value: str) -> list[str]:
    """Tags of a subscriber row, ``;``-separated, as slugs."""
    from digest.articles import slugify_tag

    return [slug for part in value.split(";") if (slug := slugify_tag(part))]


def wants(subscriber_tags: frozenset[str], article: Article) -> bool:
    """Whether a subscriber with these tags gets this article (empty = every tag)."""
    return not subscriber_tags or not subscriber_tags.isdisjoint(article.tags)


def build_variants(articles: Sequence[Article], subscribers: Iterable[Subscriber]) -> list[Variant]:
    """Group subscribers by the articles they get, keeping the selection's order.

    Subscribers with an empty article set get nothing and are left out.
    Variants are numbered by size (largest first), then by key, so numbering is
    stable between runs with the same input.
    """
    groups: dict[tuple[str, ...], list[Subscriber]] = {}
    tags_by_set: dict[tuple[str, ...], set[str]] = {}
    memo: dict[frozenset[str], tuple[str, ...]] = {}
    by_id = {article.id: article for article in articles}
    for subscriber in subscribers:
        ids = memo.get(subscriber.tags)
        if ids is None:
            ids = memo[subscriber.tags] = tuple(a.id for a in articles if wants(subscriber.tags, a))
        if not ids:
            continue
        groups.setdefault(ids, []).append(subscriber)
        tags_by_set.setdefault(ids, set()).update(subscriber.tags)
    keyed = [(variant_key(ids), ids, members) for ids, members in groups.items()]
    keyed.sort(key=lambda item: (-len(item[2]), item[0]))
    variants = []
    for number, (key, ids, members) in enumerate(keyed, start=1):
        everyone = any(not s.tags for s in members)
        variants.append(
            Variant(
                number=number,
                key=key,
                articles=tuple(by_id[i] for i in ids),
                subscribers=tuple(members),
                tags=frozenset() if everyone else frozenset(tags_by_set[ids]),
            )
        )
    return variants


def variant_key(article_ids: Sequence[str]) -> str:
    """A short stable name for an article set (12 hex characters of SHA-256)."""
    return hashlib.sha256("\n".join(article_ids).encode()).hexdigest()[:12]
