"""The naive approach of the reference articles: multiprocessing.Pool(os.cpu_count()).map, requests.get,
BeautifulSoup(html, "html.parser"), and one INSERT per row on a new connection.

Why: it is the baseline the project claims to beat; measured on a sample of leaf list pages (and all of
their detail pages) because html.parser at ~50 KB/page is slow enough to dominate the whole harness.

    python bench/naive.py BASE_URL PG_URL LIST_PATHS_FILE   # prints one JSON line
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import sys
import time
from multiprocessing import Pool

import psycopg2
import requests
from bs4 import BeautifulSoup

from etl.parse.cleaners import to_date, to_decimal, to_float, to_int, to_text

ARGS: dict[str, str] = {}


def _text(node: object, css: str) -> str | None:
    el = node.select_one(css)  # type: ignore[attr-defined]
    return el.get_text() if el is not None else None


def get_list(url: str) -> list[tuple[str, dict]]:
    """One list page → (detail URL, list fields) for every listing on it."""
    soup = BeautifulSoup(requests.get(url, timeout=20).content, "html.parser")
    out = []
    for li in soup.select("ul.sellListContent > li"):
        key = li.get("data-lj_action_housedel_id")
        a = li.select_one("div.title a")
        if not key or a is None:
            continue
        unit = li.select_one("div.unitPrice")
        out.append((requests.compat.urljoin(url, a["href"]), {
            "listing_id": key, "title": a.get_text(), "house": _text(li, "div.houseInfo"),
            "community": _text(li, "div.positionInfo a:nth-of-type(1)"),
            "subdistrict": _text(li, "div.positionInfo a:nth-of-type(2)"),
            "total_price": _text(li, "div.totalPrice span"),
            "unit_price": unit.get("data-price") if unit is not None else None}))
    return out


def _rx(pattern: str, text: str | None) -> str | None:
    m = re.search(pattern, text) if text else None
    return m.group(1) if m else None


def get_detail(job: tuple[str, dict]) -> int:
    """One detail page → one row, INSERTed on a fresh connection (autocommit), as the articles do."""
    url, raw = job
    soup = BeautifulSoup(requests.get(url, timeout=20).content, "html.parser")
    house = raw["house"]
    elevator = _rx(r"^配备电梯(.*)$", _text(soup, "div.base li[data-field=elevator]"))
    now = dt.datetime.now(dt.UTC)
    row = ("demo", raw["listing_id"], "bj", to_text(_text(soup, "div.areaName span.info a:nth-of-type(1)")),
           to_text(raw["subdistrict"]), to_text(raw["community"]), to_text(raw["title"]),
           to_int(_rx(r"(\d+)室", house)), to_int(_rx(r"(\d+)厅", house)), to_float(_rx(r"([\d.]+)平米", house)),
           to_text(_rx(r"^[^|]*\|[^|]*\|\s*([^|]*?)\s*(?:\||$)", house)),
           to_text(_rx(r"\|\s*(精装|简装|毛坯|其他)\s*(?:\||$)", house)), _rx(r"([高中低])楼层", house),
           to_int(_rx(r"共(\d+)层", house)), to_int(_rx(r"(\d{4})年建", house)),
           to_decimal(raw["total_price"], 10000), to_int(raw["unit_price"]),
           to_date(_text(soup, "div.transaction li[data-field=listed] span:nth-of-type(2)")), url,
           json.dumps({"elevator": to_text(elevator), "ownership": to_text(
               _text(soup, "div.transaction li[data-field=ownership] span:nth-of-type(2)"))}, ensure_ascii=False),
           now, now, 0)
    conn = psycopg2.connect(ARGS["pg"])
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("INSERT INTO listings (source, listing_id, city, district, subdistrict, community, title, "
                    "rooms, halls, area_m2, orientation, decoration, floor_level, total_floors, year_built, "
                    "total_price, unit_price, listed_date, url, extras, first_seen, last_seen, run_id) VALUES "
                    "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    row)
    conn.close()
    return 1


def _init(pg: str) -> None:
    ARGS["pg"] = pg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base_url")
    ap.add_argument("pg_url")
    ap.add_argument("list_paths_file")
    args = ap.parse_args()
    lists = [args.base_url.rstrip("/") + p for p in open(args.list_paths_file).read().split()]
    t0 = time.perf_counter()
    with Pool(os.cpu_count(), initializer=_init, initargs=(args.pg_url,)) as pool:
        details = [d for page in pool.map(get_list, lists) for d in page]
        rows = sum(pool.map(get_detail, details))
    wall = time.perf_counter() - t0
    print(json.dumps({"pages": len(lists) + len(details), "rows": rows, "seconds": wall}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
