"""Small helpers of the ledger's SQL, shared by every backend."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sized


def dicts(cursor) -> list[dict]:
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def marks(items: Sized) -> str:
    return ",".join("?" * len(items))


def chunks(items: Iterable, size: int) -> Iterator[list]:
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
