"""Find every A-share stock an article mentions, fast enough to run per article.

Built once per worker process (pool initializer), then ``find(text)`` per
article returns ``{code: mentions}``. The rules, in the order they are applied:

1. **Normalisation.** ``text`` -> HTML entities decoded, tags replaced by a space, traditional
   characters simplified (``貴州&#33541;台`` -> ``贵州茅台``; see ``fold``) -> NFKC of full-width letters/digits/``＊``
   (``Ａ`` -> ``A``; see ``fold`` too) -> whitespace removed *except* a single space kept where both
   neighbours are ASCII letters/digits (so ``万  科Ａ`` == ``万科A`` but
   ``订单 600519 1234`` never glues into one digit run) -> ASCII upper-cased.
   Dictionary aliases are canonicalised the same way (see ``dictionary``).
2. **Names.** One Aho-Corasick automaton over all aliases, scanned
   leftmost-longest, non-overlapping: ``东方通信`` is 600776, never also
   ``东方通`` 300379; ``平安银行`` 000001 and ``中国平安`` 601318 never match inside
   each other. ST/*ST prefixes and the A-share suffix are aliases (``万科``,
   ``万科A``, ``ST生态`` and ``*ST生态`` ...).
3. **Industry words.** A name directly followed by ``业`` (not ``业绩/业务/业主``)
   is not a mention: ``中国银行业协会`` is not 601988.
4. **Common-word names** (:data:`COMMON_WORD_NAMES`: 机器人 太阳能 农产品 老百姓
   金融街 中关村 张家界 陆家嘴 驱动力 ...) count only with evidence, any of:
   a. the code written right after it, ``机器人（300024）`` (a marker of rule b);
      a code elsewhere in the article is a mention of its own (rule 5) but
      does not make the plain word count: in ``老百姓（603883）… 老百姓的菜篮子``
      the second 老百姓 is the word, and the count is 1;
   b. right after the name, an optional time word (今日 昨日 盘中 尾盘 周一 ...)
      then a stock-only marker (股份 股价 股票 涨停 跌停 公告 董事会 市值
      股东 披露 年报 停牌 复牌 回购 增持 减持 收涨 收跌 报收 问询函 ...;
      see ``_AFTER``): ``机器人今日涨停``, ``农产品发布公告``;
   c. right before the name, ``证券简称/股票简称/简称/股票/个股`` plus optional
      ``：“「`` punctuation;
   d. it sits in a ``、``/``,``/``/`` separated list next to an accepted stock
      name (``涨停个股：贵州茅台、机器人、农产品``), transitively.
   So ``工业机器人需求旺盛`` or ``据新华网报道`` is nothing. Every occurrence needs
   its own evidence, so the count (rule 6) counts only evidenced uses.
5. **Codes.** ``600519``, ``(600519)``, ``600519.SH``, ``600519.SS``, ``SH600519``,
   ``sh600519``, ``SH:600519``, ``000001.SZ``, ``600519.XSHG`` count when the code
   is in the dictionary and the six digits are not part of a longer run of
   digits/letters (``13600519873``, ``1600519.00``, ``DD600519``), not a decimal
   (``600519.5``), not an amount/quantity (followed by 元 万 亿 手 股 % 吨 ...), and
   not preceded by a currency sign. An exchange-qualified code must match the
   stock's exchange (``000001.SH`` is the SSE Composite index, so it counts for
   nothing); a bare code right after an index name (``上证指数（000001）``,
   ``中证500（000905）``) is the index, not the stock.
6. **Counting.** Each accepted name occurrence and each code occurrence is one
   mention, except that a code written right after the same stock's name
   (``贵州茅台(600519.SH)``, ``贵州茅台 600519``) is the same mention.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from etl.stocks.dictionary import Stock
from etl.stocks.fold import ascii_forms, default_folder

# Names (canonical form) that are also ordinary words/places/brands-as-words.
# Measured: every dictionary name/alias looked up in jieba 0.42.1's word list
# (dict.txt, with frequencies), candidates reviewed by hand; company-only words
# (五粮液, 中国银行, 寒武纪 ...) are NOT here: in finance news they are the stock.
COMMON_WORD_NAMES: frozenset[str] = frozenset(
    """
    机器人 太阳能 农产品 老百姓 金融街 中关村 太平洋 大西洋 新华网 人民网 葛洲坝
    长白山 向日葵 张家界 祁连山 王府井 指南针 峨眉山 新世界 连云港 一品红 白云山
    北大荒 鄂尔多斯 徐家汇 驱动力 新大陆 百合花 新天地 黑芝麻 陆家嘴 天津港 外高桥
    白云机场 上海机场 深圳机场 海南机场 步步高 东方明珠 新动力 动力源 青岛港 万年青
    金麒麟 会稽山 广州港 南京港 盐田港 宁波港 日照港 锦州港 营口港 重庆港 三人行
    孩子王 电子城 火星人 三棵树 探路者 轻纺城 好想你 人人乐 葫芦娃 红蜻蜓 创世纪
    喜临门 生物谷 南极光 天目湖 金太阳 小商品城 红太阳 珍宝岛 新希望
    """.split()
)

_TIME = r"(?:今日|今天|昨日|昨天|早盘|午后|午盘|尾盘|盘中|盘后|晚间|日前|近日|当日|本周|上周|周[一二三四五])?"
_MARKERS = (
    "股份|股价|股票|股东|涨停|跌停|公告|发布公告|董事会|董事长|市值|总市值|控股股东|披露|"
    "年报|半年报|一季报|三季报|季报|业绩预告|停牌|复牌|换手|收涨|收跌|报收|回购|增持|"
    "减持|问询函|定增|限售|主力资金|融资余额|证券代码|股票代码|高开|低开|封板|连板|"
    "涨超|跌超|涨幅|跌幅|[(（]\\d{6}"
)
_AFTER = re.compile(_TIME + "(?:" + _MARKERS + ")")
_BEFORE = re.compile(r"(?:证券简称|股票简称|简称|股票|个股)[:：“\"「『'‘]*$")
_LIST_SEP = frozenset("、,/，")
_INDUSTRY_OK = frozenset("绩务主")

_DIGIT_RUN = re.compile(r"[0-9]+")
_DIGITS = frozenset("0123456789")
_CODE = re.compile(
    r"(?<![0-9A-Z.¥$￥])"
    r"(?:(SH|SZ|BJ|SS)[.:]?)?"
    r"(\d{6})"
    r"(?:\.(SH|SZ|BJ|SS|XSHG|XSHE))?"
    r"(?![0-9A-Z]|\.\d|元|万|亿|千|百|手|%|％|吨|件|个|人|次|台|辆|米|户|张|笔|股(?![价份票东]))"
)
_QUALIFIER = {"SH": "SH", "SS": "SH", "XSHG": "SH", "SZ": "SZ", "XSHE": "SZ", "BJ": "BJ"}
_INDEX_BEFORE = re.compile(
    r"(?:指数|综指|成指|创业板指|上证50|科创50|沪深300|中证\d{3,4}|上证\d{2,3}|深证\d{2,3}|国证\d{2,4})"
    r"[(\[:（：]?\s?$"
)
_SAME_MENTION_GAP = frozenset(["", "(", ":", " ", "[", "【", "（", "："])

ENGINES = ("pyahocorasick", "ahocorasick_rs")


def _squeeze(text: str) -> str:
    """Drop every whitespace run unless it separates two ASCII letters/digits (then one space).

    ``str.split`` and ``\\s`` agree on what whitespace is, and splitting then joining the few pieces
    an article has runs at C speed where a regex with a Python callback per run did not.
    """
    parts = text.split()
    if len(parts) < 2:
        return parts[0] if parts else ""
    out = [parts[0]]
    prev = parts[0][-1]
    for part in parts[1:]:
        if prev.isascii() and prev.isalnum() and part[0].isascii() and part[0].isalnum():
            out.append(" ")
        out.append(part)
        prev = part[-1]
    return "".join(out)


def normalize(text: str) -> str:
    """Matching form of a text: folded, whitespace squeezed (rule 1), upper-case.

    Entities, tags, traditional and full-width characters are folded first (``etl.stocks.fold``).
    """
    return _squeeze(default_folder().fold(text)).upper()


def _unfolded(text: str) -> str:
    """normalize() without its character folds: the same text whenever the text holds no traditional or
    full-width character (the names' scan tells, see StockMatcher.find), at the cost of no extra scan."""
    return _squeeze(default_folder().markup(text)).upper()


class StockMatcher:
    """Aho-Corasick over all aliases + one code regex; see the module rules."""

    def __init__(self, stocks: Sequence[Stock], engine: str = "auto") -> None:
        if engine == "auto":  # both are dependencies; ahocorasick_rs measured ~20% faster (bench/bench_stocks.py)
            try:
                import ahocorasick_rs  # noqa: F401

                engine = "ahocorasick_rs"
            except ImportError:
                engine = "pyahocorasick"
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, not {engine!r}")
        self.engine = engine
        self.exchange: dict[str, str] = {s.code: s.exchange for s in stocks}
        entries: dict[str, tuple[str, bool]] = {}
        simplified = default_folder().to_simplified  # the text is folded so: fold the keys alike
        for stock in stocks:
            for alias in stock.aliases:
                key = simplified(alias)
                if key and key not in entries:  # dictionary already resolved clashes
                    entries[key] = (stock.code, alias in COMMON_WORD_NAMES)
        self.aliases = entries
        self._values = [entries[p] for p in entries]
        # Codes go into the names' automaton: one scan finds both, and no Python loop walks every digit
        # run. A code's hit cannot hide a name's (or another code's, see _code_hits) unless some alias
        # holds an ASCII digit; a dictionary with one falls back to the digit-run scan.
        self._codes_scanned = not any(_DIGIT_RUN.search(p) for p in entries)
        codes = sorted(self.exchange) if self._codes_scanned else []
        # Last, every character that folding changes: no alias or code holds one (aliases are folded), so
        # each occurrence is a hit of its own, and a text without such hits needs no folding scan at all.
        folder = default_folder()
        self._folded_from = len(entries) + len(codes)
        self._patterns = list(entries) + codes + [c for c in folder.chars if c not in entries]
        self._wide = folder.wide
        if engine == "pyahocorasick":
            import ahocorasick

            # Keys are UTF-8 bytes spelled as latin-1 str: pyahocorasick scans a
            # node's children linearly, and a CJK-first-char root has ~800
            # children (~200 ns/char); UTF-8 lead bytes give a root of ~10.
            automaton = ahocorasick.Automaton()
            for i, pattern in enumerate(self._patterns):
                key = pattern.encode().decode("latin-1")
                automaton.add_word(key, (len(key), i))
            automaton.make_automaton()
            self._automaton = automaton
        else:
            import ahocorasick_rs

            self._automaton = ahocorasick_rs.AhoCorasick(  # a DFA: slower to build, faster to scan
                self._patterns,
                matchkind=ahocorasick_rs.MatchKind.LeftmostLongest,
                implementation=ahocorasick_rs.Implementation.DFA,
            )

    def _hits(self, text: str) -> list[tuple[int, int, int]]:
        """(start, end, pattern index) of leftmost-longest alias (and code) matches."""
        if self.engine == "pyahocorasick":
            raw = text.encode()
            hits = [
                (end + 1 - n, end + 1, i) for end, (n, i) in self._automaton.iter_long(raw.decode("latin-1"))
            ]
            if not hits or len(raw) == len(text):
                return hits
            out, last_b, last_c = [], 0, 0  # byte offsets -> str offsets, incrementally
            for bs, be, i in hits:
                cs = last_c + len(raw[last_b:bs].decode())
                ce = cs + len(raw[bs:be].decode())
                out.append((cs, ce, i))
                last_b, last_c = be, ce
            return out
        return [(s, e, i) for i, s, e in self._automaton.find_matches_as_indexes(text)]

    def _refold(self, text: str, t: str, hits: list[tuple[int, int, int]]) -> tuple[str, list[tuple[int, int, int]]]:
        """The text held characters that folding changes: its matching form and hits, folded. Traditional
        ones alone are translated in place (one character for one, so squeezing and upper-casing do not
        care); a full-width letter or digit can change where squeezing keeps a space, so those are made
        ASCII in the text before squeezing (the ones found, and their lower case: the scan saw them
        upper-cased), as normalize() does."""
        f, patterns, folder = self._folded_from, self._patterns, default_folder()
        found = {patterns[i] for _, _, i in hits if i >= f}
        wide = found & self._wide
        if wide:
            text = folder.markup(text)
            if len(wide) < len(found):
                text = folder.translate_traditional(text)
            t = _squeeze(ascii_forms(text, wide | {c.lower() for c in wide} & self._wide)).upper()
        else:
            t = folder.translate_traditional(t)
        return t, [h for h in self._hits(t) if h[2] < f]

    def _code_runs(self, text: str, hits: list[tuple[int, int, int]]) -> list[tuple[int, str]]:
        """(start, code) of every run of exactly six digits that is a dictionary code.

        With codes in the automaton, a six-digit run is a code hit of its own: hits lie inside digit runs,
        so none that overlaps it starts earlier. A hit inside a longer run is not a six-digit run.
        """
        if not self._codes_scanned:
            return [(m.start(), m.group()) for m in _DIGIT_RUN.finditer(text)
                    if m.end() - m.start() == 6 and m.group() in self.exchange]
        n, f, runs = len(self._values), self._folded_from, []
        for start, end, i in hits:
            if n <= i < f and not (start and text[start - 1] in _DIGITS) and text[end : end + 1] not in _DIGITS:
                runs.append((start, text[start:end]))
        return runs

    def _code_hits(self, text: str, runs: list[tuple[int, str]]) -> list[tuple[int, int, str]]:
        hits = []
        for start, _ in runs:  # the full regex only at six-digit runs that are codes
            m = None
            for back in (3, 2, 0):  # "SH:" / "SH" prefix, or a bare code
                if start - back >= 0:
                    m = _CODE.match(text, start - back)
                    if m is not None and m.start(2) == start:
                        break
                    m = None
            if m is None:
                continue
            code = m.group(2)
            exch = self.exchange[code]
            qual = m.group(1) or m.group(3)
            if qual:
                if _QUALIFIER[qual] != exch:
                    continue
            elif _INDEX_BEFORE.search(text, max(0, m.start() - 10), m.start()):
                continue
            hits.append((m.start(), m.end(), code))
        return hits

    def find(self, text: str) -> dict[str, int]:
        """``{code: number of mentions}`` for one article (empty dict if none)."""
        t = _unfolded(text)
        hits = self._hits(t)
        f = self._folded_from
        if hits and any(i >= f for _, _, i in hits):
            t, hits = self._refold(text, t, hits)
        values = self._values
        names = [h for h in hits if h[2] < len(values)] if self._codes_scanned else hits
        codes = self._code_hits(t, self._code_runs(t, hits))
        if not names and not codes:
            return {}
        accepted: list[bool] = []
        for start, end, i in names:
            code, ambiguous = values[i]
            nxt = t[end : end + 1]
            if nxt == "业" and t[end + 1 : end + 2] not in _INDUSTRY_OK:
                accepted.append(False)
            elif not ambiguous:
                accepted.append(True)
            else:
                accepted.append(  # a code elsewhere is its own mention, not evidence (rule 4a)
                    _AFTER.match(t, end) is not None
                    or _BEFORE.search(t, max(0, start - 8), start) is not None
                )
        if not all(accepted):
            self._list_evidence(t, names, accepted)
        counts: dict[str, int] = {}
        name_ends: dict[int, str] = {}
        for (_, end, i), ok in zip(names, accepted, strict=True):
            if ok:
                code = values[i][0]
                counts[code] = counts.get(code, 0) + 1
                name_ends[end] = code
        for start, _, code in codes:
            if any(
                name_ends.get(start - gap) == code and t[start - gap : start] in _SAME_MENTION_GAP
                for gap in (0, 1, 2)
            ):
                continue
            counts[code] = counts.get(code, 0) + 1
        return counts

    @staticmethod
    def _list_evidence(t: str, names: list[tuple[int, int, int]], accepted: list[bool]) -> None:
        """Rule 4d: accept common-word names listed next to accepted stock names."""
        changed = True
        while changed:
            changed = False
            for k, (start, end, _) in enumerate(names):
                if accepted[k]:
                    continue
                left = (
                    k > 0 and accepted[k - 1] and names[k - 1][1] == start - 1 and t[start - 1] in _LIST_SEP
                )
                right = (
                    k + 1 < len(names)
                    and accepted[k + 1]
                    and names[k + 1][0] == end + 1
                    and t[end] in _LIST_SEP
                )
                if (left or right) and t[end : end + 1] != "业":
                    accepted[k] = changed = True
