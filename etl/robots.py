"""robots.txt matching by protego (Scrapy's parser), with the few places protego departs from RFC 9309
put right before it parses.

Why protego and not our own regexes: `Disallow: /*a*a*a*a*a*a*b$` compiled to a backtracking regex took
seconds per URL, in the fetch process, holding the GIL that every fetch thread needs. protego matches a
wildcard pattern with one `str.find` per literal part (linear in the URL), groups records as RFC 9309 does
(a `Sitemap:` line does not end a group), and reads forgiving spellings (`Disallow /x`, no colon).

What we change on our side, because protego reads it differently from RFC 9309:
- a UTF-8 byte order mark is stripped (protego would read `\\ufeffUser-agent` as an unknown line);
- group selection: RFC 9309 matches the product token (letters, `-`, `_`) case-insensitively and exactly.
  protego matches at any token boundary inside the name it is given, so `User-agent: etl` would apply to
  `etl-crawl`, and `User-agent: etl-crawl/1.0` would not. Every User-agent line is therefore rewritten to
  one of three names protego cannot confuse: `*`, ours, or "somebody else".
"""

from __future__ import annotations

import re

from protego import Protego

SELF = "this-very-crawler"  # protego scores a name by its length: ours is longer than "*" and unrelated to OTHER
OTHER = "another-agent"
MAX_CRAWL_DELAY = 60.0  # a robots.txt asking for an hour between requests would stall a run: honoured up to this

_USER_AGENT_LINE = re.compile(r"\s*user[-\s]?agent\s*(?::|(?=\s)|$)(.*)", re.IGNORECASE)
_PRODUCT_TOKEN = re.compile(r"[A-Za-z_-]+")


def product_token(user_agent: str) -> str:
    """`etl-crawl/0.1 (+https://…)` → `etl-crawl`: the part of a User-Agent that robots.txt groups name."""
    found = _PRODUCT_TOKEN.match(user_agent.strip())
    return found.group(0).lower() if found else ""


def _agent(value: str, token: str) -> str:
    """What a User-agent line's value means for us: all crawlers, us, or another crawler."""
    value = value.split("#", 1)[0].strip()
    if not value:
        return ""
    if value[0] == "*":  # `*` alone (Google's parser: `*` then whitespace); `*bot` names nobody we are
        return "*" if len(value) == 1 or value[1].isspace() else OTHER
    return SELF if token and product_token(value) == token else OTHER


def normalise(text: str, token: str) -> str:
    """The robots.txt protego should read: no BOM, User-agent lines reduced to `*` / SELF / OTHER."""
    text = text.removeprefix("\ufeff")
    out = []
    for line in text.splitlines():
        found = _USER_AGENT_LINE.fullmatch(line)
        out.append(f"User-agent: {_agent(found.group(1), token)}" if found else line)
    return "\n".join(out)


class Robots:
    """One origin's robots.txt as it applies to our user agent. `Robots()` allows everything (no file)."""

    def __init__(self, parser: Protego | None = None, text: str = "") -> None:
        self.parser = parser
        self.text = text  # the file as read (a shared run keeps it for every worker: etl/shared/hosts.py)
        delay = parser.crawl_delay(SELF) if parser is not None else None
        # not in RFC 9309, but widely used: honoured as a minimum delay between requests to the host
        self.crawl_delay: float | None = min(delay, MAX_CRAWL_DELAY) if delay else None

    @classmethod
    def parse(cls, text: str, user_agent: str) -> Robots:
        return cls(Protego.parse(normalise(text, product_token(user_agent))), text)

    def allows(self, url: str) -> bool:
        return True if self.parser is None else self.parser.can_fetch(url, SELF)
