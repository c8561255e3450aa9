"""Two interchangeable HTML engines behind one tiny interface.

The extraction code only ever calls ``css``, ``text`` and ``attr``, so the same config gives the same rows
on selectolax (lexbor, fast C) and on BeautifulSoup (pure Python, forgiving). Text is whitespace-collapsed
the same way on both, which is what makes their output byte-identical.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from etl.parse.charset import decode_html
from etl.parse.cleaners import collapse

ENGINES = ("selectolax", "bs4")
DEFAULT_ENGINE = "selectolax"


class Node(Protocol):
    def css(self, selector: str) -> list[Node]: ...
    def css_first(self, selector: str) -> Node | None: ...
    def text(self) -> str: ...
    def attr(self, name: str) -> str | None: ...
    def key(self) -> int: ...
    # the few tree steps that `label` fields take (etl/parse/labels.py), text nodes included
    def is_text(self) -> bool: ...
    def parent(self) -> Node | None: ...
    def following(self) -> Iterator[Node]: ...
    def text_nodes(self) -> list[Node]: ...


_RAW_TEXT = frozenset({"script", "style", "template"})


def _visible_text_nodes(node) -> list:
    """Text nodes in document order, skipping script/style/template subtrees and comments. Iterative: a
    page nesting thousands of elements must not hit Python's recursion limit."""
    found: list = []
    stack = [node.child]
    while stack:
        child = stack.pop()
        if child is None:
            continue
        stack.append(child.next)  # the sibling comes after this child's subtree
        if child.tag == "-text":
            found.append(child)
        elif child.tag not in _RAW_TEXT and child.tag != "-comment":
            stack.append(child.child)
    return found


def _visible_text(node) -> list[str]:
    return [child.text_content or "" for child in _visible_text_nodes(node)]


class LexborNode:
    __slots__ = ("_n",)

    def __init__(self, node) -> None:
        self._n = node

    def css(self, selector: str) -> list[LexborNode]:
        return [LexborNode(n) for n in self._n.css(selector)]

    def css_first(self, selector: str) -> LexborNode | None:
        n = self._n.css_first(selector)
        return None if n is None else LexborNode(n)

    def text(self) -> str:
        node = self._n
        if node.tag == "-text":
            return collapse(node.text_content or "")
        child = node.child
        if child is not None and child.next is None and child.tag == "-text" and node.tag not in _RAW_TEXT:
            return collapse(child.text_content or "")  # the usual field: one text, no selector run for it
        if node.tag in _RAW_TEXT or node.css_first("script, style, template") is None:
            return collapse(node.text(deep=True, separator=""))
        return collapse("".join(_visible_text(node)))  # like bs4: inline scripts/styles are not text

    def attr(self, name: str) -> str | None:
        attributes = self._n.attributes
        value = attributes.get(name)
        if value is None and name in attributes:  # <input disabled>: present, empty (as bs4 says)
            return ""
        return value

    def key(self) -> int:
        return self._n.mem_id

    def is_text(self) -> bool:
        return self._n.tag == "-text"

    def parent(self) -> LexborNode | None:
        n = self._n.parent
        return None if n is None else LexborNode(n)

    def following(self) -> Iterator[LexborNode]:
        n = self._n.next
        while n is not None:
            if n.tag != "-comment":
                yield LexborNode(n)
            n = n.next

    def text_nodes(self) -> list[LexborNode]:
        return [LexborNode(n) for n in _visible_text_nodes(self._n)]


UTF8_ENGINES = frozenset({"selectolax"})  # take a document as its UTF-8 bytes (lexbor parses UTF-8)


class TooDeep(ValueError):
    """The document nests too deep to build a tree in reasonable time (recorded as that page's failure)."""


def parse_page(body: bytes, content_type: str | None, engine: str = DEFAULT_ENGINE) -> Node:
    """A fetched page's root node: decode_html, then parse_html. An engine in UTF8_ENGINES is handed the
    UTF-8 bytes where decode_html can give them (no str decoded only to be encoded back). Raises the
    decoder's DecodeError or TooDeep."""
    text, _ = decode_html(body, content_type, utf8=engine in UTF8_ENGINES)
    return parse_html(text, engine, body)


def parse_html(html: str | bytes, engine: str = DEFAULT_ENGINE, raw: bytes | None = None) -> Node:
    """Parse a decoded document with the named engine and return its root node. A document nested deeper
    than etl.parse.limits.MAX_DEPTH raises TooDeep before any tree is built, on either engine. `html`: the
    text, or its UTF-8 bytes (decode_html(..., utf8=True)), which lexbor takes as they are. `raw`: the
    bytes it was decoded from, when there are any (the depth check's quick bound counts those)."""
    from etl.parse.limits import too_deep

    problem = too_deep(html, raw)
    if problem:
        raise TooDeep(problem)
    if isinstance(html, bytes) and engine not in UTF8_ENGINES:
        html = html.decode("utf-8")
    if engine == "selectolax":
        from selectolax.lexbor import LexborHTMLParser

        tree = LexborHTMLParser(html)
        root = tree.root
        if root is None:  # empty document
            tree = LexborHTMLParser("<html></html>")
            root = tree.root
        return LexborNode(root)  # the node keeps its parser (and so the tree) alive
    if engine == "bs4":
        # imported for this engine only: bs4 would cost every parse process megabytes
        from bs4 import BeautifulSoup

        from etl.parse.soup import SoupNode

        # multi_valued_attributes=None: class="a  b" stays the page's string, as selectolax gives it
        try:
            soup = BeautifulSoup(html, "lxml", multi_valued_attributes=None)
        except Exception:  # lxml not installed: fall back to the stdlib parser
            soup = BeautifulSoup(html, "html.parser", multi_valued_attributes=None)
        return SoupNode(soup)
    raise ValueError(f"unknown parse engine {engine!r}; choose one of {', '.join(ENGINES)}")
