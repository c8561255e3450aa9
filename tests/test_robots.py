"""robots.txt as RFC 9309 reads it (etl/robots.py): the cases testers found, each against our agent."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from etl.config.model import FetchSettings
from etl.fetch import Fetcher, FetchFailure
from etl.items import Page, Request
from etl.robots import Robots
from tests.httpmock import mocked

UA = "etl-crawl/0.1 (+https://github.com/etl-crawl/etl-crawl)"


def allows(text: str, path: str, user_agent: str = UA) -> bool:
    return Robots.parse(text, user_agent).allows(f"http://h.test{path}")


# Patterns that made a backtracking regex take seconds to minutes per URL (the fetch process froze).
PATHOLOGICAL = [
    ("/*a*a*a*a*a*a*b$", "/" + "a" * 60, True),
    ("/*a*a*a*a*a*a*b$", "/" + "a" * 59 + "b", False),
    ("/" + "*a" * 12 + "*b$", "/" + "a" * 40, True),
    ("/*x*x*x*x*x*x*z", "/" + "x" * 1000, True),
    ("/*x*x*x*x*x*x*z", "/" + "x" * 1000 + "z", False),
    ("/*/*/*/*/private", "/" + "a/" * 504, True),
    ("/*/*/*/*/private", "/" + "a/" * 504 + "private", False),
]


def test_pathological_wildcard_patterns_are_matched_without_freezing() -> None:
    """1,000 checks of each pattern, in a child process so that a regex holding the GIL cannot hang the
    test itself; the bound is generous (protego does them in milliseconds)."""
    code = ("import json, sys\nfrom etl.robots import Robots\n"
            "out = []\n"
            "for pattern, path, _ in json.loads(sys.argv[1]):\n"
            "    r = Robots.parse('User-agent: *\\nDisallow: ' + pattern + '\\n', 'etl-crawl/0.1')\n"
            "    out.append([r.allows('http://h.test' + path) for _ in range(1000)])\n"
            "print(json.dumps(out))\n")
    try:
        done = subprocess.run([sys.executable, "-c", code, json.dumps(PATHOLOGICAL)], capture_output=True,
                              text=True, timeout=60, check=True)
    except subprocess.TimeoutExpired:
        pytest.fail("robots.txt matching froze: 7,000 checks took over 60 s")
    for (pattern, path, want), verdicts in zip(PATHOLOGICAL, json.loads(done.stdout), strict=True):
        assert set(verdicts) == {want}, (pattern, len(path))


def test_a_sitemap_line_between_user_agent_lines_does_not_split_the_group() -> None:
    text = "User-agent: etl-crawl\nSitemap: http://h.test/sitemap.xml\nUser-agent: otherbot\nDisallow: /private/\n"
    assert not allows(text, "/private/a")
    assert allows(text, "/public")


@pytest.mark.parametrize(("agent", "ours"), [
    ("crawl", False),          # a substring of etl-crawl, another crawler's name
    ("etl", False),            # a prefix of it: still another crawler (protego alone would apply it)
    ("etl-crawler", False),
    ("etl-crawl", True),
    ("ETL-Crawl", True),       # case-insensitive
    ("etl-crawl/2.0", True),   # the product token is what is compared (protego alone would not apply it)
    ("etl-crawl # us", True),
    ("*etl-crawl", False),
])
def test_a_group_applies_to_our_agent_only_by_its_exact_product_token(agent: str, ours: bool) -> None:
    text = f"User-agent: {agent}\nDisallow: /\n\nUser-agent: *\nDisallow: /private\n"
    assert allows(text, "/x") is not ours
    assert not allows(text, "/private")  # ours disallows everything; `*` disallows /private


def test_the_product_token_is_read_off_the_user_agent_header() -> None:
    from etl.robots import product_token

    assert product_token(UA) == "etl-crawl"
    assert product_token("  MyBot_2/1.0") == "mybot_"
    assert product_token("1984") == ""
    nameless = Robots.parse("User-agent: mybot\nDisallow: /\nUser-agent: *\nDisallow: /p\n", "1984")
    assert nameless.allows("http://h.test/x") and not nameless.allows("http://h.test/p")


@pytest.mark.parametrize("line", ["Disallow /x", "disallow /x", "Disallow:/x", "  Disallow :  /x  "])
def test_a_rule_without_a_colon_or_with_odd_spacing_is_read(line: str) -> None:
    text = f"User-agent: *\n{line}\n"
    assert not allows(text, "/x/y") and allows(text, "/y")


def test_user_agent_lines_without_a_colon_are_read_too() -> None:
    text = "User-agent otherbot\nDisallow: /\n\nUser agent etl-crawl\nDisallow /x\n"
    assert not allows(text, "/x") and allows(text, "/y")


def test_a_utf8_byte_order_mark_does_not_hide_the_first_line() -> None:
    assert not allows("\ufeffUser-agent: *\nDisallow: /x\n", "/x")
    assert not allows("\ufeffUser-agent: etl-crawl\nDisallow: /x\n\nUser-agent: *\nDisallow:\n", "/x")


@pytest.mark.parametrize("http", ["requests", "curl"])
def test_a_byte_order_mark_on_the_wire_is_stripped(http: str) -> None:
    with mocked(http) as rsps:
        rsps.get("http://h.test/robots.txt", body="\ufeffUser-agent: *\nDisallow: /x\n".encode())
        rsps.get("http://h.test/x", body=b"secret")
        rsps.get("http://h.test/y", body=b"ok")
        f = Fetcher(FetchSettings(user_agent=UA, delay=0.0, robots=True), ("h.test",), http=http)
        blocked = f.fetch(Request("http://h.test/x", "page"))
        assert isinstance(blocked, FetchFailure) and "robots" in blocked.error
        assert isinstance(f.fetch(Request("http://h.test/y", "page")), Page)


def test_rfc9309_matching_rules() -> None:
    text = ("User-agent: *\nDisallow: /*/private/\nDisallow: /tmp$\nAllow: /a/b\nDisallow: /a\n"
            "Allow: /same\nDisallow: /same\nDisallow: /%E5%8C%97\nDisallow:\n")
    assert not allows(text, "/bj/private/x")
    assert allows(text, "/tmpfile") and not allows(text, "/tmp")
    assert allows(text, "/a/b/c") and not allows(text, "/a/c")  # the longest match wins
    assert allows(text, "/same")  # Allow wins a tie
    assert not allows(text, "/北京/x")  # percent-encoding compared as the same octets
    assert allows(text, "/robots.txt")


def test_our_group_beats_star_and_groups_naming_us_twice_are_merged() -> None:
    text = ("User-agent: etl-crawl\nDisallow: /x\n\nUser-agent: *\nDisallow: /\n\n"
            "User-agent: etl-crawl\nDisallow: /z\n")
    assert allows(text, "/y") and not allows(text, "/x") and not allows(text, "/z")


def test_crawl_delay_is_our_groups_and_capped() -> None:
    assert Robots.parse("User-agent: *\nCrawl-delay: 2\n", UA).crawl_delay == 2.0
    assert Robots.parse("User-agent: etl-crawl\nCrawl-delay: 5\nUser-agent: *\nCrawl-delay: 2\n",
                        UA).crawl_delay == 5.0
    assert Robots.parse("User-agent: *\nCrawl-delay: 3600\n", UA).crawl_delay == 60.0
    assert Robots.parse("User-agent: *\nCrawl-delay: soon\n", UA).crawl_delay is None
    assert Robots().crawl_delay is None and Robots().allows("http://h.test/anything")
