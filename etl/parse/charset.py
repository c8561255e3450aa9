"""Bytes → text the way browsers do it: a BOM, then the HTTP header charset, then <meta>, then detection.

Chinese portals often serve GBK pages as plain ``text/html`` and declare the charset only in <meta>;
requests would then guess ISO-8859-1 and mangle every character, so we never use ``response.text``.
Labels are read as the WHATWG Encoding Standard reads them (etl/parse/whatwg.py): GBK and GB2312 are
decoded as GB18030, their superset, ISO-8859-1 and ASCII as windows-1252; a <meta> saying UTF-16 means UTF-8
(an ASCII-compatible page cannot be UTF-16); a name that is no encoding of the web (``utf-7``, ``rot13``,
``zlib``) is ignored and the charset detected instead.
"""

from __future__ import annotations

import codecs
import re

from etl.parse.transcode import to_utf8
from etl.parse.whatwg import CODECS, UTF16, codec_for

_HEADER_CHARSET = re.compile(r"charset\s*=\s*[\"']?([\w.:-]+)", re.I)
_META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?\s*([\w.:-]+)", re.I)
_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_BE, "utf-16-be"), (codecs.BOM_UTF16_LE, "utf-16-le"))


class DecodeError(ValueError):
    """The body cannot be turned into text (recorded as a failure for that page)."""


def header_charset(content_type: str | None) -> str | None:
    m = _HEADER_CHARSET.search(content_type or "")
    return codec_for(m.group(1)) if m else None


def meta_charset(body: bytes) -> str | None:
    m = _META_CHARSET.search(body[:4096])
    enc = codec_for(m.group(1).decode("ascii", "ignore")) if m else None
    return "utf-8" if enc in UTF16 else enc  # the <meta> was readable as ASCII, so the page is no UTF-16


def _plausible(body: bytes, enc: str) -> bool:
    """A header's UTF-16 on a body without UTF-16 markup ("<" as two bytes) is a wrong header: any even
    run of bytes "decodes" as UTF-16, into nonsense, so decoding cleanly proves nothing."""
    if enc == "utf-16-le":
        return b"<\x00" in body[:4096]
    if enc == "utf-16-be":
        return b"\x00<" in body[:4096]
    return True


def _detected(name: str) -> str | None:
    """charset_normalizer's Python codec name → one of the web's encodings (its superset), or None."""
    try:
        canonical = codecs.lookup(name).name
    except LookupError:
        return None
    enc = codec_for(name) or codec_for(name.replace("_", "-")) or codec_for(canonical)
    return enc or (canonical if canonical in CODECS else None)


def _clean(body: bytes, enc: str, utf8: bool) -> str | bytes | None:
    """`body` decoded strictly with `enc` (as UTF-8 bytes where `utf8` and that is cheaper), or None."""
    if utf8:
        encoded = to_utf8(body, enc)
        if encoded is not None:
            return encoded
    try:
        return body.decode(enc)
    except UnicodeDecodeError:
        return None


def decode_html(body: bytes, content_type: str | None = None, *, utf8: bool = False) -> tuple[str | bytes, str]:
    """Return (text, encoding used). Tries declared charsets strictly, then detection, then utf-8/replace.

    A declared charset that does not decode cleanly (a wrong header, say) is not trusted: the next source
    is tried. Only when nothing decodes cleanly do we substitute U+FFFD, and then only if few bytes are bad.
    `utf8=True` (for lexbor, which parses UTF-8): a page that decodes cleanly may come back as that text's
    UTF-8 bytes instead of a str (etl/parse/transcode.py); a str otherwise.
    """
    for bom, enc in _BOMS:
        if body.startswith(bom):
            return body[len(bom):].decode(enc, "replace"), enc
    candidates = [header_charset(content_type), meta_charset(body)]
    for enc in candidates:
        if enc and _plausible(body, enc):
            text = _clean(body, enc, utf8)
            if text is not None:
                return text, enc
    text = _clean(body, "utf-8", utf8)
    if text is not None:
        return text, "utf-8"
    try:
        from charset_normalizer import from_bytes

        best = from_bytes(body[:65536]).best()
        if best is not None:
            enc = _detected(best.encoding)
            if enc:
                return body.decode(enc, "replace"), enc
    except ImportError:  # pragma: no cover - charset_normalizer is a dependency
        pass
    enc = next((e for e in candidates if e and _plausible(body, e)), "utf-8")
    text = body.decode(enc, "replace")
    if text.count("\ufffd") > max(16, len(text) // 100):
        raise DecodeError(f"body does not decode as {enc} (declared) or any detected charset")
    return text, enc
