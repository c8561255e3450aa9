"""Synthetic Chinese finance news with exact stock-mention truth, plus a tiny HTML site.

Why synthetic: the pipeline needs ~230,000 realistic articles whose true stock
mentions are known, to load PostgreSQL in bulk and to measure the matcher. Each
article is deterministic per ``(seed, id)`` (``random.Random(seed * 1_000_003 + id)``)
so any id range can be regenerated on its own, and cheap: prose comes from
sentence pools built once per process, and an article is ~20 ``choice`` calls.

Articles mention 0-4 stocks by short name, by code (``600519``, ``600519.SH``,
``SH600519``, ``(600519)`` ...), with full-width letters, inner spaces, ST prefix
variants, and include pitfalls that are NOT mentions: common-word names used as
words (工业机器人), digit runs containing real codes (phone/order numbers,
amounts), index codes (上证指数（000001）), 中国银行业, and confusable names
(东方通信 vs 东方通, 平安银行 vs 中国平安) where only the written one is truth.
"""

from __future__ import annotations

import html
import os
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache

from etl.stocks.dictionary import Stock, canonical, is_b_share, load_stocks
from etl.stocks.matcher import COMMON_WORD_NAMES

START = date(2023, 1, 1)
DAYS = (date(2024, 12, 31) - START).days + 1
PAGE_SIZE = 20
HTML_HEADERS = {"Content-Type": "text/html; charset=utf-8"}


@dataclass(slots=True)
class Article:
    id: int
    published: date
    title: str
    body: str
    score: float
    codes: frozenset[str]  # exact truth: stocks the title/body mention

    @property
    def text(self) -> str:
        return self.title + "\n" + self.body


_SECTORS = (
    "半导体 新能源汽车 医药生物 白酒 券商 保险 房地产 光伏 有色金属 军工 传媒 煤炭 电力 化工 "
    "消费电子 人工智能 储能 锂电池 通信设备 家电 食品饮料 农林牧渔 钢铁 建材 航运 汽车零部件"
).split()
_PERIODS = ("一季度", "上半年", "前三季度", "2023年度", "2024年一季度", "2024年上半年")
_TIMES = ("今日", "周一", "周二", "周三", "周四", "周五", "早盘", "午后", "尾盘")
_FILLER_TPL = (
    "今年以来，{s}板块累计涨幅达到{p}%，市场资金关注度明显提升。",
    "分析人士认为，{s}行业景气度有望在{q}继续回升，估值仍处于历史较低水平。",
    "从资金面看，北向资金{t}净买入{a}亿元，两市成交额连续多日突破万亿元。",
    "业内人士表示，随着稳增长政策持续发力，{s}领域的需求正在逐步修复。",
    "数据显示，{q}全国规模以上工业增加值同比增长{p}%，好于市场预期。",
    "多家券商在最新策略报告中指出，后市应重点关注业绩确定性较高的{s}龙头。",
    "{t}两市震荡整理，{s}方向表现活跃，个股涨多跌少。",
    "从估值角度看，{s}板块当前市盈率约为{p}倍，低于近五年均值。",
    "监管部门近期表示，将进一步完善上市公司分红制度，引导长期资金入市。",
    "央行{t}开展{a}亿元逆回购操作，市场流动性保持合理充裕。",
    "有基金经理表示，{s}赛道短期波动加大，但中长期成长逻辑并未改变。",
    "统计显示，{q}{s}行业营业收入同比增长{p}%，净利润增速有所放缓。",
    "截至发稿，{s}指数报收{n}.{p}点，全天振幅{p}%。",
    "市场情绪方面，融资余额较上一交易日增加{a}亿元，风险偏好小幅回升。",
    "海外市场方面，美债收益率高位回落，人民币汇率保持基本稳定。",
    "机构调研数据显示，近一个月{s}相关公司接待调研次数居前。",
)


def _fill(rng: random.Random, tpl: str) -> str:
    return tpl.format(
        s=rng.choice(_SECTORS),
        p=rng.randint(1, 35),
        q=rng.choice(_PERIODS),
        t=rng.choice(_TIMES),
        a=rng.randint(2, 900),
        n=rng.randint(8, 3900),
    )


_MENTION_TPL = (
    "{m}{t}收涨{p}%，成交额{a}亿元。",
    "{m}发布公告称，公司拟以自有资金回购股份，回购金额不低于{a}亿元。",
    "机构研报指出，{m}在{s}领域具备较强竞争力，首次覆盖给予“买入”评级。",
    "盘面上，{s}板块走强，{m}封板涨停。",
    "{m}披露{q}业绩，实现营业收入{a}亿元，同比增长{p}%。",
    "截至收盘，{m}报{n}.{p}元，总市值约{a}亿元。",
    "值得注意的是，{m}近五个交易日累计下跌{p}%，主力资金持续流出。",
    "从龙虎榜数据看，{m}获机构席位净买入{a}万元。",
    "另据公告，{m}控股股东计划在未来六个月内增持公司股份。",
    "{m}董事会审议通过了年度利润分配预案，拟每10股派现{p}元。",
)
_AMBIG_TPL = (  # evidence-bearing forms for common-word names ({N} name, {c} code)
    "{N}（{c}）{t}发布公告称，公司经营情况正常。",
    "{N}{t}涨停，成交额{a}亿元。",
    "证券简称：{N}，证券代码：{c}。",
    "{N}股价{t}大幅波动，公司提示投资者注意风险。",
    "{N}发布公告，拟投资{a}亿元建设新项目。",
)
_HEADLINES = (
    "：一季度净利润同比大增",
    "发布回购计划",
    "获机构密集调研",
    "股价创年内新高",
    "：拟定增募资扩产",
    "遭遇资金大幅流出",
)
_PLAIN_TITLES = (
    "A股收评：三大指数集体收涨",
    "北向资金连续净买入",
    "政策暖风频吹，市场信心修复",
    "午评：两市震荡分化",
    "机构：下半年行情值得期待",
)
_COMMON_WORD_USES = (
    "工业机器人需求旺盛，服务机器人市场规模持续扩大。",
    "受天气影响，部分地区农产品价格出现季节性上涨。",
    "太阳能发电装机容量同比增长{p}%，光伏组件价格持续走低。",
    "专家表示，稳就业就是稳住老百姓的钱袋子。",
    "在本届金融街论坛年会上，多位监管人士发表主题演讲。",
    "中关村科技园区企业总收入再创新高。",
    "据新华网报道，相关部门正在研究出台新的支持政策。",
    "人民网消息，多地出台措施促进消费回暖。",
    "陆家嘴论坛期间，多项金融开放举措集中发布。",
    "假期期间张家界景区接待游客人次同比增长{p}%。",
    "连云港市今年前三季度外贸进出口总额稳步增长。",
    "消费仍是经济增长的主要驱动力，服务消费成为新动力。",
    "太平洋沿岸港口货物吞吐量保持增长，天津港集装箱业务繁忙。",
    "王府井商圈客流明显回升，黑芝麻糊等老字号产品热销。",
    "向日葵种植面积扩大，带动当地农民增收。",
)
_INDEX_USES = (
    "上证指数（000001）{t}收涨{p}%，深证成指同步走高。",
    "沪深300（000300）与中证500（000905）双双收红。",
    "000001.SH全天震荡，收于{n}点。",
    "以SH000001为代表的宽基指数近期表现稳健。",
    "科创50（000688）成份股多数上涨。",
    "中国银行业协会发布报告称，行业资产质量总体稳定。",
)
_DIGIT_USES = (
    "订单号：{x}{c}{y}，请妥善保管。",
    "如有疑问，可拨打客服电话13{c}{z}咨询。",
    "本次交易金额为1{c}.{p}元，已全部到账。",
    "合同编号{c}{w}已完成备案。",
    "快递单号DD{c}{y}显示已签收。",
)


@dataclass(frozen=True, slots=True)
class _Pools:
    fillers: tuple[str, ...]
    plain: tuple[Stock, ...]
    ambiguous: tuple[Stock, ...]
    st: tuple[Stock, ...]
    a_suffix: tuple[Stock, ...]
    confusable: tuple[tuple[Stock, Stock], ...]  # (short, long): short is a prefix of long
    all_codes: tuple[str, ...]


@cache
def _pools() -> _Pools:
    """Built once per process: sentence pool and stock groups by mention style."""
    rng = random.Random(20240101)
    fillers = tuple(_fill(rng, rng.choice(_FILLER_TPL)) for _ in range(4000))
    stocks = [
        s
        for s in load_stocks()
        if s.aliases
        and s.aliases[0] == canonical(s.name)
        and not is_b_share(s.code)
        and not s.name.startswith(("退市", "PT"))
        and "(" not in s.name
        and s.listed_date
    ]
    by_alias = {a: s for s in stocks for a in s.aliases}
    ambiguous = [s for s in stocks if s.aliases[0] in COMMON_WORD_NAMES]
    st = [s for s in stocks if re.match(r"^(\*ST|ST)", s.aliases[0])]
    a_suffix = [s for s in stocks if len(s.aliases) > 1 and s.aliases[0].endswith("A")]
    confusable = []
    for s in stocks:
        name = s.aliases[0]
        for k in range(3, len(name)):
            short = by_alias.get(name[:k])
            if short is not None and short.code != s.code and short not in ambiguous:
                confusable.append((short, s))
    plain = [s for s in stocks if s not in ambiguous and s not in st and len(s.aliases[0]) >= 3]
    return _Pools(
        fillers=fillers,
        plain=tuple(plain),
        ambiguous=tuple(ambiguous),
        st=tuple(st),
        a_suffix=tuple(a_suffix),
        confusable=tuple(confusable),
        all_codes=tuple(s.code for s in stocks),
    )


def _code_form(rng: random.Random, s: Stock) -> str:
    c, ex = s.code, s.exchange
    forms = (c, f"{c}.{ex}", f"{ex}{c}", f"{ex.lower()}{c}", f"{c}.{'SS' if ex == 'SH' else ex}")
    return rng.choice(forms)


def _name_form(rng: random.Random, s: Stock) -> str:
    """A way to write the stock's name that the matcher must understand."""
    name = s.aliases[0]
    r = rng.random()
    if name.startswith(("*ST", "ST")):
        core = name.lstrip("*")[2:]
        return rng.choice(("*ST", "ST", "*ST ", "＊ＳＴ", "ST ")) + core
    if r < 0.55:
        return name
    if r < 0.7:
        return f"{name}（{_code_form(rng, s)}）"
    if r < 0.8:
        return f"{name}({s.code})"
    if r < 0.9 and not name[:2].isascii() and not name[0].isascii() and not name[1].isascii():
        return name[0] + " " + name[1:]
    return s.name  # verbatim exchange spelling (padded spaces, full-width Ａ)


def _pick(rng: random.Random, p: _Pools, taken: set[str]) -> Stock:
    """Which stock to mention: mostly plain names, some of each tricky kind."""
    r = rng.random()
    if r < 0.12 and p.ambiguous:
        s = rng.choice(p.ambiguous)
    elif r < 0.2:
        short, long = rng.choice(p.confusable)
        s = long if rng.random() < 0.7 else short
    elif r < 0.28:
        s = rng.choice(p.st)
    elif r < 0.33:
        s = rng.choice(p.a_suffix)
    else:
        s = rng.choice(p.plain)
    return rng.choice(p.plain) if s.code in taken else s


def _mention(rng: random.Random, s: Stock) -> tuple[str, str]:
    """One sentence mentioning ``s`` and a title-safe way to write it."""
    name = s.aliases[0]
    if name in COMMON_WORD_NAMES or (len(s.aliases) > 1 and s.aliases[1] in COMMON_WORD_NAMES):
        tpl = rng.choice(_AMBIG_TPL)
        form = rng.choice((name, s.name)) if name not in COMMON_WORD_NAMES else name
        text = _fill_m(rng, tpl.replace("{N}", form).replace("{c}", s.code), "")
        return text, f"{form}（{s.code}）"
    if len(s.aliases) > 1 and name.endswith("A") and not name.startswith(("*ST", "ST")):
        form = rng.choice((s.aliases[1], s.name, name, s.aliases[1] + "Ａ"))
    elif rng.random() < 0.15:
        form = _code_form(rng, s)
    else:
        form = _name_form(rng, s)
    return _fill_m(rng, rng.choice(_MENTION_TPL), form), form


def _fill_m(rng: random.Random, tpl: str, m: str) -> str:
    return (
        tpl.replace("{m}", m)
        .replace("{t}", rng.choice(_TIMES))
        .replace("{p}", str(rng.randint(1, 20)))
        .replace("{a}", str(rng.randint(2, 900)))
        .replace("{s}", rng.choice(_SECTORS))
        .replace("{q}", rng.choice(_PERIODS))
        .replace("{n}", str(rng.randint(3, 300)))
    )


def _pitfall(rng: random.Random, p: _Pools) -> str:
    kind = rng.random()
    if kind < 0.4:
        return _fill_m(rng, rng.choice(_COMMON_WORD_USES), "")
    if kind < 0.65:
        return _fill_m(rng, rng.choice(_INDEX_USES), "")
    tpl = rng.choice(_DIGIT_USES)
    return (
        tpl.replace("{c}", rng.choice(p.all_codes))
        .replace("{x}", str(rng.randint(2023, 2024)))
        .replace("{y}", str(rng.randint(1000, 9999)))
        .replace("{z}", str(rng.randint(100, 999)))
        .replace("{w}", str(rng.randint(1000, 9999)))
        .replace("{p}", f"{rng.randint(0, 99):02d}")
    )


def make_article(article_id: int, seed: int = 0) -> Article:
    """The article with this id; identical on every call/process for (seed, id)."""
    p = _pools()
    rng = random.Random(seed * 1_000_003 + article_id)
    sentences = rng.choices(p.fillers, k=28)
    k = rng.choices((0, 1, 2, 3, 4), weights=(15, 35, 25, 15, 10))[0]
    codes: set[str] = set()
    first = ""
    for _ in range(k):
        stock = _pick(rng, p, codes)
        codes.add(stock.code)
        for _ in range(1 if rng.random() < 0.7 else 2):  # some stocks are mentioned twice
            sentence, form = _mention(rng, stock)
            first = first or form
            sentences.insert(rng.randrange(len(sentences) + 1), sentence)
    for _ in range(rng.choices((0, 1, 2), weights=(50, 35, 15))[0]):
        sentences.insert(rng.randrange(len(sentences) + 1), _pitfall(rng, p))
    paras = ["".join(sentences[i : i + 6]) for i in range(0, len(sentences), 6)]
    title = first + rng.choice(_HEADLINES) if first and rng.random() < 0.6 else rng.choice(_PLAIN_TITLES)
    published = START + timedelta(days=rng.randrange(DAYS))
    return Article(
        id=article_id,
        published=published,
        title=title,
        body="\n".join(paras),
        score=round(rng.uniform(-1.0, 1.0), 4),
        codes=frozenset(codes),
    )


def generate_articles(n: int, seed: int = 0, start_id: int = 1) -> Iterator[Article]:
    """``n`` articles with ids ``start_id .. start_id + n - 1``."""
    for article_id in range(start_id, start_id + n):
        yield make_article(article_id, seed)


def news_truth(n: int, seed: int = 0) -> dict[int, frozenset[str]]:
    """id -> true stock codes for the first ``n`` articles."""
    return {a.id: a.codes for a in generate_articles(n, seed)}


# ---------------------------------------------------------------- demo HTML site
_LIST_RE = re.compile(r"^/news/(?:pg(\d+)/)?$")
_ARTICLE_RE = re.compile(r"^/news/(\d+)\.html$")


def site_size() -> int:
    """Number of articles the demo site serves (env ETL_DEMO_NEWS, default 2000)."""
    return int(os.environ.get("ETL_DEMO_NEWS", "2000"))


@cache
def _site(n: int) -> tuple[tuple[int, date, str], ...]:
    """(id, published, title), newest first (ties: higher id first)."""
    rows = [(a.id, a.published, a.title) for a in generate_articles(n, seed=0)]
    rows.sort(key=lambda r: (r[1], r[0]), reverse=True)
    return tuple(rows)


def _page(title: str, body: str) -> bytes:
    return (
        f'<!DOCTYPE html>\n<html lang="zh-CN"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head>\n<body>\n{body}\n</body></html>\n"
    ).encode()


def _not_found() -> tuple[int, dict[str, str], bytes]:
    return 404, dict(HTML_HEADERS), _page("404", "<p>页面不存在</p>")


def render_list(page: int, n: int) -> tuple[int, dict[str, str], bytes]:
    rows = _site(n)
    pages = max(1, -(-len(rows) // PAGE_SIZE))
    if page < 1 or page > pages:
        return _not_found()
    items = "\n".join(
        f'<li><a class="article-link" href="/news/{i}.html">{html.escape(t)}</a> '
        f'<span class="date" data-date="{d.isoformat()}">{d:%Y年%m月%d日}</span></li>'
        for i, d, t in rows[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    )
    nxt = f'\n<a class="next" href="/news/pg{page + 1}/">下一页</a>' if page < pages else ""
    body = f'<h1>财经新闻</h1>\n<ul class="news-list">\n{items}\n</ul>{nxt}'
    return 200, dict(HTML_HEADERS), _page(f"财经新闻 第{page}页", body)


def render_article(article_id: int, n: int) -> tuple[int, dict[str, str], bytes]:
    if not 1 <= article_id <= n:
        return _not_found()
    a = make_article(article_id, seed=0)
    paras = "".join(f"<p>{html.escape(p)}</p>" for p in a.body.split("\n"))
    d = a.published
    body = (
        f'<h1 class="article-title">{html.escape(a.title)}</h1>\n'
        f'<div class="meta"><span class="date" data-date="{d.isoformat()}">{d:%Y年%m月%d日}</span> '
        f'<span class="score" data-score="{a.score:.4f}">情绪 {a.score:.4f}</span></div>\n'
        f'<div class="article-body">{paras}</div>'
    )
    return 200, dict(HTML_HEADERS), _page(a.title, body)


def app(path: str) -> tuple[int, dict[str, str], bytes] | None:
    """Demo-server handler for /news/..., None for paths that are not ours."""
    path = path.split("?", 1)[0]
    if m := _LIST_RE.match(path):
        return render_list(int(m.group(1) or 1), site_size())
    if m := _ARTICLE_RE.match(path):
        return render_article(int(m.group(1)), site_size())
    return None
