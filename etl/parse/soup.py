"""BeautifulSoup behind the engines' Node interface (etl/parse/engines.py), in a module of its own so that
only a run that chose `run.engine = "bs4"` imports bs4: the default engine's parse processes stay smaller."""

from __future__ import annotations

from collections.abc import Iterator

from bs4 import NavigableString

from etl.parse.cleaners import collapse


class SoupNode:
    __slots__ = ("_n",)

    def __init__(self, node) -> None:
        self._n = node

    def css(self, selector: str) -> list[SoupNode]:
        return [SoupNode(n) for n in self._n.select(selector)]

    def css_first(self, selector: str) -> SoupNode | None:
        n = self._n.select_one(selector)
        return None if n is None else SoupNode(n)

    def text(self) -> str:
        if isinstance(self._n, NavigableString):
            return collapse(str(self._n))
        return collapse(self._n.get_text())

    def attr(self, name: str) -> str | None:
        value = self._n.get(name)
        if isinstance(value, list):  # bs4 splits multi-valued attributes such as class
            return " ".join(value)
        return value

    def key(self) -> int:
        return id(self._n)

    def is_text(self) -> bool:
        return type(self._n) is NavigableString

    def parent(self) -> SoupNode | None:
        n = self._n.parent
        return None if n is None else SoupNode(n)

    def following(self) -> Iterator[SoupNode]:
        n = self._n.next_sibling
        while n is not None:
            if not isinstance(n, NavigableString) or type(n) is NavigableString:  # no comments
                yield SoupNode(n)
            n = n.next_sibling

    def text_nodes(self) -> list[SoupNode]:
        # exactly NavigableString: not a Comment, nor a Script/Stylesheet/TemplateString (as lexbor skips them)
        return [SoupNode(n) for n in self._n.descendants if type(n) is NavigableString]
