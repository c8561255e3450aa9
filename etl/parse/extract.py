"""Config-driven extraction: one page → rows (typed) + links (facets, pagination, detail pages).

An Extractor is built once per worker process (in the pool initializer) and reused for every page.
Fields of a list item that has a detail page travel as raw strings in the detail Request's meta and are
typed together with the detail page's fields, so a row is assembled exactly once, whole or not at all.
"""

from __future__ import annotations

import json
import re
from typing import Any

from etl.config import Config, FieldSpec, LinkRule
from etl.items import Page, Parsed, Request
from etl.parse.charset import DecodeError
from etl.parse.cleaners import CONVERTERS, clean_text, to_date_format
from etl.parse.engines import Node, TooDeep, parse_page
from etl.parse.hashing import item_hash, shape_digest
from etl.parse.labels import labelled
from etl.urls import MAX_URL, absolute, allowed

__all__ = ["MAX_CARRIED", "MAX_URL", "Extractor", "FieldError", "absolute", "allowed"]

MAX_CARRIED = 1_000  # characters of a facet link's text carried down to the requests below it

HTML_TYPES = ("text/html", "application/xhtml+xml", "text/plain", "")


class FieldError(ValueError):
    """A required field is missing or unreadable: the item gives no row, and a failure says why."""


def _json_path(text: str, path: str) -> str | None:
    try:
        value: Any = json.loads(text)
        for part in path.split("."):
            value = value[int(part)] if isinstance(value, list) else value[part]
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    if value is None:
        return None
    text = str(value)
    return text if text.isascii() else clean_text(text)  # "\ud800" in JSON is a lone surrogate in Python


class Extractor:
    def __init__(self, cfg: Config, domains: tuple[str, ...]) -> None:
        self.cfg = cfg
        self.domains = domains
        self.regex = {f.regex: re.compile(f.regex) for f in self._specs() if f.regex}
        self.link_match = {r.match: re.compile(r.match) for r in self._links() if r.match}
        self.columns = set(cfg.target.column_names)
        self.key_column = cfg.target.row_key
        self.detail_kind = cfg.detail_kind
        fields = list(cfg.fields.values())
        self.item_fields = [f for f in fields if f.source == "item"]
        self.page_fields = [f for f in fields if f.source == "page"]
        self.detail_fields = [f for f in fields if f.source == "detail"]
        self.flat = cfg.transform.type == "stock_mentions"  # it reads every field, not the table's columns
        # facet kinds whose link text some field reads: only those are carried down (the rest would be
        # copied into every request below the facet for nothing)
        self.carried = frozenset(f.source[6:] for f in fields if f.source.startswith("facet:"))
        self.shape = shape_digest(cfg)  # what a row is made of, in every list hash (etl/incremental.py)

    def _specs(self) -> list[FieldSpec]:
        specs = list(self.cfg.fields.values())
        specs += [r.total for r in self.cfg.pages.values() if r.total]
        specs += [s for s in (self.cfg.pagination.total_pages, self.cfg.pagination.url) if s]
        if self.cfg.items:
            specs.append(self.cfg.items.key)
        return specs

    def _links(self) -> list[LinkRule]:
        rules = [link for r in self.cfg.pages.values() for link in r.links]
        rules += [r.facets for r in self.cfg.pages.values() if r.facets]
        if self.cfg.items and self.cfg.items.detail:
            rules.append(self.cfg.items.detail)
        return rules

    # ---------------------------------------------------------------------------------- values
    def raw(self, spec: FieldSpec, node: Node, cache: dict | None = None, base: str | None = None) -> str | None:
        """The field's string before typing: css → text/attr → json → regex. Missing → None.
        `cache` shares selector results between fields of one node (eight fields read one houseInfo).
        `type = "url"` values are made absolute against `base`, the page they were read on."""
        if spec.source == "config":
            return spec.value
        key = (spec.css, spec.attr, spec.all, spec.label)
        found = None if cache is None else cache.get(key)
        if found is None:
            found = self._select(spec, node, cache)
            if cache is not None:
                cache[key] = found
        values = []
        for value in found:
            if value is not None and spec.json:
                try:
                    value = _json_path(value, spec.json)
                except RecursionError:  # json's C decoder too: one hostile value, not the whole page
                    raise FieldError(f"field {spec.name!r}: its JSON is nested too deeply to read") from None
            if value is not None and spec.regex:
                m = self.regex[spec.regex].search(value)
                value = None if m is None else (m.group(1) if m.re.groups else m.group(0))
            if value is not None and spec.type == "url" and base:
                value = absolute(base, value)
            if value is not None:
                values.append(value)
        return " ".join(values) if values else None

    @staticmethod
    def _select(spec: FieldSpec, node: Node, cache: dict | None = None) -> list[str]:
        if spec.css:
            targets = node.css(spec.css) if spec.all else [node.css_first(spec.css)]
        else:
            targets = [node]
        out = []
        for target in targets:
            if target is not None and spec.label is not None:
                texts = None
                if cache is not None:  # one walk of the node's text for all its label fields
                    texts = cache.setdefault(("#texts", target.key()), target.text_nodes())
                out += labelled(target, spec.label, spec.all, texts)
            elif target is not None:
                value = target.attr(spec.attr) if spec.attr else target.text()
                if value is not None:
                    out.append(value)
        return out

    @staticmethod
    def typed(spec: FieldSpec, raw: str | None) -> Any:
        if spec.format:
            return to_date_format(raw, spec.format)
        return CONVERTERS[spec.type](raw, spec.scale) if spec.scale else CONVERTERS[spec.type](raw)

    def links(self, rule: LinkRule, node: Node, base: str, meta: dict | None = None,
              via: dict[str, str] | None = None, warnings: list[str] | None = None) -> list[Request]:
        """Requests for the links `rule` selects. With `via`, each link's text is remembered under the kind
        it leads to (district → "朝阳"), so fields can say `from = "facet:district"` further down: only for
        kinds a field reads, and cut to MAX_CARRIED characters (every request below refers to it). Links
        that carry the same values share one dict: a pickle or a frontier write of them holds it once."""
        out, seen = [], set()
        pattern = self.link_match.get(rule.match) if rule.match else None
        carry = via is not None and rule.kind in self.carried
        above = {k: v for k, v in via.items() if k in self.carried} if via is not None else {}
        shared: dict[str, dict[str, str]] = {}  # this link's text → the via of the links with that text
        for a in node.css(rule.css):
            url = absolute(base, a.attr(rule.attr))
            if url and url not in seen and allowed(url, self.domains) and (pattern is None or pattern.search(url)):
                seen.add(url)
                below = above
                if carry:
                    text = self._carried(rule.kind, a.text(), warnings)
                    below = shared.setdefault(text, {**above, rule.kind: text})
                out.append(Request(url, rule.kind, {**(meta or {}), **({"via": below} if below else {})}))
        return out

    @staticmethod
    def _carried(kind: str, text: str, warnings: list[str] | None) -> str:
        if len(text) <= MAX_CARRIED:
            return text
        warning = (f"facet links of kind {kind!r} have text longer than {MAX_CARRIED:,} characters; fields "
                   f"from = \"facet:{kind}\" get the first {MAX_CARRIED:,}")
        if warnings is not None and warning not in warnings:
            warnings.append(warning)  # the same words from every page: the run logs them once
        return text[:MAX_CARRIED].rstrip()

    def _via(self, meta: dict) -> dict[str, str]:
        """The facet texts this page hands down: the ones fields read, cut (a frontier saved by an older
        version may hold others, uncut)."""
        return {k: str(v)[:MAX_CARRIED] for k, v in meta.get("via", {}).items() if k in self.carried}

    def facet_values(self, via: dict[str, str]) -> dict[str, str | None]:
        """Fields read from the text of the facet links that led here."""
        out = {}
        for f in self.cfg.fields.values():
            if f.source.startswith("facet:"):
                value = via.get(f.source[6:])
                if value is not None and f.regex:
                    m = self.regex[f.regex].search(value)
                    value = None if m is None else (m.group(1) if m.re.groups else m.group(0))
                out[f.name] = value
        return out

    # ---------------------------------------------------------------------------------- pages
    def parse(self, page: Page) -> Parsed:
        result = Parsed(page.request, validators=(page.headers.get("etag"), page.headers.get("last-modified")))
        ctype = page.headers.get("content-type", page.headers.get("Content-Type", ""))
        if ctype.split(";")[0].strip().lower() not in HTML_TYPES:
            result.error = f"not an HTML page (Content-Type {ctype.split(';')[0]})"
            return result
        try:
            root = parse_page(page.body, ctype, self.cfg.run.engine)
        except DecodeError as exc:
            coding = page.headers.get("content-encoding", "").strip().lower()
            result.error = (f"body is still {coding}-compressed (Content-Encoding: {coding}, which this install "
                            "cannot decode)" if coding not in ("", "identity", "gzip", "deflate") else str(exc))
            return result
        except TooDeep as exc:
            result.error = str(exc)
            return result
        kind = page.request.kind
        if kind == self.detail_kind:
            self._detail(page, root, result)
        else:
            self._list(page, root, result)
        return result

    def _list(self, page: Page, root: Node, result: Parsed) -> None:
        rule = self.cfg.pages.get(kind := page.request.kind)
        if rule is None:
            result.error = f"no [[crawl.pages]] rule for page kind {kind!r}"
            return
        number = int(page.request.meta.get("page", 1))
        via = self._via(page.request.meta)
        for link_rule in rule.links:
            result.links += self.links(link_rule, root, page.url, via=via, warnings=result.warnings)
        if number == 1 and rule.facets:
            total = self.typed(rule.total, self.raw(rule.total, root)) if rule.total else None
            if total is None or total > self.cfg.cap:
                facets = self.links(rule.facets, root, page.url, via=via, warnings=result.warnings)
                if facets:
                    result.links += facets
                    return  # the narrower filters will list these items completely
                count = "an unknown number of" if total is None else f"{total}"
                result.warnings.append(f"{page.url}: {count} results exceed the cap of {self.cfg.cap} and no narrower "
                                       "facet was found; the list may be incomplete")
        if rule.paginate:
            result.links += self._pages(page, root, kind, number, result.warnings, via)
        if rule.items or rule.paginate:
            self._items(page, root, result, via)

    def _pages(self, page: Page, root: Node, kind: str, number: int, warnings: list[str],
               via: dict[str, str]) -> list[Request]:
        pg = self.cfg.pagination
        out: list[Request] = []
        carry = {"via": via} if via else {}
        truncated = False
        if pg.total_pages and number == 1:
            total = CONVERTERS["int"](self.raw(pg.total_pages, root)) or 1
            template = self.raw(pg.url, root) if pg.url else pg.template
            truncated = total > pg.max_pages
            if template:
                for n in range(2, min(total, pg.max_pages) + 1):
                    url = absolute(page.url, template.replace("{url}", page.url).replace("{page}", str(n)))
                    if url and allowed(url, self.domains):
                        out.append(Request(url, kind, {"page": n, **carry}))
        if pg.next:
            following = self.links(LinkRule(pg.next, kind), root, page.url, {"page": number + 1, **carry})[:1]
            if number < pg.max_pages:
                out += following
            truncated = truncated or bool(following) and number == pg.max_pages
        if pg.links:  # numbered links: the number is the link's text ("上一页"/"下一页" → this page ± 1)
            for a in root.css(pg.links):
                url = absolute(page.url, a.attr("href"))
                if not url or url == page.url or not allowed(url, self.domains):
                    continue
                label = a.text()
                n = int(label) if label.isdigit() else number + 1
                if n == 1:
                    continue  # back to the first page, where this list started (often another URL for it)
                if n <= pg.max_pages:
                    out.append(Request(url, kind, {"page": n, **carry}))
                else:  # said once per list: by its page number max_pages (pages before it link ahead too)
                    truncated = truncated or number == pg.max_pages
        if truncated:
            warnings.append(f"{page.url}: this list has more than [crawl.pagination] max_pages = "
                            f"{pg.max_pages} pages; the rest is not fetched (raise max_pages, or split the list "
                            "with facets)")
        return out

    def _items(self, page: Page, root: Node, result: Parsed, via: dict[str, str]) -> None:
        items = self.cfg.items
        skip = {n.key() for n in root.css(items.skip)} if items.skip else set()
        # fields of the list page itself and of the facets that led here: once per page, for every item
        try:
            page_raw = {f.name: self.raw(f, root, None, page.url) for f in self.page_fields}
        except FieldError as exc:
            result.error = str(exc)
            return
        facets = self.facet_values(page.request.meta.get("via", {}))
        for node in root.css(items.select):
            if node.key() in skip:
                result.skipped += 1
                continue
            key = None
            try:
                key = self.raw(items.key, node) if items.key.source == "item" else None
                key = key.strip() if key else None
                self._item(page, node, key, page_raw, facets, via, result)
            except FieldError as exc:  # this item gives no row; the page's other items still do
                result.item_errors.append(f"item {key or '(no key)'}: {exc}")

    def _item(self, page: Page, node: Node, key: str | None, page_raw: dict, facets: dict, via: dict[str, str],
              result: Parsed) -> None:
        items = self.cfg.items
        if not key and items.key.source == "item":
            result.keyless += 1  # no natural key: not a row we can store
            return
        cache: dict = {}
        raw = {f.name: self.raw(f, node, cache, page.url) for f in self.item_fields}
        if items.detail:
            meta = {"key": key, "raw": {**raw, **page_raw}}
            if via:
                meta["via"] = via  # the page's one dict, shared by every item's detail link
            # what the stored row was built from: a re-run skips the detail page while this is unchanged
            meta["list_hash"] = item_hash(self.shape, meta["raw"], via)
            links = self.links(items.detail, node, page.url, meta)
            if links:
                result.links.append(links[0])
            else:
                result.keyless += 1  # no detail link to finish it from
            return
        result.rows.append(self.row(key, {**raw, **page_raw, **facets}, page.url))

    def _detail(self, page: Page, root: Node, result: Parsed) -> None:
        meta = page.request.meta
        key = meta.get("key")
        if self.cfg.items.key.source == "detail":
            key = self.raw(self.cfg.items.key, root)
        if key is None:
            result.error = "detail page without a key"
            return
        raw = dict(meta.get("raw", {}))
        raw.update(self.facet_values(meta.get("via", {})))
        cache: dict = {}
        try:
            for f in self.detail_fields:
                raw[f.name] = self.raw(f, root, cache, page.url)
            for f in self.page_fields:  # reached without a list page (carried nothing): read it here
                if f.name not in raw:
                    raw[f.name] = self.raw(f, root, cache, page.url)
            result.rows.append(self.row(key, raw, page.url))
        except FieldError as exc:
            result.error = f"item {key}: {exc}"

    def row(self, key: str, raw: dict[str, str | None], url: str) -> dict[str, Any]:
        """Type every field; known columns go in place, the rest into `extras`."""
        row: dict[str, Any] = {"source": self.cfg.site, self.key_column: str(key).strip()}
        extras: dict[str, Any] = {}
        for name, spec in self.cfg.fields.items():
            text = spec.value if spec.source == "config" else raw.get(name)
            value = self.typed(spec, text)
            if value is None and spec.required:
                raise FieldError(f"required field {name!r} is missing" if text is None else
                                 f"required field {name!r} unreadable as {spec.type}: {text[:80]!r}")
            if self.flat or name in self.columns:
                row[name] = value
            else:
                extras[name] = value if not hasattr(value, "isoformat") else value.isoformat()
        if "url" in self.columns and row.get("url") is None:
            row["url"] = url
        if "extras" in self.columns and not self.flat:
            row["extras"] = {k: (str(v) if not isinstance(v, int | float | str | type(None)) else v)
                             for k, v in extras.items()}
        return row
