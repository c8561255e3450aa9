"""The files source's format core (etl/sources/filefmt.py, filescan.py): whatever the chunk size, reading every
chunk of a plan gives every record exactly once, in order, as it was written; bad records are errors of
their own. No server, no database; nothing here is timed."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
import os
import pickle
import socket
import sys
import tempfile
import threading
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from unittest.mock import patch

import pytest
import requests
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from etl.errors import FileSourceError
from etl.sources import filescan
from etl.sources.filefetch import download
from etl.sources.filefmt import MULTIBYTE_SAFE, FileChunk, FileOptions, RowResult, plan, read

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

SETTINGS = settings(max_examples=int(os.environ.get("ETL_HYPOTHESIS_EXAMPLES", "60")), deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Pieces that break naive splitters: quotes (doubled when written), delimiters, both newline kinds, CJK,
# emoji, a BOM inside a value, a NUL.
AWKWARD = ['"', '""', ",", "\t", "\n", "\r\n", "\r", " ", "a", "Z9", "中文", "股票", "😀", "\ufeff", "\x00", "'", "|"]
field_text = st.one_of(st.lists(st.sampled_from(AWKWARD), max_size=6).map("".join), st.text(max_size=8))


# (plan block, read block): besides filescan's own, tiny ones, so that records and quoted fields run across
# the blocks the planner and the reader read.
BLOCKS = [(filescan.PLAN_BLOCK, filescan.READ_BLOCK), (1, 1), (2, 3), (5, 2), (16, 7)]


def chunk_sizes(size: int) -> Iterator[int]:
    """Chunk sizes from 1 byte to past the file's size, each used with the next of BLOCKS in turn."""
    sizes = sorted({1, 2, 3, 5, 8, 13, 64, 257, max(1, size // 3), max(1, size // 2), max(1, size), size + 1,
                    10 * size + 7})
    for i, chunk_bytes in enumerate(sizes):
        plan_block, read_block = BLOCKS[i % len(BLOCKS)]
        with patch.object(filescan, "PLAN_BLOCK", plan_block), patch.object(filescan, "READ_BLOCK", read_block):
            yield chunk_bytes


def read_all(chunks: list[FileChunk]) -> list[RowResult]:
    return [r for c in chunks for r in read(c)]


def rows_of(path: Path, chunk_bytes: int, fmt: str | None = None, **options) -> list[dict]:
    results = read_all(plan(path, fmt, chunk_bytes=chunk_bytes, options=FileOptions(**options)))
    assert [r.error for r in results if r.error] == []
    assert [r.record for r in results] == list(range(1, len(results) + 1))
    return [r.row for r in results]


@st.composite
def tables(draw, text=field_text) -> tuple[list[str], list[list[str]]]:
    ncols = draw(st.integers(1, 4))
    names = draw(st.lists(st.text(st.sampled_from("abc名字 ,\"\n"), min_size=1, max_size=4),
                          min_size=ncols, max_size=ncols, unique=True))
    rows = draw(st.lists(st.lists(text, min_size=ncols, max_size=ncols), max_size=12))
    return names, rows


def readable(rows: list[list[str]], lineterminator: str) -> bool:
    """Python's csv writer quotes only the characters of its lineterminator, so with "\n" a value holding a
    lone "\r" is written unquoted -- a file no CSV reader (csv's own included) can read back."""
    return lineterminator == "\r\n" or not any("\r" in v and "\n" not in v for row in rows for v in row)


def write_csv(path: Path, names: list[str] | None, rows: list[list[str]], *, encoding: str = "utf-8",
              delimiter: str = ",", lineterminator: str = "\r\n") -> Path:
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, lineterminator=lineterminator)
    if names is not None:
        writer.writerow(names)
    writer.writerows(rows)
    path.write_bytes(buf.getvalue().encode(encoding))
    return path


# --- round trips over many chunk sizes -------------------------------------------------------------------

@SETTINGS
@given(tables(), st.booleans(), st.sampled_from(["\r\n", "\n"]), st.booleans())
def test_csv_round_trip_for_every_chunk_size(table, bom, lineterminator, trailing_newline) -> None:
    names, rows = table
    assume(readable(rows, lineterminator))
    with tempfile.TemporaryDirectory() as d:
        path = write_csv(Path(d, "t.csv"), names, rows, encoding="utf-8-sig" if bom else "utf-8",
                         lineterminator=lineterminator)
        if not trailing_newline and rows:
            path.write_bytes(path.read_bytes().removesuffix(lineterminator.encode()))
        expected = [dict(zip(names, r, strict=True)) for r in rows]
        for size in chunk_sizes(path.stat().st_size):
            assert rows_of(path, size) == expected, size


@SETTINGS
@given(tables(), st.sampled_from(["\r\n", "\n"]))
def test_tsv_round_trip(table, lineterminator) -> None:
    names, rows = table
    assume(readable(rows, lineterminator))
    with tempfile.TemporaryDirectory() as d:
        path = write_csv(Path(d, "t.tsv"), names, rows, delimiter="\t", lineterminator=lineterminator)
        expected = [dict(zip(names, r, strict=True)) for r in rows]
        for size in chunk_sizes(path.stat().st_size):
            assert rows_of(path, size) == expected


# GBK characters whose second byte is "|", "\\" or "@": with delimiter "|" a byte-level splitter would cut them.
GBK_TRICKY = [chr(c) for c in range(0x4E00, 0x9FA6)
              if len(b := chr(c).encode("gbk", "ignore")) == 2 and b[1] in b"|\\@"][:40]
gbk_text = st.lists(st.sampled_from(GBK_TRICKY + ['"', '""', "|", "\n", "\r\n", "中文", "a", ""]),
                    max_size=6).map("".join)


@SETTINGS
@given(tables(gbk_text))
def test_gbk_round_trip_with_a_delimiter_that_is_also_a_gbk_trail_byte(table) -> None:
    names, rows = table
    with tempfile.TemporaryDirectory() as d:
        path = write_csv(Path(d, "t.csv"), names, rows, encoding="gbk", delimiter="|")
        expected = [dict(zip(names, r, strict=True)) for r in rows]
        for size in chunk_sizes(path.stat().st_size):
            assert rows_of(path, size, encoding="gbk", delimiter="|") == expected


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | field_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(field_text, inner, max_size=3), max_leaves=8)


@SETTINGS
@given(st.lists(st.dictionaries(field_text, json_values, max_size=4), max_size=10), st.booleans(),
       st.sampled_from(["\n", "\r\n"]), st.booleans())
def test_jsonl_round_trip_for_every_chunk_size(objects, ascii_only, newline, bom) -> None:
    text = "".join(json.dumps(o, ensure_ascii=ascii_only) + newline for o in objects)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d, "t.ndjson")
        path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
        for size in chunk_sizes(path.stat().st_size):
            assert rows_of(path, size) == objects


@SETTINGS
@given(st.binary(max_size=80) | st.lists(st.sampled_from([b'"', b'""', b"\n", b"\r\n", b"\r", b",", b"a", b"\xff",
                                                        "中".encode(), b"x" * 25]), max_size=30).map(b"".join),
       st.sampled_from(['"', None]))
def test_garbage_reads_the_same_whatever_the_chunk_size(data, quote) -> None:
    """Malformed input still never raises, and chunking never changes what is read (records or errors)."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d, "g.csv")
        path.write_bytes(data.replace(b"\xef\xbb\xbf", b"").lstrip(b"\xff\xfe\x00\x1f"))  # no BOM, no gzip
        opts = FileOptions(header=False, columns=("a", "b"), quotechar=quote, max_record_bytes=30)
        results = {size: read_all(plan(path, chunk_bytes=size, options=opts))
                   for size in chunk_sizes(path.stat().st_size)}
        assert len({repr(r) for r in results.values()}) == 1


# --- filescan against a byte-at-a-time reference ------------------------------------------------------------

def reference_records(data: bytes, quote: bytes | None) -> list[bytes]:
    """The rule filescan implements, one byte at a time: a newline outside quotes ends a record."""
    records, current, inside = [], bytearray(), False
    for byte in data:
        current.append(byte)
        if quote is not None and byte == quote[0]:
            inside = not inside
        elif byte == 0x0A and not inside:
            records.append(bytes(current))
            current = bytearray()
    return records + ([bytes(current)] if current else [])


scan_bytes = st.lists(st.sampled_from([b'"', b'""', b"\n", b"\r\n", b",", b"ab", b"\xe4\xb8\xad", b"'"]),
                      max_size=40).map(b"".join)


def reference_cuts(data: bytes, start: int, step: int, quote: bytes | None) -> list[tuple[int, int]]:
    cuts, offset, target = [], start, start + step
    for n, record in enumerate(reference_records(data[start:], quote), 1):
        offset += len(record)
        if target < offset < len(data):  # the first record end past the target, never the file's end
            cuts.append((offset, n))
            target = offset + step
    return cuts


@SETTINGS
@given(scan_bytes, st.sampled_from([b'"', b"'", None]), st.integers(1, 40), st.integers(1, 16), st.integers(0, 5))
def test_cut_points_match_the_reference(data, quote, step, block, start) -> None:
    start = min(start, len(data))
    with patch.object(filescan, "PLAN_BLOCK", block):
        assert filescan.cut_points(io.BytesIO(data), start, len(data), step, quote) == reference_cuts(
            data, start, step, quote)


@SETTINGS
@given(scan_bytes, st.sampled_from([b'"', None]), st.integers(1, 16), st.integers(1, 12), st.integers(0, 8),
       st.integers(0, 8))
@example(b"abababab\na\nb\n", None, 8, 3, 0, 0)  # records right after a skipped long one, at the range's end
def test_iter_records_matches_the_reference(data, quote, block, limit, cut_start, cut_end) -> None:
    start, end = min(cut_start, len(data)), max(min(cut_start, len(data)), len(data) - cut_end)
    expected = [r if len(r) <= limit else None for r in reference_records(data[start:end], quote)]
    with patch.object(filescan, "READ_BLOCK", block):
        assert list(filescan.iter_records(io.BytesIO(data), start, end, quote, limit)) == expected


# --- malformed records -------------------------------------------------------------------------------------

def test_bad_csv_records_are_their_own_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(b'id,title\n1,ok\n2\n3,"x"y\n4,\xff\xfe\n\n6,"multi\nline"\n7,a,b\n8,last')
    for size in chunk_sizes(path.stat().st_size):
        results = read_all(plan(path, chunk_bytes=size))
        assert [(r.record, r.row) for r in results if r.row] == [
            (1, {"id": "1", "title": "ok"}), (6, {"id": "6", "title": "multi\nline"}), (8, {"id": "8", "title": "last"})]
        errors = {r.record: r.error for r in results if r.error}
        assert sorted(errors) == [2, 3, 4, 7]  # record 5 is a blank line: no row, no error
        assert errors[2] == "1 fields where the header has 2" and errors[7] == "3 fields where the header has 2"
        assert "malformed CSV record" in errors[3] and "not valid utf-8" in errors[4]


def test_bad_json_lines_are_their_own_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"a": 1}\n{"a": \n[1, 2]\n"s"\n\n{"a": "\xff"}\n  {"a": 2}  \r\n')
    results = read_all(plan(path, chunk_bytes=4))
    assert [(r.record, r.row) for r in results if r.row] == [(1, {"a": 1}), (7, {"a": 2})]
    errors = {r.record: r.error for r in results if r.error}
    assert errors[2].startswith("invalid JSON") and errors[3] == "a JSON array, not an object"
    assert errors[4] == "a JSON string, not an object" and errors[6].startswith("not valid utf-8")
    assert sorted(errors) == [2, 3, 4, 6]


def test_an_over_long_record_is_skipped_and_reported(tmp_path: Path) -> None:
    rows = [["1", "x"], ["2", "y\n" * 200], ["3", "z"], ["4", ""], ["5", "w"], ["6", "v" * 300], ["7", "u"], ["8", "t"]]
    path = write_csv(tmp_path / "long.csv", ["id", "body"], rows)
    for size in chunk_sizes(path.stat().st_size):
        results = read_all(plan(path, chunk_bytes=size, options=FileOptions(max_record_bytes=100)))
        assert [(r.record, r.row and r.row["id"]) for r in results] == [
            (1, "1"), (2, None), (3, "3"), (4, "4"), (5, "5"), (6, None), (7, "7"), (8, "8")]
        assert "longer than 100 bytes" in results[1].error and "longer than 100 bytes" in results[5].error


def test_tsv_without_quoting_keeps_quotes_literal(tmp_path: Path) -> None:
    path = tmp_path / "t.tsv"
    path.write_text('id\tname\n1\t5" screen\n2\t"quoted"\n3\tlast\n')
    assert rows_of(path, 1, quotechar=None) == [
        {"id": "1", "name": '5" screen'}, {"id": "2", "name": '"quoted"'}, {"id": "3", "name": "last"}]


def test_empty_fields_can_be_none(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "e.csv", ["a", "b"], [["", "x"], ["", ""]])
    assert rows_of(path, 1, empty_as_none=True) == [{"a": None, "b": "x"}, {"a": None, "b": None}]


# --- headers, empty files, options -------------------------------------------------------------------------

@pytest.mark.parametrize("content", [b"", b"id,title", b"id,title\n", b"id,title\r\n", b"\xef\xbb\xbfid,title\n",
                                     b"\xef\xbb\xbf"])
def test_empty_or_header_only_csv_has_no_chunks(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "h.csv"
    path.write_bytes(content)
    assert plan(path, chunk_bytes=1) == []


@pytest.mark.parametrize("name", ["e.jsonl", "e.parquet", "e.tsv", "e.csv.gz"])
def test_an_empty_file_of_any_format_has_no_chunks(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_bytes(b"")
    assert plan(tmp_path / name) == []


def test_no_header_with_given_names_and_renaming(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "n.csv", None, [["1", "a"], ["2", "b"]])
    assert rows_of(path, 3, header=False, columns=("id", "t")) == [{"id": "1", "t": "a"}, {"id": "2", "t": "b"}]
    renamed = write_csv(tmp_path / "r.csv", ["x", "x"], [["1", "a"]])
    assert rows_of(renamed, 3, columns=("id", "t")) == [{"id": "1", "t": "a"}]


@pytest.mark.parametrize(("content", "options", "message"), [
    (b"a,b,a\n1,2,3\n", {}, "duplicate column name(s) 'a'"),
    (b"a,,c\n1,2,3\n", {}, "column 2 has no name"),
    (b"\n1,2\n", {}, "the header row is empty"),
    (b"a,b\n", {"header": False}, "header = false needs the column names"),
    (b"a,b\n", {"columns": ("x",)}, "columns has 1 names, the header 2"),
    (b"\xff\xfea\x00,\x00b\x00\n\x00", {}, "UTF-16 or UTF-32"),
    (b"\xef\xbb\xbfa,b\n", {"encoding": "gbk"}, "UTF-8 byte-order mark but encoding is gbk"),
    (b"a,b\n", {"encoding": "utf-16"}, "convert to UTF-8"),
    (b"a,b\n", {"encoding": "iso2022_jp"}, "is not supported"),
    (b"a,b\n", {"encoding": "hz"}, "is not supported"),
    (b"a,b\n", {"encoding": "gbk", "quotechar": "|"}, "is not supported"),
    (b"a,b\n", {"encoding": "no-such-codec"}, "unknown encoding"),
    (b"a,b\n", {"delimiter": '"'}, "must differ"),
    (b"a,b\n", {"delimiter": "ab"}, "single characters"),
    (b'"a\n' + b"x" * (1 << 20), {}, "no end of the header row"),
])
def test_user_errors_are_one_line(tmp_path: Path, content: bytes, options: dict, message: str) -> None:
    path = tmp_path / "u.csv"
    path.write_bytes(content)
    with pytest.raises(FileSourceError) as err:
        plan(path, options=FileOptions(**options))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_missing_file_unknown_format_and_urls(tmp_path: Path) -> None:
    with pytest.raises(FileSourceError, match="file not found"):
        plan(tmp_path / "nope.csv")
    (tmp_path / "data.xlsx").write_bytes(b"x")
    with pytest.raises(FileSourceError, match="cannot tell the format of data.xlsx"):
        plan(tmp_path / "data.xlsx")
    with pytest.raises(FileSourceError, match="unknown format 'xml'"):
        plan(tmp_path / "data.xlsx", "xml")
    with pytest.raises(FileSourceError, match="download it first"):
        plan("https://example.org/a.csv")
    with pytest.raises(FileSourceError, match="unknown file option"):
        FileOptions.from_mapping({"delimeter": ";"})


def test_format_override_and_options_from_a_config_table(tmp_path: Path) -> None:
    path = tmp_path / "export.txt"
    path.write_text("a;b\n1;2\n")
    opts = FileOptions.from_mapping({"delimiter": ";", "columns": ["x", "y"]})
    assert [r.row for r in read_all(plan(path, "csv", options=opts))] == [{"x": "1", "y": "2"}]


def test_a_chunk_is_small_picklable_and_refuses_a_changed_file(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "c.csv", ["a"], [["1"], ["2"]])
    chunk = plan(path)[0]
    assert pickle.loads(pickle.dumps(chunk)) == chunk and len(pickle.dumps(chunk)) < 600
    path.write_text("a\n1\n2\n3\n")
    with pytest.raises(FileSourceError, match="changed since it was planned"):
        list(read(chunk))


# --- encodings: the claim the byte-level cutting rests on ---------------------------------------------------

@pytest.mark.parametrize("codec", sorted(MULTIBYTE_SAFE))
def test_no_byte_below_0x30_inside_a_multibyte_character(codec: str) -> None:
    """Newline, CR, '"' and "'" are all below 0x30: if no byte of a multi-byte character is, counting those
    bytes is the same as counting the characters."""
    points = [*range(0x80, 0xD800), *range(0xE000, 0x10000), *range(0x10000, 0x110000, 97)]
    bad = []
    for cp in points:
        try:
            encoded = chr(cp).encode(codec)
        except UnicodeEncodeError:
            continue
        if len(encoded) > 1 and min(encoded) < 0x30:
            bad.append(hex(cp))
    assert bad == []


# --- gzip --------------------------------------------------------------------------------------------------

def test_gzip_is_unpacked_once_and_reused_until_it_changes(tmp_path: Path) -> None:
    rows = [[str(i), f"标题 {i}", "body,\n\"x\""] for i in range(50)]
    plain = write_csv(tmp_path / "plain.csv", ["id", "title", "body"], rows)
    gz = tmp_path / "news.csv.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    cache = tmp_path / "cache"
    cache.mkdir()
    chunks = plan(gz, chunk_bytes=300, options=FileOptions(cache_dir=str(cache)))
    assert len(chunks) > 1 and {c.path for c in chunks} == {str(cache / "news.csv.gz.unpacked")}
    assert [r.row["id"] for r in read_all(chunks)] == [str(i) for i in range(50)]
    mtime = os.stat(chunks[0].path).st_mtime_ns
    assert plan(gz, chunk_bytes=300, options=FileOptions(cache_dir=str(cache))) == chunks  # reused, not redone
    assert os.stat(chunks[0].path).st_mtime_ns == mtime
    with open(chunks[0].path, "r+b") as f:  # a copy cut short behind our back is not trusted
        f.truncate(100)
    assert [r.row["id"] for r in read_all(plan(gz, options=FileOptions(cache_dir=str(cache))))] == [
        str(i) for i in range(50)]
    gz.write_bytes(gzip.compress(b"id,title,body\n1,a,b\n"))
    later = os.stat(gz).st_mtime_ns + 10**9
    os.utime(gz, ns=(later, later))
    again = plan(gz, options=FileOptions(cache_dir=str(cache)))
    assert [r.row for r in read_all(again)] == [{"id": "1", "title": "a", "body": "b"}]
    assert sorted(p.name for p in cache.iterdir()) == ["news.csv.gz.unpacked", "news.csv.gz.unpacked.json"]


def test_gzip_jsonl_next_to_the_file_and_broken_or_huge_gzip(tmp_path: Path) -> None:
    gz = tmp_path / "x.jsonl.gz"
    gz.write_bytes(gzip.compress(b'{"a": 1}\n{"a": 2}\n'))
    assert [r.row for r in read_all(plan(gz, chunk_bytes=1))] == [{"a": 1}, {"a": 2}]
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(gzip.compress(b'{"a": 1}\n' * 1000)[:-20])
    with pytest.raises(FileSourceError, match="cannot unpack cut.jsonl.gz"):
        plan(cut)
    huge = tmp_path / "huge.jsonl.gz"
    huge.write_bytes(gzip.compress(b'{"a": 1}\n' * 100_000))
    with pytest.raises(FileSourceError, match="max_unpacked_bytes"):
        plan(huge, options=FileOptions(max_unpacked_bytes=1 << 16))
    assert sorted(p.name for p in tmp_path.iterdir()) == [  # nothing half-unpacked left behind
        "cut.jsonl.gz", "huge.jsonl.gz", "x.jsonl.gz", "x.jsonl.gz.unpacked", "x.jsonl.gz.unpacked.json"]


# --- Parquet -----------------------------------------------------------------------------------------------

def parquet_table(n: int):
    tz = dt.UTC
    return pa.table({
        "id": pa.array(range(n), pa.int64()),
        "published": pa.array([dt.date(2024, 1, 1) + dt.timedelta(days=i) if i % 7 else None for i in range(n)]),
        "score": pa.array([Decimal(i) / 100 for i in range(n)], pa.decimal128(12, 2)),
        "seen": pa.array([dt.datetime(2024, 5, 1, 12, 0, i % 60, i, tzinfo=tz) for i in range(n)],
                         pa.timestamp("us", tz="UTC")),
        "ns": pa.array([1_700_000_000_000_000_123 + i for i in range(n)], pa.timestamp("ns")),
        "title": pa.array([f"标题 \"{i}\"\n" if i % 5 else None for i in range(n)]),
    })


@pytest.mark.parametrize("chunk_bytes", [1, 700, 5000, 1 << 30])
def test_parquet_row_groups_and_types(tmp_path: Path, chunk_bytes: int) -> None:
    table = parquet_table(95)
    path = tmp_path / "t.parquet"
    pq.write_table(table, path, row_group_size=10)
    chunks = plan(path, chunk_bytes=chunk_bytes)
    assert chunks[0].start == 0 and chunks[-1].end == 10 and all(a.end == b.start for a, b in zip(chunks, chunks[1:], strict=False))
    if chunk_bytes in (1, 1 << 30):  # every row group its own chunk, or all merged into one
        assert len(chunks) == (10 if chunk_bytes == 1 else 1)
    results = read_all(chunks)
    assert [r.record for r in results] == list(range(1, 96)) and all(r.error is None for r in results)
    rows = [r.row for r in results]
    assert rows[3]["published"] == dt.date(2024, 1, 4) and rows[7]["published"] is None
    assert rows[3]["score"] == Decimal("0.03") and rows[5]["title"] is None and rows[6]["title"] == '标题 "6"\n'
    assert rows[2]["seen"] == dt.datetime(2024, 5, 1, 12, 0, 2, 2, tzinfo=dt.UTC)
    assert rows[0]["ns"] == dt.datetime(2023, 11, 14, 22, 13, 20, 0)  # nanoseconds cut, still a datetime
    assert [r["id"] for r in rows] == list(range(95))


def test_parquet_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(FileSourceError, match="bad.parquet is not a readable Parquet file"):
        plan(bad)
    empty = tmp_path / "empty.parquet"
    pq.write_table(parquet_table(0), empty)
    assert plan(empty) == []
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(FileSourceError, match=r"pip install 'etl-crawl\[parquet\]'"):
        plan(empty)


# --- download (etl/sources/filefetch.py) against a local http.server ----------------------------------------

UA = "etl-test/1.0 (+https://example.org/bot)"


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.0, so a body without Content-Length ends when the connection closes, as a cut-off one does."""

    def do_GET(self) -> None:
        self.server.seen.append(dict(self.headers))  # type: ignore[attr-defined]
        self.server.routes[self.path](self)  # type: ignore[attr-defined]

    def log_message(self, *args) -> None:
        pass


def static(body: bytes, etag: str | None = '"v1"', last_modified: str | None = "Wed, 01 May 2024 10:00:00 GMT",
           length: int | None = -1, extra: dict[str, str] | None = None):
    def route(h: BaseHTTPRequestHandler) -> None:
        if (etag and h.headers.get("If-None-Match") == etag) or (
                not etag and last_modified and h.headers.get("If-Modified-Since") == last_modified):
            h.send_response(304)
            h.end_headers()
            return
        h.send_response(200)
        for name, value in {"ETag": etag, "Last-Modified": last_modified, **(extra or {})}.items():
            if value:
                h.send_header(name, value)
        if length is not None:
            h.send_header("Content-Length", str(len(body) if length == -1 else length))
        h.end_headers()
        h.wfile.write(body)
    return route


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.routes, httpd.seen = {}, []  # type: ignore[attr-defined]
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"  # type: ignore[attr-defined]
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def fetch(url: str, dest: Path, max_bytes: int = 1 << 20, **kw) -> Path:
    return download(url, dest, max_bytes=max_bytes, timeout=5.0, user_agent=UA, **kw)


def test_download_is_reused_while_the_server_says_304(server, tmp_path: Path) -> None:
    server.routes["/exports/news.csv?day=1"] = static(b"id,title\n1,a\n")
    path = fetch(f"{server.url}/exports/news.csv?day=1", tmp_path)
    assert path.read_bytes() == b"id,title\n1,a\n" and path.name.endswith("-news.csv") and path.parent == tmp_path
    assert server.seen[0]["User-Agent"] == UA and "If-None-Match" not in server.seen[0]
    mtime = path.stat().st_mtime_ns
    assert fetch(f"{server.url}/exports/news.csv?day=1", tmp_path) == path
    assert server.seen[1]["If-None-Match"] == '"v1"'
    assert server.seen[1]["If-Modified-Since"] == "Wed, 01 May 2024 10:00:00 GMT"
    assert path.stat().st_mtime_ns == mtime and [r.row for r in read_all(plan(path))] == [{"id": "1", "title": "a"}]
    server.routes["/exports/news.csv?day=1"] = static(b"id,title\n2,b\n", etag='"v2"')
    assert fetch(f"{server.url}/exports/news.csv?day=1", tmp_path).read_bytes() == b"id,title\n2,b\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name, path.name + ".meta.json"]


def test_last_modified_alone_and_a_lost_copy(server, tmp_path: Path) -> None:
    server.routes["/a.jsonl"] = static(b'{"a": 1}\n', etag=None)
    path = fetch(f"{server.url}/a.jsonl", tmp_path)
    fetch(f"{server.url}/a.jsonl", tmp_path)
    assert "If-None-Match" not in server.seen[1] and server.seen[1]["If-Modified-Since"]
    path.unlink()  # a sidecar without its copy vouches for nothing: a plain GET again
    assert fetch(f"{server.url}/a.jsonl", tmp_path).read_bytes() == b'{"a": 1}\n'
    assert "If-Modified-Since" not in server.seen[2]


@pytest.mark.parametrize("length", [-1, None], ids=["content-length", "until-close"])
def test_a_body_over_max_bytes_is_refused_and_leaves_nothing(server, tmp_path: Path, length) -> None:
    server.routes["/big.csv"] = static(b"x" * 300_000, length=length)
    with pytest.raises(FileSourceError, match=r"over max_bytes \(100,000\)"):
        fetch(f"{server.url}/big.csv", tmp_path, max_bytes=100_000)
    assert list(tmp_path.iterdir()) == []


def test_a_cut_off_download_keeps_the_previous_copy(server, tmp_path: Path) -> None:
    server.routes["/n.csv"] = static(b"id\n1\n")
    path = fetch(f"{server.url}/n.csv", tmp_path)
    server.routes["/n.csv"] = static(b"id\n1\n2\n", etag='"v2"', length=5000)  # promises 5000 bytes, sends 7
    with pytest.raises(FileSourceError, match="downloading .* failed: .*IncompleteRead|closed after 7 of 5,000 bytes"):
        fetch(f"{server.url}/n.csv", tmp_path)
    assert path.read_bytes() == b"id\n1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name, path.name + ".meta.json"]
    server.routes["/n.csv"] = static(b"id\n1\n")  # back to v1: the copy we kept is still the right one
    assert fetch(f"{server.url}/n.csv", tmp_path) == path and server.seen[-1]["If-None-Match"] == '"v1"'


def test_a_gzip_encoded_body_is_stored_as_sent_and_planned_as_gzip(server, tmp_path: Path) -> None:
    body = gzip.compress("id,title\n1,中文\n".encode())
    server.routes["/z.csv"] = static(body, extra={"Content-Encoding": "gzip"})
    path = fetch(f"{server.url}/z.csv", tmp_path)
    assert path.read_bytes() == body
    assert [r.row for r in read_all(plan(path))] == [{"id": "1", "title": "中文"}]


def test_download_errors(server, tmp_path: Path) -> None:
    server.routes["/gone.csv"] = lambda h: (h.send_response(404), h.end_headers())
    with pytest.raises(FileSourceError, match="HTTP 404 for"):
        fetch(f"{server.url}/gone.csv", tmp_path)
    with pytest.raises(FileSourceError, match="not an http"):
        fetch("ftp://example.org/a.csv", tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(FileSourceError, match="failed"):
        fetch(f"http://127.0.0.1:{port}/a.csv", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_given_session_is_used_and_left_open(server, tmp_path: Path) -> None:
    server.routes["/s.csv"] = static(b"a\n1\n")
    with requests.Session() as session:
        session.headers["X-Mine"] = "1"
        fetch(f"{server.url}/s.csv", tmp_path, session=session)
        fetch(f"{server.url}/s.csv", tmp_path / "again", session=session)
    assert [s.get("X-Mine") for s in server.seen] == ["1", "1"]
