"""CSV records that keep their bytes: the file format under subscriber lists.

:func:`read_rows` yields every record of a CSV file with its exact bytes, so
that an edit can rewrite a list keeping the rows it does not touch byte for
byte; :func:`encoding_problem` tells a UTF-16 or UTF-32 file (as spreadsheets
save "Unicode text") from UTF-8 before csv turns it into rows of garbage.
A record csv cannot read (a value over :data:`FIELD_LIMIT` characters, a
bare CR in an unquoted value) is one row with an ``error``, and reading goes
on with the next line: one bad row spoils one row, not the list. Imports
nothing of ours but ``errors``.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

# How much of a file encoding_problem() looks at.
SNIFF_BYTES = 64 * 1024
FIELD_LIMIT = csv.field_size_limit()  # 131,072 characters: csv's own limit, kept per value


class Row(NamedTuple):
    """One CSV record as it stands in its file: ``line`` its first line
    number, ``raw`` its exact bytes (line end and, for the header, any byte
    order mark included), ``fields`` its parsed values (empty for a blank
    line), ``undecodable`` whether a line of it was not UTF-8, ``error``
    why csv could not read it (then ``fields`` is empty), or None.

    A named tuple: as immutable as a frozen dataclass and made about three
    times as fast (a list of a million rows makes a million of them)."""

    line: int
    raw: bytes
    fields: list[str]
    undecodable: bool = False
    error: str | None = None


def read_rows(handle: BinaryIO | Iterable[bytes]) -> Iterator[Row]:
    """The records of a CSV file opened in binary mode, one at a time.

    Every byte of the input belongs to exactly one row, so joining the
    ``raw`` of all rows gives the file back unchanged: that is what lets list
    writes keep untouched rows byte for byte. Quoted values may span lines,
    except where a quote is left open: when a record runs on over a line
    that starts like a row of its own (an address, then a comma), the quote
    was never closed, so that first line is a row with an ``error`` and the
    lines after it are read again as rows (an open quote would otherwise
    swallow the rest of the list into one value).
    """
    lines = enumerate(handle, start=1)
    again: list[tuple[int, bytes]] = []  # lines to read again after an open quote
    while True:
        pending: list[tuple[int, bytes]] = []
        bad_lines: set[int] = set()
        reader = csv.reader(_text_lines(again, lines, pending, bad_lines))
        reopened = False
        while True:
            try:
                fields, error = next(reader), None
            except StopIteration:
                break
            except csv.Error as exc:  # csv drops the rest of the line and starts afresh on the next
                fields, error = [], _csv_problem(exc)
            if len(pending) > 1 and any(_ROW_START.match(_decode(raw)) for _, raw in pending[1:]):
                number, raw = pending[0]
                yield Row(number, raw, [], number in bad_lines, error=OPEN_QUOTE)
                again[:0] = pending[1:]
                reopened = True
                break
            yield _row(pending, fields, bad_lines, error)
            pending.clear()
        if not reopened:
            if pending:  # only possible for input csv did not turn into a record
                yield _row(pending, [], bad_lines, None)
            return


OPEN_QUOTE = "a quote opened on this line is never closed (the lines after it are read as rows of their own)"
# A line that starts like a list row: an address (maybe quoted), then a comma or the end.
_ROW_START = re.compile(r'^\ufeff?\s*"?[^\s,;"@<>]+@[^\s,;"@<>]+\.[^\s,;"@<>]+"?\s*(,|\r?\n?$)')


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


def _text_lines(
    again: list[tuple[int, bytes]], lines: Iterator[tuple[int, bytes]], pending: list[tuple[int, bytes]], bad_lines: set[int]
) -> Iterator[str]:
    """The text of each line for csv, first those to read again; each line
    read is kept in ``pending`` (its number and bytes)."""
    while True:
        if again:
            number, raw = again.pop(0)
        else:
            try:
                number, raw = next(lines)
            except StopIteration:
                return
        pending.append((number, raw))
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            bad_lines.add(number)
            text = raw.decode("utf-8", errors="replace")
        yield text.removeprefix("\ufeff") if number == 1 else text


def _row(pending: list[tuple[int, bytes]], fields: list[str], bad_lines: set[int], error: str | None) -> Row:
    first = pending[0][0]
    raw = b"".join(raw for _, raw in pending)
    return Row(first, raw, fields, undecodable=any(number in bad_lines for number, _ in pending), error=error)


def _csv_problem(exc: csv.Error) -> str:
    """What a csv error means to whoever edits the list."""
    text = str(exc)
    if "field limit" in text:
        return f"a value longer than {FIELD_LIMIT:,} characters"
    if "new-line character" in text:
        return "a line break (CR) inside a value that is not in quotes"
    return text


def encoding_problem(head: bytes) -> str | None:
    """Why a file starting with ``head`` (its first bytes, up to
    :data:`SNIFF_BYTES`) is not a UTF-8 list, or None when it may be one.

    A UTF-16 or UTF-32 file (Excel's "Unicode text", Windows tools) decodes
    as text full of NUL characters that csv would happily turn into rows:
    its byte order mark gives it away, or without one the share of NUL
    bytes. A few NUL bytes in UTF-8 text spoil only their rows (see
    ``digest.subscribers``), not the file."""
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):  # before UTF-16: FF FE starts both
        return "looks like UTF-32"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "looks like UTF-16"
    nuls = head.count(0)
    if not nuls:
        return None
    if nuls * 5 >= len(head) * 3:  # ASCII in UTF-32 is 3/4 NULs, in UTF-16 1/2
        return "looks like UTF-32"
    return "looks like UTF-16" if nuls * 4 >= len(head) else None


def check_utf8(file: Path, handle: BinaryIO) -> str | None:
    """The one-line problem of an open list file that is not UTF-8 text,
    or None; the handle is left at the start."""
    why = encoding_problem(handle.read(SNIFF_BYTES))
    handle.seek(0)
    return f"not UTF-8 ({why}): save it as UTF-8" if why else None
