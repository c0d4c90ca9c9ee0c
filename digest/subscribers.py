"""Subscriber lists: the CSV files in the ``subscribers`` folder, read,
checked, normalized and edited.

**Lists.** A subscriber list is a CSV file in the ``subscribers`` folder; its
name is the file's stem (``subscribers/readers.csv`` is the list
``readers``). The header names the columns: ``email`` (required), ``name``,
``tags`` (``;``-separated, commas accepted too; empty means every tag), and
optionally ``status`` and ``subscribed_at``; other columns are ignored.
Columns are matched by name, ignoring case, spaces and punctuation, and the
names other services export are understood (``Email Address``,
``First Name``/``Last Name``, ``TAGS``...), so an export can be used or
imported as it is. Files are UTF-8 with or without a byte order mark, with
LF or CRLF line ends; a file in another encoding (UTF-16, as spreadsheets
save "Unicode text") is one problem naming the file, not a page of garbled
rows (:func:`digest.csvrows.encoding_problem`).

**Which lists.** ``--list NAME`` picks one list; without it, the list the
``default_list`` setting names; without that, the only list in the folder;
with several and no default, all of them, merged (an address on two lists is
mailed once, from the first list in name order).

**Rows.** Every address is checked by email-validator (syntax only, no DNS)
and normalized: surrounding spaces removed, the domain lower-cased and in
its ASCII (IDNA) form, the local part's case kept for sending (see
:func:`digest.addresses.normalize_address`; a non-ASCII local part is refused). Duplicates
are found case-insensitively (:func:`digest.suppressions.address_key`). A bad
row or a duplicate becomes a :class:`Problem` naming the file and line and is
skipped; the run goes on. Rows whose ``status`` says the person left
(``unsubscribed``, ``bounced``, ``cleaned``, ``pending``...) are skipped
quietly; :func:`import_subscribers` records them as suppressions.

**Writes** to a list (:func:`add_subscriber`, :func:`remove_subscriber`,
:func:`import_subscribers`) work on the file's raw lines: rows they do not
touch stay byte for byte as they were, and the new file replaces the old one
atomically (a temporary file in the same folder, then ``os.replace``).
"""

from __future__ import annotations

import csv
import io
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from digest.addresses import normalize_address
from digest.articles import slugify_tag
from digest.csvrows import Row, check_utf8, read_rows
from digest.errors import DigestError, SettingsError, UsageError
from digest.files import FILE_MODE
from digest.seen import SeenKeys
from digest.suppressions import add_many, address_key
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
    "subscribed_at": {"subscribedat", "optintime", "createdat", "creationdate", "signupdate", "dateadded"},
}
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


KNOWN_COLUMNS = "email, name (or first_name, last_name), tags, status, subscribed_at"


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
class _ListReader:
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
        status = values["status"].strip().casefold()
        if status not in ACTIVE_STATUSES | LEFT_STATUSES:
            return self.problem(row.line, f"unknown status {values['status']!r} (expected subscribed or unsubscribed)")
        if first := self.seen.add(address_key(email), row.line):
            return self.problem(row.line, f"duplicate of line {first} ({email}); row skipped")
        cell = values["tags"]
        tags = self.tag_sets.get(cell)
        if tags is None:
            tags = self.tag_sets[cell] = frozenset(parse_tags(cell))
        subscriber = Subscriber(email=email, name=values["name"], tags=tags, list_name=self.list_name, line=row.line)
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
        "subscribed_at": get("subscribed_at").strip(),
    }


def _row_key(fields: list[str], where: dict[str, int]) -> str:
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


def iter_subscribers(files: Iterable[Path]) -> Iterator[Subscriber | Problem]:
    """Subscribers and problems of ``files``, in file and row order, one at a
    time. An address already read from an earlier list is skipped quietly
    (it is mailed once); within one list it is a duplicate problem."""
    files = list(files)
    # One list has no duplicates left after its own check: no second table.
    mailed = SeenKeys() if len(files) > 1 else None
    for file in files:
        for item in _ListReader(file).read():
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


def _raw_records(file: Path) -> Iterator[tuple[Row, dict[str, str]]]:
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
        for row, values in _raw_records(file):
            if address_key(values["email"]) == key:
                try:
                    address = normalize_address(values["email"])
                except DigestError:
                    return None
                tags = frozenset(parse_tags(values["tags"]))
                return Subscriber(email=address, name=values["name"], tags=tags, list_name=file.stem, line=row.line)
    return None


def list_tags(files: Iterable[Path]) -> set[str]:
    """Every tag some row of ``files`` names (for the preferences page)."""
    cells = {values["tags"] for file in files for _, values in _raw_records(file)}
    return {tag for cell in cells for tag in parse_tags(cell)}


# Writing lists -----------------------------------------------------------------------------

NEW_LIST_HEADER = ("email", "name", "tags")


@dataclass
class _RawList:
    """A list file as raw rows, for edits that keep untouched rows' bytes."""

    path: Path
    rows: list[Row]
    header: Row | None
    newline: str

    @classmethod
    def read(cls, path: Path) -> _RawList:
        if not path.exists():
            return cls(path, [], None, "\n")
        with path.open("rb") as handle:
            if (message := check_utf8(path, handle)) is not None:
                raise DigestError(f"{path}: {message}; the list was not changed")
            rows = list(read_rows(handle))
        header = next((r for r in rows if r.fields), None)
        if header is not None and "email" not in columns(header.fields):
            raise DigestError(f"{path}:{header.line}: header has no email column; the list was not changed")
        newline = "\r\n" if header is not None and header.raw.endswith(b"\r\n") else "\n"
        return cls(path, rows, header, newline)

    def keys(self) -> dict[str, int]:
        """Address key -> line, for every row with a readable address."""
        if self.header is None:
            return {}
        where = columns(self.header.fields)
        found: dict[str, int] = {}
        for row in self.rows:
            if row is not self.header and row.fields:
                found.setdefault(_row_key(row.fields, where), row.line)
        return found

    def new_row(self, subscriber: Subscriber, subscribed_at: str) -> bytes:
        """A CSV record for ``subscriber`` in this file's column order and line end."""
        titles = self.header.fields if self.header else list(NEW_LIST_HEADER)
        where = columns(titles)
        record = [""] * len(titles)
        values = {
            "email": subscriber.email,
            "name": subscriber.name,
            "tags": ";".join(sorted(subscriber.tags)),
            "status": "subscribed",
            "subscribed_at": subscribed_at,
        }
        for ours, value in values.items():
            if ours in where:
                record[where[ours]] = value
        out = io.StringIO()
        csv.writer(out, lineterminator=self.newline).writerow(record)
        return out.getvalue().encode("utf-8")

    def write(self, rows: Iterable[bytes], added: Sequence[bytes]) -> None:
        parts = list(rows)
        if self.header is None:
            parts.insert(0, (",".join(NEW_LIST_HEADER) + self.newline).encode())
        if added and parts and not parts[-1].endswith(b"\n"):
            parts[-1] += self.newline.encode()  # the last row had no line end; the new rows need one
        write_atomic(self.path, b"".join(parts) + b"".join(added))


def write_atomic(path: Path, data: bytes, *, private: bool = False) -> None:
    """Replace ``path`` with ``data`` all at once: readers see the old file or
    the new one, never half of one (a temporary file in the same folder,
    flushed to disk, then ``os.replace``, atomic on POSIX and Windows). The
    old file's permissions are kept; a new file gets those ``open()`` would
    give it (0666 less the umask: 0644 usually), not mkstemp's private 0600,
    unless ``private`` (an export: 0600, see :mod:`digest.files`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False)
    try:
        with handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        new_mode = FILE_MODE if private else 0o666 & ~_umask()
        os.chmod(handle.name, path.stat().st_mode & 0o7777 if path.exists() else new_mode)
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def _umask() -> int:
    # The only way to read it is to set it; the CLI has no other threads then.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def add_subscriber(path: Path, email: str, name: str = "", tags: Iterable[str] = ()) -> Subscriber:
    """Add one subscriber at the end of the list file ``path`` (created with
    the header ``email,name,tags`` if absent). Tags are slugified.

    Raises :class:`DigestError` for an invalid address or one already on the
    list (compared case-insensitively); the file is then left unchanged."""
    address = normalize_address(email)
    raw = _RawList.read(path)
    present = raw.keys().get(address_key(address))
    if present is not None:
        raise DigestError(f"{address} is already on {path} (line {present})")
    subscriber = Subscriber(
        email=address,
        name=" ".join(name.split()),
        tags=frozenset(slug for tag in tags for slug in parse_tags(tag)),
        list_name=path.stem,
        line=0,
    )
    raw.write((r.raw for r in raw.rows), [raw.new_row(subscriber, _now_iso())])
    return subscriber


def remove_subscriber(path: Path, email: str) -> int:
    """Remove every row of ``email`` (compared case-insensitively) from the
    list file ``path``; the other rows keep their bytes. Returns how many
    rows went. Raises :class:`DigestError` when the address is not there."""
    raw = _RawList.read(path)
    where = columns(raw.header.fields) if raw.header else {}
    target = _row_key([email], {"email": 0})
    kept = [row for row in raw.rows if row is raw.header or not row.fields or _row_key(row.fields, where) != target]
    removed = len(raw.rows) - len(kept)
    if not removed:
        raise DigestError(f"{email.strip()} is not on {path}")
    raw.write((r.raw for r in kept), [])
    return removed


@dataclass
class ImportResult:
    """What :func:`import_subscribers` did: the rows ``added``; how many were
    ``already`` on the list; how many had ``left`` (a status such as
    unsubscribed or cleaned: not imported), and those rows with their status
    (``leavers``); the suppressions recorded for them (``suppressed``:
    address, reason, list name or None for every list); the ``problems`` of
    the source file (bad addresses, duplicates, people on the list whom the
    file calls unconfirmed), with its lines."""

    added: list[Subscriber]
    already: int
    left: int
    problems: list[Problem]
    leavers: list[tuple[Subscriber, str]] = field(default_factory=list)
    suppressed: list[tuple[str, str, str | None]] = field(default_factory=list)

    def summary(self, target: Path) -> str:
        """One line for the operator, e.g. ``imported 2 into subscribers/garden.csv;
        1 already there; 2 had left (suppressed: 1 bounced on every list,
        1 unsubscribed on garden); 0 bad rows``."""
        text = f"imported {len(self.added)} into {target}; {self.already} already there; {self.left} had left"
        if self.suppressed:
            counts: dict[tuple[str, str], int] = {}
            for _, reason, list_name in self.suppressed:
                scope = f"on {list_name}" if list_name else "on every list"
                counts[reason, scope] = counts.get((reason, scope), 0) + 1
            text += " (suppressed: " + ", ".join(f"{n} {reason} {scope}" for (reason, scope), n in sorted(counts.items())) + ")"
        return text + f"; {len(self.problems)} bad rows"


def import_subscribers(path: Path, source: Path, ledger: Path | None = None) -> ImportResult:
    """Merge the CSV file ``source`` (our format or another service's
    export, columns matched by name: see :data:`COLUMN_ALIASES`) into the
    list file ``path``. New addresses are appended in ``path``'s column
    order; addresses already there are left as they are; rows whose status
    says the person left are not imported.

    With a ``ledger`` file, those who left are suppressed there
    (:data:`SUPPRESSING_STATUSES`; source ``import <file name>``), so a
    person already on the list whom the other service knows as unsubscribed
    or bounced is not mailed again: an unsubscribe for this list, a bounce or
    complaint for every list, as the webhook records them. This happens
    before the list is written. A row on the list that ``source`` calls
    pending or unconfirmed is reported as a problem and left alone.

    Raises :class:`DigestError` when ``source`` is missing, not UTF-8 or has
    no email column, or when the ledger cannot be written; the list is then
    unchanged."""
    if not source.is_file():
        raise UsageError(f"no file to import at {source}")
    raw = _RawList.read(path)
    present = raw.keys()
    result = ImportResult([], 0, 0, [])
    records: list[bytes] = []
    reader = _ListReader(source, strict_header=True)
    for item in reader.read():
        if isinstance(item, Problem):
            if item.kind == "row":  # exports carry many columns of their own service: not a problem here
                result.problems.append(item)
            continue
        if item.key in present:
            result.already += 1
            continue
        present[item.key] = 0
        result.added.append(item)
        records.append(raw.new_row(item, _now_iso()))
    result.leavers, result.left = reader.left, len(reader.left)
    for person, status in reader.left:
        reason = SUPPRESSING_STATUSES.get(status)
        if reason is None and person.key in present:
            where = f"{path} (line {present[person.key]})"
            message = f"{person.email} is {status} here but on {where}: left on the list; check they confirmed"
            result.problems.append(Problem(str(source), person.line, message))
        elif reason is not None and ledger is not None:
            result.suppressed.append((person.email, reason, path.stem if reason == "unsubscribed" else None))
    if result.suppressed:
        add_many(ledger, result.suppressed, f"import {source.name}")
    if records:
        raw.write((r.raw for r in raw.rows), records)
    return result

