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

Full-width letters, digits, ``＊．`` and U+3000 become their NFKC (ASCII) forms here too: that is all NFKC
changes in a name or a code, while full NFKC of a Chinese article (every ``，`` is a compatibility character)
is costly; full-width ``（：，％￥`` stay as they are and the matcher's regexes accept both widths.

Cost: the matcher runs over hundreds of thousands of articles, and most of them are simplified, with no
full-width letters. So ONE C-speed Aho-Corasick scan for any character of either kind decides which of the
two passes (``str.translate``, the full-width substitution) the text needs, if any. Entities and tags cost
nothing unless the text has an ``&`` or a ``<``. The matcher goes further: its names' automaton holds
``chars`` too, so that one scan both finds the names and says whether folding was needed at all.
"""

from __future__ import annotations

import html
import logging
import re
import unicodedata
from functools import lru_cache
from importlib import resources

log = logging.getLogger("etl.stocks")

# A tag: '<' + a letter (or '/'), so a bare comparison ('PE<20倍') is text. Replaced by a space, which
# normalisation then drops between CJK characters and keeps between two ASCII digits/letters.
_TAG = re.compile(r"</?[A-Za-z][^<>]{0,300}>")
WIDE = "\uFF0A\uFF0E" + "".join(chr(c) for c in (*range(0xFF10, 0xFF1A), *range(0xFF21, 0xFF3B),
                                                   *range(0xFF41, 0xFF5B))) + "\u3000"


ASCII_FORM = {c: unicodedata.normalize("NFKC", c) for c in WIDE}  # per character: NFKC of a run is the same


def ascii_forms(text: str, wide: set[str] | frozenset[str]) -> str:
    """The full-width characters `wide` (those a scan found) in `text` made ASCII: one C-speed replace
    each, where a regex over the whole class is a slow scan of CJK text."""
    for c in wide:
        text = text.replace(c, ASCII_FORM[c])
    return text


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
        self.wide = frozenset(WIDE)
        import ahocorasick_rs

        # No traditional character is full-width, nor maps to one: the two passes commute. Matches come
        # back as strings, not offsets: turning byte offsets into str offsets would cost more than the scan.
        self.chars = [t for t, _ in pairs] + list(WIDE)  # every character fold() may change, but markup
        self._scan = ahocorasick_rs.AhoCorasick(self.chars, matchkind=ahocorasick_rs.MatchKind.LeftmostFirst,
                                                implementation=ahocorasick_rs.Implementation.DFA,
                                                store_patterns=True)

    def _found(self, text: str) -> set[str]:
        """The characters of `chars` in the text, in one scan."""
        return set(self._scan.find_matches_as_strings(text))

    def to_simplified(self, text: str) -> str:
        """Traditional characters → simplified; the text itself when it has none (the common case)."""
        return text.translate(self._table) if self._found(text) - self.wide else text

    def translate_traditional(self, text: str) -> str:
        return text.translate(self._table)

    @staticmethod
    def markup(text: str) -> str:
        """Entities decoded and tags spaced out: the part of fold() that is not character by character."""
        if "&" in text:
            text = html.unescape(text)
        if "<" in text:
            text = _TAG.sub(" ", text)
        return text

    def fold(self, text: str) -> str:
        """Entities decoded, tags spaced out, traditional characters simplified, full-width letters and
        digits made ASCII."""
        text = self.markup(text)
        found = self._found(text)
        if not found:
            return text
        wide = found & self.wide
        if len(wide) < len(found):
            text = text.translate(self._table)
        return ascii_forms(text, wide) if wide else text


@lru_cache(maxsize=1)
def default_folder() -> Folder:
    return Folder()
