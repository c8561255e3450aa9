"""Deterministic generators behind the demo site: name pools, page chrome, the listing model.

Kept apart from site.py so that module stays about routing and markup.  Every
function takes its randomness from a caller-supplied ``random.Random`` (or a
stable string seed), never from Python's salted ``hash()``, so a (seed, city)
pair always yields the same site.  Only common characters are used so every
page stays GBK-encodable.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import random
import zlib
from array import array
from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from etl.demo.site import SiteOptions

# (hanzi, pinyin) syllables used to build place and community
SYLLABLES: tuple[tuple[str, str], ...] = tuple(
    (h, p)
    for h, p in (
        pair.split(":")
        for pair in (
            "东:dong 西:xi 南:nan 北:bei 安:an 华:hua 海:hai 山:shan 河:he 城:cheng 新:xin 阳:yang "
            "平:ping 福:fu 兴:xing 龙:long 金:jin 石:shi 林:lin 江:jiang 湖:hu 明:ming 光:guang "
            "春:chun 清:qing 天:tian 台:tai 宁:ning 泰:tai 长:chang 丰:feng 景:jing 青:qing 云:yun "
            "桥:qiao 门:men 庄:zhuang 营:ying 坊:fang 湾:wan 港:gang 水:shui 花:hua 月:yue 星:xing "
            "文:wen 德:de 建:jian 嘉:jia 永:yong 宝:bao 富:fu 瑞:rui 祥:xiang 康:kang 乐:le 顺:shun "
            "昌:chang 定:ding 通:tong 大:da 中:zhong 松:song 柳:liu 桃:tao 梅:mei 竹:zhu 白:bai "
            "红:hong 望:wang 京:jing 亭:ting 岭:ling 峰:feng 塘:tang 沙:sha 浦:pu 滨:bin 朝:chao "
            "海:hai 淀:dian 丽:li 泽:ze 仁:ren 和:he 广:guang 秀:xiu 高:gao 家:jia 鼓:gu 楼:lou"
        ).split()
    )
)

KNOWN_CITIES: dict[str, str] = {
    "bj": "北京", "sh": "上海", "gz": "广州", "sz": "深圳", "cd": "成都", "hz": "杭州", "nj": "南京",
    "wh": "武汉", "tj": "天津", "xa": "西安", "cq": "重庆", "su": "苏州", "cs": "长沙", "zz": "郑州",
    "qd": "青岛", "dl": "大连", "xm": "厦门", "jn": "济南", "sy": "沈阳", "hf": "合肥", "fz": "福州",
    "km": "昆明", "nb": "宁波", "wx": "无锡", "dg": "东莞", "fs": "佛山", "zh": "珠海", "hui": "惠州",
    "nc": "南昌", "nn": "南宁", "gy": "贵阳", "ty": "太原", "sjz": "石家庄", "hrb": "哈尔滨",
    "cc": "长春", "lz": "兰州", "wlmq": "乌鲁木齐", "hk": "海口", "sanya": "三亚", "yt": "烟台",
    "wf": "潍坊", "xz": "徐州", "cz": "常州", "nt": "南通", "jx": "嘉兴", "sx": "绍兴", "wz": "温州",
    "jh": "金华", "taizhou": "台州", "qz": "泉州", "zs": "中山", "jm": "江门", "zj": "湛江",
    "ly": "洛阳", "bd": "保定", "lf": "廊坊", "ts": "唐山", "yc": "宜昌", "xy": "襄阳", "zhuzhou": "株洲",
}

COMMUNITY_SUFFIXES = ("花园", "小区", "家园", "嘉园", "公寓", "苑", "新村", "北里", "南里", "东区",
                      "西区", "国际", "大厦", "雅苑", "华府", "名苑", "一号院", "二期", "三区", "新城")
TITLE_PHRASES = ("南北通透", "精装修", "满五唯一", "近地铁", "采光好", "业主诚心出售", "户型方正",
                 "低总价", "视野开阔", "高楼层", "安静不临街", "带车位", "满两年", "拎包入住", "学区房",
                 "看房方便", "房东急售", "全明格局", "双卫", "品质小区", "交通便利", "配套齐全")
# Titles that stress escaping and naive SQL string building; truth keeps them verbatim.
NASTY_TITLES = ('"阳光"大两居 & 南北通透 <急售>', "业主's 急售 <b>不是粗体</b>",
                "'; DROP TABLE listings; --", "低价 & 好房 \"满五\" 'A&B' <>")


def city_name(city: str) -> str:
    """Chinese display name: known slugs map to real names, others get a stable made-up one."""
    if city in KNOWN_CITIES:
        return KNOWN_CITIES[city]
    rng = random.Random(f"city-name:{city}")
    return "".join(rng.choice(SYLLABLES)[0] for _ in range(2))


def city_code(seed: int, city: str) -> int:
    """Four-digit listing-id prefix so ids differ between cities (and seeds)."""
    return 1000 + zlib.crc32(f"{seed}:{city}".encode()) % 9000


def place_names(rng: random.Random, count: int, used: set[str], lo: int = 2, hi: int = 2) -> list[tuple[str, str]]:
    """``count`` (name, slug) pairs whose names and slugs are unique against ``used`` (updated)."""
    out: list[tuple[str, str]] = []
    while len(out) < count:
        parts = [rng.choice(SYLLABLES) for _ in range(rng.randint(lo, hi))]
        name = "".join(h for h, _ in parts)
        slug = "".join(p for _, p in parts)
        if name in used or slug in used:
            if rng.random() < 0.7:
                continue
            n = 2
            while f"{slug}{n}" in used or f"{name}{n}" in used:
                n += 1
            name, slug = f"{name}{n}", f"{slug}{n}"  # rare: keeps the loop bounded for huge sites
        used.update((name, slug))
        out.append((name, slug))
    return out


def community_names(rng: random.Random, count: int, used: set[str]) -> list[str]:
    """Unique community (xiaoqu) names such as "华景嘉园"."""
    out: list[str] = []
    while len(out) < count:
        base = "".join(rng.choice(SYLLABLES)[0] for _ in range(rng.randint(2, 3)))
        name = base + rng.choice(COMMUNITY_SUFFIXES)
        if name not in used:
            used.add(name)
            out.append(name)
    return out


def make_title(code: int, community: str, rooms: int, halls: int) -> str:
    """Listing title rebuilt from a small integer so titles need no per-listing storage."""
    if code % 53 == 7:
        return NASTY_TITLES[(code // 53) % len(NASTY_TITLES)]
    n = len(TITLE_PHRASES)
    a, b, c = code % n, (code // n) % n, (code // (n * n)) % n
    phrases = dict.fromkeys((TITLE_PHRASES[a], TITLE_PHRASES[b], TITLE_PHRASES[c]))
    return f"{community} {rooms}室{halls}厅 " + " ".join(phrases)


# ---------------------------------------------------------------- page chrome
_MENU = ("首页", "二手房", "新房", "租房", "商业办公", "小区", "海外", "经纪人", "装修", "百科", "房价",
         "卖房", "地图找房", "学区房", "业主委托", "成交", "找小区", "房产问答", "下载APP", "加盟")
_JS_MODULES = ("ershoufang", "search", "filter", "map", "login", "track", "abtest", "recommend",
               "im", "ad", "share", "lazyload", "captcha", "footer", "header", "vr")


def _analytics_js(city: str, module: str, rng: random.Random) -> str:
    """An analytics-like inline script; realistic bulk that parsers must skip."""
    key = "".join(rng.choice("abcdef0123456789") for _ in range(32))
    return (
        f"<script type=\"text/javascript\">\n(function(win, doc) {{\n"
        f"  var conf = {{ pid: 'lianjia_{module}', city: '{city}', key: '{key}', sample: {rng.random():.3f} }};\n"
        f"  var queue = win.__{module}Queue = win.__{module}Queue || [];\n"
        "  function send(evt, data) {\n    var img = new Image(1, 1);\n"
        "    var q = ['evt=' + encodeURIComponent(evt), 'ts=' + (+new Date()), 'pid=' + conf.pid];\n"
        "    for (var k in data) { if (data.hasOwnProperty(k)) { q.push(k + '=' + encodeURIComponent(data[k])); } }\n"
        "    img.src = '/static/dig.gif?' + q.join('&');\n  }\n"
        "  function onReady(fn) { if (doc.readyState !== 'loading') { fn(); } else { doc.addEventListener('DOMContentLoaded', fn); } }\n"
        "  onReady(function () {\n    var nodes = doc.querySelectorAll('[data-log]');\n"
        "    for (var i = 0; i < nodes.length && i < 200; i++) {\n"
        "      nodes[i].addEventListener('click', function (e) { send('click', { target: this.getAttribute('data-log') || '' }); });\n"
        "    }\n    send('pv', { url: win.location.pathname, ref: doc.referrer || '', w: win.innerWidth, h: win.innerHeight });\n"
        "    while (queue.length) { var item = queue.shift(); send(item[0], item[1] || {}); }\n  });\n"
        f"  win.__{module}Send = send;\n}})(window, document);\n</script>\n"
    )


def build_chrome(city: str, cname: str, districts: list[tuple[str, str]], communities: list[str],
                 charset: str) -> tuple[str, str, str]:
    """(head up to <title>, rest of head + site header, footer) built once per city and encoding."""
    rng = random.Random(f"chrome:{city}")
    cities = list(KNOWN_CITIES.items())
    head = (
        "<!DOCTYPE html>\n<html>\n<head>\n"
        f'<meta http-equiv="Content-Type" content="text/html; charset={charset}">\n'
        '<meta http-equiv="X-UA-Compatible" content="IE=edge">\n'
        f'<meta name="keywords" content="{cname}二手房,{cname}二手房出售,{cname}二手房买卖,{cname}二手房网">\n'
        f'<meta name="description" content="{cname}二手房网提供真实房源信息，涵盖{cname}各区域在售二手房。">\n'
        "<title>"
    )
    css = "".join(f'<link rel="stylesheet" href="/static/css/{m}.{rng.randrange(16**8):08x}.css">\n' for m in _JS_MODULES)
    config = {
        "city": {"id": zlib.crc32(city.encode()) % 900000 + 100000, "abbr": city, "name": cname},
        "cities": [{"abbr": a, "name": n, "url": f"/{a}/ershoufang/"} for a, n in cities],
        "districts": [{"name": n, "slug": s, "url": f"/{city}/ershoufang/{s}/"} for n, s in districts],
        "menu": [{"name": m, "key": f"menu_{i}", "url": f"/{city}/{i}/"} for i, m in enumerate(_MENU)],
        "abtest": {f"exp_{i}": rng.choice(["A", "B", "control"]) for i in range(40)},
        "features": {m: {"enable": rng.random() > 0.3, "ratio": round(rng.random(), 3)} for m in _JS_MODULES},
    }
    blob = json.dumps(config, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")
    scripts = f"<script>window.__PAGE_CONFIG__ = {blob};</script>\n"
    scripts += "".join(_analytics_js(city, m, rng) for m in _JS_MODULES[:6])
    nav = "".join(f'<li><a href="/{city}/ershoufang/" data-log="menu_{i}">{m}</a></li>' for i, m in enumerate(_MENU))
    city_links = "".join(f'<a href="/{a}/ershoufang/" title="{n}二手房">{n}</a>' for a, n in cities)
    header = (
        f"</title>\n{css}{scripts}</head>\n<body>\n"
        '<div class="header"><div class="wrapper"><div class="fl"><a class="logo" href="/" title="二手房">'
        '<img src="/static/img/logo.png" alt="logo"></a></div>\n'
        f'<div class="nav typeUserInfo"><ul>{nav}</ul></div>\n'
        f'<div class="city-change"><span class="cur">{cname}</span><div class="city-list">{city_links}</div></div>\n'
        "</div></div>\n"
    )
    hot = "".join(f'<a href="/{city}/xiaoqu/{i + 1}/" data-log="hot">{escape(c)}二手房</a>'
                  for i, c in enumerate(communities[:24]))
    friends = "".join(
        f'<a href="https://www.{"".join(rng.choice(SYLLABLES)[1] for _ in range(2))}.example/" target="_blank">'
        f'{"".join(rng.choice(SYLLABLES)[0] for _ in range(2))}房产网</a>' for _ in range(24))
    footer = (
        '<div class="footer"><div class="wrapper">\n'
        f'<div class="link-list"><h4>热门城市</h4><div class="city">{city_links}</div></div>\n'
        f'<div class="link-list"><h4>热门小区</h4><div class="xiaoqu">{hot}</div></div>\n'
        f'<div class="link-list"><h4>友情链接</h4><div class="friends">{friends}</div></div>\n'
        '<div class="bottom"><p>本站为演示站点，房源信息均为程序生成。</p>'
        f'<p>{cname}二手房 | 房价走势 | 联系我们 | 用户协议 | 隐私政策</p></div>\n'
        "</div></div>\n"
        + "".join(_analytics_js(city, m, rng) for m in _JS_MODULES[6:9])
        + "</body>\n</html>\n"
    )
    return head, header, footer


# ---------------------------------------------------------------- listing model
REF_DATE = dt.date(2025, 6, 30)
ROOMS = (1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 5, 6)
ORIENTATIONS = ("南 北", "南 北", "南", "南", "东南", "东 西", "西南", "北", "东", "西", "南 西 北")
DECORATIONS = ("精装", "精装", "简装", "毛坯")
OWNERSHIP = ("商品房",) * 16 + ("已购公房", "已购公房", "一类经济适用房", "央产房")


@dataclass(slots=True)
class Listing:
    """Compact per-listing record; strings shown on pages are stored exactly as served."""

    id: int
    sub: int
    community: int
    tcode: int
    rooms: int
    halls: int
    area: str
    orientation: str
    decoration: str  # "" = omitted from the page
    floor: str
    level: str | None
    total_floors: int
    year: int  # 0 = omitted
    building: str
    price10: int  # total price in units of 0.1 万 (1000 yuan)
    unit: int
    listed: int  # date ordinal
    follow: int
    tags: int
    elevator: str
    ownership: str
    last_trade: int  # date ordinal, 0 = 暂无数据
    changed: int = 0  # date ordinal of the last price change or relisting (days.py), 0 = never

    @property
    def price_text(self) -> str:
        return str(self.price10 // 10) if self.price10 % 10 == 0 else f"{self.price10 // 10}.{self.price10 % 10}"


@dataclass(frozen=True)
class ListingGen:
    """The city-wide price levels and community ranges a new listing is drawn from (kept so that a later
    day's new listings look like the first day's without regenerating the city)."""

    base: int
    sfac: list[float]  # per sub-district price factor
    sub_comms: list[tuple[int, int]]  # per sub-district (first community index, count)


@dataclass
class CityModel:
    """Everything served for one city; index lists point into ``listings`` (id descending)."""

    city: str
    cname: str
    districts: list[tuple[str, str]]
    subs: list[tuple[str, str, int]]
    district_subs: list[list[int]]
    communities: list[str]
    listings: list[Listing]  # id descending ("newest first")
    ids_asc: array
    by_district: list[array]  # "i" arrays of indices into listings
    by_sub: list[array]
    slugs: dict[str, tuple[str, int]]
    chrome: tuple[bytes, bytes, bytes]
    fill: list[bytes]
    gen: ListingGen | None = None  # what later days need to add listings like the first day's
    today: int = REF_DATE.toordinal()  # the served day's date ordinal ("N天以前发布" counts from it)

    def title(self, li: Listing) -> str:
        return make_title(li.tcode, self.communities[li.community], li.rooms, li.halls)


def _split(total: int, weights: list[float]) -> list[int]:
    """Largest-remainder split of ``total`` proportional to ``weights``."""
    s = sum(weights)
    raw = [total * w / s for w in weights]
    out = [int(x) for x in raw]
    for i in sorted(range(len(raw)), key=lambda i: out[i] - raw[i])[: total - sum(out)]:
        out[i] += 1
    return out


def _plan(rng: random.Random, n: int, cap: int) -> list[list[int]]:
    """Listing counts per district per sub-district: uneven, every sub-district <= cap."""
    nd = max(5, min(12, 5 + int(math.log2(max(n, 1000) / 1000))))
    weights = [rng.uniform(0.4, 2.5) for _ in range(nd)]
    counts = _split(n, weights)
    big = max(range(nd), key=counts.__getitem__)
    want = min(cap + cap // 10, int(n * 0.7))  # one district too big for district-level paging
    if counts[big] < want:
        rest = _split(n - want, [w for i, w in enumerate(weights) if i != big])
        counts = rest[:big] + [want] + rest[big:]
    plan = []
    for c in counts:
        ns = max(rng.randint(2, 8), math.ceil(c / (0.7 * cap)))
        sc = _split(c, [rng.uniform(0.3, 2.0) for _ in range(ns)])
        while max(sc) > cap:
            hi, lo = sc.index(max(sc)), sc.index(min(sc))
            move = min(sc[hi] - cap, cap - sc[lo])
            sc[hi] -= move
            sc[lo] += move
        plan.append(sc)
    return plan


def _area_text(h: int, style: float) -> str:
    if style < 0.2:
        return str(max(1, round(h / 100)))
    if style < 0.4:
        h = round(h / 10) * 10
    return f"{h // 100}.{h % 100:02d}".rstrip("0").rstrip(".")


def build_city(options: SiteOptions, city: str) -> CityModel:
    """Generate one city's whole model; O(listings) time and memory."""
    rng = random.Random(f"{options.seed}:{city}")
    n, cap = max(0, options.listings), max(1, options.max_pages * options.page_size)
    plan = _plan(rng, n, cap)
    used: set[str] = {"ershoufang", "private", "xiaoqu"}
    districts = place_names(rng, len(plan), used)
    subs: list[tuple[str, str, int]] = []
    district_subs: list[list[int]] = []
    for d, counts in enumerate(plan):
        district_subs.append(list(range(len(subs), len(subs) + len(counts))))
        subs.extend((nm, sl, d) for nm, sl in place_names(rng, len(counts), used, 2, 3))
    sub_counts = [c for counts in plan for c in counts]
    communities: list[str] = []
    comm_used: set[str] = set()
    sub_comms = []
    for c in sub_counts:
        k = max(3, min(120, c // 40 + 2))
        sub_comms.append((len(communities), k))
        communities.extend(community_names(rng, k, comm_used))
    base = rng.randint(15000, 70000)
    dfac = [rng.uniform(0.5, 1.8) for _ in districts]
    sfac = [dfac[d] * rng.uniform(0.85, 1.2) for _, _, d in subs]
    assignment = [s for s, c in enumerate(sub_counts) for _ in range(c)]
    rng.shuffle(assignment)
    offsets = sorted((int(rng.random() ** 2 * 1095) for _ in range(n)), reverse=True)
    ref = REF_DATE.toordinal()
    lid = city_code(options.seed, city) * 10**8 + rng.randrange(10**6)
    gap = max(1, min(99, 2 * (98 * 10**6 // max(n, 1)) - 1))
    floors: dict[str, str] = {}
    gen = ListingGen(base, sfac, sub_comms)
    r = rng.random
    out: list[Listing] = []
    for i in range(n):
        lid += 1 + int(r() * gap)
        out.append(make_listing(rng, gen, lid, assignment[i], ref - offsets[i], floors))
    out.reverse()
    ids_asc, by_district, by_sub = index_listings(out, subs, len(districts))
    slugs = {sl: ("d", i) for i, (_, sl) in enumerate(districts)}
    slugs.update({sl: ("s", i) for i, (_, sl, _) in enumerate(subs)})
    cname = city_name(city)
    enc = options.encoding
    chrome = tuple(part.encode(enc) for part in build_chrome(city, cname, districts, communities, enc))
    fill = [f'<li><a href="/{city}/xiaoqu/{k + 1}/">{escape(communities[k % len(communities)])}</a>'
            f'<span class="price">{base + k * 37}元/平</span><span class="cnt">在售{k % 97 + 1}套</span></li>'
            .encode(enc) for k in range(min(len(communities), 400) or 0)]
    return CityModel(city, cname, districts, subs, district_subs, communities, out, ids_asc,
                     by_district, by_sub, slugs, chrome, fill, gen)  # type: ignore[arg-type]


def make_listing(rng: random.Random, gen: ListingGen, lid: int, s: int, listed: int,
                 floors: dict[str, str]) -> Listing:
    """One listing in sub-district ``s``; the draw order is part of the site (changing it changes every page)."""
    r, ri = rng.random, rng.randint
    rooms = ROOMS[int(r() * len(ROOMS))]
    halls = min(3, int(r() * 2) + (rooms > 2) + (rooms > 4)) if rooms > 1 else int(r() < 0.7)
    area = _area_text(int((rooms * 28 + 12 + r() * rooms * 20) * 100), r())
    price10 = max(10, round(float(area) * gen.sfac[s] * gen.base * (0.8 + 0.4 * r()) / 1000))
    if r() < 0.85:
        price10 = max(10, round(price10, -1))
    building = ("板楼", "塔楼", "板塔结合")[int(r() * 3)]
    tf = ri(3, 18) if building == "板楼" else ri(10, 33)
    fr = r()
    level = None if fr < 0.09 else ("高", "中", "低")[int(r() * 3)]
    ftext = f"共{tf}层" if fr < 0.06 else f"地下室(共{tf}层)" if level is None else f"{level}楼层(共{tf}层)"
    dec = r()
    first, count = gen.sub_comms[s]
    return Listing(
        id=lid, sub=s, community=first + int(r() * count), tcode=int(r() * 10**9),
        rooms=rooms, halls=halls, area=area,
        orientation="暂无数据" if r() < 0.06 else ORIENTATIONS[int(r() * len(ORIENTATIONS))],
        decoration="" if dec < 0.06 else "其他" if dec < 0.12 else DECORATIONS[int(r() * 4)],
        floor=floors.setdefault(ftext, ftext), level=level, total_floors=tf,
        year=0 if r() < 0.07 else ri(1980, 2021), building=building,
        price10=price10, unit=unit_price(price10, area), listed=listed,
        follow=int(r() ** 3 * 300), tags=int(r() * 16),
        elevator="暂无数据" if r() < 0.07 else ("有" if tf >= 8 else "无"),
        ownership=OWNERSHIP[int(r() * len(OWNERSHIP))],
        last_trade=0 if r() < 0.2 else listed - 200 - int(r() * 5000),
    )


def unit_price(price10: int, area: str) -> int:
    """Yuan per m2 as the site shows it: the total (in 0.1 万) over the area, rounded to the yuan."""
    return round(price10 * 1000 / float(area))


def index_listings(listings: list[Listing], subs: list[tuple[str, str, int]],
                   ndistricts: int) -> tuple[array, list[array], list[array]]:
    """(ids ascending, per-district and per-sub-district indices) of an id-descending listing list."""
    ids_asc = array("q", (li.id for li in reversed(listings)))
    by_district = [array("i") for _ in range(ndistricts)]
    by_sub = [array("i") for _ in subs]
    for idx, li in enumerate(listings):
        by_sub[li.sub].append(idx)
        by_district[subs[li.sub][2]].append(idx)
    return ids_asc, by_district, by_sub
