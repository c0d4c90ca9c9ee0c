"""Addresses already read, with where each was first read, in 24 bytes an
address: a list of a million readers checked for duplicates without a
million strings in a dict (about 200 bytes each).

An open-addressing table (linear probing, at most 3/4 full) of three
machine-word arrays: two independent 64-bit hashes of the key and where it
was first seen. Two keys are taken as equal when both hashes are: Python's
``hash`` of a string is SipHash keyed with a secret chosen per process
(PEP 456), so the 128 bits cannot be aimed at from a list's contents, and an
accidental match among a billion addresses has a chance below 10^-20.
"""

from __future__ import annotations

from array import array

_FIRST_SIZE = 1 << 12


class SeenKeys:
    """Keys (strings) with a positive number each (e.g. a line), added once."""

    def __init__(self, expected: int = 0) -> None:
        """``expected``: about how many keys will be added (sizes the table once)."""
        size = _FIRST_SIZE
        while size * 3 < expected * 4:
            size *= 2
        self._allocate(size)

    def _allocate(self, size: int) -> None:
        self._mask = size - 1
        self._first = array("q", bytes(8 * size))
        self._second = array("q", bytes(8 * size))
        self._where = array("q", bytes(8 * size))  # 0: an empty slot
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __contains__(self, key: str) -> bool:
        return self.get(key) != 0

    def get(self, key: str) -> int:
        """The ``where`` ``key`` was added with, or 0 when it was not."""
        return self._where[self._slot(hash(key), hash(key + "\0"))]

    def add(self, key: str, where: int) -> int:
        """Add ``key`` with ``where`` (> 0) and return 0; a key added
        before is left as it was and its own ``where`` is returned."""
        first, second = hash(key), hash(key + "\0")
        return self._put(first, second, where)

    def _slot(self, first: int, second: int) -> int:
        """The slot holding the key of these hashes, or the empty one where it would go."""
        mask, firsts, seconds, wheres = self._mask, self._first, self._second, self._where
        slot = first & mask
        while wheres[slot] and not (firsts[slot] == first and seconds[slot] == second):
            slot = (slot + 1) & mask
        return slot

    def _put(self, first: int, second: int, where: int) -> int:
        slot = self._slot(first, second)
        if found := self._where[slot]:
            return found
        self._first[slot], self._second[slot], self._where[slot] = first, second, where
        self._count += 1
        if self._count * 4 > (self._mask + 1) * 3:
            self._grow()
        return 0

    def _grow(self) -> None:
        old = zip(self._first, self._second, self._where, strict=True)
        self._allocate((self._mask + 1) * 2)
        for first, second, where in old:
            if where:
                self._put(first, second, where)
