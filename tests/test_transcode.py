"""Pages handed to lexbor as UTF-8 bytes (etl/parse/transcode.py, etl/parse/_transcode.c) must be exactly
what decoding them into a str and encoding that back gives, for every encoding the fast path takes, and
must fall back to Python's codec for everything its table does not cover."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from etl.demo.site import DemoSite, SiteOptions
from etl.parse import transcode
from etl.parse.charset import decode_html
from etl.parse.engines import parse_html
from etl.parse.transcode import TWO_BYTE_CODECS, to_utf8

ZH = "北京朝阳区望京二手房出售，精装修南北通透，满五年唯一住房，近地铁。€ 〇 ·—"
TEXTS = {
    "gb18030": ZH + "䶵𠀀",  # the last two are four-byte GB18030: Python's codec decodes those
    "big5hkscs": "臺北市信義區，二手房出售，近捷運站。",
    "cp949": "서울특별시 강남구 아파트 매매",
    "cp932": "東京都港区のマンション、駅近。ｱｲｳ",  # half-width katakana are one byte: Python's codec again
    "euc_jp": "東京都港区のマンション、駅近。",
}


def test_the_compiled_transcoder_was_built_by_the_install():
    """pip install -e . compiles etl/parse/_transcode.c (setup.py, optional=True so that an install without
    a C compiler still works); this machine has one, so a missing module is a broken build."""
    assert transcode._transcode is not None, "etl.parse._transcode was not compiled (no C compiler?)"


@pytest.mark.parametrize("enc", sorted(TWO_BYTE_CODECS))
def test_a_page_in_each_two_byte_encoding_comes_out_as_the_utf8_of_its_text(enc):
    text = f"<html><head><meta charset={enc}></head><body><p>{TEXTS[enc]}</p>\n<a href='/x?a=1&b=2'>x</a></body>"
    body = text.encode(enc)
    assert to_utf8(body, enc) in (text.encode("utf-8"), None)
    plain = text.replace("䶵𠀀", "").replace("ｱｲｳ", "")  # without what only Python's codec reads
    assert to_utf8(plain.encode(enc), enc) == plain.encode("utf-8")


@pytest.mark.parametrize("enc", sorted(TWO_BYTE_CODECS))
@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=64))
@example(data=b"<p>\x81")  # a lead byte at the very end
@example(data=b"\x81<p>")  # a lead byte before markup: no GBK character
@example(data=b"\x810\x810")  # four-byte GB18030
@example(data=b"\x80\xff")
def test_any_bytes_give_the_codecs_own_text_or_none(enc, data):
    got = to_utf8(data, enc)
    try:
        expected = data.decode(enc).encode("utf-8")
    except (UnicodeDecodeError, UnicodeEncodeError):
        assert got is None
        return
    assert got in (expected, None)


@pytest.mark.parametrize("enc", sorted(TWO_BYTE_CODECS))
@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=st.characters(codec="utf-8"), max_size=40))
def test_text_of_the_encoding_round_trips_through_the_fast_path(enc, text):
    try:
        body = text.encode(enc)
    except UnicodeEncodeError:
        return
    got = to_utf8(body, enc)
    assert got in (body.decode(enc).encode("utf-8"), None)


def test_utf8_pages_are_passed_on_unchanged_and_broken_utf8_is_not():
    body = "<p>望京 €</p>".encode()
    assert to_utf8(body, "utf-8") is body
    assert to_utf8(b"<p>ascii</p>", "utf-8") == b"<p>ascii</p>"
    assert to_utf8(b"<p>\xe6\x9c</p>", "utf-8") is None


def test_without_the_compiled_module_pages_decode_as_before(monkeypatch):
    monkeypatch.setattr(transcode, "_transcode", None)
    body = ("<meta charset=gbk><p>" + ZH + "</p>").encode("gb18030")
    text, enc = decode_html(body, "text/html", utf8=True)
    assert (text, enc) == (body.decode("gb18030"), "gb18030")


@pytest.mark.parametrize("encoding", ["gbk", "utf-8"])
def test_the_demo_sites_pages_parse_to_the_same_tree_through_bytes_and_through_str(encoding):
    site = DemoSite(SiteOptions(listings=60, encoding=encoding))
    first = site.render("/bj/ershoufang/")[2]
    details = sorted(set(re.findall(rb"/bj/ershoufang/\d+\.html", first)))[:8]
    assert details
    for url in ["/", "/bj/ershoufang/", *(d.decode() for d in details)]:
        status, headers, body = site.render(url)
        assert status == 200
        fast, enc = decode_html(body, headers.get("Content-Type"), utf8=True)
        slow, enc_slow = decode_html(body, headers.get("Content-Type"))
        assert isinstance(fast, bytes) and isinstance(slow, str) and enc == enc_slow
        assert fast == slow.encode("utf-8")
        a, b = parse_html(fast, "selectolax", body), parse_html(slow, "selectolax", body)
        assert [n.text() for n in a.css("*")] == [n.text() for n in b.css("*")]
        assert parse_html(fast, "bs4", body).text() == parse_html(slow, "bs4", body).text()


def test_a_page_too_deep_is_refused_from_its_utf8_bytes_too():
    deep = ("<div>" * 6000 + "x").encode()
    with pytest.raises(ValueError, match="nested more than"):
        parse_html(deep, "selectolax")
