"""Where records end in a CSV or JSON Lines file, found on the raw bytes without parsing them.

Both the coordinator (cutting a file of hundreds of MB into chunks) and the workers (splitting a chunk into
records) use one rule, so a chunk always starts where the reader expects a record to start:

* With no quoting (JSON Lines, or CSV/TSV whose fields are never quoted) every ``\\n`` ends a record.
* With a quote char, a ``\\n`` ends a record only when an even number of quote bytes lie between it and the
  start of the record. That is exact for CSV that quotes fields containing quotes or newlines and doubles a
  quote inside a quoted field (RFC 4180; what Python's csv module, Excel and pandas write): a doubled quote
  flips the parity twice. A stray quote inside an unquoted field (``5" screen``) breaks it, for this and for
  any CSV reader that allows newlines in fields; such files need ``quotechar = none``.

The rule works on bytes because in every encoding filefmt accepts, the bytes of ``\\n``, ``\\r`` and the quote
char never occur inside a multi-byte character (filefmt checks that, and the tests prove it).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache
from typing import BinaryIO

PLAN_BLOCK = 8 << 20  # bytes the planner reads at a time: large enough that the per-block Python work is noise
READ_BLOCK = 1 << 20  # bytes a worker reads at a time: bounds a worker's memory, not its speed


@lru_cache(maxsize=8)
def _other_bytes(quote: bytes) -> bytes:
    return bytes(b for b in range(256) if b not in (quote[0], 0x0A))


@lru_cache(maxsize=8)
def record_pattern(quote: bytes | None) -> re.Pattern[bytes]:
    """One record up to and including its ending newline; possessive, so matching never backtracks and fails
    only when no record-ending newline is left (the record is incomplete)."""
    if quote is None:
        return re.compile(rb"[^\n]*+\n")
    q = re.escape(quote)
    return re.compile(rb"(?:[^%b\n]*+%b[^%b]*+%b)*+[^%b\n]*+\n" % (q, q, q, q, q))


def count_records(seg: bytes, quote: bytes | None, inside: bool) -> tuple[int, bool]:
    """Record-ending newlines in seg, and whether seg ends inside quotes, at C speed.

    Deleting every byte but quotes and newlines, then every doubled quote (which moves no newline across a
    parity change), leaves ``\\n`` runs separated by single quotes: the runs at even positions are outside."""
    if quote is None:
        return seg.count(b"\n"), False
    reduced = seg.translate(None, _other_bytes(quote)).replace(quote + quote, b"")
    parts = reduced.split(quote)
    outside = parts[1::2] if inside else parts[0::2]
    return b"".join(outside).count(b"\n"), inside ^ bool((len(parts) - 1) & 1)


def next_boundary(block: bytes, i: int, quote: bytes | None, inside: bool) -> tuple[int, bool]:
    """Index just after the first record-ending newline at or after i (-1 if none in block), and the quote state
    there. Loops once per newline *inside* quotes only, so a multi-line field costs its own lines, no more."""
    while True:
        nl = block.find(b"\n", i)
        if nl < 0:
            if quote is not None:
                inside ^= bool(block.count(quote, i) & 1)
            return -1, inside
        if quote is not None:
            inside ^= bool(block.count(quote, i, nl) & 1)
        if not inside:
            return nl + 1, False
        i = nl + 1


def cut_points(f: BinaryIO, start: int, size: int, step: int, quote: bytes | None) -> list[tuple[int, int]]:
    """(offset, records before it) for record starts about every `step` bytes after `start`, in one pass."""
    cuts: list[tuple[int, int]] = []
    inside, records, target, pos = False, 0, start + step, start
    f.seek(start)
    while block := f.read(PLAN_BLOCK):
        i = 0
        while True:
            t = max(target - pos, i)
            if t >= len(block):
                n, inside = count_records(block[i:], quote, inside)
                records += n
                break
            n, inside = count_records(block[i:t], quote, inside)
            records += n
            j, inside = next_boundary(block, t, quote, inside)
            if j < 0:  # the record around the target goes on into the next block: look there
                break
            records += 1
            if pos + j < size:
                cuts.append((pos + j, records))
            target, i = pos + j + step, j
        pos += len(block)
    return cuts


def iter_records(f: BinaryIO, start: int, end: int, quote: bytes | None, limit: int) -> Iterator[bytes | None]:
    """The records of bytes [start, end) in order, each with its newline (the file's last may lack one), or
    None for a record longer than `limit`, which is skipped without being held in memory."""
    match = record_pattern(quote).match
    f.seek(start)
    left, buf, pos = end - start, b"", 0
    while True:
        while m := match(buf, pos):
            yield buf[pos:m.end()] if m.end() - pos <= limit else None
            pos = m.end()
        if len(buf) - pos > limit:
            inside = quote is not None and bool(buf.count(quote, pos) & 1)
            buf, pos, left = _skip_record(f, left, quote, inside)
            yield None
            continue
        data = f.read(min(max(READ_BLOCK, len(buf) - pos), left)) if left > 0 else b""
        if not data:  # the range is read (or the file is shorter): what is left is the last record
            if pos < len(buf):
                yield buf[pos:]
            return
        left -= len(data)
        buf, pos = buf[pos:] + data, 0  # reads grow with a long record, so re-matching it stays linear


def _skip_record(f: BinaryIO, left: int, quote: bytes | None, inside: bool) -> tuple[bytes, int, int]:
    """Read past the end of an over-long record; returns what follows it (buffer, 0, bytes left to read)."""
    while left > 0:
        data = f.read(min(READ_BLOCK, left))
        if not data:
            break
        left -= len(data)
        j, inside = next_boundary(data, 0, quote, inside)
        if j >= 0:
            return data[j:], 0, left
    return b"", 0, 0
