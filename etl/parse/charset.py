"""Bytes → text the way browsers do it: HTTP header charset, then <meta>, then detection.

Chinese portals often serve GBK pages as plain ``text/html`` and declare the charset only in <meta>;
requests would then guess ISO-8859-1 and mangle every character, so we never use ``response.text``.
GBK and GB2312 are decoded as GB18030, their superset, so rare characters in a 'GBK' page still decode.
"""

from __future__ import annotations

import codecs
import re

_HEADER_CHARSET = re.compile(r"charset\s*=\s*[\"']?([\w.:-]+)", re.I)
_META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?\s*([\w.:-]+)", re.I)
_SUPERSETS = {"gbk": "gb18030", "gb2312": "gb18030", "x-gbk": "gb18030", "iso-8859-1": "cp1252",
              "latin-1": "cp1252", "ascii": "cp1252", "us-ascii": "cp1252"}


class DecodeError(ValueError):
    """The body cannot be turned into text (recorded as a failure for that page)."""


def _codec(name: str | None) -> str | None:
    if not name:
        return None
    name = name.strip().lower()
    name = _SUPERSETS.get(name, name)
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def header_charset(content_type: str | None) -> str | None:
    m = _HEADER_CHARSET.search(content_type or "")
    return _codec(m.group(1)) if m else None


def meta_charset(body: bytes) -> str | None:
    m = _META_CHARSET.search(body[:4096])
    return _codec(m.group(1).decode("ascii", "ignore")) if m else None


def decode_html(body: bytes, content_type: str | None = None) -> tuple[str, str]:
    """Return (text, encoding used). Tries declared charsets strictly, then detection, then utf-8/replace.

    A declared charset that does not decode cleanly (a wrong header, say) is not trusted: the next source
    is tried. Only when nothing decodes cleanly do we substitute U+FFFD, and then only if few bytes are bad.
    """
    if body.startswith(codecs.BOM_UTF8):
        return body[3:].decode("utf-8", "replace"), "utf-8"
    candidates = [header_charset(content_type), meta_charset(body)]
    for enc in candidates:
        if enc:
            try:
                return body.decode(enc), enc
            except UnicodeDecodeError:
                continue
    try:
        return body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        from charset_normalizer import from_bytes

        best = from_bytes(body[:65536]).best()
        if best is not None:
            enc = _codec(best.encoding)
            if enc:
                return body.decode(enc, "replace"), enc
    except ImportError:  # pragma: no cover - charset_normalizer is a dependency
        pass
    enc = next((e for e in candidates if e), "utf-8")
    text = body.decode(enc, "replace")
    if text.count("\ufffd") > max(16, len(text) // 100):
        raise DecodeError(f"body does not decode as {enc} (declared) or any detected charset")
    return text, enc
