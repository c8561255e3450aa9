"""The demo portal's listings as a JSON API, in the four pagination styles real APIs use, so the `json`
source kind can be tested end to end against the same ground truth as the HTML site (`DemoSite.truth`).

    /api/{city}/listings?page=N&size=S        {"code": 0, "data": {"total", "page", "pages", "items": [...]}}
    /api/{city}/listings/offset?offset=K&limit=L   {"total", "offset", "results": [...]}
    /api/{city}/listings/cursor[?cursor=TOKEN]     {"items": [...], "next_cursor": "opaque" | null}
    /api/{city}/listings/next[?page=N&size=S]      {"count", "next": "/api/…" | null, "results": [...]}
    /api/{city}/listings/{id}                      the detail object (404 {"error"} for an unknown id)

Sizes default to 30, at most 100; a page past the end is an empty list; a malformed number or cursor is
400 with {"error"}. Items are id descending, like the HTML lists. Truth mapping (list item → truth):
id → listing_id; title; location.community, location.subdistrict; layout.rooms, layout.halls; area_m2;
orientation (null for 暂无数据); decoration (null when absent); floor.level, floor.total → floor_level,
total_floors; year_built (null when absent); price.total_wan × 10000 → total_price (yuan); price.unit →
unit_price; detail_url → url (the HTML detail page's path). Only on the detail object: district,
listed_date (ISO), elevator (null for 暂无数据), ownership (the truth's extras). The detail object is
written with \\u escapes, the lists as UTF-8, so a client must decode both.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    from etl.demo.names import CityModel, Listing

JSON = {"Content-Type": "application/json; charset=utf-8"}
_PATH = re.compile(r"/api/([a-z0-9_-]{1,32})/listings(?:/(offset|cursor|next|[0-9]{12}))?/?\Z")
DEFAULT_SIZE, MAX_SIZE = 30, 100
_TAGS = ((1, "近地铁"), (2, "VR房源"), (4, "房本满五年"), (8, "必看好房"))

Response = tuple[int, dict[str, str], bytes]


class BadRequest(ValueError):
    pass


def _answer(status: int, obj: Any, ascii_only: bool = False) -> Response:
    return status, dict(JSON), json.dumps(obj, ensure_ascii=ascii_only, separators=(",", ":")).encode()


def list_item(m: CityModel, li: Listing) -> dict[str, Any]:
    sname = m.subs[li.sub][0]
    return {
        "id": str(li.id), "title": m.title(li),
        "price": {"total_wan": float(li.price_text), "unit": li.unit},
        "location": {"community": m.communities[li.community], "subdistrict": sname},
        "layout": {"rooms": li.rooms, "halls": li.halls}, "area_m2": float(li.area),
        "orientation": None if li.orientation == "暂无数据" else li.orientation,
        "decoration": li.decoration or None, "floor": {"level": li.level, "total": li.total_floors},
        "year_built": li.year or None, "tags": [t for bit, t in _TAGS if li.tags & bit],
        "detail_url": f"/{m.city}/ershoufang/{li.id}.html", "api_url": f"/api/{m.city}/listings/{li.id}",
    }


def detail(m: CityModel, li: Listing) -> dict[str, Any]:
    return {**list_item(m, li), "district": m.districts[m.subs[li.sub][2]][0],
            "listed_date": dt.date.fromordinal(li.listed).isoformat(),
            "elevator": None if li.elevator == "暂无数据" else li.elevator, "ownership": li.ownership}


def _int(query: dict[str, list[str]], name: str, default: int, low: int, high: int | None = None) -> int:
    raw = query.get(name, [str(default)])[0]
    if not (raw.isascii() and raw.isdigit()):
        raise BadRequest(f"{name} must be a non-negative integer, got {raw[:40]!r}")
    value = int(raw)
    if value < low:
        raise BadRequest(f"{name} must be at least {low}")
    return min(value, high) if high is not None else value


def _cursor(token: str) -> int:
    try:
        text = base64.urlsafe_b64decode(token.encode("ascii") + b"=" * (-len(token) % 4)).decode("ascii")
    except (binascii.Error, UnicodeError, ValueError):
        raise BadRequest("bad cursor") from None
    if not text.startswith("o:") or not text[2:].isdigit():
        raise BadRequest("bad cursor")
    return int(text[2:])


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode().rstrip("=")


def render(site, path: str) -> Response | None:
    """The API's answer for `path` (query included), or None when the path is not the API's."""
    parts = urlsplit(path)
    match = _PATH.match(parts.path)
    if match is None:
        return _answer(404, {"error": "not found"}) if parts.path.startswith("/api/") else None
    m: CityModel = site.model(match.group(1))
    style, query = match.group(2), parse_qs(parts.query)
    try:
        if style and style.isdigit():
            li = site._find(m, int(style))
            if li is None:
                return _answer(404, {"error": "no such listing"})
            status, headers, body = _answer(200, detail(m, li), True)
            return status, {**headers, "Last-Modified": site.last_modified(li)}, body
        return _answer(200, _page(m, style, query))
    except BadRequest as exc:
        return _answer(400, {"error": str(exc)})


def _page(m: CityModel, style: str | None, query: dict[str, list[str]]) -> dict[str, Any]:
    total = len(m.listings)
    if style == "offset":
        offset, limit = _int(query, "offset", 0, 0), _int(query, "limit", DEFAULT_SIZE, 1, MAX_SIZE)
        return {"total": total, "offset": offset, "results": _items(m, offset, limit)}
    if style == "cursor":
        offset = _cursor(query["cursor"][0]) if "cursor" in query else 0
        more = offset + DEFAULT_SIZE < total
        return {"items": _items(m, offset, DEFAULT_SIZE), "next_cursor": _token(offset + DEFAULT_SIZE) if more else None}
    page, size = _int(query, "page", 1, 1), _int(query, "size", DEFAULT_SIZE, 1, MAX_SIZE)
    items = _items(m, (page - 1) * size, size)
    if style == "next":
        nxt = f"/api/{m.city}/listings/next?page={page + 1}&size={size}" if page * size < total else None
        return {"count": total, "next": nxt, "results": items}
    return {"code": 0, "data": {"total": total, "page": page, "pages": -(-total // size), "items": items}}


def _items(m: CityModel, offset: int, limit: int) -> list[dict[str, Any]]:
    return [list_item(m, li) for li in m.listings[offset:offset + limit]]
