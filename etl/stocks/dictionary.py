"""A-share stock dictionary: load the shipped CSV and derive name aliases.

The data file ``data/a_shares.csv`` (code,name,exchange,listed_date) is extracted
from the ``adata`` package (see ``data/PROVENANCE.md``; rebuild with
``etl stocks refresh``). Names there are exchange "short names" as the exchanges
publish them, e.g. ``万  科Ａ`` (padded with spaces, full-width A) or ``*ST正邦``.
News prose writes them differently, so each stock gets *aliases* derived by rule:

1. ``canonical(name)``: NFKC, all whitespace removed, ASCII upper-cased
   (``万  科Ａ`` -> ``万科A``). Always an alias.
2. Risk-warning prefixes ``ST *ST S*ST SST S PT XD``: the prefixed form is kept,
   the ST/*ST sibling is added (a stock flips between them often, e.g.
   ``ST生态``/``*ST生态``), and the bare base (``*ST正邦`` -> ``正邦``) is added only
   when it has >= 3 characters: 2-character bases are mostly ordinary words
   (生态 海洋 中期 环保 数码 商城 ... measured against jieba's dictionary).
3. A-share suffix ``XXA`` -> ``XX`` (``万科A`` -> ``万科``): prose drops the A.
   B shares (``XXB``/``XXB股``) only get ``XXB``/``XXB股`` forms, never the bare
   base: ``长安B`` -> ``长安``, ``一致B`` -> ``一致``, ``大众B股`` -> ``大众`` would be
   common words or name the *A*-share company.
4. A trailing note in brackets is dropped: ``百联股份(已合并)`` -> ``百联股份``.

5. Former names (``data/former_names.csv``: code, former_name, now) are aliases of the code that
   carries the company today: ``正邦科技`` -> 002157, ``中环股份`` -> 002129. They rank below every
   alias derived from a current or delisted short name, so a former name that is now another stock's
   name stays that stock's. The shipped list is a short hand-kept one of well-known renames (see
   ``data/PROVENANCE.md``); a user adds their own in a CSV of the same columns named by the environment
   variable ``ETL_STOCK_ALIASES`` (read by every process that loads the dictionary).

Delisted codes keep their aliases (old news still names them) and are marked ``delisted``: a short name
ending in ``退`` (the delisting-arrangement period), or an A share without a listing date (in the shipped
data those are exactly the delisted and merged-away ones: 美的电器, 中国北车, PT金田A ...). A B share
without a date is not marked: the source leaves some listed B shares undated too.

Conflicts (one alias, several codes) are resolved deterministically in
:func:`load_stocks`: an exact canonical name beats a prefixed variant, which
beats a derived base; ties go to the stock with a listing date, then to the
board ranked SH/SZ A share (codes 6/0/3) > Beijing (4/8/92) > B share (9/2),
then the later listing date, then the lower code. The loser simply does not get
that alias (e.g. ``白云山`` is 600332, not the delisted ``白云山A`` 000522;
``泰祥股份`` is 301192, not its former Beijing code 833874).
"""

from __future__ import annotations

import csv
import os
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

DATA_DIR = Path(__file__).parent / "data"
DEFAULT_CSV = DATA_DIR / "a_shares.csv"
FORMER_NAMES_CSV = DATA_DIR / "former_names.csv"
ALIASES_ENV = "ETL_STOCK_ALIASES"

_WS_RE = re.compile(r"\s+")
_PREFIX_RE = re.compile(r"^(S\*ST|\*ST|SST|ST|PT|XD|XR|DR|S)(?=[^A-Z0-9*])")
_ST_FAMILY = ("S*ST", "*ST", "SST", "ST")
_NOTE_RE = re.compile(r"\([^)]*\)$")

# Alias ranks: lower wins a conflict between two codes.
_EXACT, _PREFIXED, _DERIVED, _FORMER = 0, 1, 2, 3


@dataclass(frozen=True, slots=True)
class Stock:
    """One listed (or formerly listed) A/B share; aliases are matching keys."""

    code: str
    name: str
    exchange: str
    listed_date: date | None
    aliases: tuple[str, ...]
    delisted: bool = False


def canonical(text: str) -> str:
    """NFKC + whitespace removed + ASCII upper-case: the form names are matched in."""
    return _WS_RE.sub("", unicodedata.normalize("NFKC", text)).upper()


def exchange_of(code: str) -> str:
    """Exchange from the code prefix (SSE 6/9xx, BSE 4/8/92x, SZSE 0/2/3)."""
    if code.startswith("92") or code[0] in "48":
        return "BJ"
    if code[0] in "69":
        return "SH"
    return "SZ"


def board_of(code: str) -> str:
    """Board label used in provenance counts."""
    p3 = code[:3]
    if p3 in {"600", "601", "603", "605"}:
        return "SH main"
    if p3 in {"688", "689"}:
        return "SH STAR"
    if p3 == "900":
        return "SH B"
    if p3 in {"000", "001", "003"}:
        return "SZ main"
    if p3 == "002":
        return "SZ main (ex-SME)"
    if p3 in {"300", "301"}:
        return "SZ ChiNext"
    if code[:2] == "20":
        return "SZ B"
    return "BJ"


def is_b_share(code: str) -> bool:
    """B shares: SSE 900xxx, SZSE 200xxx/201xxx (BSE's new 920xxx are A shares)."""
    return (code[:1] == "9" and not code.startswith("92")) or code[:1] == "2"


def _board_rank(code: str) -> int:
    if is_b_share(code):
        return 2
    return 1 if exchange_of(code) == "BJ" else 0


def derive_aliases(name: str, code: str) -> list[tuple[str, int]]:
    """All (alias, rank) pairs for one short name, before conflict resolution."""
    base = canonical(name)
    out: dict[str, int] = {base: _EXACT}

    def add(alias: str, rank: int) -> None:
        if alias and out.get(alias, 99) > rank:
            out[alias] = rank

    stripped = _NOTE_RE.sub("", base)
    if stripped != base:
        add(stripped, _DERIVED)
    b_share = is_b_share(code)
    m = _PREFIX_RE.match(stripped)
    core = stripped
    if m:
        core = stripped[m.end() :]
        if m.group(1) in _ST_FAMILY:
            add("ST" + core, _PREFIXED)
            add("*ST" + core, _PREFIXED)
        if len(core) >= 3:
            add(core, _DERIVED)
    if not b_share and core.endswith("A") and len(core) >= 3 and not core[-2].isascii():
        bare = core[:-1]
        if len(bare) >= 2:
            add(bare, _DERIVED)
            if m and m.group(1) in _ST_FAMILY:
                add("ST" + bare, _PREFIXED)
                add("*ST" + bare, _PREFIXED)
    if b_share and core.endswith("B股"):
        add(core[:-1], _DERIVED)
    elif b_share and core.endswith("B"):
        add(core + "股", _DERIVED)
    return list(out.items())


def _parse_date(text: str) -> date | None:
    text = text.strip()
    return date.fromisoformat(text) if text else None


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def is_delisted(name: str, code: str, listed: date | None) -> bool:
    """Rule in the module doc: a ``…退`` name, or an A share the source gives no listing date."""
    return canonical(name).endswith("退") or (listed is None and not is_b_share(code))


def former_name_rows() -> list[dict[str, str]]:
    """The shipped former names, then the user's (``ETL_STOCK_ALIASES``), as CSV rows."""
    rows = read_rows(FORMER_NAMES_CSV) if FORMER_NAMES_CSV.exists() else []
    extra = os.environ.get(ALIASES_ENV)
    if extra:
        rows += read_rows(Path(extra))
    return rows


def build_stocks(rows: Iterable[dict[str, str]], former: Iterable[dict[str, str]] = ()) -> list[Stock]:
    """Turn CSV rows into Stocks with conflict-free aliases (see module doc)."""
    rows = list(rows)
    best: dict[str, tuple[tuple, str]] = {}
    per_code: dict[str, list[str]] = {}
    for row in rows:
        code = row["code"].strip()
        listed = _parse_date(row.get("listed_date", ""))
        stock_key = (
            listed is None,
            _board_rank(code),
            -(listed.toordinal() if listed else 0),
            code,
        )
        aliases = derive_aliases(row["name"], code)
        per_code[code] = [a for a, _ in aliases]
        for alias, rank in aliases:
            key = (rank, *stock_key)
            if alias not in best or key < best[alias][0]:
                best[alias] = (key, code)
    for row in former:  # after every short name: a former name never takes a current one's place
        code, alias = (row.get("code") or "").strip(), canonical(row.get("former_name") or "")
        if code in per_code and alias and alias not in best:
            best[alias] = ((_FORMER,), code)
            per_code[code].append(alias)
    stocks = []
    for row in sorted(rows, key=lambda r: r["code"]):
        code = row["code"].strip()
        kept = tuple(a for a in per_code[code] if best[a][1] == code)
        listed = _parse_date(row.get("listed_date", ""))
        stocks.append(
            Stock(
                code=code,
                name=row["name"].strip(),
                exchange=row.get("exchange") or exchange_of(code),
                listed_date=listed,
                aliases=kept,
                delisted=is_delisted(row["name"], code, listed),
            )
        )
    return stocks


def load_stocks(path: Path | None = None) -> list[Stock]:
    """Load the dictionary (default: the CSV shipped in ``etl/stocks/data``) with its former names."""
    return build_stocks(read_rows(path or DEFAULT_CSV), former_name_rows())
