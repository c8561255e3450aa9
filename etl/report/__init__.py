"""`etl report`: one self-contained HTML page of charts over what a job wrote (etl/report/queries.py reads,
charts.py draws, page.py assembles). It only reads: it never migrates or writes the database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from etl.dialects.base import mask_url
from etl.report import charts
from etl.report import queries as q
from etl.report.page import Section, render


class NothingToReport(Exception):
    """The database (or the job) has no listings and no stock mentions; str() is one line for the user."""


@dataclass(frozen=True)
class Report:
    path: Path
    charts: int
    sections: list[str]


def listing_sections(t: q.Tables, job: str | None) -> list[Section]:
    rows, prices = q.districts(t, job)
    hist = q.histogram(prices)
    out = [Section("districts", "Listings and median unit price per district",
                   "Current listings (not delisted) per district, and the median of their unit prices.",
                   charts.district_chart(rows),
                   columns=[("district", "district"), ("listings", "listings"),
                            ("median_unit_price", "median unit price")],
                   rows=[vars(r) for r in rows])]
    outside = f" {hist.below:,} below and {hist.above:,} above the range shown." if hist.below or hist.above else ""
    out.append(Section("prices", "Distribution of unit prices",
                       f"{len(prices):,} listings with a unit price, in yuan per m².{outside}",
                       charts.histogram_chart(hist.bins) if hist.bins else None,
                       empty="" if hist.bins else "no listing has a unit price",
                       columns=[("lo", "from"), ("hi", "to"), ("listings", "listings")],
                       rows=[vars(b) for b in hist.bins]))
    out.append(_history_section(q.history(t, job)))
    out.append(_runs_section(*q.run_counts(t, job)))
    return out


def _history_section(h: q.History | None) -> Section:
    s = Section("history", "Price changes over time")
    if h is None:
        s.empty = "no history yet: this database has no listing_history table (a newer etl records one)"
    elif not h.days:
        s.empty = f"no price changes yet ({h.versions:,} versions of {h.listings:,} listings)"
    else:
        s.caption = (f"Per day, listings whose price was cut or raised, and the median change; "
                     f"{h.versions:,} versions of {h.listings:,} listings in listing_history.")
        s.spec = charts.history_chart(h)
        s.columns = [("day", "day"), ("cuts", "cuts"), ("raises", "raises"), ("median_change_pct", "median change %")]
        s.rows = [{**vars(d), "day": d.day.isoformat()} for d in h.days]
    return s


def _runs_section(kinds: list[str], runs: list[q.RunCount]) -> Section:
    s = Section("runs", "New and delisted listings per run")
    if not kinds:
        s.empty = "this database's runs table does not count new and delisted listings (a newer etl does)"
    elif not runs:
        s.empty = "no run has counted new and delisted listings yet"
    else:
        s.caption = "What each run found compared with the one before."
        s.spec = charts.runs_chart(kinds, runs)
        s.columns = [("run_id", "run"), ("started", "started"), *((k, k) for k in kinds)]
        s.rows = [{"run_id": r.run_id, "started": r.started, **r.counts} for r in runs]
    return s


def news_sections(t: q.Tables, job: str | None) -> list[Section]:
    top = q.stocks(t, job)
    points = q.sentiment(t, job, top)
    return [
        Section("stocks", "Most-mentioned stocks",
                f"The {len(top)} stocks named in the most articles, coloured by the articles' mean sentiment.",
                charts.stocks_chart(top),
                columns=[("code", "code"), ("name", "name"), ("articles", "articles"), ("mentions", "mentions"),
                         ("avg_score", "mean sentiment")], rows=[vars(s) for s in top]),
        Section("sentiment", "Daily sentiment of the most-mentioned stocks",
                f"Mean sentiment of each day's articles naming the top {min(len(top), q.SENTIMENT_STOCKS)}.",
                charts.sentiment_chart(points) if points else None,
                empty="" if points else "no mention carries a date",
                columns=[("code", "code"), ("day", "day"), ("articles", "articles"), ("avg_score", "mean sentiment")],
                rows=[{**vars(p), "day": p.day.isoformat()} for p in points]),
    ]


def build_report(url: str, job: str | None, out: Path) -> Report:
    from etl.db import make_engine

    engine = make_engine(url)
    try:
        t = q.Tables(engine)
        n_listings, n_mentions = q.totals(t, job)
        if not n_listings and not n_mentions:
            known = q.jobs(t)
            scope = f"job {job!r}" if job else mask_url(url)
            hint = f" (jobs in this database: {', '.join(known)})" if known else ""
            raise NothingToReport(f"nothing to report: {scope} has no listings and no stock mentions{hint}")
        sections = (listing_sections(t, job) if n_listings else []) + (news_sections(t, job) if n_mentions else [])
    finally:
        engine.dispose()
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    meta = (f"{'job ' + job if job else 'every job'} · {mask_url(url)} · {n_listings:,} current listings · "
            f"{n_mentions:,} stock mentions · generated {stamp}")
    out.write_text(render(f"etl report: {job or 'all jobs'}", meta, sections), encoding="utf-8")
    return Report(out, sum(s.spec is not None for s in sections), [s.key for s in sections])
