"""Config validation: raw TOML tables → a checked, frozen Config, or one ConfigError line.

Every check names the file, the key and what is wrong, because the user reads only that line.
"""

from __future__ import annotations

import difflib
import os
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from etl.config import (
    _DEFAULTS,
    _TOP,
    TABLES,
    Config,
    ConfigError,
    FieldSpec,
    Items,
    LinkRule,
    PageRule,
    Pagination,
    SqlSource,
    Transform,
    mask_url,
)
from etl.parse.cleaners import CONVERTERS
from etl.parse.engines import ENGINES


class _Checker:
    def __init__(self, path: str, engine: str = "selectolax") -> None:
        self.path = path
        self.engine = engine  # selectors are checked by the engine that will run them

    def fail(self, where: str, msg: str) -> ConfigError:
        return ConfigError(f"{self.path}: {where}: {msg}")

    def table(self, data: Any, where: str, allowed: set[str], required: set[str] = frozenset()) -> dict:
        if not isinstance(data, dict):
            raise self.fail(where, f"expected a table, got {type(data).__name__}")
        for key in data:
            if key not in allowed:
                raise self.fail(f"{where}.{key}", f"unknown key (allowed: {', '.join(sorted(allowed))})")
        for key in required:
            if key not in data:
                raise self.fail(where, f"missing required key '{key}'")
        return data

    def typed(self, data: dict, key: str, where: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        value = data.get(key, default)
        if value is None:
            return None
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) and kind in (int, float):
            raise self.fail(f"{where}.{key}", f"expected {kind.__name__}, got a boolean")
        if not isinstance(value, kind):
            names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            raise self.fail(f"{where}.{key}", f"expected {names}, got {type(value).__name__} {value!r}")
        return value

    def regex(self, value: str | None, where: str) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise self.fail(where, f"invalid regex: {exc}") from None
        return value

    def css(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(where, "expected a non-empty CSS selector")
        try:
            if self.engine == "bs4":
                import soupsieve

                soupsieve.compile(value)
            else:
                from selectolax.lexbor import LexborHTMLParser

                LexborHTMLParser("<p></p>").css(value)
        except Exception as exc:  # both raise on selectors they cannot compile
            raise self.fail(where, f"invalid CSS selector {value!r}: {exc}") from None
        return value

    def field(self, name: str, data: Any, where: str, default_source: str) -> FieldSpec:
        if isinstance(data, str):
            data = {"css": data}
        d = self.table(data, where, {"css", "attr", "json", "regex", "type", "scale", "value", "from", "all",
                                           "required", "format"})
        ftype = self.typed(d, "type", where, str, "text")
        if ftype not in CONVERTERS:
            raise self.fail(f"{where}.type", f"unknown type {ftype!r} (use {', '.join(CONVERTERS)})")
        source = self.typed(d, "from", where, str, "config" if "value" in d else default_source)
        if source not in ("item", "detail", "page", "config") and not re.fullmatch(r"facet:[\w.-]+", source):
            raise self.fail(f"{where}.from", f"unknown source {source!r} "
                                             "(use item, detail, page, config or facet:<kind>)")
        scale = d.get("scale")
        if scale is not None:
            try:
                if isinstance(scale, bool):
                    raise ValueError
                Decimal(str(scale))
            except (ValueError, InvalidOperation):
                raise self.fail(f"{where}.scale", f"expected a number, got {scale!r}") from None
        fmt = self.typed(d, "format", where, str)
        if fmt is not None and (ftype != "date" or "%" not in fmt):
            raise self.fail(f"{where}.format", "only for type = \"date\": a strptime format such as \"%d/%m/%Y\"")
        css = self.css(d["css"], f"{where}.css") if "css" in d else None
        if (source != "config" and not source.startswith("facet:") and css is None and "attr" not in d
                and "regex" not in d and "json" not in d):
            raise self.fail(where, "needs a 'css' selector (or 'attr'/'regex' on the item itself, or 'value')")
        return FieldSpec(name=name, css=css, attr=self.typed(d, "attr", where, str),
                         json=self.typed(d, "json", where, str),
                         regex=self.regex(self.typed(d, "regex", where, str), f"{where}.regex"),
                         type=ftype, scale=None if scale is None else str(scale),
                         value=None if d.get("value") is None else str(d["value"]), source=source,
                         all=bool(self.typed(d, "all", where, bool, False)),
                         required=bool(self.typed(d, "required", where, bool, False)), format=fmt)

    def link(self, data: Any, where: str, default_kind: str | None = None) -> LinkRule:
        if isinstance(data, str):
            data = {"css": data}
        d = self.table(data, where, {"css", "kind", "attr", "match"}, {"css"})
        kind = self.typed(d, "kind", where, str, default_kind)
        if not kind:
            raise self.fail(where, "missing required key 'kind' (the kind of page the links lead to)")
        return LinkRule(css=self.css(d["css"], f"{where}.css"), kind=kind,
                        attr=self.typed(d, "attr", where, str, "href"),
                        match=self.regex(self.typed(d, "match", where, str), f"{where}.match"))


def _expand(template: str, variables: dict[str, Any], where: str, ck: _Checker) -> str:
    try:
        return template.format_map(variables)
    except KeyError as exc:
        raise ck.fail(where, f"unknown placeholder {{{exc.args[0]}}} (known: {', '.join(sorted(variables))})") from None
    except (ValueError, IndexError) as exc:
        raise ck.fail(where, f"bad placeholder in {template!r}: {exc}") from None


def build(raw: dict[str, Any], path: str) -> Config:
    run_section = raw.get("run") if isinstance(raw.get("run"), dict) else {}
    ck = _Checker(path, str(run_section.get("engine", "selectolax")))
    ck.table(raw, "config", _TOP, {"job", "source"})
    job = ck.typed(raw, "job", "config", str)
    if not re.fullmatch(r"[\w.-]+", job):
        raise ck.fail("job", "use letters, digits, '-', '_' or '.' only")

    known = {"type", "site", "city", "base_url", "start_urls", "allowed_domains", "demo", "sql"}
    source = raw["source"]
    if isinstance(source, dict):  # any other scalar is a variable for {placeholders}, unless it looks like a typo
        for key in source:
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.8)
            if key not in known and close:
                raise ck.fail(f"[source].{key}", f"unknown key; did you mean {close[0]!r}?")
        known |= {k for k, v in source.items() if isinstance(v, str | int | float) and not isinstance(v, bool)}
    source = ck.table(source, "[source]", known, {"type"})
    stype = ck.typed(source, "type", "[source]", str)
    if stype not in ("http", "sql"):
        raise ck.fail("[source].type", f"unknown source type {stype!r} (use http or sql)")
    variables = {k: v for k, v in source.items() if isinstance(v, str | int | float) and not isinstance(v, bool)}
    variables.setdefault("site", job)
    demo = source.get("demo")
    if demo is not None:
        demo = dict(ck.table(demo, "[source.demo]",
                             {"listings", "encoding", "pagination", "seed", "news", "detail_pages"}))
        variables["base_url"] = variables.get("base_url", "{base_url}")
    start_urls: tuple[str, ...] = ()
    sql = None
    if stype == "http":
        urls = source.get("start_urls")
        if not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls):
            raise ck.fail("[source].start_urls", "expected a non-empty list of URLs")
        start_urls = tuple(_expand(u, variables, "[source].start_urls", ck) for u in urls)
        if demo is None:
            for url in start_urls:
                if not re.match(r"https?://[^/]+", url):
                    raise ck.fail("[source].start_urls", f"{url!r} is not an http(s) URL")
    else:
        s = ck.table(source.get("sql"), "[source.sql]", {"url", "table", "key", "columns", "chunk_rows", "where"},
                     {"table", "key", "columns"})
        cols = ck.table(s["columns"], "[source.sql.columns]", {"id", "published", "title", "body", "score"},
                        {"id", "published", "title", "body", "score"})
        for name in [s["table"], s["key"], *cols.values()]:
            if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][\w.]*", name):
                raise ck.fail("[source.sql]", f"{name!r} is not a plain table/column name")
        sql = SqlSource(url=ck.typed(s, "url", "[source.sql]", str), table=s["table"], key=s["key"],
                        columns=dict(cols), chunk_rows=ck.typed(s, "chunk_rows", "[source.sql]", int, 5000),
                        where=ck.typed(s, "where", "[source.sql]", str))
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
    if stype == "http" and not pages:
        raise ck.fail("[crawl]", "needs at least one [[crawl.pages]] rule (the first kind is the start pages')")
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
                      detail=ck.link(it["detail"], "[items].detail", "detail") if "detail" in it else None)
    known_kinds = set(pages) | ({items.detail.kind} if items and items.detail else set())
    for rule in pages.values():
        for link in [*rule.links, *([rule.facets] if rule.facets else [])]:
            if link.kind not in known_kinds:
                raise ck.fail(f"[[crawl.pages]] kind={rule.kind!r} links/facets",
                              f"leads to kind {link.kind!r}, which has no [[crawl.pages]] rule "
                              f"(known: {', '.join(sorted(known_kinds))})")
    if stype == "http" and items is None:
        raise ck.fail("[items]", "an http job needs [items] (select + key) to produce rows")
    default_source = "item"
    fields = {name: ck.field(name, spec, f"[fields.{name}]", default_source)
              for name, spec in ck.typed(raw, "fields", "config", dict, {}).items()}
    for f in fields.values():
        if f.source == "detail" and (items is None or items.detail is None):
            raise ck.fail(f"[fields.{f.name}].from", "'detail' needs [items].detail (the link to follow)")
        if f.value is not None:
            object.__setattr__(f, "value", _expand(f.value, variables, f"[fields.{f.name}].value", ck))

    for f in fields.values():
        if f.source.startswith("facet:") and f.source[6:] not in pages:
            raise ck.fail(f"[fields.{f.name}].from", f"{f.source!r} names no [[crawl.pages]] kind "
                                                     f"(known: {', '.join(sorted(pages))})")
    target = ck.table(raw.get("target", {}), "[target]", {"table"})
    table = ck.typed(target, "table", "[target]", str, "listings")
    if table not in TABLES:
        raise ck.fail("[target].table", f"unknown table {table!r} (use {', '.join(TABLES)})")
    tr = ck.table(raw.get("transform", {}), "[transform]", {"type", "text_fields", "plugin"})
    transform = Transform(type=ck.typed(tr, "type", "[transform]", str, "none"),
                          text_fields=tuple(tr.get("text_fields", ("title", "body"))),
                          plugin=ck.typed(tr, "plugin", "[transform]", str))
    if transform.type not in ("none", "stock_mentions", "plugin"):
        raise ck.fail("[transform].type", f"unknown transform {transform.type!r} (use none, stock_mentions or plugin)")
    if transform.type == "plugin":
        if not transform.plugin or not re.fullmatch(r"[\w.]+:\w+", transform.plugin):
            raise ck.fail("[transform].plugin", "name the function as 'package.module:function'")
        _check_plugin(transform.plugin, ck)
    if stype == "sql" and transform.type == "none":
        raise ck.fail("[transform]", "a sql source needs a transform (stock_mentions or plugin)")

    settings: dict[str, dict[str, Any]] = {}
    for section, defaults in _DEFAULTS.items():
        given = ck.table(raw.get(section, {}), f"[{section}]", set(defaults))
        merged = {}
        for key, default in defaults.items():
            merged[key] = ck.typed(given, key, f"[{section}]", type(default), default)
        settings[section] = merged
    run, pol, db = settings["run"], settings["politeness"], settings["database"]
    if run["engine"] not in ENGINES:
        raise ck.fail("[run].engine", f"unknown engine {run['engine']!r} (use {', '.join(ENGINES)})")
    if run["start_method"] not in ("spawn", "forkserver", "fork"):
        raise ck.fail("[run].start_method", "use spawn, forkserver or fork")
    if run["parse_processes"] < 0:
        raise ck.fail("[run].parse_processes", "must be 0 (one per core) or more")
    for section, key in (("run", "fetch_threads"), ("run", "batch_size"), ("run", "frontier_memory"), ("politeness", "per_host"),
                         ("politeness", "retries"), ("politeness", "max_bytes")):
        if settings[section][key] < 1:
            raise ck.fail(f"[{section}].{key}", "must be at least 1")
    if not re.match(r"^(sqlite|postgresql)(\+\w+)?://", db["url"]):
        raise ck.fail("[database].url", f"unsupported URL {mask_url(db['url'])!r} (use sqlite:///file.db or postgresql://...)")
    return Config(
        path=path, job=job, source_type=stype, site=str(variables["site"]), vars=variables, demo=demo,
        start_urls=start_urls, allowed_domains=tuple(domains), sql=sql,
        cap=ck.typed(crawl, "cap", "[crawl]", int, 3000), pages=pages, pagination=pagination, items=items,
        fields=fields, table=table, transform=transform, database_url=db["url"],
        fetch_threads=run["fetch_threads"], parse_processes=run["parse_processes"] or (os.cpu_count() or 2),
        batch_size=run["batch_size"], flush_seconds=run["flush_seconds"], engine=run["engine"],
        max_pages=run["max_pages"], start_method=run["start_method"], frontier_memory=run["frontier_memory"],
        per_host=pol["per_host"],
        delay=pol["delay"], robots=pol["robots"], user_agent=pol["user_agent"],
        connect_timeout=pol["connect_timeout"], read_timeout=pol["read_timeout"],
        total_timeout=pol["total_timeout"], retries=pol["retries"],
        backoff=pol["backoff"], max_bytes=pol["max_bytes"], db_retry_seconds=db["retry_seconds"], raw=raw)


def _check_plugin(name: str, ck: _Checker) -> None:
    import importlib

    module, _, func = name.partition(":")
    try:
        fn = getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as exc:
        raise ck.fail("[transform].plugin", f"cannot import {name}: {exc}") from None
    if not callable(fn):
        raise ck.fail("[transform].plugin", f"{name} is not a function")


