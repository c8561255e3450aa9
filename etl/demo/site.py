"""Deterministic lianjia-style second-hand housing portal used as the default crawl target.

Pure and I/O-free: ``DemoSite.render(path)`` returns (status, headers, body) and
``truth(city)`` returns exactly what a careful parser of the served pages gets.
Any city slug matching ``[a-z0-9_-]{1,32}`` works; all data derives from
``random.Random(f"{seed}:{city}")``.  Lists show at most max_pages x page_size
items, so complete crawls must walk district -> sub-district facets.

URLs (all links root-relative): /robots.txt; /{city}/ershoufang/[pg{n}/];
/{city}/ershoufang/{district_or_subdistrict_slug}/[pg{n}/]; /{city}/ershoufang/{id}.html.
Page beyond the last -> 200 with an empty list; page > max_pages (or pg0) -> 404.
Lists are ordered by listing id descending ("newest first").  /private/ and /{city}/private/
answer 200 but robots.txt disallows them (a compliance trap).  Pages are 40-80 KB.

List page contract (one listing = ``ul.sellListContent > li[data-lj_action_housedel_id]``;
promos ``li.list_app_daoliu`` and ``li.ad-item`` have no such attribute):
  listing_id   li@data-lj_action_housedel_id  (also div.title a@data-housecode)
  url          div.title a@href                ("/bj/ershoufang/101112345678.html")
  title        div.title a  (text, HTML-escaped in markup)
  community    div.positionInfo a:nth-of-type(1)  (text has a trailing space: strip)
  subdistrict  div.positionInfo a:nth-of-type(2)
  houseInfo    div.houseInfo text, parts joined by " | ":
               [0] "N室M厅" -> rooms, halls   [1] "89.53平米" / "89平米" -> area_m2 (float of number)
               [2] orientation, "暂无数据" -> None
               then, classified by pattern (NOT position): decoration 精装|简装|毛坯|其他 (absent -> None),
               floor "中楼层(共18层)" -> ("中", 18); "共6层" -> (None, 6); "地下室(共6层)" -> (None, 6),
               year "2005年建" (absent -> None), building type (板楼|塔楼|板塔结合, always last).
  total_price  div.totalPrice span  ("520" or "523.5", in 万 -> Decimal yuan = value * 10000)
  unit_price   div.unitPrice@data-price  (int yuan/m2; text is "58,101元/平")
  district     not on list items: it is the district facet a.selected on district/sub-district pages,
               or the detail page.
Facets: ``div[data-role="ershoufang"] > div:nth-of-type(1) a`` districts,
``div[data-role="ershoufang"] > div:nth-of-type(2) a`` sub-districts (empty div on the city page);
the current one carries class="selected"; title="北京朝阳在售二手房".
Pagination (list base ``P`` = "/bj/ershoufang/" or "/bj/ershoufang/{slug}/"):
  json : ``div.page-box[page-data]`` with page-url="P pg{page}/" and page-data='{"totalPage":T,"curPage":C}';
         no <a> page links.  T = min(max_pages, ceil(count/page_size)), 0 for an empty list.
  links: ``div.page-box a`` window (first, cur±2, last; current a.on), a.prev 上一页, a.next 下一页.
  next : ``div.page-box a.next`` only when a next page exists.
Detail page contract (/{city}/ershoufang/{id}.html; 404 when detail_pages=False):
  title        h1.main (text; also @title)
  total_price  div.price span.total  ("523.5", 万)
  unit_price   span.unitPriceValue  (text "58101元/平米" -> regex ``(\\d+)``)
  listing_id   div.houseRecord span.info (text "101112345678举报" -> regex ``(\\d{12})``)
  district     div.areaName span.info a:nth-of-type(1); subdistrict: a:nth-of-type(2)
  community    div.communityName a.info
  breadcrumbs  div.intro div.l-txt a ("北京二手房", "朝阳二手房", "望京二手房")
  base fields  ``div.base li[data-field=F]`` text = label + value, e.g. "配备电梯有" -> regex ``^配备电梯(.*)$``;
               F in layout, floor, area, orientation, decoration, elevator, building (fixed order).
               elevator: 有 | 无 | 暂无数据 (-> None).
  transaction  ``div.transaction li[data-field=F] span:nth-of-type(2)`` value;
               F in listed (挂牌时间, "2024-03-05"), ownership (交易权属), last_trade (上次交易, date or
               暂无数据), usage (房屋用途), years (房屋年限), mortgage (抵押信息)  (fixed order).
Truth extras are exactly {"elevator": str|None, "ownership": str}.
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
import json
import re
import threading
from dataclasses import dataclass
from decimal import Decimal
from html import escape
from urllib.parse import urlsplit

from etl.demo import days, names
from etl.demo.conditional import http_date
from etl.demo.names import CityModel, Listing

_CITY_RE = re.compile(r"[a-z0-9_-]{1,32}\Z")
_PAGE_RE = re.compile(r"pg([0-9]{1,7})\Z")
_DETAIL_RE = re.compile(r"([0-9]{12})\.html\Z")
MIN_PAGE_BYTES = 41_000
ROBOTS = "User-agent: *\nDisallow: /private/\nDisallow: /*/private/\n"


@dataclass(frozen=True)
class SiteOptions:
    """Knobs for size, seed and the markup variants a crawler config must cope with."""

    listings: int = 5000
    seed: int = 0
    encoding: str = "utf-8"
    pagination: str = "json"
    page_size: int = 30
    max_pages: int = 100
    detail_pages: bool = True
    day: int = 0  # which day of the site to serve (etl/demo/days.py); 0 = as generated


def simple_page(title: str, body: str, enc: str) -> bytes:
    """Small page (index, 404, private) without the heavy chrome."""
    return (f'<!DOCTYPE html>\n<html><head><meta http-equiv="Content-Type" content="text/html; charset={enc}">'
            f"<title>{title}</title></head><body>{body}</body></html>\n").encode(enc)


def _ago(days: int) -> str:
    return f"{days}天" if days < 30 else f"{days // 30}个月" if days < 365 else f"{days // 365}年"


def house_info(li: Listing) -> str:
    """The list item's " | "-joined houseInfo text."""
    parts = [f"{li.rooms}室{li.halls}厅", f"{li.area}平米", li.orientation]
    if li.decoration:
        parts.append(li.decoration)
    parts.append(li.floor)
    if li.year:
        parts.append(f"{li.year}年建")
    parts.append(li.building)
    return " | ".join(parts)


_DAOLIU = ('<li class="list_app_daoliu"><a href="/client/download/" class="app-link" target="_blank">'
           '<img src="/static/img/app_qr.png" alt="app"><div class="daoliu-text"><h3>下载APP 查看更多房源</h3>'
           "<p>实时房价 VR看房 专业经纪人为您服务</p></div></a></li>\n")


def _ad(m: CityModel, page: int, k: int) -> str:
    return (f'<li class="clear ad-item" data-ad="1"><div class="info clear"><div class="title">'
            f'<a href="https://ad.adserver.example/click?c={m.city}&amp;p={page}&amp;k={k}" target="_blank" rel="nofollow">'
            f"【推广】{escape(m.communities[(page * 7 + k) % len(m.communities)])} 新房首付低至30万</a></div>"
            '<div class="priceInfo"><div class="totalPrice"><span>168</span><i>万起</i></div></div>'
            '<span class="ad-label">广告</span></div></li>\n')


def _item(m: CityModel, li: Listing, pos: int) -> str:
    hid, city = li.id, m.city
    sname, sslug, _ = m.subs[li.sub]
    url = f"/{city}/ershoufang/{hid}.html"
    good = '<span class="goodhouse_tag tagBlock">必看好房</span>' if li.tags & 8 else ""
    tags = ("".join(t for b, t in ((1, '<span class="subway">近地铁</span>'), (2, '<span class="vr">VR房源</span>'),
                                   (4, '<span class="taxfree">房本满五年</span>')) if li.tags & b))
    return (
        f'<li class="clear LOGVIEWDATA LOGCLICKDATA" data-lj_action_housedel_id="{hid}">'
        f'<a class="noresultRecommend img" href="{url}" data-housecode="{hid}"><img src="/static/img/blank.gif" '
        f'class="lj-lazy" data-original="/static/house/{hid}.jpg" alt="{m.cname}{escape(sname)}"></a>'
        f'<div class="info clear"><div class="title"><a href="{url}" data-log_index="{pos}" '
        f'data-housecode="{hid}">{escape(m.title(li))}</a>{good}</div>'
        '<div class="flood"><div class="positionInfo"><span class="positionIcon"></span>'
        f'<a href="/{city}/xiaoqu/{li.community + 1}/" data-el="region">'
        f"{escape(m.communities[li.community])} </a>   -  "
        f'<a href="/{city}/ershoufang/{sslug}/">{escape(sname)}</a> </div></div>'
        f'<div class="address"><div class="houseInfo"><span class="houseIcon"></span>{house_info(li)}</div></div>'
        f'<div class="followInfo"><span class="starIcon"></span>{li.follow}人关注 / '
        f"{_ago(m.today - li.listed)}以前发布</div><div class=\"tag\">{tags}</div>"
        '<div class="priceInfo"><div class="totalPrice totalPrice2"><i> </i>'
        f'<span class="">{li.price_text}</span><i>万</i></div>'
        f'<div class="unitPrice" data-hid="{hid}" data-price="{li.unit}"><span>{li.unit:,}元/平</span></div></div>'
        '</div></li>\n'
    )


def _facets(m: CityModel, d: int, s: int) -> str:
    def a(slug: str, name: str, sel: bool) -> str:
        cls = ' class="selected"' if sel else ""
        return (f'<a href="/{m.city}/ershoufang/{slug}/" title="{m.cname}{escape(name)}在售二手房"{cls}>'
                f"{escape(name)}</a>")

    ds = "".join(a(sl, nm, i == d) for i, (nm, sl) in enumerate(m.districts))
    ss = "" if d < 0 else "".join(a(m.subs[i][1], m.subs[i][0], i == s) for i in m.district_subs[d])
    return f'<div class="position"><dl><dt>位置</dt><dd><div data-role="ershoufang"><div>{ds}</div><div>{ss}</div></div></dd></dl></div>\n'


def _pager(mode: str, base: str, cur: int, total: int) -> str:
    if mode == "json":
        data = json.dumps({"totalPage": total, "curPage": cur}, separators=(",", ":"))
        return (f'<div class="page-box house-lst-page-box" comp-module="page" page-url="{base}pg{{page}}/" '
                f"page-data='{data}'></div>\n")
    nxt = f'<a class="next" href="{base}pg{cur + 1}/">下一页</a>' if cur < total else ""
    if mode == "next":
        return f'<div class="page-box">{nxt}</div>\n'
    window = [p for p in range(max(1, cur - 2), min(total, cur + 2) + 1)]
    shown = sorted({1, *window, total} - {0}) if total else []
    out, last = [], 0
    if 1 < cur <= total + 1:
        out.append(f'<a class="prev" href="{base}pg{cur - 1}/">上一页</a>')
    for p in shown:
        if p > last + 1:
            out.append("<span>...</span>")
        on = ' class="on"' if p == cur else ""
        out.append(f'<a{on} href="{base}pg{p}/">{p}</a>')
        last = p
    return f'<div class="page-box">{" ".join(out)} {nxt}</div>\n'


def _assemble(m: CityModel, title: str, content: str, enc: str) -> bytes:
    """Splice page content into the cached chrome; pad short pages to the 40 KB floor."""
    head, header, footer = m.chrome
    body = content.encode(enc)
    size = len(head) + len(header) + len(footer) + len(body) + 2 * len(title)
    parts = [head, title.encode(enc), header, body]
    need = MIN_PAGE_BYTES - size
    if need > 0 and m.fill:
        parts.append('<div class="recommend"><h3>热门小区</h3><ul>'.encode(enc))
        k = 0
        while need > 0:
            item = m.fill[k % len(m.fill)]
            parts.append(item)
            need -= len(item)
            k += 1
        parts.append(b"</ul></div>\n")
    parts.append(footer)
    return b"".join(parts)


def render_list(m: CityModel, o: SiteOptions, kind: str, idx: int, page: int) -> bytes:
    """A list page: city ("c"), district ("d") or sub-district ("s") ``idx``."""
    if kind == "c":
        d, s, where, base, items = -1, -1, "", f"/{m.city}/ershoufang/", range(len(m.listings))
    elif kind == "d":
        d, s = idx, -1
        where, slug, items = m.districts[d][0], m.districts[d][1], m.by_district[d]
        base = f"/{m.city}/ershoufang/{slug}/"
    else:
        d, s = m.subs[idx][2], idx
        where, slug, items = m.subs[s][0], m.subs[s][1], m.by_sub[s]
        base = f"/{m.city}/ershoufang/{slug}/"
    count = len(items)
    total = min(o.max_pages, -(-count // o.page_size))
    chunk = items[(page - 1) * o.page_size: page * o.page_size]
    lis = []
    for pos, i in enumerate(chunk):
        if pos % 10 == 4:
            lis.append(_DAOLIU)
        if pos in (1, 17):
            lis.append(_ad(m, page, pos))
        lis.append(_item(m, m.listings[i], pos))
    content = (
        f'<div class="content"><div class="leftContent">{_facets(m, d, s)}'
        f'<div class="resultDes clear"><h2 class="total fl">共找到<span> {count} </span>套{m.cname}二手房</h2></div>\n'
        f'<ul class="sellListContent" log-mod="list">\n{"".join(lis)}</ul>\n'
        f"{_pager(o.pagination, base, page, total)}</div></div>\n"
    )
    return _assemble(m, f"{m.cname}{escape(where)}二手房_{m.cname}{escape(where)}二手房出售 第{page}页", content,
                     o.encoding)


def render_detail(m: CityModel, li: Listing, enc: str) -> bytes:
    """A detail page carrying the detail-only fields (listed date, elevator, ownership)."""
    city, hid = m.city, li.id
    sname, sslug, d = m.subs[li.sub]
    dname, dslug = m.districts[d]
    title = escape(m.title(li))
    comm = escape(m.communities[li.community])
    stp = '<span class="stp">&nbsp;&gt;&nbsp;</span>'
    date = dt.date.fromordinal
    base = (("layout", "房屋户型", f"{li.rooms}室{li.halls}厅1厨{max(1, li.rooms // 2)}卫"),
            ("floor", "所在楼层", li.floor), ("area", "建筑面积", f"{li.area}平米"),
            ("orientation", "房屋朝向", li.orientation), ("decoration", "装修情况", li.decoration or "暂无数据"),
            ("elevator", "配备电梯", li.elevator), ("building", "建筑类型", li.building))
    trans = (("listed", "挂牌时间", date(li.listed).isoformat()), ("ownership", "交易权属", li.ownership),
             ("last_trade", "上次交易", date(li.last_trade).isoformat() if li.last_trade else "暂无数据"),
             ("usage", "房屋用途", "普通住宅"), ("years", "房屋年限", "满五年" if li.tags & 4 else "满两年"),
             ("mortgage", "抵押信息", "无抵押" if li.tcode % 3 else "有抵押"))
    bl = "".join(f'<li data-field="{f}"><span class="label">{lab}</span>{v}</li>' for f, lab, v in base)
    tl = "".join(f'<li data-field="{f}"><span class="label">{lab}</span><span>{v}</span></li>' for f, lab, v in trans)
    content = (
        f'<div class="sellDetailHeader"><div class="title-wrapper"><div class="content"><div class="title">'
        f'<h1 class="main" title="{title}">{title}</h1><div class="sub">{comm} {li.rooms}室{li.halls}厅</div>'
        "</div></div></div></div>\n"
        f'<div class="intro clear" mod-id="lj-common-bread"><div class="container"><div class="fl l-txt">'
        f'<a href="/">首页</a>{stp}<a href="/{city}/ershoufang/">{m.cname}二手房</a>{stp}'
        f'<a href="/{city}/ershoufang/{dslug}/">{escape(dname)}二手房</a>{stp}'
        f'<a href="/{city}/ershoufang/{sslug}/">{escape(sname)}二手房</a>{stp}<span>当前房源</span></div></div></div>\n'
        '<div class="overview"><div class="content">'
        f'<div class="price "><span class="total">{li.price_text}</span><span class="unit"><span>万</span></span>'
        f'<div class="text"><div class="unitPrice"><span class="unitPriceValue">{li.unit}<i>元/平米</i></span></div>'
        '<div class="tax"><span class="taxtext">首付及税费情况请咨询经纪人</span></div></div></div>'
        f'<div class="houseInfo"><div class="room"><div class="mainInfo">{li.rooms}室{li.halls}厅</div>'
        f'<div class="subInfo">{li.floor}</div></div><div class="type"><div class="mainInfo">{li.orientation}</div>'
        f'<div class="subInfo">{li.decoration or "暂无数据"}</div></div><div class="area">'
        f'<div class="mainInfo">{li.area}平米</div><div class="subInfo">{li.year or "未知"}年建/{li.building}</div></div></div>'
        f'<div class="aroundInfo"><div class="communityName"><span class="label">小区名称</span>'
        f'<a href="/{city}/xiaoqu/{li.community + 1}/" target="_blank" class="info">{comm}</a></div>'
        f'<div class="areaName"><span class="label">所在区域</span><span class="info">'
        f'<a href="/{city}/ershoufang/{dslug}/" target="_blank">{escape(dname)}</a>&nbsp;'
        f'<a href="/{city}/ershoufang/{sslug}/" target="_blank">{escape(sname)}</a>&nbsp;</span></div>'
        f'<div class="houseRecord"><span class="label">链家编号</span><span class="info">{hid}'
        f'<span class="jubao" data-hid="{hid}">举报</span></span></div></div></div></div>\n'
        '<div class="m-content"><div class="box-l"><div class="newwrap baseinform" id="introduction"><h2>基本信息</h2>'
        f'<div class="introContent"><div class="base"><div class="name">基本属性</div><div class="content"><ul>{bl}</ul>'
        f'</div></div><div class="transaction"><div class="name">交易属性</div><div class="content"><ul>{tl}</ul>'
        "</div></div></div></div></div></div>\n"
    )
    return _assemble(m, f"{title}_{m.cname}{escape(dname)}{escape(sname)}二手房", content, enc)


class DemoSite:
    """The whole portal for any city; per-city models are cached, pages rendered lazily."""

    def __init__(self, options: SiteOptions = SiteOptions()) -> None:
        if options.pagination not in ("json", "links", "next"):
            raise ValueError(f"unknown pagination mode {options.pagination!r}")
        "".encode(options.encoding)
        if problem := days.check_day(options.day):
            raise ValueError(f"day {problem}")
        self.options = options
        self.date = days.day_date(options.day)
        self._build = functools.lru_cache(maxsize=4)(functools.partial(days.city_model, options))
        self._lock = threading.Lock()  # server threads must not build the same big city concurrently

    def model(self, city: str) -> CityModel:
        """The cached per-city model (built on first use)."""
        with self._lock:
            return self._build(city)

    def _headers(self, ctype: str = "text/html") -> dict[str, str]:
        if ctype == "text/html" and self.options.encoding.lower().replace("_", "-") in ("utf-8", "utf8"):
            ctype = "text/html; charset=utf-8"
        return {"Content-Type": ctype}

    def render(self, path: str) -> tuple[int, dict[str, str], bytes]:
        """Route a request path to a page (the query string is read only by the JSON API). A page says when it
        last changed (Last-Modified): a listing's detail when the listing did, any other page the served day."""
        status, headers, body = self._route(path)
        if status == 200:
            headers.setdefault("Last-Modified", http_date(self.date))
        return status, headers, body

    def last_modified(self, li: Listing) -> str:
        """The date a listing's own pages last changed: its listing, price change or relisting."""
        return http_date(dt.date.fromordinal(max(li.listed, li.changed)))

    def _route(self, path: str) -> tuple[int, dict[str, str], bytes]:
        p = urlsplit(path).path or "/"
        parts = [x for x in p.split("/") if x]
        enc = self.options.encoding
        if p == "/robots.txt":
            return 200, {"Content-Type": "text/plain"}, ROBOTS.encode()
        if p.startswith("/api/"):  # the same listings as JSON (etl/demo/api.py)
            from etl.demo import api

            return api.render(self, path)
        if not parts:
            links = "".join(f'<li><a href="/{a}/ershoufang/">{n}二手房</a></li>' for a, n in names.KNOWN_CITIES.items())
            return 200, self._headers(), simple_page("二手房", f"<ul class=\"cities\">{links}</ul>", enc)
        if parts[0] == "private" or (len(parts) > 1 and parts[1] == "private"):
            return 200, self._headers(), simple_page("private", "<p>robots.txt forbids this page.</p>", enc)
        if len(parts) < 2 or parts[1] != "ershoufang" or not _CITY_RE.match(parts[0]) or len(parts) > 4:
            return self._404(enc)
        m = self.model(parts[0])
        rest = parts[2:]
        if len(rest) == 1 and (dm := _DETAIL_RE.match(rest[0])):
            if not self.options.detail_pages or p.endswith("/"):
                return self._404(enc)
            li = self._find(m, int(dm.group(1)))
            if li is None:
                return self._404(enc)
            return 200, {**self._headers(), "Last-Modified": self.last_modified(li)}, render_detail(m, li, enc)
        page = 1
        if rest and (pm := _PAGE_RE.match(rest[-1])):
            page = int(pm.group(1))
            rest = rest[:-1]
        if len(rest) > 1 or page < 1 or page > self.options.max_pages:
            return self._404(enc)
        kind, idx = ("c", -1) if not rest else m.slugs.get(rest[0], ("", -1))
        if not kind:
            return self._404(enc)
        return 200, self._headers(), render_list(m, self.options, kind, idx, page)

    def _404(self, enc: str) -> tuple[int, dict[str, str], bytes]:
        return 404, self._headers(), simple_page("404 页面不存在", "<p>抱歉，您访问的页面不存在。</p>", enc)

    @staticmethod
    def _find(m: CityModel, lid: int) -> Listing | None:
        pos = bisect.bisect_left(m.ids_asc, lid)
        if pos < len(m.ids_asc) and m.ids_asc[pos] == lid:
            return m.listings[len(m.ids_asc) - 1 - pos]
        return None

    def truth(self, city: str) -> list[dict]:
        """One dict per listing with exactly what the served pages say (id descending)."""
        m = self.model(city)
        rows = []
        for li in m.listings:
            dname = m.districts[m.subs[li.sub][2]][0]
            rows.append({
                "listing_id": str(li.id), "city": city, "district": dname, "subdistrict": m.subs[li.sub][0],
                "community": m.communities[li.community], "title": m.title(li),
                "rooms": li.rooms, "halls": li.halls, "area_m2": float(li.area),
                "orientation": None if li.orientation == "暂无数据" else li.orientation,
                "decoration": li.decoration or None, "floor_level": li.level,
                "total_floors": li.total_floors, "year_built": li.year or None,
                "total_price": Decimal(li.price10 * 1000), "unit_price": li.unit,
                "listed_date": dt.date.fromordinal(li.listed),
                "url": f"/{city}/ershoufang/{li.id}.html",
                "extras": {"elevator": None if li.elevator == "暂无数据" else li.elevator,
                           "ownership": li.ownership},
            })
        return rows

    def district_summary(self, city: str) -> list[dict]:
        """Per-district listing count and mean unit price, in facet order."""
        acc: dict[str, list[int]] = {name: [] for name, _ in self.model(city).districts}
        for row in self.truth(city):
            acc[row["district"]].append(row["unit_price"])
        return [{"district": d, "count": len(v), "avg_unit_price": round(sum(v) / len(v), 2) if v else 0.0}
                for d, v in acc.items()]


