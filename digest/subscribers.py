"""Subscriber lists: the CSV files in the ``subscribers`` folder, read,
checked, normalized and edited.

**Lists.** A subscriber list is a CSV file in the ``subscribers`` folder; its
name is the file's stem (``subscribers/readers.csv`` is the list
``readers``). The header names the columns: ``email`` (required), ``name``,
``tags`` (``;``-separated, commas accepted too; empty means every tag), and
optionally ``frequency`` (``daily``, ``weekly`` or ``monthly``; empty means
the ``default_frequency`` setting), ``status`` and ``subscribed_at``; other
columns are ignored.
Columns are matched by name, ignoring case, spaces and punctuation, and the
names other services export are understood (``Email Address``,
``First Name``/``Last Name``, ``TAGS``...), so an export can be used or
imported as it is. Files are UTF-8 with or without a byte order mark, with
LF or CRLF line ends; a file in another encoding (UTF-16, as spreadsheets
save "Unicode text") is one problem naming the file, not a page of garbled
rows (:func:`digest.csvrows.encoding_problem`).

**Which lists.** ``--list NAME`` picks one list; without it, the list the
``default_list`` setting names; without that, the only list in the folder;
with several and no default, all of them, merged: an address on several
lists is one reader, mailed once, with the union of the tags they chose on
each (:func:`merge_rows`; the audience applies each list's suppressions and
stored choices first, :mod:`digest.audience`).

**Rows.** Every address is checked by email-validator (syntax only, no DNS)
and normalized: surrounding spaces removed, the domain lower-cased and in
its ASCII (IDNA) form, the local part's case kept for sending (see
:func:`digest.addresses.normalize_address`; a non-ASCII local part is refused). Duplicates
are found case-insensitively (:func:`digest.suppressions.address_key`). A bad
row or a duplicate becomes a :class:`Problem` naming the file and line and is
skipped; the run goes on. Rows whose ``status`` says the person left
(``unsubscribed``, ``bounced``, ``cleaned``, ``pending``...) are skipped
quietly; :func:`import_subscribers` records them as suppressions.

**Writes** to a list (add, remove, import) are :mod:`digest.listedits`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from digest.addresses import normalize_address
from digest.articles import slugify_tag
from digest.csvrows import Row, check_utf8, read_rows
from digest.errors import DigestError, SettingsError
from digest.seen import SeenKeys
from digest.suppressions import address_key
from digest.words import plural

if TYPE_CHECKING:
    pass


@dataclass(frozen=True, slots=True)
class Subscriber:
    """One valid row of a subscriber list.

    ``email`` is as written (local part's case kept, domain lower-cased);
    ``key`` is the case-folded address used to find duplicates and
    suppressions. ``tags`` are slugs; empty means every tag. ``line`` is the
    row's first line in its file (1 = the header).
    """

    email: str
    name: str
    tags: frozenset[str]
    list_name: str
    line: int
    frequency: str = ""  # daily, weekly or monthly; "" means the default_frequency setting

    @property
    def key(self) -> str:
        return address_key(self.email)


@dataclass(frozen=True)
class Problem:
    """A row that was skipped, with where it is and why; ``line`` 0 means
    the whole file (it could not be read as a list). ``kind`` is ``"row"``,
    or ``"column"`` for a header column that is not read (named once per
    file: its values are ignored, which may not be what the list means)."""

    file: str
    line: int
    message: str
    kind: str = "row"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}" if self.line else f"{self.file}: {self.message}"


# Reading lists ---------------------------------------------------------------------------

# Column names as other services export them, compared after _column_name().
COLUMN_ALIASES = {
    "email": {"email", "emailaddress", "mail", "emailaddr"},
    "name": {"name", "fullname", "displayname"},
    "first_name": {"firstname", "fname", "givenname"},
    "last_name": {"lastname", "lname", "surname", "familyname"},
    "tags": {"tags", "tag", "groups", "interests", "topics", "categories"},
    "status": {"status", "subscriberstatus"},
    "frequency": {"frequency", "cadence", "digestfrequency", "deliveryfrequency"},
    "subscribed_at": {"subscribedat", "optintime", "createdat", "creationdate", "signupdate", "dateadded"},
}
FREQUENCIES = ("daily", "weekly", "monthly")
MAX_NAME = 200  # characters of a name: it goes into To: headers (RFC 5322: lines of at most 998 octets)
ACTIVE_STATUSES = {"", "subscribed", "active", "confirmed", "regular"}
LEFT_STATUSES = {"unsubscribed", "inactive", "bounced", "cleaned", "pending", "unconfirmed", "complained", "blocked"}
# The suppression reason of a status other services export: Mailchimp's
# "cleaned" is a hard-bounced address, ConvertKit's "inactive" an
# unsubscribed one. pending/unconfirmed people never confirmed: not imported,
# but nothing to suppress.
SUPPRESSING_STATUSES = {
    "unsubscribed": "unsubscribed",
    "inactive": "unsubscribed",
    "bounced": "bounced",
    "cleaned": "bounced",
    "blocked": "bounced",
    "complained": "spam-report",
}
def _column_name(header: str) -> str:
    return re.sub(r"[\W_]+", "", header.casefold())


def columns(header: Sequence[str]) -> dict[str, int]:
    """Our field names (``email``, ``name``, ``first_name``, ``last_name``,
    ``tags``, ``status``, ``subscribed_at``) -> their column index in
    ``header`` (first match wins; absent fields are left out)."""
    found: dict[str, int] = {}
    for index, title in enumerate(header):
        name = _column_name(title)
        for ours, aliases in COLUMN_ALIASES.items():
            if name in aliases and ours not in found:
                found[ours] = index
    return found


KNOWN_COLUMNS = "email, name (or first_name, last_name), tags, frequency, status, subscribed_at"


def unread_columns(header: Sequence[str]) -> list[str]:
    """The titles of ``header`` that no field of ours reads (a ``labels``
    column meant as tags, a typo), in order; blank titles left out."""
    aliases = set().union(*COLUMN_ALIASES.values())
    return [title.strip() for title in header if title.strip() and _column_name(title) not in aliases]


def parse_tags(value: str) -> list[str]:
    """Tags of a subscriber row as slugs: ``;``-separated (commas accepted
    too, as exports from other services use them; quotes around a tag are
    dropped)."""
    return [slug for part in re.split(r"[;,]", value) if (slug := slugify_tag(part.strip().strip('"')))]


@dataclass
class ListReader:
    """Turns the rows of one list into subscribers and problems, sharing
    one frozenset per distinct tags cell (lists repeat a few tag choices
    many times; equal objects also make build_variants' memo cheap)."""

    file: Path
    strict_header: bool = False  # raise instead of reporting a file we cannot read as a list
    left: list[tuple[Subscriber, str]] = field(default_factory=list)  # (row, status) of people who left, skipped quietly
    tag_sets: dict[str, frozenset[str]] = field(default_factory=dict)
    seen: SeenKeys | None = None  # address key -> its first line, compactly

    def __post_init__(self) -> None:
        self.list_name = self.file.stem  # one string for every row
        if self.seen is None:  # sized for rows of about 40 bytes, the usual email,name,tags
            self.seen = SeenKeys(expected=_size_of(self.file) // 40)

    def read(self) -> Iterator[Subscriber | Problem]:
        with self.file.open("rb") as handle:
            if (message := check_utf8(self.file, handle)) is not None:
                if self.strict_header:
                    raise DigestError(f"{self.file}: {message}")
                yield self.problem(0, message)
                return
            rows = read_rows(handle)
            header = self._header(rows)
            if header is None:
                return
            where = columns(header.fields)
            if "email" not in where:
                problem = self.problem(
                    header.line, f"header has no email column (expected email,name,tags; found {','.join(header.fields)})"
                )
                if self.strict_header:
                    raise DigestError(str(problem))
                yield problem
                return
            if unread := unread_columns(header.fields):
                yield Problem(str(self.file), header.line, f"{plural(len(unread), 'column')} not read, values ignored: {', '.join(map(repr, unread))} (columns read: {KNOWN_COLUMNS})", "column")
            for row in rows:
                if row.fields or row.undecodable or row.error:
                    item = self.subscriber(row, where, len(header.fields))
                    if item is not None:
                        yield item

    def _header(self, rows: Iterator[Row]) -> Row | None:
        for row in rows:
            if row.fields:
                return row
        return None

    def problem(self, line: int, message: str) -> Problem:
        return Problem(str(self.file), line, message)

    def subscriber(self, row: Row, where: dict[str, int], width: int) -> Subscriber | Problem | None:
        if row.error:
            return self.problem(row.line, f"{row.error}; row skipped")
        if row.undecodable:
            return self.problem(row.line, "not UTF-8 text; row skipped")
        if b"\0" in row.raw:
            return self.problem(row.line, "a NUL byte (not text); row skipped")
        if len(row.fields) > width:
            return self.problem(
                row.line,
                f"{len(row.fields)} values but the header has {width} columns (quote values that contain commas)",
            )
        values = _values(row.fields, where)
        try:
            email = normalize_address(values["email"])
        except DigestError as exc:
            return self.problem(row.line, f"{exc}; row skipped")
        if len(values["name"]) > MAX_NAME:
            return self.problem(row.line, f"a name of {len(values['name']):,} characters (at most {MAX_NAME}); row skipped")
        status = values["status"].strip().casefold()
        if status not in ACTIVE_STATUSES | LEFT_STATUSES:
            return self.problem(row.line, f"unknown status {values['status']!r} (expected subscribed or unsubscribed)")
        frequency = values["frequency"].strip().casefold()
        if frequency and frequency not in FREQUENCIES:
            return self.problem(row.line, f"unknown frequency {values['frequency']!r} (expected daily, weekly or monthly, or empty)")
        if first := self.seen.add(address_key(email), row.line):
            return self.problem(row.line, f"duplicate of line {first} ({email}); row skipped")
        cell = values["tags"]
        tags = self.tag_sets.get(cell)
        if tags is None:
            tags = self.tag_sets[cell] = frozenset(parse_tags(cell))
        subscriber = Subscriber(email=email, name=values["name"], tags=tags, list_name=self.list_name, line=row.line, frequency=frequency)
        if status in LEFT_STATUSES:
            self.left.append((subscriber, status))
            return None
        return subscriber


def _size_of(file: Path) -> int:
    try:
        return file.stat().st_size
    except OSError:
        return 0  # read() says why


def _values(fields: list[str], where: dict[str, int]) -> dict[str, str]:
    """The row's values by our field names ("" when absent); ``name`` made
    from first and last name when there is no name column, on one line
    (names go into To: headers, where CR and LF have no place)."""
    def get(name: str) -> str:
        index = where.get(name)
        return fields[index] if index is not None and index < len(fields) else ""

    name = get("name") or f"{get('first_name')} {get('last_name')}"
    return {
        "email": get("email"),
        "name": " ".join(name.split()),
        "tags": get("tags"),
        "status": get("status"),
        "frequency": get("frequency"),
        "subscribed_at": get("subscribed_at").strip(),
    }


def row_key(fields: list[str], where: dict[str, int]) -> str:
    """The address key of a raw row, also for an address we could not
    validate (so that ``remove`` can take a bad row out too)."""
    cell = _values(fields, where)["email"]
    try:
        return address_key(normalize_address(cell))
    except DigestError:
        return address_key(cell)


def list_files(path: Path) -> list[Path]:
    """The CSV lists at ``path``: the file itself, or every ``*.csv`` in the
    folder, in name order. Raises :class:`SettingsError` (exit 2) when ``path`` does not exist."""
    if path.is_dir():
        return sorted(path.glob("*.csv"))
    if path.is_file():
        return [path]
    raise SettingsError(f"no subscriber list at {path}")


def choose_lists(path: Path, list_name: str | None = None, default_list: str | None = None) -> list[Path]:
    """The list files to use from ``path`` (a CSV file or a folder of them):
    the one named ``list_name`` (``--list``), else the one named
    ``default_list`` (the setting; ignored when ``path`` is one file), else
    the only one, else all of them. Raises :class:`DigestError` naming the
    lists there are when a named list does not exist."""
    files = list_files(path)
    wanted = list_name or (default_list if path.is_dir() else None)
    if wanted is None:
        return files
    chosen = [f for f in files if f.stem == wanted]
    if not chosen:
        known = ", ".join(f.stem for f in files) or "none"
        origin = "--list" if list_name else "setting 'default_list'"
        raise SettingsError(f"{origin}: no list {wanted!r} in {path} (lists: {known})")
    return chosen


def list_file(path: Path, list_name: str | None = None, default_list: str | None = None) -> Path:
    """The one list file a write goes to: ``path`` itself when it is a file
    (``list_name``, if given, must be its stem); in a folder, ``NAME.csv``
    for ``list_name`` or else ``default_list`` (it may not exist yet), else
    the only list there. Raises :class:`SettingsError` (exit 2) when the
    choice is ambiguous or does not match."""
    if path.is_file():
        if list_name and list_name != path.stem:
            raise SettingsError(f"--list {list_name}: the subscribers setting names one list, {path}")
        return path
    name = list_name or default_list
    if name:
        if not re.fullmatch(r"[\w][\w.-]*", name):
            raise SettingsError(f"--list {name!r}: a list name is a file name without .csv (letters, digits, - _ .)")
        return path / f"{name}.csv"
    files = list_files(path) if path.exists() else []
    if len(files) == 1:
        return files[0]
    known = ", ".join(f.stem for f in files) or "none yet"
    raise SettingsError(f"name the list with --list (lists in {path}: {known})")


def iter_rows(files: Iterable[Path]) -> Iterator[Subscriber | Problem]:
    """Subscribers and problems of ``files``, in file and row order, one at a
    time, every list's own rows: an address on two lists comes twice (once
    per list); within one list it is a duplicate problem. The audience
    merges the first kind (:func:`merge_rows`)."""
    for file in files:
        yield from ListReader(file).read()


def member_keys(file: Path) -> Iterator[str]:
    """The address key of every member of the list ``file``, in row order,
    without making a subscriber per row: rows whose status says the person
    left, and rows whose address is not valid, are not members."""
    for _, values in raw_records(file):
        if values["status"].strip().casefold() in LEFT_STATUSES:
            continue
        try:
            yield address_key(normalize_address(values["email"]))
        except DigestError:
            continue


def on_several_lists(files: Sequence[Path]) -> dict[str, list[str]]:
    """Address key -> the names of the lists of ``files`` it is a member of
    (in ``files``' order), for the addresses on more than one list only
    (:func:`member_keys`): what ``digest subscribers check`` names."""
    if len(files) < 2:
        return {}
    seen = SeenKeys(expected=sum(_size_of(f) for f in files) // 40)
    several: dict[str, list[str]] = {}
    for number, file in enumerate(files, start=1):
        for key in member_keys(file):
            first = seen.add(key, number)
            if first and first != number:
                names = several.setdefault(key, [files[first - 1].stem])
                if names[-1] != file.stem:
                    names.append(file.stem)
    return several


class Overlap:
    """Which rows of several lists are those of an address on more than one,
    answered while the lists are streamed in :attr:`order` (the largest
    list first, then the others in name order): each such address gets a
    slot number (1, 2, ...); every other row gets 0 and can go on at once.

    Made by reading every list but the largest once first, for its members'
    keys only (:func:`member_keys`, 24 bytes a row: a large list and a few
    smaller ones cost a reading of the smaller ones), plus the slots (24
    bytes an address on several lists)."""

    def __init__(self, files: Sequence[Path]) -> None:
        largest = max(files, key=_size_of)
        rest = [file for file in files if file is not largest]
        self.order = [largest, *rest]
        self._largest = largest.stem
        self._others = SeenKeys(expected=sum(_size_of(f) for f in rest) // 40)
        self._slots = SeenKeys()
        for number, file in enumerate(rest, start=1):
            for key in member_keys(file):
                first = self._others.add(key, number)
                if first and first != number and not self._slots.get(key):
                    self._slots.add(key, len(self._slots) + 1)

    def note(self, subscriber: Subscriber) -> None:
        """Give ``subscriber``'s address a slot if it is on the largest list
        and on another: call it for every row as it is read, before any
        row is set aside (suppressions), so that no row's answer depends
        on when it comes."""
        if subscriber.list_name == self._largest and (key := subscriber.key) in self._others and not self._slots.get(key):
            self._slots.add(key, len(self._slots) + 1)

    def slot(self, subscriber: Subscriber) -> int:
        """The slot of ``subscriber``'s address when it is on several lists
        (once every row of the largest list was noted), else 0."""
        return self._slots.get(subscriber.key)


# The order "most frequent wins" ranks frequencies in, when a reader's lists disagree.
BY_FREQUENCY = {"daily": 0, "weekly": 1, "monthly": 2}


def merged_tags(tag_sets: Iterable[frozenset[str]]) -> frozenset[str]:
    """The tags of a reader on several lists: the union of each list's
    (empty, every tag, when any list's is empty: that list asks for
    everything, so the union is everything)."""
    union: set[str] = set()
    for tags in tag_sets:
        if not tags:
            return frozenset()
        union |= tags
    return frozenset(union)


def most_frequent(frequencies: Iterable[str]) -> str:
    """The most frequent of ``frequencies`` (``daily`` before ``weekly``
    before ``monthly``): a reader on a daily and a weekly list gets one
    daily issue holding both lists' tags rather than two messages."""
    return min(frequencies, key=BY_FREQUENCY.__getitem__)


def merge_rows(rows: Sequence[Subscriber], default_frequency: str) -> Subscriber:
    """One subscriber for an address's rows on several lists (``rows`` in
    list order, each with that list's stored choices already applied): the
    first row's address, list and line (the list the message names), the
    first name given, :func:`merged_tags` of their tags and
    :func:`most_frequent` of their frequencies (a row without one counts as
    ``default_frequency``; all without one stay without)."""
    first = rows[0]
    frequencies = {row.frequency for row in rows}
    frequency = "" if frequencies == {""} else most_frequent(f or default_frequency for f in frequencies)
    name = next((row.name for row in rows if row.name), "")
    return Subscriber(first.email, name, merged_tags(row.tags for row in rows), first.list_name, first.line, frequency)


def iter_subscribers(files: Iterable[Path]) -> Iterator[Subscriber | Problem]:
    """Subscribers and problems of ``files``, in file and row order, one at a
    time. An address already read from an earlier list is skipped quietly
    (it is mailed once); within one list it is a duplicate problem."""
    files = list(files)
    # One list has no duplicates left after its own check: no second table.
    mailed = SeenKeys() if len(files) > 1 else None
    for file in files:
        for item in ListReader(file).read():
            if mailed is not None and isinstance(item, Subscriber) and mailed.add(item.key, 1):
                continue
            yield item


def load_subscribers(
    path: Path, *, list_name: str | None = None, default_list: str | None = None
) -> tuple[list[Subscriber], list[Problem]]:
    """Read the lists :func:`choose_lists` picks at ``path``.

    Returns the valid subscribers (first occurrence wins for an address found
    twice, compared case-insensitively) and the problems found (invalid
    address per email-validator's syntax rules, no DNS lookups; duplicates; a
    missing ``email`` column; undecodable rows). Raises :class:`DigestError`
    when the path or a named list does not exist.
    """
    subscribers: list[Subscriber] = []
    problems: list[Problem] = []
    for item in iter_subscribers(choose_lists(path, list_name, default_list)):
        (subscribers if isinstance(item, Subscriber) else problems).append(item)
    return subscribers, problems


def raw_records(file: Path) -> Iterator[tuple[Row, dict[str, str]]]:
    """Each data row of ``file`` with its values by our field names, without
    validating addresses: for quick look-ups in large lists."""
    with file.open("rb") as handle:
        if check_utf8(file, handle) is not None:
            return
        rows = read_rows(handle)
        header = next((r for r in rows if r.fields), None)
        where = columns(header.fields) if header else {}
        if "email" not in where:
            return
        for row in rows:
            if row.fields:
                yield row, _values(row.fields, where)


def find_subscriber(files: Iterable[Path], email: str) -> Subscriber | None:
    """The subscriber ``email`` (compared case-insensitively) in ``files``,
    or None; only the matching row's address is validated, so a look-up in
    a list of 100,000 takes a fraction of a full load."""
    key = address_key(email)
    for file in files:
        for row, values in raw_records(file):
            if address_key(values["email"]) == key:
                try:
                    address = normalize_address(values["email"])
                except DigestError:
                    return None
                tags = frozenset(parse_tags(values["tags"]))
                frequency = values["frequency"].strip().casefold()
                frequency = frequency if frequency in FREQUENCIES else ""
                return Subscriber(email=address, name=values["name"], tags=tags, list_name=file.stem, line=row.line, frequency=frequency)
    return None


def member_of(file: Path, email: str) -> bool:
    """Whether ``email`` (compared case-insensitively, as normalized) is a
    member of the list ``file``: a row with a valid address whose status does
    not say the person left."""
    key = address_key(email)
    local = key.rpartition("@")[0] + "@"  # the domain may be written in Unicode or ASCII (IDNA): compared normalized
    for _, values in raw_records(file):
        if not address_key(values["email"]).startswith(local):
            continue
        if values["status"].strip().casefold() in LEFT_STATUSES:
            continue
        try:
            if address_key(normalize_address(values["email"])) == key:
                return True
        except DigestError:
            continue
    return False


def list_tags(files: Iterable[Path]) -> set[str]:
    """Every tag some row of ``files`` names (for the preferences page)."""
    cells = {values["tags"] for file in files for _, values in raw_records(file)}
    return {tag for cell in cells for tag in parse_tags(cell)}
