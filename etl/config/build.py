"""Config assembly: raw TOML tables → a checked, frozen Config, or one ConfigError line.

The source kind's own module checks its section (etl/sources/<kind>.py); this module checks the sections
every kind shares (crawl rules, items, fields, target, transform, run settings).
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import re
from typing import Any

from etl.config.checker import Checker, expand
from etl.config.model import (
    DEFAULTS,
    HTTP_ENGINES,
    TABLES,
    Config,
    DatabaseSettings,
    FetchSettings,
    Items,
    PageRule,
    Pagination,
    RunSettings,
    Transform,
)
from etl.dialects import url_problem
from etl.parse.engines import ENGINES
from etl.plugins import plugin_name_problem
from etl.sources import REGISTRY, source_class

_TOP = {"job", "source", "crawl", "items", "fields", "target", "transform", "run", "politeness", "database"}
_COMMON_SOURCE_KEYS = {"type", "site", "city", "base_url", "allowed_domains", "demo"}


def _source_class(stype: str, ck: Checker):
    if stype not in REGISTRY:
        raise ck.fail("[source].type", f"unknown source type {stype!r} (use {', '.join(REGISTRY)})")
    return source_class(stype)


def build(raw: dict[str, Any], path: str) -> Config:
    run_section = raw.get("run") if isinstance(raw.get("run"), dict) else {}
    ck = Checker(path, str(run_section.get("engine", "selectolax")))
    ck.table(raw, "config", _TOP, {"job", "source"})
    job = ck.typed(raw, "job", "config", str)
    if not re.fullmatch(r"[\w.-]+", job):
        raise ck.fail("job", "use letters, digits, '-', '_' or '.' only")

    source = raw["source"]
    stype = ck.typed(ck.table(source, "[source]", set(source) if isinstance(source, dict) else set(), {"type"}),
                     "type", "[source]", str)
    source_cls = _source_class(stype, ck)
    known = _COMMON_SOURCE_KEYS | source_cls.keys
    for key in source:  # any other scalar is a variable for {placeholders}, unless it looks like a typo
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.8)
        if key not in known and close:
            raise ck.fail(f"[source].{key}", f"unknown key; did you mean {close[0]!r}?")
    known |= {k for k, v in source.items() if isinstance(v, str | int | float) and not isinstance(v, bool)}
    source = ck.table(source, "[source]", known, {"type"})
    variables = {k: v for k, v in source.items() if isinstance(v, str | int | float) and not isinstance(v, bool)}
    variables.setdefault("site", job)
    demo = source.get("demo")
    if demo is not None:
        demo = dict(ck.table(demo, "[source.demo]",
                             {"listings", "encoding", "pagination", "seed", "news", "detail_pages", "day"}))
        if "day" in demo:  # `--set day=N` lands here as any TOML value
            from etl.demo.days import check_day

            if problem := check_day(demo["day"]):
                raise ck.fail("[source.demo].day", problem)
        variables["base_url"] = variables.get("base_url", "{base_url}")
    spec, start_urls = source_cls.check(source, raw, ck, variables)
    domains = source.get("allowed_domains", [])
    if not isinstance(domains, list) or not all(isinstance(d, str) for d in domains):
        raise ck.fail("[source].allowed_domains", "expected a list of host names")

    crawl = ck.table(raw.get("crawl", {}), "[crawl]", {"cap", "pages", "pagination"})
    pages: dict[str, PageRule] = {}
    for i, p in enumerate(crawl.get("pages", [])):
        where = f"[[crawl.pages]] #{i + 1}"
        p = ck.table(p, where, {"kind", "total", "facets", "paginate", "items", "links"}, {"kind"})
        kind = ck.typed(p, "kind", where, str)
        links = p.get("links", [])
        if not isinstance(links, list):
            raise ck.fail(f"{where}.links", "expected a list of link rules")
        pages[kind] = PageRule(
            kind=kind,
            total=ck.field("total", p["total"], f"{where}.total", "page") if "total" in p else None,
            facets=ck.link(p["facets"], f"{where}.facets") if "facets" in p else None,
            paginate=bool(ck.typed(p, "paginate", where, bool, False)),
            items=bool(ck.typed(p, "items", where, bool, False)),
            links=tuple(ck.link(link, f"{where}.links[{j}]") for j, link in enumerate(links)))
    pg = ck.table(crawl.get("pagination", {}), "[crawl.pagination]",
                  {"total_pages", "url", "template", "next", "links", "max_pages"})
    pagination = Pagination(
        total_pages=ck.field("total_pages", pg["total_pages"], "[crawl.pagination].total_pages", "page")
        if "total_pages" in pg else None,
        url=ck.field("url", pg["url"], "[crawl.pagination].url", "page") if "url" in pg else None,
        template=ck.typed(pg, "template", "[crawl.pagination]", str),
        next=ck.css(pg["next"], "[crawl.pagination].next") if "next" in pg else None,
        links=ck.css(pg["links"], "[crawl.pagination].links") if "links" in pg else None,
        max_pages=ck.typed(pg, "max_pages", "[crawl.pagination]", int, 100))
    if pagination.total_pages and not (pagination.url or pagination.template):
        raise ck.fail("[crawl.pagination]", "total_pages needs 'url' (read from the page) or 'template'")
    if any(r.paginate for r in pages.values()) and not (
            pagination.total_pages or pagination.next or pagination.links):
        raise ck.fail("[crawl.pagination]", "a page kind paginates but no total_pages, next or links is set")

    items = None
    if "items" in raw:
        it = ck.table(raw["items"], "[items]", {"select", "key", "skip", "detail"}, {"select", "key"})
        items = Items(select=ck.css(it["select"], "[items].select"),
                      key=ck.field("key", it["key"], "[items].key", "item"),
                      skip=ck.css(it["skip"], "[items].skip") if "skip" in it else None,
                      detail=ck.link(_without_refresh(it["detail"]), "[items].detail", "detail")
                      if "detail" in it else None, refresh_days=_refresh_days(it.get("detail"), ck))
    known_kinds = set(pages) | ({items.detail.kind} if items and items.detail else set())
    for rule in pages.values():
        for link in [*rule.links, *([rule.facets] if rule.facets else [])]:
            if link.kind not in known_kinds:
                raise ck.fail(f"[[crawl.pages]] kind={rule.kind!r} links/facets",
                              f"leads to kind {link.kind!r}, which has no [[crawl.pages]] rule "
                              f"(known: {', '.join(sorted(known_kinds))})")
    default_source = "item"
    fields = {name: ck.field(name, spec, f"[fields.{name}]", default_source)
              for name, spec in ck.typed(raw, "fields", "config", dict, {}).items()}
    for f in fields.values():
        if f.value is not None:
            object.__setattr__(f, "value", expand(f.value, variables, f"[fields.{f.name}].value", ck))

    for f in fields.values():
        if f.source.startswith("facet:") and f.source[6:] not in pages:
            raise ck.fail(f"[fields.{f.name}].from", f"{f.source!r} names no [[crawl.pages]] kind "
                                                     f"(known: {', '.join(sorted(pages))})")
    target = _target(raw, fields, ck)
    tr = ck.table(raw.get("transform", {}), "[transform]", {"type", "text_fields", "plugin"})
    text_fields = tr.get("text_fields", ["title", "body"])
    if not isinstance(text_fields, list) or not text_fields or not all(isinstance(f, str) for f in text_fields):
        raise ck.fail("[transform].text_fields", f"expected a list of field names, got {text_fields!r}")
    transform = Transform(type=ck.typed(tr, "type", "[transform]", str, "none"), text_fields=tuple(text_fields),
                          plugin=ck.typed(tr, "plugin", "[transform]", str))
    if transform.type == "stock_mentions" and target.name != "stock_mentions":
        raise ck.fail("[target].table", f"the stock_mentions transform writes stock_mentions rows, not {target.name} "
                                        "(add [target] table = \"stock_mentions\")")
    if transform.type not in ("none", "stock_mentions", "plugin"):
        raise ck.fail("[transform].type", f"unknown transform {transform.type!r} (use none, stock_mentions or plugin)")
    if transform.type == "plugin":
        problem = plugin_name_problem(transform.plugin)
        if problem:  # only the form: the module is imported when the run starts, never while loading
            raise ck.fail("[transform].plugin", problem)

    run, fetch, database = _settings(raw, ck)
    cfg = Config(
        path=path, job=job, source_type=stype, site=str(variables["site"]), vars=variables, demo=demo,
        start_urls=start_urls, allowed_domains=tuple(domains), source=spec,
        cap=ck.typed(crawl, "cap", "[crawl]", int, 3000), pages=pages, pagination=pagination, items=items,
        fields=fields, target=target, transform=transform, run=run, fetch=fetch, database=database, raw=raw)
    source_cls.validate(cfg, ck)
    return cfg


def _settings(raw: dict[str, Any], ck: Checker) -> tuple[RunSettings, FetchSettings, DatabaseSettings]:
    """[run], [politeness], [database]: each becomes the settings object of the stage that reads it."""
    settings: dict[str, dict[str, Any]] = {}
    for section, defaults in DEFAULTS.items():
        given = ck.table(raw.get(section, {}), f"[{section}]", set(defaults))
        settings[section] = {key: ck.typed(given, key, f"[{section}]", type(default), default)
                             for key, default in defaults.items()}
    run, pol, db = settings["run"], settings["politeness"], settings["database"]
    if run["engine"] not in ENGINES:
        raise ck.fail("[run].engine", f"unknown engine {run['engine']!r} (use {', '.join(ENGINES)})")
    if run["http"] not in HTTP_ENGINES:
        raise ck.fail("[run].http", f"unknown HTTP engine {run['http']!r} (use {' or '.join(HTTP_ENGINES)})")
    if run["http"] == "curl" and importlib.util.find_spec("pycurl") is None:
        raise ck.fail("[run].http", "curl needs pycurl (pip install pycurl), or set http = \"requests\"")
    if run["start_method"] not in ("spawn", "forkserver", "fork"):
        raise ck.fail("[run].start_method", "use spawn, forkserver or fork")
    if run["parse_timeout"] <= 0:
        raise ck.fail("[run].parse_timeout", "must be more than 0 seconds")
    if run["lease"] < 5:
        raise ck.fail("[run].lease", "must be at least 5 seconds (a worker renews its leases every third of it)")
    if run["claim_batch"] < 0:
        raise ck.fail("[run].claim_batch", "must be 0 (as many as are worked on at once) or more")
    if run["parse_processes"] < 0:
        raise ck.fail("[run].parse_processes", "must be 0 (one per core) or more")
    for section, key in (("run", "fetch_threads"), ("run", "batch_size"), ("run", "frontier_memory"),
                         ("run", "max_urls"), ("run", "seen_memory"),
                         ("politeness", "per_host"), ("politeness", "max_bytes")):
        if settings[section][key] < 1:
            raise ck.fail(f"[{section}].{key}", "must be at least 1")
    if db["connect_wait"] < 0:
        raise ck.fail("[database].connect_wait", "must be 0 (do not wait) or more seconds")
    if pol["retries"] < 0:
        raise ck.fail("[politeness].retries", "must be 0 (one attempt, no retry) or more: it counts the "
                                              "retries after the first attempt")
    problem = url_problem(db["url"])
    if problem:
        raise ck.fail("[database].url", problem)
    run["parse_processes"] = run["parse_processes"] or (os.cpu_count() or 2)
    return RunSettings(**run), FetchSettings(**pol), DatabaseSettings(**db)


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_INTERNAL = {"runs", "frontier", "failures", "stocks", "alembic_version", "stock_daily_sentiment", "workers",
             "host_turns", "host_slots", "robots_txt", "url_state", "sql_cursors"}


def _target(raw: dict[str, Any], fields: dict[str, Any], ck: Checker):
    """[target] table: a built-in table, or one this config defines by its fields (etl/targets.py)."""
    from etl.targets import BOOKKEEPING, TargetError, target_spec

    target = ck.table(raw.get("target", {}), "[target]", {"table", "key", "track"})
    table = ck.typed(target, "table", "[target]", str, "listings")
    key = ck.typed(target, "key", "[target]", str)
    track = ck.typed(target, "track", "[target]", list)
    if track is not None and not all(isinstance(t, str) for t in track):
        raise ck.fail("[target].track", "expected a list of column names")
    if table in TABLES:
        if key is not None:
            raise ck.fail("[target].key", f"{table} has its own key; 'key' names the key column of a table "
                                          "the config defines")
        try:
            return target_spec(table, None, {}, track)
        except TargetError as exc:
            raise ck.fail("[target].track", str(exc)) from None
    if not _IDENT.fullmatch(table) or table.lower() in _INTERNAL:
        raise ck.fail("[target].table", f"{table!r} cannot be a table of rows (use letters, digits and '_', "
                                        f"not one of {', '.join(sorted(_INTERNAL))})")
    names = {n.lower() for n in fields}
    for name in [*fields, key or "id"]:
        if not _IDENT.fullmatch(name) or name.lower() in BOOKKEEPING or name.lower() == "source":
            raise ck.fail(f"[fields.{name}]", f"{name!r} cannot be a column of {table} (letters, digits, '_'; "
                                              f"not source, {', '.join(BOOKKEEPING)})")
    if len(names) != len(fields):
        raise ck.fail("[fields]", f"two fields differ only in case; they would be one column of {table}")
    try:
        return target_spec(table, key, {n: f.type for n, f in fields.items()}, track)
    except TargetError as exc:
        raise ck.fail("[target].track", str(exc)) from None


def _without_refresh(detail: Any) -> Any:
    return {k: v for k, v in detail.items() if k != "refresh_days"} if isinstance(detail, dict) else detail


def _refresh_days(detail: Any, ck: Checker) -> float | None:
    """[items.detail] refresh_days: after how many days an unchanged listing's detail page is checked
    again (conditionally); absent: never (a re-run fetches only new and changed listings' details)."""
    if not isinstance(detail, dict) or "refresh_days" not in detail:
        return None
    days = detail["refresh_days"]
    if isinstance(days, bool) or not isinstance(days, int | float) or days < 0:
        raise ck.fail("[items.detail].refresh_days", f"expected a number of days >= 0, got {days!r}")
    return float(days)

