"""HTTP crawl of HTML pages: start URLs, facets, pagination and detail pages, as [[crawl.pages]],
[crawl.pagination], [items] and [fields] describe them (the extraction itself is etl/parse/extract.py)."""

from __future__ import annotations

import logging
import os
import re
from typing import Any, ClassVar

from etl.config.checker import Checker, expand
from etl.config.model import Config
from etl.items import Page, Parsed, Request
from etl.sources.base import Reader, Source
from etl.urls import origin_domain, split_credentials

log = logging.getLogger("etl.sources.http")


def start_demo(demo: dict[str, Any]):
    """Serve the bundled demo site on a free loopback port; returns (server, base_url)."""
    from etl.demo.server import DemoServer
    from etl.demo.site import SiteOptions

    demo = dict(demo)
    news = demo.pop("news", None)
    saved = os.environ.get("ETL_DEMO_NEWS")
    if news is not None:  # the server process reads the news section's size from its environment
        os.environ["ETL_DEMO_NEWS"] = str(news)
    try:
        server = DemoServer(SiteOptions(**demo), extra_apps=("etl.demo.news:app",))
        return server, server.start()
    finally:
        if saved is None:
            os.environ.pop("ETL_DEMO_NEWS", None)
        else:
            os.environ["ETL_DEMO_NEWS"] = saved


def check_start_urls(source: dict[str, Any], ck: Checker, variables: dict[str, Any],
                     demo: bool) -> tuple[str, ...]:
    urls = source.get("start_urls")
    if not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls):
        raise ck.fail("[source].start_urls", "expected a non-empty list of URLs")
    start_urls = tuple(expand(u, variables, "[source].start_urls", ck) for u in urls)
    if not demo:
        for url in start_urls:
            if not re.match(r"https?://[^/]+", url):
                raise ck.fail("[source].start_urls", f"{url!r} is not an http(s) URL")
    return start_urls


class HttpSource(Source):
    name: ClassVar[str] = "http"
    keys: ClassVar[frozenset[str]] = frozenset({"start_urls"})

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self.server = None
        self.start_urls = cfg.start_urls
        self.auth: dict[str, tuple[str, str]] = {}
        self._split_credentials()

    def _split_credentials(self) -> None:
        """user:password@ in a start URL is kept aside for the fetcher, never in a URL that is stored."""
        clean = []
        for url in self.start_urls:
            url, creds = split_credentials(url)
            clean.append(url)
            if creds:
                self.auth[creds[0]] = creds[1]
        self.start_urls = tuple(clean)

    def credentials(self) -> dict[str, tuple[str, str]]:
        return dict(self.auth)

    @classmethod
    def check(cls, source, raw, ck, variables):
        return None, check_start_urls(source, ck, variables, source.get("demo") is not None)

    @classmethod
    def validate(cls, cfg: Config, ck: Checker) -> None:
        if not cfg.pages:
            raise ck.fail("[crawl]", "needs at least one [[crawl.pages]] rule (the first kind is the start pages')")
        if cfg.items is None:
            raise ck.fail("[items]", "an http job needs [items] (select + key) to produce rows")
        cls.check_text_fields(cfg, ck, set(cfg.fields))
        for f in cfg.fields.values():
            if f.source == "detail" and cfg.items.detail is None:
                raise ck.fail(f"[fields.{f.name}].from", "'detail' needs [items].detail (the link to follow)")

    def prepare(self) -> None:
        if self.cfg.demo is not None:
            self.server, self.base_url = start_demo(self.cfg.demo)
            self.start_urls = tuple(u.replace("{base_url}", self.base_url) for u in self.cfg.start_urls)
            self._split_credentials()
        if not self.cfg.fetch.robots:
            log.warning("robots.txt is NOT obeyed for this run ([politeness] robots = false)")

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()

    def unshareable(self) -> str | None:
        if self.cfg.demo is None:
            return None
        return ("[source] demo serves the bundled site to this process alone, on a port of its own; for etl "
                "worker serve it once (etl demo serve --host ADDRESS) and give its address as source.base_url "
                "(config/demo-shared.toml)")

    def domains(self) -> tuple[str, ...]:
        """The configured allowed domains, else each start URL's host and port (etl/urls.py)."""
        return self.cfg.allowed_domains or tuple(sorted(
            {d for d in (origin_domain(u) for u in self.start_urls) if d}))

    def plan(self, engine: Any) -> list[Request]:
        first_kind = next(iter(self.cfg.pages))
        return [Request(u, first_kind, {}) for u in dict.fromkeys(self.start_urls)]

    def priority(self, request: Request) -> int:
        """Detail pages first (they finish listings), then further pages of a list, then new facets."""
        if request.kind == self.cfg.detail_kind:
            return 0
        return 1 if request.meta.get("page", 1) > 1 else 2

    def urgent_kinds(self) -> tuple[str, ...]:
        return (self.cfg.detail_kind,) if self.cfg.detail_kind else ()

    def reader(self, domains: tuple[str, ...]) -> Reader:
        from etl.parse.extract import Extractor

        return _PageReader(Extractor(self.cfg, domains))


class _PageReader:
    def __init__(self, extractor) -> None:
        self.extractor = extractor

    def read(self, unit: Page) -> Parsed:
        return self.extractor.parse(unit)
