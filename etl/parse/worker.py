"""Entry points that run inside the parse PROCESS pool.

`init_worker` builds the per-process state once (the source kind's reader — a compiled extractor, a
database connection… — and the stock matcher); `process` is then called once per unit of work: a fetched
Page or, for kinds that do not fetch, the Request itself. Workers ignore SIGINT so that Ctrl-C reaches
only the coordinator, which stops the run in order.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from etl.config import Config
from etl.errors import one_line
from etl.items import Parsed

_state: dict[str, Any] = {}


def init_worker(cfg: Config, domains: tuple[str, ...]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C and systemd's SIGTERM to the whole group
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # reach the coordinator, which stops us in order
    from etl.sources import source_for

    _state.clear()
    _state["cfg"] = cfg
    _state["reader"] = source_for(cfg).reader(domains)
    if cfg.transform.type == "plugin":
        from etl.plugins import load_plugin

        _state["plugin"] = load_plugin(cfg.transform.plugin)
    if cfg.transform.type == "stock_mentions":
        from etl.stocks.dictionary import load_stocks
        from etl.stocks.matcher import StockMatcher

        stocks = load_stocks()
        _state["matcher"] = StockMatcher(stocks)
        _state["names"] = {s.code: s.name for s in stocks}


def _test_crash(url: str) -> None:
    """Test hook (ETL_TEST_PARSE_CRASH): die like a segfaulting parser would — once, or on one URL — or
    hang on one URL like a parser stuck in a quadratic tree build ("hang:<url part>")."""
    spec = os.environ.get("ETL_TEST_PARSE_CRASH")
    if not spec:
        return
    mode, _, arg = spec.partition(":")
    if mode == "url" and arg in url:
        os._exit(139)
    if mode == "hang" and arg in url:
        import time

        time.sleep(3600)
    if mode == "once" and not os.path.exists(arg):
        open(arg, "w").close()
        os._exit(139)


def process(unit) -> Parsed:
    request = getattr(unit, "request", unit)
    _test_crash(request.url)
    try:
        result = _state["reader"].read(unit)
        if result.rows:
            if _state["cfg"].transform.type == "stock_mentions":  # re-read articles: their old mentions go
                result.replaces = [(_state["cfg"].job, _news_id(row)) for row in result.rows]
            result.rows = transform(result.rows)
        return result
    except Exception as exc:  # a unit that breaks the reader is that unit's failure, not the run's
        return Parsed(request, error=f"parse error: {type(exc).__name__}: {one_line(exc)}"[:500])


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


def _news_id(article: dict[str, Any]) -> str:
    return str(article.get("news_id", article.get("id")))


def mentions(article: dict[str, Any]) -> list[dict[str, Any]]:
    """One article → one row per stock it mentions (source = the job, news id, code, name, date, score,
    count)."""
    cfg = _state["cfg"]
    text = "\n".join(str(article.get(f) or "") for f in cfg.transform.text_fields)
    names, news_id = _state["names"], _news_id(article)
    return [{"source": cfg.job, "news_id": news_id, "stock_code": code, "stock_name": names[code],
             "news_date": article.get("published"), "score": article.get("score"), "mention_count": count}
            for code, count in sorted(_state["matcher"].find(text).items())]
