"""Vega-Lite specs (through Altair) for the report's charts, from the rows etl/report/queries.py reads.

Every chart gets its data inline (alt.Data(values=…)), already aggregated: the page carries tens of bars,
not the table's rows, so a report of a million listings opens as fast as one of a thousand.
"""

from __future__ import annotations

from typing import Any

import altair as alt

from etl.report.queries import Bin, District, History, RunCount, Sentiment, Stock

WIDTH = 640


def _spec(chart: alt.TopLevelMixin) -> dict[str, Any]:
    return chart.to_dict()


def district_chart(rows: list[District]) -> dict[str, Any]:
    """Listings per district (bars) beside the median unit price per district (bars), same order."""
    data = alt.Data(values=[{"district": r.district, "listings": r.listings,
                             "median_unit_price": r.median_unit_price} for r in rows])
    order = [r.district for r in rows]
    base = alt.Chart(data).encode(y=alt.Y("district:N", sort=order, title=None))
    count = base.mark_bar(color="#4c78a8").encode(
        x=alt.X("listings:Q", title="listings"), tooltip=["district:N", "listings:Q"]).properties(width=300)
    median = base.mark_bar(color="#f58518").encode(
        x=alt.X("median_unit_price:Q", title="median unit price (yuan/m²)"),
        tooltip=["district:N", alt.Tooltip("median_unit_price:Q", format=",.0f")]).properties(width=300)
    return _spec(alt.hconcat(count, median).resolve_scale(y="shared"))


def histogram_chart(bins: list[Bin]) -> dict[str, Any]:
    data = alt.Data(values=[{"lo": b.lo, "hi": b.hi, "listings": b.listings} for b in bins])
    return _spec(alt.Chart(data).mark_bar(color="#54a24b").encode(
        x=alt.X("lo:Q", bin="binned", title="unit price (yuan/m²)"), x2="hi:Q",
        y=alt.Y("listings:Q", title="listings"),
        tooltip=["lo:Q", "hi:Q", "listings:Q"]).properties(width=WIDTH, height=260))


def history_chart(history: History) -> dict[str, Any]:
    """Price cuts and raises per day (bars, cuts below zero) over the median change in percent (line),
    on one ordinal day axis: runs are daily events, not a continuum."""
    values = []
    for d in history.days:
        values.append({"day": d.day.isoformat(), "kind": "raises", "listings": d.raises})
        values.append({"day": d.day.isoformat(), "kind": "cuts", "listings": -d.cuts})
    day = alt.X("day:O", title=None, axis=alt.Axis(labelAngle=0))
    bars = alt.Chart(alt.Data(values=values)).mark_bar().encode(
        x=day, y=alt.Y("listings:Q", title="listings (cuts below zero)"),
        color=alt.Color("kind:N", scale=alt.Scale(domain=["cuts", "raises"], range=["#e45756", "#54a24b"])),
        tooltip=["day:O", "kind:N", "listings:Q"]).properties(width=WIDTH, height=200)
    pct = alt.Data(values=[{"day": d.day.isoformat(), "median_change_pct": d.median_change_pct}
                           for d in history.days])
    line = alt.Chart(pct).mark_line(point=True, color="#72b7b2").encode(
        x=day, y=alt.Y("median_change_pct:Q", title="median change (%)"),
        tooltip=["day:O", "median_change_pct:Q"]).properties(width=WIDTH, height=140)
    return _spec(alt.vconcat(bars, line))


def runs_chart(kinds: list[str], runs: list[RunCount]) -> dict[str, Any]:
    """New / changed / delisted / relisted listings per run, grouped bars; `unchanged` dwarfs the rest
    and stays in the table only."""
    shown = [k for k in kinds if k != "unchanged"] or kinds
    values = [{"run": f"run {r.run_id}", "started": r.started, "kind": k, "listings": r.counts[k]}
              for r in runs for k in shown]
    order = [f"run {r.run_id}" for r in runs]
    return _spec(alt.Chart(alt.Data(values=values)).mark_bar().encode(
        x=alt.X("run:N", sort=order, title=None),
        xOffset=alt.XOffset("kind:N", sort=shown),
        # symlog: a first run's thousands of new listings and a night's handful both stay readable
        y=alt.Y("listings:Q", title="listings (symlog scale)", scale=alt.Scale(type="symlog")),
        color=alt.Color("kind:N", sort=shown),
        tooltip=["run:N", "started:N", "kind:N", "listings:Q"]).properties(width=WIDTH, height=240))


def stocks_chart(rows: list[Stock]) -> dict[str, Any]:
    data = alt.Data(values=[{"stock": f"{s.code} {s.name}", "articles": s.articles, "avg_score": s.avg_score}
                            for s in rows])
    return _spec(alt.Chart(data).mark_bar().encode(
        y=alt.Y("stock:N", sort=[f"{s.code} {s.name}" for s in rows], title=None),
        x=alt.X("articles:Q", title="articles mentioning it"),
        color=alt.Color("avg_score:Q", title="mean sentiment", scale=alt.Scale(scheme="redyellowgreen")),
        tooltip=["stock:N", "articles:Q", alt.Tooltip("avg_score:Q", format=".3f")]).properties(width=WIDTH))


def sentiment_chart(points: list[Sentiment]) -> dict[str, Any]:
    """One small chart per stock (overlaid daily lines of five stocks are unreadable), on a shared scale."""
    data = alt.Data(values=[{"stock": f"{p.code} {p.name}", "day": p.day.isoformat(), "articles": p.articles,
                             "avg_score": p.avg_score} for p in points])
    order = list(dict.fromkeys(f"{p.code} {p.name}" for p in points))
    return _spec(alt.Chart(data).mark_line(point=True).encode(
        x=alt.X("day:T", title="day", timeUnit="yearmonthdate"),
        y=alt.Y("avg_score:Q", title="mean sentiment"),
        color=alt.Color("stock:N", sort=order, legend=None),
        tooltip=["stock:N", "day:T", "articles:Q", alt.Tooltip("avg_score:Q", format=".3f")],
    ).properties(width=WIDTH, height=90).facet(row=alt.Row("stock:N", sort=order, title=None)))
