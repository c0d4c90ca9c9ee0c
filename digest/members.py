"""The members of an audience and of its variants, kept packed outside the
Python heap: planning an issue for a million readers holds counts, not a
million :class:`~digest.subscribers.Subscriber` objects (about 550 bytes
each with their strings).

A :class:`Roster` is written once, one record per subscriber, kept with the
others of the group (variant) they fall into; records stay in memory up to
``SPILL_BYTES`` and go to an unnamed temporary file beyond, a group's in
chunks (removed when the roster is closed or collected). :class:`Members` is a
read-only sequence over one group, or all of them: ``len`` is a stored
count, and iterating or indexing reads the records again, making a
subscriber object at a time, so any number of readers (threads too) may
read one roster at once.
"""

from __future__ import annotations

import marshal
import os
import struct
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import overload

from digest.subscribers import Subscriber

SPILL_BYTES = 4 << 20  # records kept in memory, all groups together, before they go to the file
CHUNK_BYTES = 256 << 10  # a group's records written to the file at once
_LENGTH = struct.Struct("<I")
EVERYONE = -1  # Members over every record, whatever its group


class Roster:
    """Subscribers each with a group number (``int``; -1 for none), written
    with :meth:`add` and read with :meth:`records` once :meth:`seal` is
    called. Each group's records are kept together (in chunks of the file),
    so reading a group reads only its own: the ledger then receives a
    variant's recipients side by side, and a batch's rows share pages. Tag
    sets and list names are stored once each."""

    def __init__(self) -> None:
        self._buffers: dict[int, bytearray] = {}
        self._buffered = 0
        self._chunks: dict[int, list[tuple[int, int]]] = {}  # group -> (offset, length) in the file
        self._file = None
        self._size = 0
        self._tags: dict[frozenset[str], int] = {}
        self._lists: dict[str, int] = {}
        self._tag_table: list[frozenset[str]] = []
        self._list_table: list[str] = []
        self.counts: dict[int, int] = {}

    def add(self, subscriber: Subscriber, group: int) -> None:
        tags = self._tags.get(subscriber.tags)
        if tags is None:
            tags = self._tags[subscriber.tags] = len(self._tag_table)
            self._tag_table.append(subscriber.tags)
        listed = self._lists.get(subscriber.list_name)
        if listed is None:
            listed = self._lists[subscriber.list_name] = len(self._list_table)
            self._list_table.append(subscriber.list_name)
        record = marshal.dumps((subscriber.email, subscriber.name, tags, listed, subscriber.line, subscriber.frequency))
        buffer = self._buffers.get(group)
        if buffer is None:
            buffer = self._buffers[group] = bytearray()
            self.counts[group] = 0
        buffer += _LENGTH.pack(len(record))
        buffer += record
        self._buffered += 4 + len(record)
        self.counts[group] += 1
        if len(buffer) >= CHUNK_BYTES:
            self._spill(group)
        if self._buffered >= SPILL_BYTES:
            for held in list(self._buffers):
                self._spill(held)

    def _spill(self, group: int) -> None:
        buffer = self._buffers[group]
        if not buffer:
            return
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="digest-roster-")
        self._file.write(buffer)
        self._chunks.setdefault(group, []).append((self._size, len(buffer)))
        self._size += len(buffer)
        self._buffered -= len(buffer)
        self._buffers[group] = bytearray()

    def seal(self) -> None:
        """No more records: make what was written readable (what is still
        in memory stays there when nothing went to the file)."""
        if self._file is not None:
            for group in list(self._buffers):
                self._spill(group)
            self._file.flush()
        self._buffers = {group: bytes(buffer) for group, buffer in self._buffers.items()}

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    def _pieces(self, group: int) -> Iterator[bytes]:
        for offset, length in self._chunks.get(group, ()):
            yield os.pread(self._file.fileno(), length, offset)
        if self._buffers.get(group):
            yield self._buffers[group]

    def records(self, group: int = EVERYONE) -> Iterator[tuple[int, Subscriber]]:
        """(group, subscriber) of every record of ``group`` (default: all,
        group by group in the order groups were first met), each group's in
        the order written."""
        tag_table, list_table = self._tag_table, self._list_table
        for number, (email, name, tags, listed, line, frequency) in self._unpacked(group):
            yield number, Subscriber(email, name, tag_table[tags], list_table[listed], line, frequency)

    def addresses(self, group: int = EVERYONE) -> Iterator[tuple[int, str, str, str]]:
        """(group, email, name, list name) of every record of ``group``, in
        the order of :meth:`records`, without making a :class:`Subscriber`
        of each (queueing a million readers needs only these)."""
        list_table = self._list_table
        for number, (email, name, _, listed, _, _) in self._unpacked(group):
            yield number, email, name, list_table[listed]

    def _unpacked(self, group: int) -> Iterator[tuple[int, tuple]]:
        for number in list(self.counts) if group == EVERYONE else [group]:
            for piece in self._pieces(number):
                at, end = 0, len(piece)
                while at < end:
                    (size,) = _LENGTH.unpack_from(piece, at)
                    yield number, marshal.loads(piece[at + 4:at + 4 + size])
                    at += 4 + size


def pack(subscribers: Iterable[Subscriber]) -> Members:
    """``subscribers`` (e.g. a streamed audience) read once into a new
    roster, as a sequence that can be read again and again."""
    roster = Roster()
    for subscriber in subscribers:
        roster.add(subscriber, 0)
    roster.seal()
    return Members(roster)


class Members(Sequence[Subscriber]):
    """The subscribers of one group of a :class:`Roster` (or every group:
    ``EVERYONE``), as a read-only sequence. Equal to any sequence of the same
    subscribers in the same order (a tuple, a list)."""

    def __init__(self, roster: Roster, group: int = EVERYONE) -> None:
        self.roster, self.group = roster, group
        self._count = sum(roster.counts.values()) if group == EVERYONE else roster.counts.get(group, 0)

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Subscriber]:
        return (subscriber for _, subscriber in self.roster.records(self.group))

    @overload
    def __getitem__(self, index: int) -> Subscriber: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[Subscriber, ...]: ...

    def __getitem__(self, index):
        if isinstance(index, slice):
            start, stop, step = index.indices(self._count)
            return tuple(islice(self, start, stop, step))
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError("no such member")
        return next(islice(self, index, None))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str):
            return NotImplemented
        return len(other) == self._count and all(a == b for a, b in zip(self, other, strict=False))

    def __hash__(self) -> int:
        return id(self)

    def __repr__(self) -> str:
        return f"<Members: {self._count} subscribers>"
