"""URL policy: which host and port a URL really reaches, and which of them a crawl may touch."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.config.model import FetchSettings
from etl.fetch import Fetcher, FetchFailure
from etl.items import Request
from etl.urls import absolute, allowed, host_port, origin_domain
from tests.httpmock import mocked


@pytest.mark.parametrize("url", [
    "http://localhost:19101\\@127.0.0.1:19100/good/4",  # urllib3 connects to localhost:19101
    "http://evil.test\\.127.0.0.1/x",
    "http://127.0.0.1:19100 @evil.test/x",
    "http://127.0.0.1:99999/x",
])
def test_urls_the_parsers_read_differently_are_not_allowed(url: str) -> None:
    assert not allowed(url, ("127.0.0.1:19100",))


def test_the_port_is_part_of_an_allowed_host() -> None:
    assert allowed("http://127.0.0.1:19100/a", ("127.0.0.1:19100",))
    assert not allowed("http://127.0.0.1:5432/", ("127.0.0.1:19100",))  # PostgreSQL's port on the same host
    assert not allowed("http://127.0.0.1:5432/", ("127.0.0.1",))  # a bare host means its default ports
    assert allowed("http://example.com/", ("example.com",)) and allowed("https://www.example.com/", ("example.com",))
    assert allowed("https://example.com:443/", ("example.com",))
    assert not allowed("http://example.com:8080/", ("example.com",))
    assert allowed("https://api.example.com:8443/v1", ("example.com", "api.example.com:8443"))
    assert allowed("http://[::1]:8080/", ("[::1]:8080",)) and not allowed("http://[::1]:8081/", ("[::1]:8080",))


def test_start_urls_imply_their_host_and_port() -> None:
    assert origin_domain("http://127.0.0.1:8000/bj/") == "127.0.0.1:8000"
    assert origin_domain("https://Example.COM/x") == "example.com"
    assert origin_domain("http://[::1]:81/") == "[::1]:81"
    assert host_port("https://Example.com./x") == ("example.com", 443)


def test_a_backslash_in_a_link_is_read_as_a_browser_reads_it() -> None:
    url = absolute("http://127.0.0.1:19100/list", "http://localhost:19101\\@127.0.0.1:19100/good/4")
    assert host_port(url) == ("localhost", 19101)  # so the domain check sees where it really goes
    assert not allowed(url, ("127.0.0.1:19100",))
    assert absolute("http://a.test/x/", "..\\y") == "http://a.test/y"


@pytest.mark.parametrize("http", ["requests", "curl"])
@pytest.mark.parametrize("location", ["http://localhost:19101\\@demo.test/good", "http://demo.test:5432/",
                                      "http://evil.test%2edemo.test/"])
def test_a_redirect_that_leaves_the_allowed_host_or_port_is_refused(location: str, http: str) -> None:
    with mocked(http) as mock:
        mock.get("http://demo.test/a", status=302, headers={"Location": location})
        fetcher = Fetcher(FetchSettings(robots=False), ("demo.test",), http=http)
        result = fetcher.fetch(Request("http://demo.test/a", "x"))
        asked = [c.request.url for c in mock.calls]
    assert isinstance(result, FetchFailure) and "outside the allowed domains" in result.error
    assert asked == ["http://demo.test/a"]


def test_the_authority_check_refuses_exactly_whitespace_controls_and_backslashes() -> None:
    """host_port's one regex stands for `c.isspace() or ord(c) < 32 or c == "\\\\"` on every code point."""
    import sys

    from etl.urls import _UNSAFE_AUTHORITY

    for code in range(sys.maxunicode + 1):
        c = chr(code)
        assert bool(_UNSAFE_AUTHORITY.search(c)) == (c.isspace() or code < 32 or c == "\\"), hex(code)


_LABELS = st.sampled_from(["a", "example", "x-y", "127", "0"] * 6 + ["A", "Ex", "xn--fsq", "a_b", "-a", "a-", "",
                                                                   "例", "*"])
_SAFE = list("abcXYZ019-._~!$&'()*+,;=:@/")  # mostly clean URLs, each with the odd bad part
_PIECES = st.sampled_from(_SAFE * 8 + ["..", ".", "%7e", "%41", "%zz", "%", " ", "#", "[", "]", '"', "<", ">", "|",
                                       "\\", "^", "`", "{", "}", "页", "é", "?", "\t"])


@st.composite
def _urls(draw) -> str:
    scheme = draw(st.sampled_from(["http", "https"] * 4 + ["HTTP", "Https", "ftp"]))
    host = ".".join(draw(st.lists(_LABELS, min_size=1, max_size=3))) + draw(st.sampled_from(["", "", "."]))
    port = draw(st.sampled_from(["", "", "", ":8000", ":80", ":443", ":080", ":0", ":65535", ":65536", ":99999", ":"]))
    path = "".join(draw(st.lists(_PIECES, max_size=12)))
    path = draw(st.sampled_from(["/", "", "/a/"])) + path
    query = draw(st.sampled_from(["", "?", "?a=1&b=2", "?b=/x/..", "?q=%20", "?q=页"]))
    return f"{scheme}://{host}{port}{path}{query}"


@settings(max_examples=3000, deadline=None)
@given(_urls())
def test_a_url_the_curl_engine_sends_unprepared_is_one_requests_would_send_unchanged(url: str) -> None:
    """The curl engine skips requests' prepare_url for plain URLs: each must be one it leaves as it is."""
    from requests.models import PreparedRequest

    from etl.fetch.curl_engine import _plain

    if not _plain(url):
        return
    prepared = PreparedRequest()
    prepared.prepare_url(url, None)
    assert prepared.url == url


def test_the_usual_links_are_sent_unprepared() -> None:
    from etl.fetch.curl_engine import _plain

    assert _plain("http://127.0.0.1:8000/bj/ershoufang/pg2/")
    assert _plain("https://www.example.com/a/b-c_d.html?page=2&sort=price")
    assert not _plain("https://www.example.com/a/../b")
    assert not _plain("https://www.example.com/%E4%BE%8B")
