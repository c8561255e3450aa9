"""Rebuild ``data/a_shares.csv`` and ``data/PROVENANCE.md`` from a real source.

The dictionary is data, never typed by hand, so it must be reproducible:

* ``source="adata"`` (default, tested): ``python -m pip download adata --no-deps``
  into a temp dir and extract ``adata/stock/cache/code.csv`` from the wheel
  (a snapshot the adata maintainers ship; its as-of date is the file's mtime
  inside the wheel).
* ``source="exchanges"`` (needs network to sse.com.cn / szse.cn / bse.cn; NOT
  exercised by the test suite, only by hand): the exchanges' own list endpoints,
  the same ones their "stock list" web pages call. Listed stocks only, so
  delisted names disappear from the dictionary.

Both write the same CSV columns ``code,name,exchange,listed_date`` sorted by code.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import tempfile
import zipfile
from collections import Counter
from collections.abc import Iterable
from datetime import date, datetime
from pathlib import Path

from etl.stocks.dictionary import DEFAULT_CSV, board_of, exchange_of

ADATA_MEMBER = "adata/stock/cache/code.csv"
TIMEOUT = 30
_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"

SSE_URL = "https://query.sse.com.cn/sseQuery/commonQuery.do"
SZSE_URL = "https://www.szse.cn/api/report/ShowReport/data"
BSE_URL = "https://www.bse.cn/nqxxController/nqxxCnzq.do"

Row = tuple[str, str, str, str]  # code, name, exchange, listed_date (ISO or "")


class RefreshError(RuntimeError):
    """The source could not be reached or returned something unexpected."""


def _iso(value: object) -> str:
    text = str(value or "").strip()
    if not text or text in {"-", "--", "nan", "None"}:
        return ""
    for fmt in ("%Y-%m-%d", "%Y%m%d", "%Y/%m/%d"):
        try:
            return datetime.strptime(text[:10], fmt).date().isoformat()
        except ValueError:
            continue
    return ""


def rows_from_adata_csv(text: str) -> list[Row]:
    """Parse adata's code.csv (columns stock_code, short_name, list_date[2], [exchange])."""
    rows: list[Row] = []
    for rec in csv.DictReader(io.StringIO(text)):
        code = (rec.get("stock_code") or "").strip().zfill(6)
        name = (rec.get("short_name") or "").strip()
        if not code.isdigit() or len(code) != 6 or not name:
            continue
        listed = _iso(rec.get("list_date") or rec.get("list_date2"))
        exch = (rec.get("exchange") or "").strip().upper() or exchange_of(code)
        rows.append((code, name, exch, listed))
    return rows


def _download_adata(workdir: Path) -> tuple[Path, str]:
    cmd = [sys.executable, "-m", "pip", "download", "adata", "--no-deps", "-d", str(workdir), "-q"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    wheels = sorted(workdir.glob("adata-*.whl"))
    if proc.returncode != 0 or not wheels:
        raise RefreshError(f"pip download adata failed (offline?): {proc.stderr.strip()[-500:]}")
    wheel = wheels[-1]
    version = wheel.name.split("-")[1]
    return wheel, version


def read_adata_wheel(wheel: Path) -> tuple[list[Row], str]:
    """Rows plus the as-of date (mtime of code.csv inside the wheel)."""
    with zipfile.ZipFile(wheel) as zf:
        info = zf.getinfo(ADATA_MEMBER)
        text = zf.read(info).decode("utf-8-sig")
    as_of = date(*info.date_time[:3]).isoformat()
    return rows_from_adata_csv(text), as_of


def _session():  # noqa: ANN202 - requests is imported lazily (only this source needs it)
    import requests

    s = requests.Session()
    s.headers["User-Agent"] = _UA
    return s


def _get_json(session, method: str, url: str, **kw) -> object:  # noqa: ANN001
    import requests

    try:
        resp = session.request(method, url, timeout=TIMEOUT, **kw)
        resp.raise_for_status()
    except requests.RequestException as exc:
        raise RefreshError(f"cannot fetch {url}: {exc} (is the machine online?)") from exc
    text = resp.text.strip()
    if not text.startswith(("[", "{")):  # BSE wraps JSON as null([...])
        start = text.find("[")
        text = text[start : text.rfind("]") + 1] if start >= 0 else text
    try:
        return json.loads(text)
    except ValueError as exc:
        raise RefreshError(f"{url} did not return JSON: {text[:200]!r}") from exc


def _fetch_sse(session) -> list[Row]:  # noqa: ANN001
    rows: list[Row] = []
    # STOCK_TYPE: 1 = main-board A, 8 = STAR market, 2 = B shares.
    for stock_type, code_key in (("1", "A_STOCK_CODE"), ("8", "A_STOCK_CODE"), ("2", "B_STOCK_CODE")):
        params = {
            "STOCK_TYPE": stock_type,
            "REG_PROVINCE": "",
            "CSRC_CODE": "",
            "STOCK_CODE": "",
            "sqlId": "COMMON_SSE_CP_GPJCTPZ_GPLB_GP_L",
            "COMPANY_STATUS": "2,4,5,7,8",
            "type": "inParams",
            "isPagination": "true",
            "pageHelp.cacheSize": "1",
            "pageHelp.beginPage": "1",
            "pageHelp.pageSize": "10000",
            "pageHelp.pageNo": "1",
            "pageHelp.endPage": "1",
        }
        data = _get_json(
            session, "GET", SSE_URL, params=params, headers={"Referer": "https://www.sse.com.cn/"}
        )
        result = data.get("result") if isinstance(data, dict) else None
        if not isinstance(result, list):
            raise RefreshError(f"SSE answered without a result list for STOCK_TYPE={stock_type}")
        for rec in result:
            code = str(rec.get(code_key) or "").strip()
            name = str(rec.get("SEC_NAME_CN") or rec.get("COMPANY_ABBR") or "").strip()
            if len(code) == 6 and code.isdigit() and name:
                rows.append((code, name, "SH", _iso(rec.get("LIST_DATE"))))
    return rows


def _strip_tags(text: str) -> str:
    import re

    return re.sub(r"<[^>]+>", "", text).strip()


def _fetch_szse(session) -> list[Row]:  # noqa: ANN001
    rows: list[Row] = []
    for tab, prefix in (("tab1", "ag"), ("tab2", "bg")):  # A shares, B shares
        page, pages = 1, 1
        while page <= pages:
            params = {"SHOWTYPE": "JSON", "CATALOGID": "1110", "TABKEY": tab, "PAGENO": str(page)}
            data = _get_json(session, "GET", SZSE_URL, params=params)
            if not isinstance(data, list) or not data:
                raise RefreshError(f"SZSE answered unexpectedly for {tab} page {page}")
            block = data[0]
            pages = int(block.get("metadata", {}).get("pagecount", 1))
            for rec in block.get("data", []):
                code = _strip_tags(str(rec.get(f"{prefix}dm", "")))
                name = _strip_tags(str(rec.get(f"{prefix}jc", "")))
                if len(code) == 6 and code.isdigit() and name:
                    rows.append((code, name, "SZ", _iso(rec.get(f"{prefix}ssrq"))))
            page += 1
    return rows


def _fetch_bse(session) -> list[Row]:  # noqa: ANN001
    rows: list[Row] = []
    page, pages = 0, 1
    while page < pages:
        payload = {
            "page": str(page),
            "typejb": "T",
            "xxfcbj[]": "2",
            "xxzqdm": "",
            "sortfield": "xxzqdm",
            "sorttype": "asc",
        }
        data = _get_json(session, "POST", BSE_URL, data=payload)
        if not isinstance(data, list) or not data:
            raise RefreshError(f"BSE answered unexpectedly for page {page}")
        block = data[0]
        pages = int(block.get("totalPages", 1))
        for rec in block.get("content", []):
            code = str(rec.get("xxzqdm") or "").strip()
            name = str(rec.get("xxzqjc") or "").strip()
            if len(code) == 6 and code.isdigit() and name:
                rows.append((code, name, "BJ", _iso(rec.get("fxssrq"))))
        page += 1
    return rows


def fetch_exchanges() -> list[Row]:
    """Official lists from SSE, SZSE and BSE (listed stocks only)."""
    session = _session()
    rows = _fetch_sse(session) + _fetch_szse(session) + _fetch_bse(session)
    if len(rows) < 4000:
        raise RefreshError(f"exchanges returned only {len(rows)} rows; refusing to overwrite")
    return rows


def write_csv(rows: Iterable[Row], out: Path) -> list[Row]:
    """Dedupe by code (first wins), sort, write; returns what was written."""
    seen: dict[str, Row] = {}
    for row in rows:
        seen.setdefault(row[0], row)
    ordered = [seen[c] for c in sorted(seen)]
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["code", "name", "exchange", "listed_date"])
        writer.writerows(ordered)
    return ordered


EXPECTED_PREFIXES = (
    "600",
    "601",
    "603",
    "605",
    "688",
    "000",
    "001",
    "002",
    "003",
    "300",
    "301",
    "8",
    "4",
    "920",
)


def _coverage_notes(rows: list[Row]) -> list[str]:
    codes = [r[0] for r in rows]
    notes = []
    for prefix in EXPECTED_PREFIXES:
        n = sum(1 for c in codes if c.startswith(prefix))
        notes.append(f"- `{prefix}`: {n} rows" + ("" if n else " (MISSING in this source)"))
    if not any(c.startswith("920") for c in codes):
        notes.append(
            "- No BSE `920xxx` codes: the BSE only began moving listings to 920 codes in 2024, "
            "after this snapshot; Beijing stocks here carry their 43x/83x/87x codes."
        )
    return notes


def provenance_text(rows: list[Row], source: str, detail: str, as_of: str) -> str:
    """PROVENANCE.md body: where the rows came from and what they contain."""
    by_exch = Counter(r[2] for r in rows)
    by_board = Counter(board_of(r[0]) for r in rows)
    by_prefix = Counter(r[0][:3] for r in rows)
    no_date = sum(1 for r in rows if not r[3])
    lines = [
        "# a_shares.csv provenance",
        "",
        f"- Source: {source}",
        f"- {detail}",
        f"- Data as of: {as_of}",
        f"- Rebuilt: {date.today().isoformat()} with `etl stocks refresh --source {source.split()[0]}`",
        f"- Rows: {len(rows)} ({no_date} without a listing date: mostly delisted or B shares)",
        "- Columns: code, name (exchange short name, verbatim incl. padding spaces and",
        "  full-width letters), exchange (SH/SZ/BJ, derived from the code prefix when the",
        "  source has none), listed_date (ISO, empty when unknown). Sorted by code.",
        "- No row was added, removed or edited by hand.",
        "",
        "## Rows per exchange",
        "",
        "| exchange | rows |",
        "| --- | --- |",
        *(f"| {k} | {v} |" for k, v in sorted(by_exch.items())),
        "",
        "## Rows per board",
        "",
        "| board | rows |",
        "| --- | --- |",
        *(f"| {k} | {v} |" for k, v in sorted(by_board.items())),
        "",
        "## Rows per code prefix",
        "",
        ", ".join(f"{k}: {v}" for k, v in sorted(by_prefix.items())),
        "",
        "## Coverage check",
        "",
        *_coverage_notes(rows),
        "",
        "## Rebuild",
        "",
        "```",
        "etl stocks refresh                      # latest adata wheel from PyPI (default)",
        "etl stocks refresh --source exchanges   # official SSE/SZSE/BSE lists (online)",
        "```",
        "",
        "which calls `etl.stocks.refresh.refresh(source)`.",
        "",
    ]
    return "\n".join(lines)


def refresh(source: str = "adata", out: Path | None = None) -> int:
    """Rebuild the CSV (and PROVENANCE.md beside it); returns the row count."""
    out = out or DEFAULT_CSV
    if source == "adata":
        with tempfile.TemporaryDirectory() as tmp:
            wheel, _ = _download_adata(Path(tmp))
            return refresh_from_wheel(wheel, out)
    if source != "exchanges":
        raise ValueError(f"unknown source {source!r}; use 'adata' or 'exchanges'")
    rows = fetch_exchanges()
    label = "exchanges (official lists of SSE, SZSE, BSE)"
    detail = f"Endpoints: {SSE_URL}, {SZSE_URL} (CATALOGID=1110), {BSE_URL}"
    return _write(rows, out, label, detail, date.today().isoformat())


def refresh_from_wheel(wheel: Path, out: Path | None = None) -> int:
    """Same as ``refresh("adata")`` but from an already downloaded adata wheel."""
    rows, as_of = read_adata_wheel(wheel)
    version = wheel.name.split("-")[1]
    label = f"adata {version} (PyPI package `adata`, wheel `{wheel.name}`)"
    detail = f"File inside the wheel: `{ADATA_MEMBER}` (columns stock_code, short_name, list_date2)"
    return _write(rows, out or DEFAULT_CSV, label, detail, as_of)


def _write(rows: list[Row], out: Path, source: str, detail: str, as_of: str) -> int:
    if len(rows) < 4000:
        raise RefreshError(f"{source} gave only {len(rows)} rows; refusing to overwrite {out}")
    written = write_csv(rows, out)
    text = provenance_text(written, source, detail, as_of)
    (out.parent / "PROVENANCE.md").write_text(text, encoding="utf-8")
    return len(written)
