"""Pure text → value converters used by field specs.

Portals write numbers for people: '520万', '58,101元/平', '89.5平米', '２００５年建'. Every converter takes the
first number in the text (after NFKC, so full-width digits work), applies a Chinese magnitude written right
after it (万 ×10⁴, 亿 ×10⁸, 千 ×10³) and returns None when there is no number: a missing field is NULL.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

_NUMBER = re.compile(r"(?<![\d.])([-+]?(?:\d[\d,]*(?:\.\d+)?|\.\d+))\s*(亿|万|千)?")
_MAGNITUDE = {"万": Decimal(10_000), "亿": Decimal(100_000_000), "千": Decimal(1_000)}
_DATE = re.compile(r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})")
_NULL_WORDS = frozenset({"", "暂无数据", "暂无", "未知", "-", "--", "n/a", "N/A", "null", "None"})


def collapse(text: str) -> str:
    """Runs of whitespace → one space, trimmed: the one text normal form both engines share."""
    return " ".join(text.split())


def normalize(text: str) -> str:
    """NFKC (full-width → ASCII), the typographic minus as '-', and collapsed whitespace."""
    return " ".join(unicodedata.normalize("NFKC", text).replace("\u2212", "-").split())


def is_null(text: str | None) -> bool:
    return text is None or normalize(text) in _NULL_WORDS


def to_decimal(text: str | None, scale: Decimal | int | float | str | None = None) -> Decimal | None:
    """First number in the text, with its 万/亿/千 magnitude and an optional extra scale factor."""
    if is_null(text):
        return None
    m = _NUMBER.search(normalize(str(text)))
    if not m:
        return None
    try:
        value = Decimal(m.group(1).replace(",", ""))
    except InvalidOperation:
        return None
    if m.group(2):
        value *= _MAGNITUDE[m.group(2)]
    if scale is not None:
        value *= Decimal(str(scale))
    try:
        return value.quantize(Decimal(1)) if value == value.to_integral() else value.normalize()
    except InvalidOperation:  # more digits than a Decimal context holds: not a quantity we can store
        return None


def to_int(text: str | None, scale: Decimal | int | float | str | None = None) -> int | None:
    """Whole number, rounded half up; None beyond 64 bits (no database column could hold it)."""
    value = to_decimal(text, scale)
    if value is None:
        return None
    number = int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))
    return number if -(2**63) <= number < 2**63 else None


def to_float(text: str | None, scale: Decimal | int | float | str | None = None) -> float | None:
    value = to_decimal(text, scale)
    return None if value is None else float(value)


def to_date(text: str | None) -> dt.date | None:
    """'2024-03-05', '2024/3/5', '2024年03月05日', '2024.03.05' → date; anything else → None."""
    if is_null(text):
        return None
    m = _DATE.search(normalize(str(text)))
    if not m:
        return None
    try:
        return dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        return None


def to_date_format(text: str | None, fmt: str) -> dt.date | None:
    """A date in the field's own format ("%d/%m/%Y", "%B %d, %Y"); surrounding whitespace ignored."""
    if is_null(text):
        return None
    try:
        return dt.datetime.strptime(normalize(str(text)), fmt).date()
    except ValueError:
        return None


def clean_text(text: str) -> str:
    """Text any database accepts: NUL → U+FFFD, lone surrogates (from JSON escapes) → '?'."""
    text = text.replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def to_text(text: str | None) -> str | None:
    if is_null(text):
        return None
    return " ".join(str(text).split())


CONVERTERS = {
    "text": lambda text, scale=None: to_text(text),
    "int": to_int,
    "float": to_float,
    "decimal": to_decimal,
    "date": lambda text, scale=None: to_date(text),
    "url": lambda text, scale=None: None if is_null(text) else str(text).strip(),  # made absolute when read
}
