"""Local plain copies for the files source: an http(s) file downloaded (streamed to disk, complete or not at
all, not fetched again while the server says it is unchanged), and a .gz unpacked once, since chunks need a
file they can seek in.

requests is imported inside download() so that importing this module (or filefmt) in a worker stays cheap.
The body is stored exactly as sent (``Accept-Encoding: gzip`` and no decoding): its length can then be
checked against Content-Length to the byte, and a gzip-encoded body is a .gz that filefmt.plan() unpacks
by its magic bytes, with gzip's own trailer catching a cut-off stream.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import tempfile
import zlib
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from etl.errors import FileSourceError, one_line

if TYPE_CHECKING:
    import requests

BLOCK = 1 << 20


def cache_name(url: str) -> str:
    """File name for a URL's copy: the URL's own last segment (so its extension still names the format),
    after a hash of the whole URL (so two URLs ending in data.csv do not share a copy)."""
    base = PurePosixPath(unquote(urlsplit(url).path)).name or "download"
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base)[-80:]
    return f"{hashlib.sha256(url.encode()).hexdigest()[:12]}-{base}"


def download(url: str, dest_dir: str | os.PathLike[str], *, max_bytes: int, timeout: float, user_agent: str,
             session: requests.Session | None = None) -> Path:
    """Path of a complete local copy of url in dest_dir, downloaded only if the server has a newer one.

    timeout is per connect and per read (a steady slow body is allowed, a stalled one is not). The copy is
    written to a temporary file and renamed when complete; a body over max_bytes, a cut-off one or an HTTP
    error raises FileSourceError and leaves the previous copy (if any) as it was."""
    import requests
    import urllib3

    if urlsplit(url).scheme not in ("http", "https"):
        raise FileSourceError(f"not an http(s) URL: {url}")
    folder = Path(dest_dir)
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / cache_name(url)
    sidecar = dest.with_name(dest.name + ".meta.json")
    meta = _cached_meta(sidecar, dest, url)
    headers = {"User-Agent": user_agent, "Accept-Encoding": "gzip"}
    if meta.get("etag"):
        headers["If-None-Match"] = meta["etag"]
    if meta.get("last_modified"):
        headers["If-Modified-Since"] = meta["last_modified"]
    http = session or requests.Session()
    try:
        with http.get(url, headers=headers, stream=True, timeout=timeout) as resp:
            if resp.status_code == 304 and meta:
                return dest
            if resp.status_code != 200:
                raise FileSourceError(f"HTTP {resp.status_code} for {url}")
            _save(resp, dest, sidecar, url, max_bytes)
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        raise FileSourceError(f"downloading {url} failed: {one_line(exc)}") from None
    finally:
        if session is None:
            http.close()
    return dest


def _cached_meta(sidecar: Path, dest: Path, url: str) -> dict[str, Any]:
    """The validators of our copy, or {} when there is no copy they can vouch for (so no conditional GET)."""
    try:
        meta = json.loads(sidecar.read_text())
        if meta.get("url") == url and dest.stat().st_size == meta.get("size"):
            return meta
    except (OSError, ValueError, AttributeError):
        pass
    return {}


def _save(resp: requests.Response, dest: Path, sidecar: Path, url: str, max_bytes: int) -> None:
    coding = resp.headers.get("Content-Encoding", "identity").strip().lower()
    if coding not in ("", "identity", "gzip"):
        raise FileSourceError(f"{url}: the server sent Content-Encoding {coding}, which cannot be unpacked")
    length = resp.headers.get("Content-Length", "")
    expected = int(length) if length.isdigit() else None
    if expected is not None and expected > max_bytes:
        raise FileSourceError(f"{url} is {expected:,} bytes, over max_bytes ({max_bytes:,})")
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        total = 0
        with os.fdopen(fd, "wb") as out:
            while block := resp.raw.read(BLOCK, decode_content=False):
                total += len(block)
                if total > max_bytes:
                    raise FileSourceError(f"{url} is over max_bytes ({max_bytes:,}): download stopped")
                out.write(block)
        if expected is not None and total != expected:
            raise FileSourceError(f"{url}: the connection closed after {total:,} of {expected:,} bytes")
        sidecar.unlink(missing_ok=True)  # never a sidecar vouching for a copy it does not describe
        os.replace(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)
    meta = {"url": url, "etag": resp.headers.get("ETag"), "last_modified": resp.headers.get("Last-Modified"),
            "size": total}
    tmp_meta = sidecar.with_name(sidecar.name + ".part")
    tmp_meta.write_text(json.dumps(meta))
    os.replace(tmp_meta, sidecar)


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def unpack_gzip(src: Path, cache: Path, max_bytes: int) -> Path:
    """The plain copy of a .gz in cache, made once (atomically) and reused while the .gz keeps its size and
    mtime; refused past max_bytes so a gzip bomb cannot fill the disk."""
    dest, stamp = cache / f"{src.name}.unpacked", cache / f"{src.name}.unpacked.json"
    st = src.stat()
    key = {"source": str(src), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    try:  # the copy's own size is in the stamp too, so a copy cut short or replaced is not trusted
        if json.loads(stamp.read_text()) == {**key, "unpacked_size": dest.stat().st_size}:
            return dest
    except (OSError, ValueError):
        pass
    tmp = None
    try:
        stamp.unlink(missing_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache, prefix=f".{src.name}.", suffix=".part")
        with os.fdopen(fd, "wb") as out, gzip.open(src, "rb") as gz:
            total = 0
            while block := gz.read(BLOCK):
                total += len(block)
                if total > max_bytes:
                    raise FileSourceError(f"{src.name} unpacks to over {max_bytes:,} bytes (max_unpacked_bytes)")
                out.write(block)
        os.replace(tmp, dest)
        stamp.write_text(json.dumps({**key, "unpacked_size": total}))
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError; a cut-off .gz an EOFError
        raise FileSourceError(f"cannot unpack {src.name} into {cache}: {one_line(exc)}") from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    return dest
