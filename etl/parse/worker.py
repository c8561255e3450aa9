"""Entry points that run inside the parse PROCESS pool.

`init_worker` builds the per-process state once (compiled extractor, stock matcher, a database engine for
SQL sources); `parse_page` and `read_rows` are then called once per page / row range. Workers ignore
SIGINT so that Ctrl-C reaches only the coordinator, which stops the run in order.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from etl.config import Config
from etl.errors import one_line
from etl.items import Page, Parsed, Request

_state: dict[str, Any] = {}


def init_worker(cfg: Config, domains: tuple[str, ...]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C and systemd's SIGTERM to the whole group
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # reach the coordinator, which stops us in order
    from etl.parse.extract import Extractor

    _state.clear()
    _state["cfg"] = cfg
    if cfg.source_type == "http":
        _state["extractor"] = Extractor(cfg, domains)
    if cfg.transform.type == "plugin":
        import importlib

        module, _, func = cfg.transform.plugin.partition(":")
        _state["plugin"] = getattr(importlib.import_module(module), func)
    if cfg.transform.type == "stock_mentions":
        from etl.stocks.dictionary import load_stocks
        from etl.stocks.matcher import StockMatcher

        stocks = load_stocks()
        _state["matcher"] = StockMatcher(stocks)
        _state["names"] = {s.code: s.name for s in stocks}


def _test_crash(url: str) -> None:
    """Test hook (ETL_TEST_PARSE_CRASH): die like a segfaulting parser would — once, or on one URL."""
    spec = os.environ.get("ETL_TEST_PARSE_CRASH")
    if not spec:
        return
    mode, _, arg = spec.partition(":")
    if mode == "url" and arg in url:
        os._exit(139)
    if mode == "once" and not os.path.exists(arg):
        open(arg, "w").close()
        os._exit(139)


def parse_page(page: Page) -> Parsed:
    _test_crash(page.request.url)
    try:
        result = _state["extractor"].parse(page)
        if result.rows:
            result.rows = transform(result.rows)
        return result
    except Exception as exc:  # a page that breaks the parser is that page's failure, not the run's
        return Parsed(page.request, error=f"parse error: {type(exc).__name__}: {exc}"[:500])


def transform(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The configured row transform: none, stock mentions, or the plugin the config names explicitly.
    A plugin returns a row, a list of rows, or None (drop the row)."""
    kind = _state["cfg"].transform.type
    if kind == "stock_mentions":
        return [m for row in rows for m in mentions(row)]
    if kind == "plugin":
        out: list[dict[str, Any]] = []
        for row in rows:
            got = _state["plugin"](row)
            if isinstance(got, dict):
                out.append(got)
            elif got:
                out.extend(got)
        return out
    return rows


def mentions(article: dict[str, Any]) -> list[dict[str, Any]]:
    """One article → one row per stock it mentions (news id, code, name, date, score, count)."""
    cfg = _state["cfg"]
    text = "\n".join(str(article.get(f) or "") for f in cfg.transform.text_fields)
    names = _state["names"]
    return [{"news_id": str(article["news_id"]), "stock_code": code, "stock_name": names[code],
             "news_date": article.get("published"), "score": article.get("score"), "mention_count": count}
            for code, count in sorted(_state["matcher"].find(text).items())]


def read_rows(request: Request) -> Parsed:
    """Read one key range of the source table on this process's own connection and transform it."""
    from sqlalchemy import text as sql_text

    from etl.db import make_engine
    from etl.parse.cleaners import to_date

    cfg: Config = _state["cfg"]
    src = cfg.sql
    engine = _state.get("engine")
    if engine is None:
        engine = _state["engine"] = make_engine(src.url or cfg.database_url)
    cols = src.columns
    lo, hi = request.meta["lo"], request.meta.get("hi")
    where = [f"{src.key} >= :lo"] + ([f"{src.key} < :hi"] if hi is not None else [])
    if src.where:
        where.append(f"({src.where})")
    query = sql_text(
        f"SELECT {cols['id']} AS id, {cols['published']} AS published, {cols['title']} AS title, "
        f"{cols['body']} AS body, {cols['score']} AS score FROM {src.table} WHERE {' AND '.join(where)}")
    result = Parsed(request)
    try:
        with engine.connect() as conn:
            for rec in conn.execute(query, {"lo": lo, "hi": hi}):
                published = rec.published if hasattr(rec.published, "year") else to_date(rec.published)
                if hasattr(published, "date") and callable(published.date):
                    published = published.date()
                result.rows.append({"news_id": rec.id, "published": published, "title": rec.title,
                                    "body": rec.body, "score": None if rec.score is None else float(rec.score)})
        result.rows = transform(result.rows)
    except Exception as exc:
        engine.dispose()
        result.error = f"read error: {type(exc).__name__}: {one_line(exc)}"
    return result
