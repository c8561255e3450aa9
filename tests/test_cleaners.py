"""Pure converters (etl/parse/cleaners.py) and bytes → text decoding (etl/parse/charset.py)."""

from __future__ import annotations

import codecs
import datetime as dt
import random
from decimal import Decimal

import pytest

from etl.parse.charset import DecodeError, decode_html, header_charset, meta_charset
from etl.parse.cleaners import CONVERTERS, is_null, normalize, to_date, to_decimal, to_float, to_int, to_text

# ------------------------------------------------------------------------------------------- numbers


@pytest.mark.parametrize(("text", "want"), [
    ("520万", Decimal(5_200_000)),
    ("523.5万", Decimal(5_235_000)),
    ("1.2亿", Decimal(120_000_000)),
    ("3千", Decimal(3000)),
    ("520 万", Decimal(5_200_000)),           # a space between number and magnitude
    ("约 520 万", Decimal(5_200_000)),        # text before the number
    ("58,101元/平", Decimal(58101)),
    ("1,234,567.89", Decimal("1234567.89")),
    ("５８，１０１元", Decimal(58101)),       # full-width digits and comma (NFKC)
    ("89.5平米", Decimal("89.5")),
    ("89平米", Decimal(89)),
    ("２００５年建", Decimal(2005)),
    ("中楼层(共18层)", Decimal(18)),
    ("共6层", Decimal(6)),
    ("-5", Decimal(-5)),
    ("－５", Decimal(-5)),                    # full-width hyphen-minus → '-' under NFKC
    ("-1.5万", Decimal(-15000)),
    ("+3", Decimal(3)),
    ("1.50", Decimal("1.5")),
    ("0.5", Decimal("0.5")),
])
def test_to_decimal(text, want):
    got = to_decimal(text)
    assert isinstance(got, Decimal)
    assert got == want


def test_to_decimal_integral_values_have_no_exponent():
    # 523.5 × 10⁴ must be stored as 5235000, not 5.2350E+6 or 5235000.0
    assert str(to_decimal("523.5万")) == "5235000"
    assert str(to_decimal("1.2亿")) == "120000000"
    assert str(to_decimal("1.50")) == "1.5"


@pytest.mark.parametrize(("text", "scale", "want"), [
    ("523.5", 10000, Decimal(5_235_000)),
    ("520", "10000", Decimal(5_200_000)),
    ("0.01", 0.1, Decimal("0.001")),
    ("5", Decimal(2), Decimal(10)),
    ("1.5万", 2, Decimal(30000)),             # magnitude and scale both apply
])
def test_to_decimal_scale(text, scale, want):
    assert to_decimal(text, scale) == want


@pytest.mark.parametrize("text", [None, "", "   ", "暂无数据", " 暂无数据 ", "暂无", "未知", "-", "--", "n/a", "N/A",
                                  "null", "None", "no digits here", "元/平"])
@pytest.mark.parametrize("name", ["int", "float", "decimal", "date"])
def test_null_and_numberless_text_give_none(text, name):
    assert CONVERTERS[name](text) is None


@pytest.mark.parametrize(("text", "want"), [
    ("520万", 5_200_000), ("89.5平米", 90), ("89.4平米", 89), ("2.5", 3), ("-2.5", -3), ("２００５年建", 2005),
    ("58,101元/平", 58101), ("-7", -7),
])
def test_to_int_rounds_half_up(text, want):
    got = to_int(text)
    assert type(got) is int and got == want


def test_to_int_with_scale():
    assert to_int("523.5", 10000) == 5_235_000


@pytest.mark.parametrize(("text", "want"), [("89.5平米", 89.5), ("89.53平米", 89.53), ("74平米", 74.0), ("-0.25", -0.25),
                                            ("1.2万", 12000.0)])
def test_to_float(text, want):
    got = to_float(text)
    assert type(got) is float and got == want


def test_to_decimal_very_long_number_does_not_raise():
    text = "编号" + "1" * 30
    assert to_decimal(text) in (None, Decimal("1" * 30))


def test_to_decimal_unicode_minus_sign_keeps_the_sign():
    assert to_decimal("\u22125") == Decimal(-5)


# ------------------------------------------------------------------------------------------- dates


@pytest.mark.parametrize(("text", "want"), [
    ("2024-03-05", dt.date(2024, 3, 5)),
    ("2024/3/5", dt.date(2024, 3, 5)),
    ("2024年03月05日", dt.date(2024, 3, 5)),
    ("2024.03.05", dt.date(2024, 3, 5)),
    ("２０２４年３月５日", dt.date(2024, 3, 5)),
    ("挂牌 2024 年 3 月 5 日", dt.date(2024, 3, 5)),
    ("2024-03-05 12:30:00", dt.date(2024, 3, 5)),
    ("2024-02-29", dt.date(2024, 2, 29)),
])
def test_to_date(text, want):
    assert to_date(text) == want


@pytest.mark.parametrize("text", ["2024-02-30", "2023-02-29", "2024-13-01", "2024-00-10", "0000-01-01", "20240305",
                                  "03/05/2024", "暂无数据", "", None, "yesterday"])
def test_to_date_invalid_gives_none(text):
    assert to_date(text) is None


# ------------------------------------------------------------------------------------------- text


def test_to_text_collapses_whitespace_and_maps_null_words():
    assert to_text("  a \n\t b  ") == "a b"
    assert to_text("暂无数据") is None
    assert to_text("--") is None
    assert to_text(None) is None
    assert to_text("０") == "０"  # text is not NFKC-normalised, only trimmed


def test_normalize_and_is_null():
    assert normalize("ＡＢＣ　１２３") == "ABC 123"
    assert is_null(None) and is_null("  ") and is_null("暂无数据") and is_null("ｎ/ａ")
    assert not is_null("0")


def test_converters_take_text_and_scale_uniformly():
    assert set(CONVERTERS) == {"text", "int", "float", "decimal", "date", "url"}
    assert CONVERTERS["int"]("1.5万", 2) == 30000
    assert CONVERTERS["float"]("1.5", "0.5") == 0.75
    assert CONVERTERS["decimal"]("523.5", "10000") == Decimal(5_235_000)
    assert CONVERTERS["text"](" a  b ", "10") == "a b"  # text and date ignore the scale
    assert CONVERTERS["date"]("2024-03-05", 3) == dt.date(2024, 3, 5)
    assert CONVERTERS["url"](" http://a.test/x ", 3) == "http://a.test/x" and CONVERTERS["url"]("-") is None


# ------------------------------------------------------------------------------------------- charset

ZH = "北京朝阳区望京二手房出售，精装修南北通透，满五年唯一住房，近地铁。" * 20


def page(body: str, meta: str | None = None) -> str:
    head = f'<meta http-equiv="Content-Type" content="text/html; charset={meta}">' if meta else ""
    return f"<!DOCTYPE html><html><head>{head}<title>二手房</title></head><body><p>{body}</p></body></html>"


def test_gbk_with_charset_only_in_meta_and_plain_text_html_header():
    body = page(ZH, "gbk").encode("gbk")
    text, enc = decode_html(body, "text/html")
    assert ZH in text
    assert enc == "gb18030"  # GBK is decoded as its superset


def test_meta_charset_html5_form():
    body = f'<html><head><meta charset="GB2312"></head><body>{ZH}</body></html>'.encode("gbk")
    text, enc = decode_html(body, None)
    assert ZH in text and enc == "gb18030"


def test_header_charset_wins_when_it_decodes():
    # the header says utf-8, the (wrong) meta says gbk, the body is utf-8: the header is right
    body = page(ZH, "gbk").encode("utf-8")
    text, enc = decode_html(body, "text/html; charset=UTF-8")
    assert ZH in text and enc == "utf-8"


def test_header_charset_wins_over_meta_for_gbk():
    body = page(ZH, "utf-8").encode("gbk")
    text, enc = decode_html(body, 'text/html; charset="gbk"')
    assert ZH in text and enc == "gb18030"


def test_wrong_header_charset_falls_back_to_meta():
    body = page(ZH, "gbk").encode("gbk")
    text, enc = decode_html(body, "text/html; charset=utf-8")
    assert ZH in text and enc == "gb18030"


def test_wrong_header_charset_without_meta_falls_back_to_detection():
    body = page(ZH).encode("gbk")
    text, enc = decode_html(body, "text/html; charset=utf-8")
    assert ZH in text
    assert codecs.lookup(enc).name in ("gb18030", "gbk", "gb2312")


def test_unknown_declared_charset_is_ignored():
    body = page(ZH, "no-such-charset").encode("utf-8")
    text, enc = decode_html(body, "text/html; charset=bogus-42")
    assert ZH in text and enc == "utf-8"


def test_no_declaration_utf8_body():
    text, enc = decode_html(page(ZH).encode("utf-8"), "")
    assert ZH in text and enc == "utf-8"


def test_utf8_bom_wins_and_is_stripped():
    body = codecs.BOM_UTF8 + page(ZH, "gbk").encode("utf-8")
    text, enc = decode_html(body, "text/html; charset=gbk")
    assert enc == "utf-8"
    assert text.startswith("<!DOCTYPE") and ZH in text


def test_utf16_body_with_bom_is_detected():
    body = codecs.BOM_UTF16_LE + page(ZH).encode("utf-16-le")
    text, enc = decode_html(body, "text/html")
    assert ZH in text and "16" in enc


def test_gb2312_declared_with_gb18030_only_characters():
    rare = "𠀀 镕 㐀 € 䶮"  # outside GB2312 (and partly outside GBK)
    body = page(rare, "gb2312").encode("gb18030")
    text, enc = decode_html(body, "text/html; charset=gb2312")
    assert rare in text and enc == "gb18030"


def test_utf8_page_with_one_bad_byte_keeps_utf8_and_replaces_it():
    good = page(ZH, "utf-8").encode("utf-8")
    cut = good.index(b"<p>")  # an ASCII boundary, so exactly one byte is bad
    body = good[:cut] + b"\xff" + good[cut:]
    text, enc = decode_html(body, "text/html; charset=utf-8")
    assert enc == "utf-8"
    assert text.count("\ufffd") == 1
    assert ZH[:40] in text


def test_garbage_bytes_raise_decode_error():
    rnd = random.Random(1)
    garbage = bytes(rnd.randrange(256) for _ in range(5000))
    with pytest.raises(DecodeError):
        decode_html(garbage, "text/html; charset=utf-8")
    with pytest.raises(DecodeError):
        decode_html(garbage, None)


def test_decode_error_is_a_value_error():
    assert issubclass(DecodeError, ValueError)


def test_empty_body():
    assert decode_html(b"", "text/html") == ("", "utf-8")


@pytest.mark.parametrize(("content_type", "want"), [
    ("text/html; charset=GBK", "gb18030"),
    ("text/html;charset='utf-8'", "utf-8"),
    ("text/html; charset=ISO-8859-1", "cp1252"),
    ("text/html", None),
    (None, None),
    ("text/html; charset=nonsense", None),
])
def test_header_charset(content_type, want):
    assert header_charset(content_type) == want


def test_meta_charset_only_looks_at_the_first_4k():
    late = b"<html><head>" + b" " * 5000 + b'<meta charset="gbk"></head></html>'
    assert meta_charset(late) is None
    assert meta_charset(b'<META HTTP-EQUIV="content-type" CONTENT="text/html; charset=gb2312">') == "gb18030"


@pytest.mark.parametrize(("text", "fmt", "want"), [
    ("05/03/2024", "%d/%m/%Y", dt.date(2024, 3, 5)),
    (" 03/05/2024 ", "%m/%d/%Y", dt.date(2024, 3, 5)),
    ("March 5, 2024", "%B %d, %Y", dt.date(2024, 3, 5)),
    ("２０２４０３０５", "%Y%m%d", dt.date(2024, 3, 5)),  # full-width digits
    ("31/02/2024", "%d/%m/%Y", None),
    ("暂无数据", "%d/%m/%Y", None),
    (None, "%d/%m/%Y", None),
])
def test_date_in_a_given_format(text, fmt, want):
    from etl.parse.cleaners import to_date_format

    assert to_date_format(text, fmt) == want


# ------------------------------------------------------------------------------- charset labels (WHATWG)

ASCII_PAGE = '<html><head><meta charset="{}"></head><body><p class="t">Sunny flat +ADw-b+AD4-</p></body></html>'


@pytest.mark.parametrize("label", ["rot13", "zlib", "base64", "hex", "bz2", "uu", "utf-7", "utf7", "cp037"])
def test_a_meta_naming_no_web_encoding_is_ignored(label):
    """Python codecs that are no encoding of the web (not text codecs, or utf-7) must neither fail the page
    nor be honoured: utf-7 would turn "+ADw-" into "<", markup the page never had."""
    body = ASCII_PAGE.format(label).encode("ascii")
    text, enc = decode_html(body, "text/html")
    assert enc == "utf-8" and "Sunny flat +ADw-b+AD4-" in text


@pytest.mark.parametrize("label", ["rot13", "zlib", "utf-7", "cp037"])
def test_a_header_naming_no_web_encoding_is_ignored(label):
    body = page(ZH).encode("utf-8")
    text, enc = decode_html(body, f"text/html; charset={label}")
    assert enc == "utf-8" and ZH in text
    assert header_charset(f"text/html; charset={label}") is None


def even(body: bytes) -> bytes:
    """Of even length, so that UTF-16 "decodes" it without an error (into nonsense)."""
    return body + b" " * (len(body) % 2)


@pytest.mark.parametrize("label", ["utf-16", "UTF-16LE", "utf-16be", "unicode", "ucs-2"])
def test_meta_utf16_on_an_ascii_page_is_read_as_utf8(label):
    body = even(ASCII_PAGE.format(label).encode("ascii"))
    text, enc = decode_html(body, "text/html")
    assert enc == "utf-8" and "Sunny flat" in text


def test_header_utf16_on_a_body_without_utf16_markup_is_not_trusted():
    text, enc = decode_html(even(page("Sunny flat").encode("utf-8")), "text/html; charset=utf-16")
    assert enc == "utf-8" and "Sunny flat" in text


def test_header_utf16_on_a_utf16_body_is_honoured():
    body = page(ZH).encode("utf-16-le")
    text, enc = decode_html(body, "text/html; charset=utf-16")
    assert enc == "utf-16-le" and ZH in text


def test_utf16_bom_wins():
    body = codecs.BOM_UTF16_BE + page(ZH, "gbk").encode("utf-16-be")
    text, enc = decode_html(body, "text/html; charset=gbk")
    assert enc == "utf-16-be" and text.startswith("<!DOCTYPE") and ZH in text


@pytest.mark.parametrize(("label", "want"), [
    ("x-sjis", "cp932"), ("Shift_JIS", "cp932"), ("x-x-big5", "big5hkscs"), ("ks_c_5601-1987", "cp949"),
    ("unicode20utf8", "utf-8"), ("latin1", "cp1252"), ("x-gbk", "gb18030"), ("dos-874", "cp874"),
    (" Windows-1251 ", "cp1251"), ("iso-8859-8-i", "iso8859-8"), ("x-mac-cyrillic", "mac-cyrillic"),
    ("latin-1", None),  # Python's alias, not a label browsers know
    ("utf-32", None), ("iso-2022-kr", None), ("x-user-defined", None),
])
def test_labels_are_the_whatwg_ones(label, want):
    assert header_charset(f"text/html; charset={label}") == want
