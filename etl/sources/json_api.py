"""JSON over HTTP: an API or an XHR endpoint. Items and fields are found by JSON path; the next page by
page number, offset, a cursor token or a next URL in the response; an item may be followed to a JSON or
an HTML detail page. Fetching is the fetch stage's, exactly as for HTML (politeness, robots, retries).

A JSON path is a dot path with list indexes (`data.items`, `price.total_wan`, `tags.0`); "" is the
document itself. Every pagination loop is bounded by `max_pages` (and by the frontier: a URL or cursor
seen before is not fetched again).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from etl import jsontext
from etl.config.checker import Checker
from etl.config.model import Config
from etl.items import Page, Parsed, Request
from etl.sources.base import Reader
from etl.sources.http import HttpSource, check_start_urls
from etl.urls import absolute, allowed

LIST, DETAIL = "list", "detail"
_MISSING = object()


@dataclass(frozen=True)
class Pagination:
    style: str | None = None  # page | offset | cursor | next_url | None (one page)
    param: str | None = None  # the query parameter carrying the page, offset or cursor
    path: str | None = None  # cursor: the token's path; next_url: the URL's path
    start: int = 1  # page: the first page's number
    size: int | None = None  # offset: items per page (sent as size_param when given)
    size_param: str | None = None
    total: str | None = None  # page: path of the number of pages; offset: of the number of items


@dataclass(frozen=True)
class JsonSettings:
    items: str  # path of the list of items in a list response
    key: str  # path of an item's natural key
    detail_url: str | None  # path of an item's detail page URL (JSON or HTML)
    pagination: Pagination
    max_pages: int


def json_get(value: Any, path: str) -> Any:
    """The value at a dot path, or _MISSING."""
    if not path:
        return value
    for part in path.split("."):
        try:
            value = value[int(part)] if isinstance(value, list) else value[part]
        except (KeyError, IndexError, TypeError, ValueError):
            return _MISSING
    return value


def as_text(value: Any) -> str | None:
    """A JSON value as the field pipeline takes it (regex, then type): text, or JSON for objects."""
    if value is _MISSING or value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return jsontext.text(value)
    return repr(value) if isinstance(value, float) else str(value)


def with_query(url: str, **params: Any) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    query += [(k, str(v)) for k, v in params.items()]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _check_pagination(data: Any, ck: Checker) -> Pagination:
    where = "[source.json.pagination]"
    p = ck.table(data, where, {"page", "offset", "cursor", "next_url"})
    if len(p) > 1:
        raise ck.fail(where, f"choose one of page, offset, cursor, next_url (got {', '.join(sorted(p))})")
    if not p:
        return Pagination()
    style, spec = next(iter(p.items()))
    if style == "next_url":
        return Pagination(style, path=ck.typed(p, "next_url", where, str))
    allowed_keys = {"page": {"param", "start", "total_pages"}, "offset": {"param", "size", "size_param", "total"},
                    "cursor": {"param", "path"}}[style]
    s = ck.table(spec, f"{where}.{style}", allowed_keys, {"param"} | ({"path"} if style == "cursor" else set()))
    out = Pagination(style, param=ck.typed(s, "param", f"{where}.{style}", str),
                     path=ck.typed(s, "path", f"{where}.{style}", str),
                     start=ck.typed(s, "start", f"{where}.{style}", int, 1),
                     size=ck.typed(s, "size", f"{where}.{style}", int),
                     size_param=ck.typed(s, "size_param", f"{where}.{style}", str),
                     total=ck.typed(s, "total_pages" if style == "page" else "total", f"{where}.{style}", str))
    if out.size is not None and out.size < 1:
        raise ck.fail(f"{where}.{style}.size", "must be at least 1")
    return out


class JsonSource(HttpSource):
    name: ClassVar[str] = "json"
    keys: ClassVar[frozenset[str]] = frozenset({"start_urls", "json"})

    @classmethod
    def check(cls, source, raw, ck: Checker, variables) -> tuple[JsonSettings, tuple[str, ...]]:
        where = "[source.json]"
        s = ck.table(source.get("json"), where, {"items", "key", "detail", "pagination", "max_pages"},
                     {"items", "key"})
        detail = s.get("detail")
        if detail is not None:
            detail = ck.typed(ck.table(detail, f"{where}.detail", {"url"}, {"url"}), "url", f"{where}.detail", str)
        settings = JsonSettings(items=ck.typed(s, "items", where, str), key=ck.typed(s, "key", where, str),
                                detail_url=detail, pagination=_check_pagination(s.get("pagination", {}), ck),
                                max_pages=ck.typed(s, "max_pages", where, int, 10_000))
        if settings.max_pages < 1:
            raise ck.fail(f"{where}.max_pages", "must be at least 1")
        return settings, check_start_urls(source, ck, variables, source.get("demo") is not None)

    @classmethod
    def validate(cls, cfg: Config, ck: Checker) -> None:
        for f in cfg.fields.values():
            if f.source.startswith("facet:"):
                raise ck.fail(f"[fields.{f.name}].from", "a json source has no facets")
            if f.source == "detail" and cfg.source.detail_url is None:
                raise ck.fail(f"[fields.{f.name}].from", "'detail' needs [source.json] detail = { url = … }")
            if f.source in ("item", "page") and (f.css or f.label):
                raise ck.fail(f"[fields.{f.name}]", "fields of a JSON item are read by 'json' path, not 'css' "
                                                    "or 'label'")

    def plan(self, engine: Any) -> list[Request]:
        return [Request(u, LIST, {"page": 1}) for u in dict.fromkeys(self.start_urls)]

    def priority(self, request: Request) -> int:
        return 0 if request.kind == DETAIL else 1

    def urgent_kinds(self) -> tuple[str, ...]:
        return (DETAIL,)

    def reader(self, domains: tuple[str, ...]) -> Reader:
        from etl.parse.extract import Extractor

        return _JsonReader(self.cfg, Extractor(self.cfg, domains), domains)


class _JsonReader:
    def __init__(self, cfg: Config, extractor, domains: tuple[str, ...]) -> None:
        self.cfg, self.s, self.ext, self.domains = cfg, cfg.source, extractor, domains
        fields = list(cfg.fields.values())
        self.item_fields = [f for f in fields if f.source == "item"]
        self.page_fields = [f for f in fields if f.source == "page"]
        self.detail_fields = [f for f in fields if f.source == "detail"]

    def read(self, page: Page) -> Parsed:
        result = Parsed(page.request)
        if page.request.kind == DETAIL:
            self._detail(page, result)
            return result
        doc = self._json(page, result)
        if result.error:
            return result
        items = json_get(doc, self.s.items)
        if not isinstance(items, list):
            result.error = f"no list of items at {self.s.items!r} in the response"
            return result
        page_raw = {f.name: self._value(f, doc, page.url) for f in self.page_fields}
        for item in items:
            try:
                self._item(page, item, page_raw, result)
            except RecursionError:  # a value nested too deeply to turn into text: that item only
                result.item_errors.append("item: a value is nested too deeply to read")
        result.links += self._next(page, doc, len(items), result.warnings)
        return result

    def _json(self, page: Page, result: Parsed) -> Any:
        try:
            return json.loads(page.body)
        except (ValueError, UnicodeDecodeError) as exc:
            ctype = page.headers.get("content-type", "").split(";")[0]
            result.error = f"not a JSON response (Content-Type {ctype or 'none'}): {str(exc)[:120]}"
            return None
        except RecursionError:  # as an HTML page nested past the limit: refused, never a crashed worker
            result.error = "the JSON response is nested too deeply to read"
            return None

    def _value(self, spec, node: Any, base: str) -> str | None:
        """A field's text from a JSON node: path, then regex; `type = "url"` made absolute against the
        response it was read from."""
        if spec.source == "config":
            return spec.value
        value = as_text(json_get(node, spec.json or ""))
        if value is not None and spec.regex:
            m = self.ext.regex[spec.regex].search(value)
            value = None if m is None else (m.group(1) if m.re.groups else m.group(0))
        if value is not None and spec.type == "url":
            value = absolute(base, value)
        return value

    def _item(self, page: Page, item: Any, page_raw: dict, result: Parsed) -> None:
        key = as_text(json_get(item, self.s.key)) if isinstance(item, dict) else None
        key = key.strip() if key else None
        if not key:
            result.keyless += 1  # no natural key: not a row we can store
            return
        raw = {f.name: self._value(f, item, page.url) for f in self.item_fields} | page_raw
        if self.s.detail_url is not None:
            url = absolute(page.url, as_text(json_get(item, self.s.detail_url)))
            if url and allowed(url, self.domains):
                result.links.append(Request(url, DETAIL, {"key": key, "raw": raw}))
            else:
                result.keyless += 1  # no detail link to finish it from
            return
        self._row(key, raw, page.url, result, item_level=True)

    def _row(self, key: str, raw: dict, url: str, result: Parsed, item_level: bool) -> None:
        from etl.parse.extract import FieldError

        try:
            result.rows.append(self.ext.row(key, raw, url))
        except FieldError as exc:
            if item_level:
                result.item_errors.append(f"item {key}: {exc}")
            else:
                result.error = f"item {key}: {exc}"

    def _detail(self, page: Page, result: Parsed) -> None:
        """A detail page in JSON (fields by `json` path) or HTML (fields by `css`, as for HTML crawls)."""
        key, raw = page.request.meta.get("key"), dict(page.request.meta.get("raw", {}))
        ctype = page.headers.get("content-type", "").split(";")[0].strip().lower()
        if "json" in ctype or page.body.lstrip()[:1] in (b"{", b"["):
            doc = self._json(page, result)
            if result.error:
                return
            raw.update({f.name: self._value(f, doc, page.url) for f in self.detail_fields})
        else:
            from etl.parse.charset import DecodeError
            from etl.parse.engines import parse_page

            try:
                root = parse_page(page.body, ctype, self.cfg.run.engine)
            except DecodeError as exc:
                result.error = str(exc)
                return
            cache: dict = {}
            raw.update({f.name: self.ext.raw(f, root, cache, page.url) for f in self.detail_fields})
        self._row(str(key), raw, page.url, result, item_level=False)

    def _current(self, request: Request, default: int) -> int:
        """This page's number or offset: the URL's own parameter, else what the previous page said."""
        p = self.s.pagination
        given = dict(parse_qsl(urlsplit(request.url).query)).get(p.param or "", "")
        return int(given) if given.isascii() and given.isdigit() else int(request.meta.get("n", default))

    def _next(self, page: Page, doc: Any, count: int, warnings: list[str]) -> list[Request]:
        p, number = self.s.pagination, int(page.request.meta.get("page", 1))
        url = None
        if p.style == "next_url":
            url = absolute(page.url, as_text(json_get(doc, p.path)))
        elif p.style == "cursor":
            token = as_text(json_get(doc, p.path))
            url = with_query(page.url, **{p.param: token}) if token else None
        elif p.style == "page" and count:
            total = as_text(json_get(doc, p.total)) if p.total else None
            current = self._current(page.request, p.start)
            if total is None or (total.isdigit() and current < int(total) + p.start - 1):
                url = with_query(page.url, **{p.param: current + 1})
        elif p.style == "offset" and count:
            total = as_text(json_get(doc, p.total)) if p.total else None
            offset = self._current(page.request, 0) + count
            if total is None or (total.isdigit() and offset < int(total)):
                sizes = {p.size_param: p.size} if p.size_param and p.size else {}
                url = with_query(page.url, **{p.param: offset}, **sizes)
        if not url or not allowed(url, self.domains):
            return []
        if number >= self.s.max_pages:
            warnings.append(f"{page.url}: more pages than [source.json] max_pages = {self.s.max_pages}; "
                            "the rest is not fetched")
            return []
        meta: dict[str, Any] = {"page": number + 1}
        if p.style == "page":
            meta["n"] = self._current(page.request, p.start) + 1
        elif p.style == "offset":
            meta["n"] = self._current(page.request, 0) + count
        return [Request(url, LIST, meta)]
