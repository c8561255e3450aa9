"""A file as the source: CSV / TSV, JSON Lines or Parquet, a local path or an http(s) URL (downloaded
once into a cache, re-downloaded only when the server says it changed). The coordinator cuts the file
into chunks without parsing it (filefmt.plan); each chunk is read on a parse process (filefmt.read), a
malformed record being that record's failure."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any, ClassVar

from etl.config.checker import Checker, expand
from etl.config.model import Config
from etl.errors import FileSourceError
from etl.items import Parsed, Request
from etl.sources.base import Reader, Source
from etl.sources.records import shape

log = logging.getLogger("etl.sources.files")

_OPTIONS = {"delimiter", "quotechar", "encoding", "header", "names", "empty_as_none", "max_record_bytes"}
_KEYS = {"path", "format", "chunk_bytes", "columns", "cache_dir"} | _OPTIONS
DEFAULT_CHUNK_BYTES = 4 << 20  # a chunk is one parse process's turn: small enough to spread a file over all


@dataclasses.dataclass(frozen=True)
class FilesSettings:
    path: str  # a local path or an http(s) URL
    format: str | None  # None: from the extension
    chunk_bytes: int
    columns: dict[str, str] | None  # row field → file column (None: every column as named)
    options: dict[str, Any]  # filefmt.FileOptions
    cache_dir: str | None


def _cache_dir(configured: str | None) -> Path:
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "etl-crawl" / "files"


class FilesSource(Source):
    name: ClassVar[str] = "files"
    keys: ClassVar[frozenset[str]] = frozenset({"files"})
    fetches: ClassVar[bool] = False
    unit: ClassVar[str] = "file chunks"

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self.local: str | None = None

    @classmethod
    def check(cls, source, raw, ck: Checker, variables) -> tuple[FilesSettings, tuple[str, ...]]:
        from etl.sources.filefmt import FileOptions, check_encoding

        where = "[source.files]"
        s = ck.table(source.get("files"), where, _KEYS, {"path"})
        path = expand(ck.typed(s, "path", where, str), variables, f"{where}.path", ck)
        cols = s.get("columns")
        if cols is not None:
            cols = ck.table(cols, f"{where}.columns", set(cols) if isinstance(cols, dict) else set())
            if not all(isinstance(v, str) for v in cols.values()):
                raise ck.fail(f"{where}.columns", "expected { field = \"file column\" } names")
        options = {("columns" if k == "names" else k): v for k, v in s.items() if k in _OPTIONS}
        try:
            opts = FileOptions.from_mapping(options)
            check_encoding(opts.encoding, opts.quotechar)
        except (FileSourceError, TypeError, ValueError) as exc:
            raise ck.fail(where, str(exc)) from None
        chunk = ck.typed(s, "chunk_bytes", where, int, DEFAULT_CHUNK_BYTES)
        if chunk < 1:
            raise ck.fail(f"{where}.chunk_bytes", "must be at least 1")
        fmt = ck.typed(s, "format", where, str)
        return FilesSettings(path=path, format=fmt, chunk_bytes=chunk, columns=dict(cols) if cols else None,
                             options=options, cache_dir=ck.typed(s, "cache_dir", where, str)), ()

    @classmethod
    def validate(cls, cfg: Config, ck: Checker) -> None:
        if cfg.transform.type == "none":
            raise ck.fail("[transform]", "a files source needs a transform (stock_mentions or plugin)")
        cls.check_text_fields(cfg, ck, set(cfg.source.columns) if cfg.source.columns else None)

    def prepare(self) -> None:
        """A URL is downloaded (or found unchanged) before the run; a missing file is a clear error."""
        from etl.db import DatabaseError
        from etl.sources.filefetch import download

        src = self.cfg.source
        try:
            if src.path.startswith(("http://", "https://")):
                fetch = self.cfg.fetch
                self.local = str(download(src.path, _cache_dir(src.cache_dir), max_bytes=1 << 40,
                                          timeout=max(fetch.connect_timeout, fetch.read_timeout),
                                          user_agent=fetch.user_agent))
            else:
                self.local = src.path
                if not Path(src.path).is_file():
                    raise FileSourceError(f"{src.path}: no such file")
        except FileSourceError as exc:
            raise DatabaseError(f"[source.files] {exc}") from None  # exit 2: nothing was written

    def plan(self, engine: Any) -> list[Request]:
        from etl.sources.filefmt import FileOptions, plan

        src = self.cfg.source
        options = FileOptions.from_mapping({**src.options, "cache_dir": src.cache_dir})
        chunks = plan(self.local, src.format, chunk_bytes=src.chunk_bytes, options=options)
        return [Request(f"file:{c.path}#{c.start}", "chunk", dataclasses.asdict(c)) for c in chunks]

    def reader(self, domains: tuple[str, ...]) -> Reader:
        return _ChunkReader(self.cfg.source.columns)


class _ChunkReader:
    def __init__(self, columns: dict[str, str] | None) -> None:
        self.columns = columns

    def read(self, unit: Request) -> Parsed:
        from etl.sources.filefmt import FileChunk, read

        meta = dict(unit.meta)
        meta["columns"] = tuple(meta.get("columns") or ())
        result = Parsed(unit)
        try:
            for rec in read(FileChunk(**meta)):
                if rec.error is not None:
                    result.item_errors.append(f"record {rec.record:,}: {rec.error}")
                else:
                    shape(rec.row, self.columns, result, f"record {rec.record:,}")
        except FileSourceError as exc:  # the file changed or vanished since the plan
            result.error = f"read error: {exc}"
        return result
