"""Scrapy equivalent of bench/bench.toml, for a side-by-side comparison with `etl run`.

Why: "is the pipeline faster than the standard tool?" needs the standard tool doing the same work: the
same facet logic (city → district → sub-district while a list's total exceeds 3000), pagination from the
page-box JSON attribute, list items → detail pages, the same CSS selectors and the same typed values
(etl's own converters, so the rows are identical), and batched upserts (1000 rows, execute_values,
INSERT … ON CONFLICT) into the same PostgreSQL `listings` table.

    python bench/scrapy_spider.py BASE_URL PG_URL [--city bj]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
from collections.abc import Iterator
from typing import Any

import psycopg2
import psycopg2.extras
import scrapy
from scrapy.crawler import CrawlerProcess
from scrapy.http import Response

from etl.parse.cleaners import to_date, to_decimal, to_float, to_int, to_text

CAP = 3000
FACETS = {"city": ('div[data-role=ershoufang] > div:nth-of-type(1) a', "district"),
          "district": ('div[data-role=ershoufang] > div:nth-of-type(2) a', "subdistrict")}
HOUSE = {
    "rooms": (re.compile(r"(\d+)室"), to_int), "halls": (re.compile(r"(\d+)厅"), to_int),
    "area_m2": (re.compile(r"([\d.]+)平米"), to_float),
    "orientation": (re.compile(r"^[^|]*\|[^|]*\|\s*([^|]*?)\s*(?:\||$)"), to_text),
    "decoration": (re.compile(r"\|\s*(精装|简装|毛坯|其他)\s*(?:\||$)"), to_text),
    "floor_level": (re.compile(r"([高中低])楼层"), to_text),
    "total_floors": (re.compile(r"共(\d+)层"), to_int), "year_built": (re.compile(r"(\d{4})年建"), to_int),
}
ELEVATOR = re.compile(r"^配备电梯(.*)$")
COLUMNS = ("source", "listing_id", "city", "district", "subdistrict", "community", "title", "rooms", "halls",
           "area_m2", "orientation", "decoration", "floor_level", "total_floors", "year_built", "total_price",
           "unit_price", "listed_date", "url", "extras", "first_seen", "last_seen", "run_id")


def text_of(sel: scrapy.Selector | Response, css: str) -> str | None:
    """Full text of the first match (like etl's node.text()), None when nothing matches."""
    first = sel.css(css)
    return first[0].xpath("string()").get() if first else None


class ListingsSpider(scrapy.Spider):
    name = "listings"

    def __init__(self, base_url: str, city: str = "bj", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.base_url, self.city = base_url.rstrip("/"), city

    async def start(self) -> Any:
        yield scrapy.Request(f"{self.base_url}/{self.city}/ershoufang/", cb_kwargs={"kind": "city", "page": 1})

    def start_requests(self) -> Iterator[scrapy.Request]:  # Scrapy < 2.13
        yield scrapy.Request(f"{self.base_url}/{self.city}/ershoufang/", cb_kwargs={"kind": "city", "page": 1})

    def parse(self, response: Response, kind: str = "city", page: int = 1) -> Iterator[scrapy.Request]:
        if page == 1 and kind in FACETS:
            total = to_int(text_of(response, "h2.total span"))
            if total is None or total > CAP:
                css, sub_kind = FACETS[kind]
                links = response.css(css)
                if links:
                    for a in links:
                        yield response.follow(a, cb_kwargs={"kind": sub_kind, "page": 1})
                    return
        if page == 1:
            box = response.css("div.page-box")
            if box:
                try:
                    pages = int(json.loads(box[0].attrib.get("page-data", "{}"))["totalPage"])
                except (ValueError, KeyError, TypeError):
                    pages = 1
                template = box[0].attrib.get("page-url")
                if template:
                    for n in range(2, min(pages, 100) + 1):
                        yield response.follow(template.replace("{page}", str(n)),
                                              cb_kwargs={"kind": kind, "page": n})
        # items = ul.sellListContent > li minus the skip selector (li.list_app_daoliu, li.ad-item)
        for li in response.css("ul.sellListContent > li:not(.list_app_daoliu):not(.ad-item)"):
            key = li.attrib.get("data-lj_action_housedel_id")
            if key is None:
                continue
            link = li.css("div.title a")
            if not link:
                continue
            raw = {"subdistrict": text_of(li, "div.positionInfo a:nth-of-type(2)"),
                   "community": text_of(li, "div.positionInfo a:nth-of-type(1)"),
                   "title": text_of(li, "div.title a"), "house": text_of(li, "div.houseInfo"),
                   "total_price": text_of(li, "div.totalPrice span"),
                   "unit_price": li.css("div.unitPrice::attr(data-price)").get()}
            yield response.follow(link[0], callback=self.parse_detail, cb_kwargs={"key": key, "raw": raw})

    def parse_detail(self, response: Response, key: str, raw: dict[str, str | None]) -> Iterator[dict]:
        house = raw["house"]
        row: dict[str, Any] = {"source": "demo", "listing_id": key.strip(), "city": self.city,
                               "district": to_text(text_of(response, "div.areaName span.info a:nth-of-type(1)")),
                               "subdistrict": to_text(raw["subdistrict"]), "community": to_text(raw["community"]),
                               "title": to_text(raw["title"])}
        for name, (rx, conv) in HOUSE.items():
            m = rx.search(house) if house is not None else None
            row[name] = conv(m.group(1) if m else None)
        row["total_price"] = to_decimal(raw["total_price"], 10000)
        row["unit_price"] = to_int(raw["unit_price"])
        row["listed_date"] = to_date(text_of(response, "div.transaction li[data-field=listed] span:nth-of-type(2)"))
        elevator = text_of(response, "div.base li[data-field=elevator]")
        m = ELEVATOR.search(elevator) if elevator is not None else None
        row["url"] = response.url
        row["extras"] = {"elevator": to_text(m.group(1) if m else None),
                         "ownership": to_text(text_of(response, "div.transaction li[data-field=ownership] "
                                                                "span:nth-of-type(2)"))}
        yield row


class PostgresUpsertPipeline:
    """Batched (1000 rows) INSERT … ON CONFLICT DO UPDATE with execute_values, one transaction per batch."""

    def __init__(self, url: str, batch: int = 1000) -> None:
        self.url, self.batch_size = url, batch
        self.rows: list[tuple] = []
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS if c not in ("source", "listing_id",
                                                                                 "first_seen"))
        self.sql = (f"INSERT INTO listings ({', '.join(COLUMNS)}) VALUES %s "
                    f"ON CONFLICT (source, listing_id) DO UPDATE SET {updates}")

    @classmethod
    def from_crawler(cls, crawler: Any) -> PostgresUpsertPipeline:
        return cls(crawler.settings["PG_URL"])

    def open_spider(self, spider: scrapy.Spider | None = None) -> None:
        self.conn = psycopg2.connect(self.url)

    def close_spider(self, spider: scrapy.Spider | None = None) -> None:
        self.flush()
        self.conn.close()

    def process_item(self, item: dict, spider: scrapy.Spider | None = None) -> dict:
        now = dt.datetime.now(dt.UTC)
        item = {**item, "extras": json.dumps(item["extras"], ensure_ascii=False), "first_seen": now,
                "last_seen": now, "run_id": 0}
        self.rows.append(tuple(item[c] for c in COLUMNS))
        if len(self.rows) >= self.batch_size:
            self.flush()
        return item

    def flush(self) -> None:
        if self.rows:
            with self.conn, self.conn.cursor() as cur:
                psycopg2.extras.execute_values(cur, self.sql, self.rows, page_size=self.batch_size)
            self.rows = []


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base_url")
    ap.add_argument("pg_url")
    ap.add_argument("--city", default="bj")
    args = ap.parse_args()
    process = CrawlerProcess(settings={
        "CONCURRENT_REQUESTS": 16, "CONCURRENT_REQUESTS_PER_DOMAIN": 16, "DOWNLOAD_DELAY": 0,
        "AUTOTHROTTLE_ENABLED": False, "HTTPCACHE_ENABLED": False, "ROBOTSTXT_OBEY": True,
        "LOG_LEVEL": "WARNING", "TELNETCONSOLE_ENABLED": False, "USER_AGENT": "etl-bench-scrapy",
        "ITEM_PIPELINES": {f"{__name__}.PostgresUpsertPipeline": 300}, "PG_URL": args.pg_url,
    })
    crawler = process.create_crawler(ListingsSpider)
    process.crawl(crawler, base_url=args.base_url, city=args.city)
    process.start()
    stats = crawler.stats.get_stats()
    print(json.dumps({"responses": stats.get("response_received_count", 0),
                      "items": stats.get("item_scraped_count", 0),
                      "status_200": stats.get("downloader/response_status_count/200", 0)}))


if __name__ == "__main__":
    main()
