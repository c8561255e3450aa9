"""The Fetcher (etl/fetch/fetcher.py) on both HTTP engines: requests against `responses` mocks (no
sockets), libcurl against the same mocks served for real on 127.0.0.1 (tests/httpmock.py)."""

from __future__ import annotations

import calendar
import time

import pytest
import requests
import responses

from etl.config.model import FetchSettings
from etl.fetch import MAX_REDIRECTS, Fetcher, FetchFailure, retry_after_seconds
from etl.items import Page, Request
from tests.httpmock import mocked

BASE = "http://demo.test"
UA = "etl-test/1.0 (+https://example.org/bot)"
ROBOTS = "User-agent: *\nDisallow: /private/\nDisallow: /*/private/\n"


HTTP = "requests"  # the engine fetcher() builds; the `mock` fixture sets it for the test it serves


def fetcher(robots: bool = False, max_bytes: int = 1_000_000, domains=("demo.test",)) -> Fetcher:
    return Fetcher(FetchSettings(user_agent=UA, per_host=4, delay=0.0, connect_timeout=1.0, read_timeout=1.0,
                                 max_bytes=max_bytes, robots=robots), domains, http=HTTP)


def get(url: str, **kw) -> Page | FetchFailure:
    return fetcher(**kw).fetch(Request(url, "city", {"page": 1}))


@pytest.fixture(params=["requests", "curl"])
def http(request) -> str:
    return request.param


@pytest.fixture
def mock(http, monkeypatch):
    """Every test that takes `mock` runs once per engine, with the same registrations and calls."""
    monkeypatch.setattr(f"{__name__}.HTTP", http)
    with mocked(http) as m:
        yield m


# ---------------------------------------------------------------------------------------------- success


def test_200_returns_page_with_raw_bytes_and_lowercased_headers(mock):
    body = "<html><body>北京二手房</body></html>".encode("gbk")
    mock.add(responses.GET, f"{BASE}/bj/ershoufang/", body=body, status=200,
             headers={"Content-Type": "text/html", "X-Custom-Thing": "Yes"})
    req = Request(f"{BASE}/bj/ershoufang/", "city", {"page": 1})
    page = fetcher().fetch(req)
    assert isinstance(page, Page)
    assert page.body == body  # undecoded: decoding happens in the parse process
    assert page.status == 200
    assert page.url == f"{BASE}/bj/ershoufang/"
    assert page.request is req
    assert page.headers["content-type"] == "text/html"
    assert page.headers["x-custom-thing"] == "Yes"
    assert all(k == k.lower() for k in page.headers)


def test_user_agent_header_is_sent(mock):
    mock.add(responses.GET, f"{BASE}/a", body=b"ok")
    assert isinstance(get(f"{BASE}/a"), Page)
    assert mock.calls[0].request.headers["User-Agent"] == UA


@pytest.fixture(params=["prepared-once", "requests-per-call"])
def session_path(request, monkeypatch):
    """Both ways a request is built: the prepared template (no proxy settings in the environment) and
    requests' own Session.get (a proxy variable present, so requests must read the environment)."""
    for key in ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "netrc"):
        monkeypatch.delenv(key, raising=False)
        monkeypatch.delenv(key.upper(), raising=False)
    if request.param == "requests-per-call":
        monkeypatch.setenv("NO_PROXY", "demo.test")
    return request.param


def test_cookies_a_site_sets_are_sent_back_by_the_same_session(mock, session_path):
    mock.add(responses.GET, f"{BASE}/login", body=b"ok", headers={"Set-Cookie": "sid=abc123; Path=/"})
    mock.add(responses.GET, f"{BASE}/list", body=b"ok")
    f = fetcher()
    assert isinstance(f.fetch(Request(f"{BASE}/login", "city")), Page)
    assert isinstance(f.fetch(Request(f"{BASE}/list", "city")), Page)
    assert "Cookie" not in mock.calls[0].request.headers
    assert mock.calls[1].request.headers["Cookie"] == "sid=abc123"


def test_request_headers_and_url_quoting_match_requests_own(mock, session_path):
    url = f"{BASE}/bj/小区 a/?q=二手房&x=1 2"
    mock.add(responses.GET, requests.Request("GET", url).prepare().url, body=b"ok")
    assert isinstance(get(url), Page)
    sent = mock.calls[0].request
    assert sent.url == requests.Request("GET", url).prepare().url
    assert sent.headers["User-Agent"] == UA
    assert sent.headers["Accept-Encoding"] == "gzip, deflate"
    assert sent.method == "GET" and sent.body is None


def test_credentials_in_the_url_become_basic_auth(mock, session_path):
    mock.add(responses.GET, "http://bot:s3cret@demo.test/private/list", body=b"ok")
    assert isinstance(get("http://bot:s3cret@demo.test/private/list"), Page)
    assert mock.calls[0].request.headers["Authorization"] == "Basic Ym90OnMzY3JldA=="


def test_subdomain_of_allowed_domain_is_fetched(mock):
    mock.add(responses.GET, "http://www.demo.test/a", body=b"ok")
    assert isinstance(get("http://www.demo.test/a"), Page)


@pytest.mark.parametrize("url", ["http://other.test/a", "ftp://demo.test/a", "http://notdemo.test/a",
                                 "http://demo.test.evil.test/a", "javascript:alert(1)"])
def test_disallowed_start_url_is_a_failure_without_a_request(mock, url):
    result = get(url)
    assert isinstance(result, FetchFailure) and not result.retryable
    assert len(mock.calls) == 0


# ---------------------------------------------------------------------------------------------- statuses


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410])
def test_client_errors_are_not_retryable(mock, status):
    mock.add(responses.GET, f"{BASE}/x", body=b"nope", status=status)
    result = get(f"{BASE}/x")
    assert isinstance(result, FetchFailure)
    assert result.status == status and not result.retryable
    assert str(status) in result.error


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_transient_statuses_are_retryable(mock, status):
    mock.add(responses.GET, f"{BASE}/x", body=b"busy", status=status)
    result = get(f"{BASE}/x")
    assert isinstance(result, FetchFailure)
    assert result.status == status and result.retryable
    assert result.retry_after is None


def test_retry_after_seconds_header_is_passed_on(mock):
    mock.add(responses.GET, f"{BASE}/x", status=503, headers={"Retry-After": "7"})
    result = get(f"{BASE}/x")
    assert isinstance(result, FetchFailure) and result.retryable and result.retry_after == 7.0


def test_retry_after_http_date_header_is_passed_on(mock):
    when = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 120))
    mock.add(responses.GET, f"{BASE}/x", status=429, headers={"Retry-After": when})
    result = get(f"{BASE}/x")
    assert isinstance(result, FetchFailure) and result.retryable
    assert 100 <= result.retry_after <= 121


NOW = float(calendar.timegm((2015, 10, 21, 7, 28, 0)))


@pytest.mark.parametrize(("value", "want"), [
    ("120", 120.0),
    ("  30 ", 30.0),
    ("0", 0.0),
    ("100000", 600.0),                                  # capped at 10 minutes
    ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),            # IMF-fixdate
    ("Wednesday, 21-Oct-15 07:28:30 GMT", 30.0),        # obsolete RFC 850
    ("Wed, 21 Oct 2015 07:00:00 GMT", 0.0),             # in the past → no wait
    ("Thu, 22 Oct 2015 07:28:00 GMT", 600.0),           # a day away → capped
    (None, None),
    ("", None),
    ("soon", None),
    ("-5", None),
    ("1.5", None),
])
def test_retry_after_seconds(value, want):
    assert retry_after_seconds(value, now=NOW) == want


@pytest.fixture
def shanghai_tz(monkeypatch):
    if not hasattr(time, "tzset"):
        pytest.skip("time.tzset is not available")
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_retry_after_date_does_not_depend_on_local_timezone_for_gmt(shanghai_tz):
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:30 GMT", now=NOW) == 30.0


def test_retry_after_asctime_date_is_gmt(shanghai_tz):
    assert retry_after_seconds("Wed Oct 21 07:28:30 2015", now=NOW) == 30.0


# ---------------------------------------------------------------------------------------------- redirects


def test_redirect_to_allowed_url_is_followed(mock):
    mock.add(responses.GET, f"{BASE}/old", status=301, headers={"Location": "/new"})
    mock.add(responses.GET, f"{BASE}/new", status=302, headers={"Location": "http://www.demo.test/final#frag"})
    mock.add(responses.GET, "http://www.demo.test/final", body=b"here", headers={"Content-Type": "text/html"})
    result = get(f"{BASE}/old")
    assert isinstance(result, Page)
    assert result.body == b"here" and result.status == 200
    assert result.url.startswith("http://www.demo.test/final")
    assert result.request.url == f"{BASE}/old"  # the request keeps the URL that was asked for


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_every_redirect_status_is_followed(mock, status):
    mock.add(responses.GET, f"{BASE}/a", status=status, headers={"Location": f"{BASE}/b"})
    mock.add(responses.GET, f"{BASE}/b", body=b"b")
    result = get(f"{BASE}/a")
    assert isinstance(result, Page) and result.url == f"{BASE}/b"


@pytest.mark.parametrize("location", ["http://evil.test/x", "https://ad.adserver.example/click",
                                      "ftp://demo.test/file", "javascript:alert(1)", "mailto:a@demo.test"])
def test_redirect_to_disallowed_target_is_a_failure(mock, location):
    mock.add(responses.GET, f"{BASE}/a", status=302, headers={"Location": location})
    mock.add(responses.GET, "http://evil.test/x", body=b"evil")
    result = get(f"{BASE}/a")
    assert isinstance(result, FetchFailure) and not result.retryable
    assert "redirect" in result.error
    assert [c.request.url for c in mock.calls] == [f"{BASE}/a"]


def test_redirect_loop_is_a_failure(mock):
    mock.add(responses.GET, f"{BASE}/a", status=302, headers={"Location": "/b"})
    mock.add(responses.GET, f"{BASE}/b", status=302, headers={"Location": "/a"})
    result = get(f"{BASE}/a")
    assert isinstance(result, FetchFailure) and "loop" in result.error


def test_self_redirect_is_a_loop(mock):
    mock.add(responses.GET, f"{BASE}/a", status=301, headers={"Location": f"{BASE}/a"})
    result = get(f"{BASE}/a")
    assert isinstance(result, FetchFailure) and "loop" in result.error
    assert len(mock.calls) == 1


def test_too_many_redirects_is_a_failure(mock):
    for i in range(MAX_REDIRECTS + 2):
        mock.add(responses.GET, f"{BASE}/r{i}", status=302, headers={"Location": f"/r{i + 1}"})
    result = get(f"{BASE}/r0")
    assert isinstance(result, FetchFailure) and "redirects" in result.error
    assert len(mock.calls) == MAX_REDIRECTS + 1


# ---------------------------------------------------------------------------------------------- size limits


def test_declared_content_length_above_max_bytes_is_a_failure(mock):
    mock.add(responses.GET, f"{BASE}/big", body=b"x" * 200, headers={"Content-Length": "200"})
    result = get(f"{BASE}/big", max_bytes=100)
    assert isinstance(result, FetchFailure) and not result.retryable
    assert "200 bytes" in result.error and "max_bytes=100" in result.error


def test_undeclared_body_above_max_bytes_is_a_failure(mock):
    mock.add(responses.GET, f"{BASE}/big", body=b"x" * 200_000)  # no Content-Length header
    result = get(f"{BASE}/big", max_bytes=100_000)
    assert isinstance(result, FetchFailure) and not result.retryable
    assert result.error == "body exceeds max_bytes=100000"  # caught while streaming


def test_body_of_exactly_max_bytes_is_accepted(mock):
    mock.add(responses.GET, f"{BASE}/ok", body=b"y" * 100, headers={"Content-Length": "100"})
    mock.add(responses.GET, f"{BASE}/ok2", body=b"y" * 100)
    assert isinstance(get(f"{BASE}/ok", max_bytes=100), Page)
    assert isinstance(get(f"{BASE}/ok2", max_bytes=100), Page)


# ---------------------------------------------------------------------------------------------- network errors


def test_connection_error_is_retryable(mock):
    mock.add(responses.GET, f"{BASE}/down", body=requests.ConnectionError("connection refused"))
    result = get(f"{BASE}/down")
    assert isinstance(result, FetchFailure) and result.retryable and result.status is None
    assert "ConnectionError" in result.error


def test_timeout_is_retryable(mock):
    mock.add(responses.GET, f"{BASE}/slow", body=requests.exceptions.ReadTimeout("read timed out"))
    result = get(f"{BASE}/slow")
    assert isinstance(result, FetchFailure) and result.retryable


def test_other_request_errors_are_not_retryable():
    """requests' own exception: libcurl has no such error (tests/test_fetch_wire.py maps curl's)."""
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, f"{BASE}/bad", body=requests.exceptions.InvalidHeader("bad header\nsecond line"))
        result = get(f"{BASE}/bad")
    assert isinstance(result, FetchFailure) and not result.retryable
    assert "\n" not in result.error


# ---------------------------------------------------------------------------------------------- robots.txt


def test_robots_disallow_is_honoured(mock):
    mock.add(responses.GET, f"{BASE}/robots.txt", body=ROBOTS, headers={"Content-Type": "text/plain"})
    mock.add(responses.GET, f"{BASE}/private/a", body=b"secret")
    mock.add(responses.GET, f"{BASE}/bj/ershoufang/", body=b"public")
    f = fetcher(robots=True)
    blocked = f.fetch(Request(f"{BASE}/private/a", "city"))
    assert isinstance(blocked, FetchFailure) and "robots" in blocked.error and not blocked.retryable
    assert isinstance(f.fetch(Request(f"{BASE}/bj/ershoufang/", "city")), Page)
    urls = [c.request.url for c in mock.calls]
    assert f"{BASE}/private/a" not in urls
    assert urls.count(f"{BASE}/robots.txt") == 1  # cached per origin


def test_robots_ignored_when_disabled(mock):
    mock.add(responses.GET, f"{BASE}/robots.txt", body=ROBOTS)
    mock.add(responses.GET, f"{BASE}/private/a", body=b"secret")
    result = get(f"{BASE}/private/a", robots=False)
    assert isinstance(result, Page) and result.body == b"secret"
    assert [c.request.url for c in mock.calls] == [f"{BASE}/private/a"]


def test_missing_robots_allows_everything(mock):
    mock.add(responses.GET, f"{BASE}/robots.txt", status=404)
    mock.add(responses.GET, f"{BASE}/private/a", body=b"x")
    assert isinstance(get(f"{BASE}/private/a", robots=True), Page)


def test_robots_for_our_user_agent(mock):
    mock.add(responses.GET, f"{BASE}/robots.txt", body="User-agent: etl-test\nDisallow: /\n\nUser-agent: *\nAllow: /\n")
    mock.add(responses.GET, f"{BASE}/a", body=b"x")
    result = get(f"{BASE}/a", robots=True)
    assert isinstance(result, FetchFailure) and "robots" in result.error


def test_robots_wildcard_disallow_is_honoured(mock):
    mock.add(responses.GET, f"{BASE}/robots.txt", body=ROBOTS)
    mock.add(responses.GET, f"{BASE}/bj/private/", body=b"secret")
    result = get(f"{BASE}/bj/private/", robots=True)
    assert isinstance(result, FetchFailure) and "robots" in result.error


def test_redirect_to_robots_disallowed_path_is_not_fetched(mock):
    mock.add(responses.GET, f"{BASE}/robots.txt", body=ROBOTS)
    mock.add(responses.GET, f"{BASE}/go", status=302, headers={"Location": "/private/a"})
    mock.add(responses.GET, f"{BASE}/private/a", body=b"secret")
    result = get(f"{BASE}/go", robots=True)
    assert isinstance(result, FetchFailure)
    assert f"{BASE}/private/a" not in [c.request.url for c in mock.calls]


def test_robots_rfc9309_matching_rules():
    from etl.robots import Robots

    r = Robots.parse("User-agent: *\nDisallow: /*/private/\nDisallow: /tmp$\nAllow: /a/b\nDisallow: /a\n"
                     "Crawl-delay: 2\n\nUser-agent: otherbot\nDisallow: /\n", "etl-crawl/0.1")
    assert not r.allows("http://h/bj/private/x")
    assert r.allows("http://h/tmpfile") and not r.allows("http://h/tmp")
    assert r.allows("http://h/a/b/c") and not r.allows("http://h/a/c")  # longest match wins
    assert r.crawl_delay == 2.0
    mine = Robots.parse("User-agent: etl-crawl\nDisallow: /x\n\nUser-agent: *\nDisallow: /\n", "etl-crawl/0.1")
    assert mine.allows("http://h/y") and not mine.allows("http://h/x")  # our own group beats *


def test_robots_5xx_is_a_retryable_failure_not_an_allow(mock, http):
    mock.get(f"{BASE}/robots.txt", status=503)
    f = Fetcher(FetchSettings(user_agent="etl-test", per_host=4, delay=0.0, connect_timeout=1,
                              read_timeout=1, max_bytes=10_000, robots=True), ("demo.test",), http=http)
    result = f.fetch(Request(f"{BASE}/page", "x"))
    assert [c.request.url for c in mock.calls] == [f"{BASE}/robots.txt"]
    assert isinstance(result, FetchFailure) and result.retryable and "robots.txt" in result.error


# ---------------------------------------------------------------------------------------------- hostile headers


def test_unparseable_redirect_target_is_a_failure_not_an_exception(mock):
    mock.add(responses.GET, f"{BASE}/old", status=302, headers={"Location": "http://[::1/x"})
    result = get(f"{BASE}/old")
    assert isinstance(result, FetchFailure) and "ValueError" in result.error and not result.retryable


def test_non_ascii_digits_in_numeric_headers_are_ignored(mock):
    mock.add(responses.GET, f"{BASE}/busy", status=503, headers={"Retry-After": "²"})
    result = get(f"{BASE}/busy")
    assert isinstance(result, FetchFailure) and result.retryable and result.retry_after is None
    assert retry_after_seconds("²") is None


def test_robots_redirect_outside_the_allowed_domains_is_not_followed(mock):
    mock.add(responses.GET, f"{BASE}/robots.txt", status=301, headers={"Location": "http://elsewhere.test/robots.txt"})
    mock.add(responses.GET, f"{BASE}/a", body=b"ok")
    assert isinstance(get(f"{BASE}/a", robots=True), Page)
    assert all("elsewhere" not in call.request.url for call in mock.calls)


def test_robots_redirect_inside_the_allowed_domains_is_followed(mock):
    mock.add(responses.GET, f"{BASE}/robots.txt", status=301, headers={"Location": f"{BASE}/r.txt"})
    mock.add(responses.GET, f"{BASE}/r.txt", body=ROBOTS)
    result = get(f"{BASE}/private/x", robots=True)
    assert isinstance(result, FetchFailure) and "disallowed by robots.txt" in result.error


def test_only_the_first_500_kib_of_robots_txt_are_read(mock):
    huge = ROBOTS + "# padding\n" * 200_000  # ~2 MB; the rules come first
    mock.add(responses.GET, f"{BASE}/robots.txt", body=huge)
    result = get(f"{BASE}/private/x", robots=True)
    assert isinstance(result, FetchFailure) and "disallowed by robots.txt" in result.error


@pytest.mark.parametrize(("status", "body"), [(304, b""), (204, b""), (302, b"no location"), (300, b"choices")])
def test_statuses_without_a_page_are_failures(mock, status, body):
    mock.add(responses.GET, f"{BASE}/a", status=status, body=body)
    result = get(f"{BASE}/a")
    assert isinstance(result, FetchFailure) and result.status == status and not result.retryable


def test_an_empty_200_is_a_retryable_failure_not_an_empty_page(mock):
    mock.add(responses.GET, f"{BASE}/a", status=200, body=b"")
    result = get(f"{BASE}/a")
    assert isinstance(result, FetchFailure) and result.retryable and "empty" in result.error
