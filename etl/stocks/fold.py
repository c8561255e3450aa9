"""Text folding done before matching: HTML entities and tags out, traditional characters to simplified.

News tables hold what the site served: ``貴州&#33541;台``, ``贵州&lt;b&gt;茅台&lt;/b&gt;``, Hong Kong and
Taiwan copy in traditional characters (``中國平安``). The dictionary holds simplified exchange short names,
so both sides are folded the same way (the matcher folds its alias keys with :func:`to_simplified` too).

Traditional → simplified is character by character, from OpenCC's ``TSCharacters.txt`` as shipped by the
``opencc-python-reimplemented`` package (Apache-2.0). A character is mapped to its first simplified
candidate, and *not at all* when it is itself one of its candidates (``乾 → 干 乾``, ``於 → 于 於``,
``著``): such characters are also ordinary simplified characters (乾隆, a surname 於) and folding them would
make simplified text match names it does not contain. The map is one-to-one per character, so an offset
in the folded text is an offset in the unescaped text.

Cost: the matcher runs over hundreds of thousands of articles. Most are simplified already, so a C-speed
Aho-Corasick scan for any mapped character (~14 µs per 1,000-character article) decides whether the
``str.translate`` pass (a precomputed list indexed by code point, ~55 µs) is needed at all. Entities and
tags cost nothing unless the text has an ``&`` or a ``<``.
"""

from __future__ import annotations

import html
import logging
import re
from functools import lru_cache
from importlib import resources

log = logging.getLogger("etl.stocks")

# A tag: '<' + a letter (or '/'), so a bare comparison ('PE<20倍') is text. Replaced by a space, which
# normalisation then drops between CJK characters and keeps between two ASCII digits/letters.
_TAG = re.compile(r"</?[A-Za-z][^<>]{0,300}>")


@lru_cache(maxsize=1)
def t2s_pairs() -> tuple[tuple[str, str], ...]:
    """(traditional, simplified) character pairs; empty (with one warning) if the data cannot be read."""
    try:
        data = resources.files("opencc").joinpath("dictionary", "TSCharacters.txt").read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError, OSError) as exc:
        log.warning("traditional characters are not folded: OpenCC's TSCharacters.txt is missing (%s); "
                    "install opencc-python-reimplemented", exc)
        return ()
    pairs = []
    for line in data.splitlines():
        trad, _, rest = line.partition("\t")
        candidates = rest.split()
        if len(trad) == 1 and candidates and len(candidates[0]) == 1 and trad not in candidates:
            pairs.append((trad, candidates[0]))
    return tuple(pairs)


class Folder:
    """Built once per process; ``fold(text)`` per article."""

    def __init__(self) -> None:
        pairs = t2s_pairs()
        top = max((ord(t) for t, _ in pairs), default=0) + 1
        table: list[int] = list(range(top))  # index = code point; beyond it str.translate keeps the char
        for trad, simp in pairs:
            table[ord(trad)] = ord(simp)
        self._table = table
        self._scan = None
        if pairs:
            import ahocorasick_rs

            self._scan = ahocorasick_rs.AhoCorasick([t for t, _ in pairs])

    def to_simplified(self, text: str) -> str:
        """Traditional characters → simplified; the text itself when it has none (the common case)."""
        if self._scan is None or not self._scan.find_matches_as_indexes(text):
            return text
        return text.translate(self._table)

    def fold(self, text: str) -> str:
        """Entities decoded, tags spaced out, traditional characters simplified."""
        if "&" in text:
            text = html.unescape(text)
        if "<" in text:
            text = _TAG.sub(" ", text)
        return self.to_simplified(text)


@lru_cache(maxsize=1)
def default_folder() -> Folder:
    return Folder()
