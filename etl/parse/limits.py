"""Bounds on what one page may cost a parse process: how deep its elements nest.

lexbor builds its tree in time quadratic in the nesting depth (160,000 nested ``<div>``: about a minute for
0.9 MB), and nothing can interrupt it once started, so a page nested absurdly deep is refused before any tree
is built. Real pages nest tens of elements deep, sloppy ones (unclosed ``<div>``/``<font>``) a few hundred;
browsers stop nesting at 512. The scan is linear and never over-counts: elements the parser closes
implicitly (``<li>``, ``<p>``, ``<td>``…), void elements and the insides of comments, raw-text elements
(``<script>``…) and inline SVG/MathML are not counted, so a wide or sloppy page is never taken for a deep one.
Whatever slips through (deep nesting inside ``<svg>``, say) meets the per-page deadline (run.parse_timeout).
"""

from __future__ import annotations

import re

MAX_DEPTH = 5_000  # lexbor: ~0.1 s to build this deep; 20,000: ~2.5 s; 160,000: a minute

# elements that never nest (void) or that the tree builder closes when a sibling starts: not counted
_NOT_COUNTED = frozenset(
    "area base br col embed hr img input keygen link meta param source track wbr basefont bgsound frame "
    "image li p dt dd option optgroup tr td th thead tbody tfoot colgroup caption rb rt rp rtc html head body"
    .split())
_OPAQUE = "script|style|textarea|title|xmp|iframe|noembed|noframes|noscript|plaintext|svg|math"
_OPAQUE_START = re.compile(rf"<(?:!--|({_OPAQUE})\b)", re.I)
_END = {name: re.compile(rf"</{name}\s*>", re.I) for name in _OPAQUE.split("|")}
_TAG = re.compile(r"<(/?[A-Za-z][\w:-]*)")


def _markup(html: str) -> str:
    """The document without comments and the contents of opaque elements (one pass, a few per page)."""
    parts: list[str] = []
    pos = 0
    while (m := _OPAQUE_START.search(html, pos)) is not None:
        parts.append(html[pos:m.start()])
        name = m.group(1)
        if name is None:  # a comment; unterminated, it runs to the end (as in a browser)
            end = html.find("-->", m.end())
            pos = len(html) if end < 0 else end + 3
            continue
        parts.append(f"<{name}>")  # the element itself counts, its contents do not
        close = _END[name.lower()].search(html, m.end())
        pos = len(html) if close is None else close.start()
    parts.append(html[pos:])
    return "".join(parts)


def _start_tags_at_most(html: str | bytes, raw: bytes | None, limit: int | None = None) -> int:
    """An upper bound of the start tags: the "<" not followed by "/". Counted in the undecoded bytes when
    we have them (a count over bytes is several times faster than over a CJK string): in every encoding
    a page can be decoded from (the WHATWG ones), a tag's "<" is a 0x3C byte followed by neither 0x2F nor
    anything that joins it to another "</" pair, so extra 0x3C bytes can only raise the bound. The "<"s
    alone already bound it: when they are within `limit`, the slower "</" count is skipped."""
    if raw is not None or isinstance(html, bytes):  # UTF-8 bytes too: their "<" and "</" are these bytes
        counted = raw if raw is not None else html
        brackets = counted.count(b"<")
        return brackets if limit is not None and brackets <= limit else brackets - counted.count(b"</")
    brackets = html.count("<")
    return brackets if limit is not None and brackets <= limit else brackets - html.count("</")


def nesting_depth(html: str | bytes, limit: int | None = None, raw: bytes | None = None) -> int:
    """A lower bound of how deep the document's elements nest; stops early once past `limit`. With a limit,
    a result within it only says "not deeper than the limit" (a page with few start tags is not scanned).
    `raw`: the bytes `html` was decoded from, if any (for the quick bound). `html` may be UTF-8 bytes."""
    if limit is not None and _start_tags_at_most(html, raw, limit) <= limit:
        return 0  # fewer start tags than the limit: the usual page costs one count()
    if isinstance(html, bytes):
        html = html.decode("utf-8")
    stack: list[str] = []
    open_count: dict[str, int] = {}
    deepest = 0
    for tag in _TAG.findall(_markup(html)):
        name = tag.lower()
        closing = name[0] == "/"
        if closing:
            name = name[1:]
        if name in _NOT_COUNTED:
            continue
        if closing:
            if open_count.get(name):  # pops up to its open element, as the tree builder does
                while (top := stack.pop()) != name:
                    open_count[top] -= 1
                open_count[name] -= 1
            continue
        stack.append(name)
        open_count[name] = open_count.get(name, 0) + 1
        if len(stack) > deepest:
            deepest = len(stack)
            if limit is not None and deepest > limit:
                break
    return deepest


def too_deep(html: str | bytes, raw: bytes | None = None) -> str | None:
    """The failure message for a document nested deeper than MAX_DEPTH, or None."""
    if nesting_depth(html, MAX_DEPTH, raw) <= MAX_DEPTH:
        return None
    return (f"elements nested more than {MAX_DEPTH} deep (a broken or hostile page; building its tree would "
            "take minutes): not parsed")
