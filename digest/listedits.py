"""Edits of the subscriber lists: add, remove and import rows, keeping
the rows they do not touch byte for byte.

Every write works on the file's raw lines (:mod:`digest.csvrows`): untouched
rows stay as they were, and the new file replaces the old one atomically (a
temporary file in the same folder, then ``os.replace``), while an exclusive
lock on ``.NAME.csv.lock`` beside the list is held for the whole
read-modify-write, so concurrent edits (``digest serve`` confirming sign-ups
while an operator imports) never lose one another's rows. Reading and
checking lists is :mod:`digest.subscribers`.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from digest.addresses import normalize_address
from digest.csvrows import Row, check_utf8, read_rows
from digest.errors import DigestError, UsageError
from digest.files import FILE_MODE
from digest.subscribers import (
    SUPPRESSING_STATUSES,
    ListReader,
    Problem,
    Subscriber,
    columns,
    parse_tags,
    row_key,
)
from digest.suppressions import add_many, address_key

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
                found.setdefault(row_key(row.fields, where), row.line)
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
            "frequency": subscriber.frequency,
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


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the exclusive edit lock of the list file ``path`` for the block
    (``flock`` on ``.NAME.csv.lock`` beside it; the kernel drops it when the
    process ends, even killed). Waits while another process edits the list.
    Not reentrant. Whoever also writes the ledger takes this lock first, then
    the ledger's (as an import does), so two writers never wait on each other."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def add_subscriber(
    path: Path, email: str, name: str = "", tags: Iterable[str] = (), *, frequency: str = "", if_absent: bool = False,
    lock: bool = True,
) -> Subscriber | None:
    """Add one subscriber at the end of the list file ``path`` (created with
    the header ``email,name,tags`` if absent), under the list's edit lock
    (``lock=False``: the caller holds it, see :func:`locked`). Tags are
    slugified; ``frequency`` goes into the list's frequency column, if it
    has one.

    Raises :class:`DigestError` for an invalid address, and for one already
    on the list (compared case-insensitively) unless ``if_absent``, which
    returns None then; the file is left unchanged either way."""
    address = normalize_address(email)
    with locked(path) if lock else contextlib.nullcontext():
        raw = _RawList.read(path)
        present = raw.keys().get(address_key(address))
        if present is not None:
            if if_absent:
                return None
            raise DigestError(f"{address} is already on {path} (line {present})")
        subscriber = Subscriber(
            email=address,
            name=" ".join(name.split()),
            tags=frozenset(slug for tag in tags for slug in parse_tags(tag)),
            list_name=path.stem,
            line=0,
            frequency=frequency,
        )
        raw.write((r.raw for r in raw.rows), [raw.new_row(subscriber, _now_iso())])
    return subscriber


def remove_subscriber(path: Path, email: str, *, missing_ok: bool = False) -> int:
    """Remove every row of ``email`` (compared case-insensitively) from the
    list file ``path``; the other rows keep their bytes. Returns how many
    rows went. Raises :class:`DigestError` when the address is not there,
    unless ``missing_ok`` (0 then)."""
    with locked(path):
        raw = _RawList.read(path)
        where = columns(raw.header.fields) if raw.header else {}
        target = row_key([email], {"email": 0})
        kept = [row for row in raw.rows if row is raw.header or not row.fields or row_key(row.fields, where) != target]
        removed = len(raw.rows) - len(kept)
        if not removed:
            if missing_ok:
                return 0
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


def import_subscribers(
    path: Path, source: Path, ledger: Path | None = None, *, forgotten: Callable[[str], bool] | None = None
) -> ImportResult:
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

    ``forgotten`` tells an address erased on its owner's request (``digest
    subscribers forget``, by its keyed hash): such a row is not imported and
    is reported as a problem, so an old export cannot bring them back.

    Raises :class:`DigestError` when ``source`` is missing, not UTF-8 or has
    no email column, or when the ledger cannot be written; the list is then
    unchanged."""
    if not source.is_file():
        raise UsageError(f"no file to import at {source}")
    with locked(path):
        return _import(path, source, ledger, forgotten)


def _import(path: Path, source: Path, ledger: Path | None, forgotten: Callable[[str], bool] | None) -> ImportResult:
    raw = _RawList.read(path)
    present = raw.keys()
    result = ImportResult([], 0, 0, [])
    records: list[bytes] = []
    reader = ListReader(source, strict_header=True)
    for item in reader.read():
        if isinstance(item, Problem):
            if item.kind == "row":  # exports carry many columns of their own service: not a problem here
                result.problems.append(item)
            continue
        if item.key in present:
            result.already += 1
            continue
        if forgotten is not None and forgotten(item.email):
            message = f"{item.email} asked to be forgotten (digest subscribers forget): not imported"
            result.problems.append(Problem(str(source), item.line, message))
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

