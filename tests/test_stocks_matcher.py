"""Unit tests for the stock dictionary, alias rules, matcher rules and generator."""

from __future__ import annotations

import json
from collections import Counter
from datetime import date
from pathlib import Path

import pytest

from etl.stocks import StockMatcher, load_stocks
from etl.stocks.dictionary import canonical, derive_aliases
from etl.stocks.matcher import COMMON_WORD_NAMES, normalize

LABELED = Path(__file__).parent / "data" / "stock_mentions_labeled.jsonl"


@pytest.fixture(scope="module")
def stocks():
    return load_stocks()


@pytest.fixture(scope="module")
def matcher(stocks):
    return StockMatcher(stocks)


@pytest.fixture(scope="module", params=["pyahocorasick", "ahocorasick_rs"])
def any_matcher(request, stocks):
    return StockMatcher(stocks, engine=request.param)


# ---------------------------------------------------------------- dictionary
def test_dictionary_coverage(stocks) -> None:
    assert len(stocks) >= 5000
    codes = [s.code for s in stocks]
    assert codes == sorted(codes) and len(set(codes)) == len(codes)
    prefixes = Counter(c[:3] for c in codes)
    for p in ("600", "601", "603", "605", "688", "000", "001", "002", "003", "300", "301"):
        assert prefixes[p] > 0, p
    assert sum(1 for c in codes if c[0] in "48") > 100  # Beijing
    assert {s.exchange for s in stocks} == {"SH", "SZ", "BJ"}
    assert all(s.exchange == "BJ" for s in stocks if s.code[0] in "48")
    by = {s.code: s for s in stocks}
    assert by["600519"].name == "贵州茅台" and by["600519"].exchange == "SH"
    assert by["000001"].listed_date == date(1991, 4, 3)


def test_aliases(stocks) -> None:
    by = {s.code: s for s in stocks}
    assert by["000002"].aliases == ("万科A", "万科")
    assert "万科" not in by["200002"].aliases  # B share never gets the bare base
    assert set(by["600709"].aliases) == {"ST生态", "*ST生态"}  # 2-char base 生态 dropped
    assert "正邦" not in by["002157"].aliases and "*ST正邦" in by["002157"].aliases
    assert "湘火炬" in by["000549"].aliases  # S prefix stripped, 3-char base kept
    assert by["600332"].aliases == ("白云山",) and "白云山" not in by["000522"].aliases
    assert by["833874"].aliases == ()  # duplicate name goes to the SZ listing 301192
    assert "百联股份" in by["600827"].aliases
    all_aliases = Counter(a for s in stocks for a in s.aliases)
    assert max(all_aliases.values()) == 1  # every alias resolves to one code


def test_derive_aliases_rules() -> None:
    assert dict(derive_aliases("万  科Ａ", "000002")) == {"万科A": 0, "万科": 2}
    assert canonical(" *st 正邦 ") == "*ST正邦"
    assert {a for a, _ in derive_aliases("长  安Ｂ", "200625")} == {"长安B", "长安B股"}


def test_common_word_names_exist(stocks) -> None:
    aliases = {a for s in stocks for a in s.aliases}
    missing = sorted(COMMON_WORD_NAMES - aliases)
    assert not missing, missing
    for word in ("太阳能", "机器人", "农产品", "老百姓", "金融街", "中关村"):
        assert word in COMMON_WORD_NAMES


# ---------------------------------------------------------------- normalisation
def test_normalize_keeps_digit_runs_apart() -> None:
    assert normalize("万  科Ａ") == "万科A"
    assert normalize("订单 600519 1234") == "订单600519 1234"
    assert normalize("ｓｈ６００５１９") == "SH600519"


# ---------------------------------------------------------------- matcher rules
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("万科Ａ发布公告", {"000002": 1}),
        ("万  科Ａ", {"000002": 1}),
        ("万科A与万科", {"000002": 2}),
        ("*ST 正邦公告", {"002157": 1}),
        ("ST正邦", {"002157": 1}),
        ("＊ＳＴ生态", {"600709": 1}),
        ("东方通信大涨", {"600776": 1}),
        ("东方通下跌", {"300379": 1}),
        ("平安银行", {"000001": 1}),
        ("中国平安", {"601318": 1}),
        ("贵州茅台(600519.SH)今日", {"600519": 1}),
        ("贵州茅台 600519", {"600519": 1}),
        ("600519", {"600519": 1}),
        ("（600519）", {"600519": 1}),
        ("600519.SS", {"600519": 1}),
        ("sh600519", {"600519": 1}),
        ("SH600519", {"600519": 1}),
        ("000001.SZ", {"000001": 1}),
        ("sz000001", {"000001": 1}),
        ("600519.XSHG", {"600519": 1}),
        ("000001.SH", {}),
        ("SH000001", {}),
        ("上证指数（000001）", {}),
        ("中证500（000905）", {}),
        ("999999", {}),
        ("13600519873", {}),
        ("1600519.00元", {}),
        ("600519.00", {}),
        ("DD600519", {}),
        ("600519元", {}),
        ("工业机器人需求旺盛", {}),
        ("机器人（300024）公告称", {"300024": 1}),
        ("机器人今日涨停", {"300024": 1}),
        ("证券简称：机器人", {"300024": 1}),
        ("机器人行业报告。300024.SZ", {"300024": 1}),  # the code counts; the plain word 机器人 does not
        ("老百姓（603883）发布公告。老百姓的菜篮子越来越丰富", {"603883": 1}),
        ("老百姓（603883）发布公告。老百姓股价涨停", {"603883": 2}),  # a second evidenced use counts
        ("涨停个股：机器人、农产品。300024", {"300024": 2, "000061": 1}),
        ("涨停：贵州茅台、农产品", {"600519": 1, "000061": 1}),
        ("农产品价格上涨", {}),
        ("中国银行业协会", {}),
        ("中国银行业绩", {"601988": 1}),
        ("", {}),
    ],
)
def test_rules(any_matcher, text, expected) -> None:
    assert any_matcher.find(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("貴州茅台發布公告", {"600519": 1}),
        ("中國平安", {"601318": 1}),
        ("貴州&#33541;台", {"600519": 1}),
        ("贵州&lt;b&gt;茅台&lt;/b&gt;", {"600519": 1}),
        ("<p>贵州<b>茅台</b></p>", {"600519": 1}),
        ("订单<br>600519<br>1234", {"600519": 1}),  # a tag between digits never glues them together
        ("600519&nbsp;1234", {"600519": 1}),
        ("PE<20倍的贵州茅台", {"600519": 1}),  # a bare '<' is text, not a tag
        ("正邦科技发布公告", {"002157": 1}),  # former names: aliases of the current code
        ("中环股份涨停", {"002129": 1}),
        ("中國南車", {"601766": 1}),
        ("美的电器", {"000527": 1}),  # a delisted code stays findable
    ],
)
def test_traditional_entities_and_former_names(any_matcher, text, expected) -> None:
    assert any_matcher.find(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [  # a full-width letter or digit beside a space: folded before squeezing, the space stays between ASCII
        ("＊ＳＴ 600036 泛海", {"600036": 1}),  # "*ST 600036": not the letter-glued "ST600036"
        ("化工 600036 Ｙ", {"600036": 1}),
        ("ａ  688296发布回购", {"688296": 1}),
        ("订单 600519 １２３４", {"600519": 1}),
        ("中國平安 与 ｓｈ６００５１９ 和 ６００５１９", {"601318": 1, "600519": 2}),
        ("万科\u3000Ａ发布公告", {"000002": 1}),
    ],
)
def test_full_width_characters_next_to_spaces(any_matcher, text, expected) -> None:
    assert any_matcher.find(text) == expected


def test_one_scan_finds_what_folding_first_finds(any_matcher, monkeypatch: pytest.MonkeyPatch) -> None:
    """find() scans the unfolded text and folds only when that scan met a character folding changes; on
    texts full of such characters, whitespace and markup it must say what normalising first says."""
    import random

    from etl.stocks import matcher as module
    from etl.stocks.fold import WIDE, t2s_pairs

    rnd = random.Random(7)
    trad = [t for t, _ in t2s_pairs()]
    pieces = [*"贵州茅台平安银行万科科技发布公告涨停，。\n ", "\u3000", "  ", "ａ", "Ａ", "sh", "SH", "600519", "600036",
              "（000002）", "&amp;", "<b>", "</b>", "＊ＳＴ", "６００５１９", "中國", "ST ", "\u00a0"]
    texts = ["".join(rnd.choice(pieces) if rnd.random() < 0.8 else rnd.choice(trad + list(WIDE))
                     for _ in range(rnd.randint(1, 40))) for _ in range(3000)]
    one_scan = [any_matcher.find(t) for t in texts]
    monkeypatch.setattr(module, "_unfolded", normalize)  # fold first, as the rules read
    assert [any_matcher.find(t) for t in texts] == one_scan
    assert sum(map(bool, one_scan)) > 300  # the texts do hold mentions


def test_delisted_marked(stocks) -> None:
    by = {s.code: s for s in stocks}
    assert by["000527"].delisted and by["000018"].delisted and by["601299"].delisted  # no date / …退
    assert not by["600519"].delisted and not by["002157"].delisted
    assert "正邦科技" in by["002157"].aliases and "中环股份" in by["002129"].aliases


def test_user_aliases_from_env(tmp_path, monkeypatch) -> None:
    extra = tmp_path / "aliases.csv"
    extra.write_text("code,former_name,now\n600519,茅台酒厂,贵州茅台\n000002,平安银行,万科A\n", encoding="utf-8")
    monkeypatch.setenv("ETL_STOCK_ALIASES", str(extra))
    m = StockMatcher(load_stocks())
    assert m.find("茅台酒厂发布公告") == {"600519": 1}
    assert m.find("平安银行") == {"000001": 1}  # a current name is never taken over


def test_both_engines_identical_on_labeled_set(stocks) -> None:
    a = StockMatcher(stocks, "pyahocorasick")
    b = StockMatcher(stocks, "ahocorasick_rs")
    with LABELED.open(encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    for row in rows:
        assert a.find(row["text"]) == b.find(row["text"]), row["id"]


def test_unknown_engine(stocks) -> None:
    with pytest.raises(ValueError):
        StockMatcher(stocks, engine="naive")


# ---------------------------------------------------------------- generator
def test_generator_deterministic_and_truthful(matcher) -> None:
    from etl.demo.news import generate_articles, make_article, news_truth

    arts = list(generate_articles(300, seed=5))
    assert [a.id for a in arts] == list(range(1, 301))
    assert make_article(123, seed=5) == arts[122]
    assert list(generate_articles(2, seed=5, start_id=123))[0] == arts[122]
    assert news_truth(3, seed=5) == {a.id: a.codes for a in arts[:3]}
    assert all(-1 <= a.score <= 1 and round(a.score, 4) == a.score for a in arts)
    assert all(date(2023, 1, 1) <= a.published <= date(2024, 12, 31) for a in arts)
    assert all(len(a.codes) <= 4 for a in arts)
    assert 800 < sum(len(a.text) for a in arts) / len(arts) < 1300
    assert sum(set(matcher.find(a.text)) == a.codes for a in arts) >= 0.97 * len(arts)


def test_news_app(monkeypatch) -> None:
    from etl.demo.news import app

    monkeypatch.setenv("ETL_DEMO_NEWS", "45")
    status, headers, body = app("/news/")
    html = body.decode("utf-8")
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert html.count('class="article-link"') == 20 and 'href="/news/pg2/"' in html
    last = app("/news/pg3/")[2].decode()
    assert last.count('class="article-link"') == 5 and 'class="next"' not in last
    assert app("/news/pg4/")[0] == 404
    status, _, body = app("/news/7.html")
    page = body.decode()
    assert status == 200
    for marker in (
        '<h1 class="article-title">',
        'class="date" data-date="',
        '<div class="article-body"><p>',
        'class="score" data-score="',
    ):
        assert marker in page
    assert app("/news/46.html")[0] == 404
    assert app("/other/") is None


# ---------------------------------------------------------------- refresh (adata source)
WHEEL = Path("/tmp/adata/adata-2.9.5-py3-none-any.whl")


def test_rows_from_adata_csv() -> None:
    from etl.stocks.refresh import rows_from_adata_csv

    text = "stock_code,short_name,list_date2\n000002,万  科Ａ,1991-01-29\n600519,贵州茅台,\n833874,泰祥股份,20200727\n"
    assert rows_from_adata_csv(text) == [
        ("000002", "万  科Ａ", "SZ", "1991-01-29"),
        ("600519", "贵州茅台", "SH", ""),
        ("833874", "泰祥股份", "BJ", "2020-07-27"),
    ]


@pytest.mark.skipif(
    not WHEEL.exists(), reason="adata wheel not downloaded (pip download adata --no-deps -d /tmp/adata)"
)
def test_refresh_from_wheel_reproduces_shipped_csv(tmp_path) -> None:
    from etl.stocks.dictionary import DEFAULT_CSV
    from etl.stocks.refresh import refresh_from_wheel

    out = tmp_path / "a_shares.csv"
    assert refresh_from_wheel(WHEEL, out) == len(load_stocks())
    assert out.read_text(encoding="utf-8") == DEFAULT_CSV.read_text(encoding="utf-8")
    assert "adata 2.9.5" in (tmp_path / "PROVENANCE.md").read_text(encoding="utf-8")
