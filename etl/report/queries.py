"""What the report shows, read from the database with SQLAlchemy Core on reflected tables.

Counts and averages are SQL aggregates (the same on SQLite, PostgreSQL and MySQL); medians, histogram
bins and price changes are computed here in Python from plain ordered reads, because the three databases
share no median function. Tables and columns other parts of the tool add later (`listing_history`,
`listings.delisted_at`, the per-run counts in `runs`) are looked up, never assumed: a database from an
older version gets a report without those charts, not an error.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Column, Engine, MetaData, Table, false, func, inspect, select
from sqlalchemy.sql.elements import ColumnElement

NO_DISTRICT = "(no district)"
RUN_COUNTS = ("new", "changed", "unchanged", "delisted", "relisted")  # runs.rows_<kind>, when present
TOP_STOCKS = 20
SENTIMENT_STOCKS = 5  # the daily-sentiment chart follows the most-mentioned few
MAX_BINS = 40


@dataclass(frozen=True)
class District:
    district: str
    listings: int
    median_unit_price: float | None


@dataclass(frozen=True)
class Bin:
    lo: int
    hi: int
    listings: int


@dataclass(frozen=True)
class Histogram:
    bins: list[Bin]
    below: int  # listings under the first bin (outliers kept out of the chart's range, but counted)
    above: int


@dataclass(frozen=True)
class ChangeDay:
    day: date
    cuts: int
    raises: int
    median_change_pct: float


@dataclass(frozen=True)
class History:
    versions: int
    listings: int
    days: list[ChangeDay]


@dataclass(frozen=True)
class RunCount:
    run_id: int
    started: str
    counts: dict[str, int]


@dataclass(frozen=True)
class Stock:
    code: str
    name: str
    articles: int
    mentions: int
    avg_score: float | None


@dataclass(frozen=True)
class Sentiment:
    code: str
    name: str
    day: date
    articles: int
    avg_score: float | None


@dataclass
class Tables:
    """The tables this database has, reflected once."""

    engine: Engine
    meta: MetaData = field(default_factory=MetaData)

    def get(self, name: str) -> Table | None:
        if name in self.meta.tables:
            return self.meta.tables[name]
        if not inspect(self.engine).has_table(name):
            return None
        return Table(name, self.meta, autoload_with=self.engine)


def _in_job(col: Column, t: Tables, job: str | None) -> ColumnElement[bool]:
    runs = t.get("runs")
    if job is None or runs is None:
        return col.isnot(None) if job is None else false()
    return col.in_(select(runs.c.id).where(runs.c.job == job))


def _current(listings: Table, t: Tables, job: str | None) -> list[ColumnElement[bool]]:
    """Listings still on the market: in the job, and not delisted (when the table tracks that)."""
    where = [_in_job(listings.c.run_id, t, job)]
    if "delisted_at" in listings.c:
        where.append(listings.c.delisted_at.is_(None))
    return where


def districts(t: Tables, job: str | None) -> tuple[list[District], list[int]]:
    """Per district: listings (SQL count) and the median unit price; also every unit price, sorted."""
    ls = t.get("listings")
    where = _current(ls, t, job)
    prices: dict[Any, list[int]] = defaultdict(list)
    with t.engine.connect() as conn:
        counts = {d: int(n) for d, n in conn.execute(
            select(ls.c.district, func.count()).where(*where).group_by(ls.c.district))}
        query = select(ls.c.district, ls.c.unit_price).where(*where, ls.c.unit_price.isnot(None))
        for district, price in conn.execution_options(stream_results=True).execute(query):
            prices[district].append(int(price))
    rows = [District(NO_DISTRICT if d is None else str(d), n,
                     float(statistics.median(prices[d])) if prices.get(d) else None)
            for d, n in counts.items()]
    rows.sort(key=lambda r: (-r.listings, r.district))
    return rows, sorted(p for ps in prices.values() for p in ps)


def _nice_width(span: float) -> int:
    """The 1-2-5 step giving at most MAX_BINS bins over `span`."""
    raw = max(span / MAX_BINS, 1.0)
    power = 10 ** math.floor(math.log10(raw))
    return int(next(m * power for m in (1, 2, 5, 10) if m * power >= raw))


def histogram(prices: list[int]) -> Histogram:
    """Bins over the whole range of the (sorted) prices, or over their middle 99% when a few outliers
    stretch the range past three times that: one absurd value from a bad page must not squash every other
    bar into one. What falls outside is counted and said."""
    if not prices:
        return Histogram([], 0, 0)
    lo_q, hi_q = prices[0], prices[-1]
    mid_lo, mid_hi = prices[int(0.005 * (len(prices) - 1))], prices[math.ceil(0.995 * (len(prices) - 1))]
    if hi_q - lo_q > 3 * (mid_hi - mid_lo):
        lo_q, hi_q = mid_lo, mid_hi
    width = _nice_width(hi_q - lo_q)
    start, end = (lo_q // width) * width, (hi_q // width + 1) * width
    counts = [0] * ((end - start) // width)
    below = above = 0
    for p in prices:
        if p < start:
            below += 1
        elif p >= end:
            above += 1
        else:
            counts[(p - start) // width] += 1
    bins = [Bin(start + i * width, start + (i + 1) * width, n) for i, n in enumerate(counts)]
    return Histogram(bins, below, above)


def _day(value: Any) -> date | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.date() if isinstance(value, datetime) else value


def _price(row: Any) -> Decimal | None:
    value = row.total_price if row.total_price is not None else row.unit_price
    return None if value is None else Decimal(str(value))


def history(t: Tables, job: str | None) -> History | None:
    """Price changes per day from `listing_history` (None when the database has no such table): a change
    is a version whose price differs from the same listing's previous version, dated by its valid_from."""
    h = t.get("listing_history")
    if h is None:
        return None
    query = (select(h.c.source, h.c.listing_id, h.c.total_price, h.c.unit_price, h.c.valid_from)
             .where(_in_job(h.c.run_id, t, job)).order_by(h.c.source, h.c.listing_id, h.c.valid_from))
    moves: dict[date, list[float]] = defaultdict(list)
    versions, keys, prev_key, prev = 0, 0, None, None
    with t.engine.connect() as conn:
        for row in conn.execution_options(stream_results=True).execute(query):
            versions += 1
            key, price = (row.source, row.listing_id), _price(row)
            if key != prev_key:
                keys, prev_key = keys + 1, key
            elif prev and price is not None and price != prev and (day := _day(row.valid_from)):
                moves[day].append(float((price - prev) / prev * 100))
            prev = price
    days = [ChangeDay(d, sum(m < 0 for m in ms), sum(m > 0 for m in ms), round(statistics.median(ms), 4))
            for d, ms in sorted(moves.items())]
    return History(versions, keys, days)


def run_counts(t: Tables, job: str | None) -> tuple[list[str], list[RunCount]]:
    """Per run: the new/changed/delisted… columns `runs` has (none on an older schema), for the runs of
    the job, or of every job that wrote listings."""
    runs, ls = t.get("runs"), t.get("listings")
    kinds = [k for k in RUN_COUNTS if runs is not None and f"rows_{k}" in runs.c]
    if not kinds:
        return [], []
    if job is not None:
        scope = runs.c.job == job
    else:
        scope = runs.c.job.in_(select(runs.c.job).where(runs.c.id.in_(select(ls.c.run_id).distinct())))
    query = select(runs.c.id, runs.c.started_at, *(runs.c[f"rows_{k}"].label(k) for k in kinds)).where(scope) \
        .order_by(runs.c.id)
    out = []
    with t.engine.connect() as conn:
        for row in conn.execute(query):
            values = {k: row._mapping[k] for k in kinds}
            if all(v is None for v in values.values()):
                continue  # a run from before the counts existed
            out.append(RunCount(row.id, str(row.started_at)[:16], {k: int(v or 0) for k, v in values.items()}))
    return kinds, out


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def stocks(t: Tables, job: str | None) -> list[Stock]:
    """The most-mentioned stocks: articles naming each, its mentions and the articles' mean sentiment."""
    m = t.get("stock_mentions")
    where = [] if job is None else [m.c.source == job]
    articles = func.count()
    query = (select(m.c.stock_code, func.max(m.c.stock_name), articles, func.sum(m.c.mention_count),
                    func.avg(m.c.score)).where(*where).group_by(m.c.stock_code)
             .order_by(articles.desc(), m.c.stock_code).limit(TOP_STOCKS))
    with t.engine.connect() as conn:
        return [Stock(c, n, int(a), int(s or 0), _float(avg)) for c, n, a, s, avg in conn.execute(query)]


def sentiment(t: Tables, job: str | None, top: list[Stock]) -> list[Sentiment]:
    """Daily article count and mean sentiment of the first SENTIMENT_STOCKS of `top`."""
    m = t.get("stock_mentions")
    names = {s.code: s.name for s in top[:SENTIMENT_STOCKS]}
    if not names:
        return []
    where = [m.c.stock_code.in_(names), m.c.news_date.isnot(None)] + ([] if job is None else [m.c.source == job])
    query = (select(m.c.stock_code, m.c.news_date, func.count(), func.avg(m.c.score)).where(*where)
             .group_by(m.c.stock_code, m.c.news_date).order_by(m.c.stock_code, m.c.news_date))
    with t.engine.connect() as conn:
        points = [Sentiment(c, names[c], _day(d), int(n), _float(avg)) for c, d, n, avg in conn.execute(query)]
    rank = {code: i for i, code in enumerate(names)}
    return sorted(points, key=lambda p: (rank[p.code], p.day))  # the most-mentioned first


def totals(t: Tables, job: str | None) -> tuple[int, int]:
    """Current listings and stock mentions in scope: which sections the report has."""
    ls, m = t.get("listings"), t.get("stock_mentions")
    with t.engine.connect() as conn:
        n_listings = 0 if ls is None else conn.execute(
            select(func.count()).select_from(ls).where(*_current(ls, t, job))).scalar()
        n_mentions = 0 if m is None else conn.execute(select(func.count()).select_from(m).where(
            *([] if job is None else [m.c.source == job]))).scalar()
    return int(n_listings or 0), int(n_mentions or 0)


def jobs(t: Tables) -> list[str]:
    runs = t.get("runs")
    if runs is None:
        return []
    with t.engine.connect() as conn:
        return [j for (j,) in conn.execute(select(runs.c.job).distinct().order_by(runs.c.job))]
