"""A page's bytes as the UTF-8 lexbor parses, without a Python str in between where that is cheaper.

selectolax encodes a str to UTF-8 before lexbor sees it, so decoding a page into a str only for that costs
twice: once in the decode, once in the encode. A UTF-8 page that decodes cleanly is already what lexbor
needs. A page in one of the web's two-byte CJK encodings goes through etl/parse/_transcode.c (when it
was compiled at install): ASCII is copied as it is and each two-byte character is looked up in a table
built here, once per process, from Python's own codec — so the result is exactly
``body.decode(enc).encode("utf-8")``, and whatever the table does not cover (GB18030's four-byte
sequences, a broken byte) is left to Python's codec by returning None.
"""

from __future__ import annotations

import functools
from array import array

try:
    from etl.parse import _transcode
except ImportError:  # built without a C compiler: pages are decoded with Python's codecs
    _transcode = None

# Python codecs of the WHATWG encodings (etl/parse/whatwg.py) in which every byte below 0x80 at a character
# boundary is that ASCII character and every character above it is two bytes or more, with no shift state
TWO_BYTE_CODECS = frozenset({"gb18030", "big5hkscs", "cp949", "cp932", "euc_jp"})


@functools.cache
def _table(enc: str) -> bytes | None:
    """code point of each (lead >= 0x80, trail) pair that Python's codec decodes to one BMP character;
    0 where it does not (not a character, a longer sequence, two characters, a surrogate)."""
    if bytes(range(0x80)).decode(enc, "replace") != bytes(range(0x80)).decode("ascii"):
        return None
    table = array("H", bytes(2 * 128 * 256))
    for lead in range(0x80, 0x100):
        for trail in range(0x100):
            try:
                text = bytes((lead, trail)).decode(enc)
            except UnicodeDecodeError:
                continue
            if len(text) == 1 and 0x80 <= ord(text) <= 0xFFFF and not 0xD800 <= ord(text) <= 0xDFFF:
                table[(lead - 0x80) << 8 | trail] = ord(text)
    return table.tobytes()


def to_utf8(body: bytes, enc: str) -> bytes | None:
    """`body` decoded strictly with `enc`, as UTF-8 bytes; None when that needs Python's codec (or the
    body does not decode strictly at all)."""
    if enc == "utf-8":
        if body.isascii():
            return body
        try:
            body.decode("utf-8")  # the check that it is UTF-8; the str itself is not needed
        except UnicodeDecodeError:
            return None
        return body
    if _transcode is None or enc not in TWO_BYTE_CODECS:
        return None
    table = _table(enc)
    return None if table is None else _transcode.to_utf8(body, table)
