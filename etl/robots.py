"""robots.txt as RFC 9309 says: groups per user-agent, `*` and `$` in paths, longest match wins, Allow wins
a tie. (The stdlib's urllib.robotparser ignores wildcards, so `Disallow: /*/private/` would not block.)"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit


def _pattern(path: str) -> re.Pattern[str]:
    anchored = path.endswith("$")
    body = re.escape(unquote(path[:-1] if anchored else path)).replace(r"\*", ".*")
    return re.compile(body + ("$" if anchored else ""))


@dataclass
class Robots:
    rules: list[tuple[int, bool, re.Pattern[str]]] = field(default_factory=list)  # (length, allow, pattern)
    crawl_delay: float | None = None  # not in RFC 9309, but widely used: honoured as a minimum delay

    @classmethod
    def parse(cls, text: str, user_agent: str) -> Robots:
        """Keep the rules of the most specific group naming our agent, else those of `*`."""
        token = user_agent.split("/")[0].strip().lower()
        groups: list[tuple[list[str], list[tuple[int, bool, re.Pattern[str]]]]] = []
        delays: dict[int, float] = {}  # group index → Crawl-delay
        agents: list[str] = []
        rules: list[tuple[int, bool, re.Pattern[str]]] = []
        last_was_agent = False
        for raw in text.splitlines():
            line = raw.split("#", 1)[0].strip()
            if ":" not in line:
                continue
            key, _, value = line.partition(":")
            key, value = key.strip().lower(), value.strip()
            if key == "user-agent":
                if not last_was_agent:
                    agents, rules = [], []
                    groups.append((agents, rules))
                agents.append(value.lower())
                last_was_agent = True
            elif key in ("allow", "disallow"):
                last_was_agent = False
                if groups and value:
                    rules.append((len(value), key == "allow", _pattern(value)))
            else:
                last_was_agent = False
                if key == "crawl-delay" and groups:
                    try:
                        delays[len(groups) - 1] = min(float(value), 60.0)
                    except ValueError:
                        pass
        mine = [i for i, (a, _) in enumerate(groups) if any(x != "*" and x in token for x in a)]
        chosen = mine or [i for i, (a, _) in enumerate(groups) if "*" in a]
        delay = max((delays[i] for i in chosen if i in delays), default=None)
        return cls([rule for i in chosen for rule in groups[i][1]], delay)

    def allows(self, url: str) -> bool:
        parts = urlsplit(url)
        path = unquote(parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        best: tuple[int, bool] | None = None
        for length, allow, pattern in self.rules:
            if pattern.match(path) and (best is None or length > best[0] or (length == best[0] and allow)):
                best = (length, allow)
        return True if best is None else best[1]
