"""The format core of the "files" source: plan() cuts a CSV/TSV, JSON Lines or Parquet file into chunks in the
coordinator, read() turns one chunk into rows in a worker process.

plan() never parses records: for text formats it reads the header and then only counts bytes (filescan), so
a file of hundreds of MB plans in well under a second and every chunk can be read on its own. A FileChunk
carries all a worker needs (no shared state, no open handles), and read() reports a malformed record as that
record's error so one bad line never costs the other rows of its chunk.

Compressed files (.gz, found by gzip's magic bytes, so a body served gzip-encoded counts too) cannot be
seeked into. plan() decompresses one once into ``<name>.unpacked`` (next to it, or in options.cache_dir),
reused while the .gz keeps its size and mtime, and plans the plain copy: disk space once, in exchange for
chunks that all workers can read in parallel -- a single chunk would idle them on exactly the big files.

Encodings: UTF-8 (with or without BOM), the CJK multi-byte encodings in MULTIBYTE_SAFE, and ASCII-based
single-byte ones. Chunks are cut on raw bytes, which is only sound where newline, CR and the quote char can
never be part of a multi-byte character; UTF-16/32 and stateful encodings (ISO-2022, HZ, UTF-7) are refused.
"""

from __future__ import annotations

import codecs
import csv
import json
import os
import stat
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from etl.errors import FileSourceError, one_line
from etl.sources.filefetch import is_gzip, unpack_gzip
from etl.sources.filescan import cut_points, iter_records, record_pattern

DEFAULT_CHUNK_BYTES = 16 << 20
HEADER_LIMIT = 1 << 20  # a header row longer than this is a file that is not CSV, or a quote left open
PARQUET_BATCH = 2048  # rows converted to Python at a time: bounds a worker's memory on wide, long rows
FORMATS = {"csv": "csv", "tsv": "tsv", "tab": "tsv", "jsonl": "jsonl", "ndjson": "jsonl",
           "parquet": "parquet", "pq": "parquet"}
# Every byte of a multi-byte character in these is >= 0x30 (GB18030's four-byte form has 0x30-0x39 as its
# 2nd and 4th bytes; the rest are >= 0x40), so newline, CR and a quote char below 0x30 (" or ') are always
# themselves. tests/test_filefmt.py checks that over every code point.
MULTIBYTE_SAFE = frozenset({"gbk", "gb2312", "gb18030", "big5", "big5hkscs", "cp950", "shift_jis", "cp932",
                            "euc_jp", "euc_kr", "cp949"})
SINGLE_BYTE_PREFIXES = ("ascii", "iso8859-", "cp125", "koi8-", "mac-", "cp437", "cp850", "cp852", "cp866")


@dataclass(frozen=True)
class FileOptions:
    """How to read a file beyond its format; the defaults fit a UTF-8 CSV with a header row."""

    delimiter: str | None = None  # None: "," for CSV, tab for TSV
    quotechar: str | None = '"'  # None or "": fields are never quoted, so every newline ends a record
    encoding: str = "utf-8"
    header: bool = True
    columns: tuple[str, ...] | None = None  # names to use: needed when header is False, else renames
    empty_as_none: bool = False  # CSV "" -> None (the csv module cannot tell "" from an empty field)
    max_record_bytes: int = 64 << 20  # a longer record is reported and skipped, never held in memory
    max_unpacked_bytes: int = 16 << 30  # a .gz inflating past this is refused (a gzip bomb, or a mistake)
    cache_dir: str | None = None  # where a .gz is unpacked; None: next to it

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> FileOptions:
        """From a config table, refusing unknown keys so a typo is an error, not a silently ignored option."""
        unknown = sorted(set(raw) - {f.name for f in fields(cls)})
        if unknown:
            raise FileSourceError(f"unknown file option(s): {', '.join(unknown)}")
        values = dict(raw)
        if values.get("columns") is not None:
            values["columns"] = tuple(values["columns"])
        return cls(**values)


@dataclass(frozen=True)
class FileChunk:
    """One worker's share of a file, self-contained so it can be pickled to any process."""

    path: str  # absolute path of the plain (unpacked) file
    fmt: str  # "csv" (TSV too: see delimiter), "jsonl" or "parquet"
    start: int  # byte offset of the first record; Parquet: first row group
    end: int  # byte offset after the last record; Parquet: row group after the last
    first_record: int  # 1-based number of the first record (CSV: data rows; JSONL: lines; Parquet: rows)
    size: int  # the file's size and mtime when planned: a file replaced since is refused, not misread
    mtime_ns: int
    columns: tuple[str, ...] = ()
    delimiter: str = ","
    quotechar: str | None = '"'
    encoding: str = "utf-8"
    empty_as_none: bool = False
    max_record_bytes: int = 64 << 20


class RowResult(NamedTuple):
    """One record's outcome: a row, or the reason it has none (numbered like FileChunk.first_record)."""

    record: int
    row: dict[str, Any] | None
    error: str | None = None


def plan(path: str | os.PathLike[str], fmt: str | None = None, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES,
         options: FileOptions | None = None) -> list[FileChunk]:
    """Chunks of about chunk_bytes that together hold every record once, in order; [] for a file without
    records. fmt ("csv", "tsv", "jsonl", "parquet") overrides the one the file's extension implies."""
    opts = options or FileOptions()
    if str(path).startswith(("http://", "https://")):
        raise FileSourceError(f"{path} is a URL: download it first (etl.sources.filefetch.download)")
    if chunk_bytes < 1:
        raise FileSourceError("chunk_bytes must be at least 1")
    src = Path(path).absolute()
    kind = _format(src, fmt)
    if _stat(src).st_size == 0:
        return []
    if is_gzip(src):
        cache = Path(opts.cache_dir).absolute() if opts.cache_dir else src.parent
        src = unpack_gzip(src, cache, opts.max_unpacked_bytes)
        if src.stat().st_size == 0:
            return []
    if kind == "parquet":
        return _plan_parquet(src, chunk_bytes)
    return _plan_text(src, kind, chunk_bytes, opts)


def read(chunk: FileChunk) -> Iterator[RowResult]:
    """The chunk's records in order, read incrementally; raises only when the file itself is gone or changed."""
    st = _stat(Path(chunk.path))
    if (st.st_size, st.st_mtime_ns) != (chunk.size, chunk.mtime_ns):
        raise FileSourceError(f"{chunk.path} changed since it was planned: plan it again")
    if chunk.fmt == "parquet":
        yield from _read_parquet(chunk)
        return
    with open(chunk.path, "rb") as f:
        yield from (_read_csv if chunk.fmt == "csv" else _read_jsonl)(chunk, f)


def _stat(src: Path) -> os.stat_result:
    try:
        st = src.stat()
    except FileNotFoundError:
        raise FileSourceError(f"file not found: {src}") from None
    except OSError as exc:
        raise FileSourceError(f"cannot read {src}: {one_line(exc)}") from None
    if not stat.S_ISREG(st.st_mode):
        raise FileSourceError(f"not a regular file: {src}")
    return st


def _format(src: Path, fmt: str | None) -> str:
    if fmt is not None:
        if (kind := FORMATS.get(fmt.lower().lstrip("."))) is None:
            raise FileSourceError(f"unknown format {fmt!r}: use csv, tsv, jsonl or parquet")
        return kind
    name = src.name.lower().removesuffix(".gz")
    if "." not in name or (kind := FORMATS.get(name.rpartition(".")[2])) is None:
        raise FileSourceError(f"cannot tell the format of {src.name} from its name: "
                              "set format = csv, tsv, jsonl or parquet")
    return kind


def check_encoding(encoding: str, quote: str | None) -> str:
    """The codec name records are decoded with, once it is known that cutting its bytes at newlines and
    counting quote bytes is sound (see MULTIBYTE_SAFE)."""
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise FileSourceError(f"unknown encoding {encoding!r}") from None
    if name.startswith(("utf-16", "utf-32")):
        raise FileSourceError(f"{encoding} files are not supported: convert to UTF-8 (iconv -f {encoding} -t UTF-8)")
    if quote is not None and not quote.isascii():
        raise FileSourceError(f"quotechar {quote!r} must be an ASCII character")
    probe = "\n\r" + (quote or "")
    if name in ("utf-8", "utf-8-sig"):
        return "utf-8"  # a BOM is skipped by plan(); it is never inside a chunk
    if name in MULTIBYTE_SAFE and (quote is None or ord(quote) < 0x30):
        return name
    if name.startswith(SINGLE_BYTE_PREFIXES) and probe.encode(name) == probe.encode("ascii"):
        return name
    raise FileSourceError(f"encoding {encoding!r} (with quotechar {quote!r}) is not supported: its newline or "
                          "quote bytes can occur inside characters; use utf-8, gbk, gb18030, big5, shift_jis, "
                          "euc-kr, latin-1, cp1252 or another ASCII-based one (quotechar \" or ')")


def _skip_bom(head: bytes, encoding: str) -> int:
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_BE)):
        raise FileSourceError("the file is UTF-16 or UTF-32 (it starts with a byte-order mark): convert it to "
                              "UTF-8 (iconv -f UTF-16 -t UTF-8)")
    if head.startswith(codecs.BOM_UTF8):
        if encoding != "utf-8":
            raise FileSourceError(f"the file starts with a UTF-8 byte-order mark but encoding is {encoding}")
        return len(codecs.BOM_UTF8)
    return 0


def _dialect(delimiter: str, quote: str | None) -> dict[str, Any]:
    if len(delimiter) != 1 or delimiter in "\r\n" or (quote is not None and (len(quote) != 1 or quote in "\r\n")):
        raise FileSourceError("delimiter and quotechar must be single characters other than newline")
    if quote == delimiter:
        raise FileSourceError("delimiter and quotechar must differ")
    if quote is None:
        return {"delimiter": delimiter, "quoting": csv.QUOTE_NONE, "quotechar": None, "strict": True}
    return {"delimiter": delimiter, "quotechar": quote, "doublequote": True, "strict": True}


def _plan_text(src: Path, kind: str, chunk_bytes: int, opts: FileOptions) -> list[FileChunk]:
    quote = None if kind == "jsonl" else (opts.quotechar or None)
    delimiter = opts.delimiter or ("\t" if kind == "tsv" else ",")
    encoding = check_encoding(opts.encoding, quote)
    dialect = _dialect(delimiter, quote)
    qb = quote.encode("ascii") if quote else None
    st = _stat(src)
    with open(src, "rb") as f:
        start = _skip_bom(f.read(4), encoding)
        columns: tuple[str, ...] = ()
        if start < st.st_size and kind != "jsonl":
            columns, start = _header(f, start, qb, encoding, dialect, opts)
        if start >= st.st_size:  # nothing but a BOM and a header
            return []
        cuts = cut_points(f, start, st.st_size, chunk_bytes, qb)
    base = FileChunk(str(src), "jsonl" if kind == "jsonl" else "csv", 0, 0, 1, st.st_size, st.st_mtime_ns,
                     columns, delimiter, quote, encoding, opts.empty_as_none, opts.max_record_bytes)
    starts = [(start, 0), *cuts]
    ends = [offset for offset, _ in cuts] + [st.st_size]
    return [replace(base, start=s, end=e, first_record=before + 1) for (s, before), e in zip(starts, ends, strict=True)]


def _header(f: BinaryIO, start: int, qb: bytes | None, encoding: str, dialect: dict[str, Any],
            opts: FileOptions) -> tuple[tuple[str, ...], int]:
    """Column names, and the offset where data records begin."""
    if not opts.header:
        if not opts.columns:
            raise FileSourceError("header = false needs the column names: columns = [...]")
        return _check_names(opts.columns), start
    f.seek(start)
    head = f.read(HEADER_LIMIT)
    m = record_pattern(qb).match(head)
    if m is None and len(head) == HEADER_LIMIT:
        raise FileSourceError("no end of the header row in the first 1 MB: not a CSV file, or a quote left open")
    raw = head[:m.end()] if m else head
    try:
        names = next(csv.reader((raw.decode(encoding),), **dialect), [])
    except UnicodeDecodeError:
        raise FileSourceError(f"the header row is not valid {encoding}: set encoding") from None
    except csv.Error as exc:
        raise FileSourceError(f"the header row is malformed: {exc}") from None
    if not names:
        raise FileSourceError("the header row is empty (if the file has none: header = false, columns = [...])")
    if opts.columns:
        if len(opts.columns) != len(names):
            raise FileSourceError(f"columns has {len(opts.columns)} names, the header {len(names)}")
        names = list(opts.columns)
    return _check_names(names), start + len(raw)


def _check_names(names: Sequence[str]) -> tuple[str, ...]:
    for i, name in enumerate(names, 1):
        if not name:
            raise FileSourceError(f"column {i} has no name: rename it, or give columns = [...]")
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise FileSourceError(f"duplicate column name(s) {', '.join(map(repr, dups))}: rename them, "
                              "or give columns = [...]")
    return tuple(names)


def _read_csv(chunk: FileChunk, f: BinaryIO) -> Iterator[RowResult]:
    # The csv module's field limit is process-wide; raising it to our own record limit is what a worker
    # process that reads these chunks needs, and it never lowers a limit someone else set higher.
    csv.field_size_limit(max(csv.field_size_limit(), chunk.max_record_bytes))
    dialect = _dialect(chunk.delimiter, chunk.quotechar)
    qb = chunk.quotechar.encode("ascii") if chunk.quotechar else None
    columns, ncols = chunk.columns, len(chunk.columns)
    records = iter_records(f, chunk.start, chunk.end, qb, chunk.max_record_bytes)
    for n, raw in enumerate(records, chunk.first_record):
        if raw is None:
            yield RowResult(n, None, f"record longer than {chunk.max_record_bytes:,} bytes (a quote left open?)")
            continue
        try:
            values = next(csv.reader((raw.decode(chunk.encoding),), **dialect), [])
        except UnicodeDecodeError as exc:
            yield RowResult(n, None, f"not valid {chunk.encoding}: {exc.reason} at byte {exc.start} of the record")
            continue
        except csv.Error as exc:
            yield RowResult(n, None, f"malformed CSV record: {exc}")
            continue
        if not values:  # a blank line: no row, but it keeps its number so later numbers match plan()'s
            continue
        if len(values) != ncols:
            yield RowResult(n, None, f"{len(values)} fields where the header has {ncols}")
            continue
        if chunk.empty_as_none:
            values = [v or None for v in values]
        yield RowResult(n, dict(zip(columns, values, strict=True)))


_JSON_TYPES = {list: "array", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}


def _read_jsonl(chunk: FileChunk, f: BinaryIO) -> Iterator[RowResult]:
    records = iter_records(f, chunk.start, chunk.end, None, chunk.max_record_bytes)
    for n, raw in enumerate(records, chunk.first_record):
        if raw is None:
            yield RowResult(n, None, f"line longer than {chunk.max_record_bytes:,} bytes")
            continue
        if not raw.strip():
            continue
        try:
            value = json.loads(raw.decode(chunk.encoding))
        except UnicodeDecodeError as exc:
            yield RowResult(n, None, f"not valid {chunk.encoding}: {exc.reason} at byte {exc.start} of the line")
            continue
        except ValueError as exc:
            yield RowResult(n, None, f"invalid JSON: {exc}")
            continue
        if isinstance(value, dict):
            yield RowResult(n, value)
        else:
            yield RowResult(n, None, f"a JSON {_JSON_TYPES.get(type(value), 'value')}, not an object")


def _pq() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise FileSourceError("reading Parquet needs pyarrow: pip install 'etl-crawl[parquet]'") from None
    return pq


def _plan_parquet(src: Path, chunk_bytes: int) -> list[FileChunk]:
    """Row groups, consecutive small ones merged until their uncompressed size reaches chunk_bytes."""
    pq = _pq()
    try:
        with pq.ParquetFile(src) as pf:
            meta = pf.metadata
            names = pf.schema_arrow.names
    except Exception as exc:  # pyarrow raises its own ArrowInvalid / OSError kinds for a file it cannot use
        raise FileSourceError(f"{src.name} is not a readable Parquet file: {one_line(exc)}") from None
    _check_names(names)
    st = _stat(src)
    chunks: list[FileChunk] = []
    first = size = rows = before = 0
    for i in range(meta.num_row_groups):
        group = meta.row_group(i)
        size, rows = size + group.total_byte_size, rows + group.num_rows
        if size >= chunk_bytes or i == meta.num_row_groups - 1:
            if rows:
                chunks.append(FileChunk(str(src), "parquet", first, i + 1, before + 1, st.st_size, st.st_mtime_ns,
                                        tuple(names)))
            first, size, rows, before = i + 1, 0, 0, before + rows
    return chunks


def _read_parquet(chunk: FileChunk) -> Iterator[RowResult]:
    pq = _pq()
    n = chunk.first_record
    try:
        with pq.ParquetFile(chunk.path) as pf:
            groups = range(chunk.start, chunk.end)
            for batch in pf.iter_batches(batch_size=PARQUET_BATCH, row_groups=groups, use_threads=False):
                for row in _micro(batch).to_pylist():
                    yield RowResult(n, row)
                    n += 1
    except Exception as exc:  # a corrupt page takes the rest of its row groups; say so instead of failing the run
        yield RowResult(n, None, f"unreadable Parquet data (row groups up to {chunk.end - 1}): {one_line(exc)}")


def _micro(batch: Any) -> Any:
    """The batch with nanosecond timestamps cut to microseconds: datetime cannot hold nanoseconds, and pyarrow
    would refuse the whole batch (or hand out pandas Timestamps when pandas happens to be installed)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ns = [i for i, f in enumerate(batch.schema) if pa.types.is_timestamp(f.type) and f.type.unit == "ns"]
    if not ns:
        return batch
    cols = list(batch.columns)
    for i in ns:
        cols[i] = pc.cast(cols[i], pa.timestamp("us", batch.schema[i].type.tz), safe=False)
    return pa.RecordBatch.from_arrays(cols, names=batch.schema.names)
