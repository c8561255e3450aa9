"""URL policy in one place: which URLs a crawl may touch, how a link becomes absolute, and when two
spellings are the same page.

Both the fetch stage (every redirect hop) and the parse stage (every link) ask the same functions, and
this module imports nothing heavier than w3lib, so the fetch process stays free of parse/ and SQLAlchemy.
The frontier deduplicates on `fingerprint(url)`: a stable 64-bit hash of the canonical form (the same in
every process and on every machine, unlike Python's salted `hash()`), while the URL is still fetched as
the page wrote it.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from urllib.parse import unquote, urldefrag, urljoin, urlsplit, urlunsplit

from w3lib.url import canonicalize_url

MAX_URL = 2000  # longer links are not followed (servers and index keys have limits; no real page needs more)


DEFAULT_PORTS = {"http": 80, "https": 443}
_UNSAFE_AUTHORITY = re.compile(r"[\s\x00-\x1f\\]")  # whitespace (as str.isspace), controls, a backslash


def host_port(url: str) -> tuple[str, int] | None:
    """The host and port an HTTP client connects to for `url`, or None when there is none or when URL
    parsers disagree about it: urllib3 ends the host at a backslash (`http://a\\@b/` connects to `a`),
    urllib.parse after the last `@`, so an authority holding a backslash or whitespace is refused, and so
    is a host holding a percent-escape (libcurl decodes it, urllib3 sends it as it is)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    if _UNSAFE_AUTHORITY.search(parts.netloc):
        return None
    if "%" in parts.hostname:  # libcurl decodes %2e / %23 in a host, urllib3 does not, http.client asserts
        return None
    return parts.hostname.lower().rstrip("."), port or DEFAULT_PORTS[scheme]


@lru_cache(maxsize=64)
def _domain_rules(domains: tuple[str, ...]) -> tuple[tuple[str, int | None], ...]:
    """`example.com` (its default ports), `api.example.com:8443`, `[::1]:8080` → (host, port or None)."""
    rules = []
    for d in domains:
        d = d.strip().lower()
        host, port = d, None
        if d.startswith("["):
            host, _, rest = d[1:].partition("]")
            port = int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
        elif d.count(":") == 1 and d.rsplit(":", 1)[1].isdigit():
            host, port = d.rsplit(":", 1)[0], int(d.rsplit(":", 1)[1])
        rules.append((host.rstrip("."), port))
    return tuple(rules)


def allowed(url: str, domains: tuple[str, ...]) -> bool:
    """http(s) only, on one of the allowed hosts (or their subdomains) and on its port: the port an
    entry names, or else the scheme's default port — a redirect to 127.0.0.1:5432 is not 127.0.0.1."""
    found = host_port(url)
    if found is None:
        return False
    host, port = found
    default = port == DEFAULT_PORTS[urlsplit(url).scheme.lower()]
    return any((host == d or host.endswith("." + d)) and (port == p if p is not None else default)
               for d, p in _domain_rules(domains))


def origin_domain(url: str) -> str | None:
    """The allowed-domains entry a start URL implies: its host, with its port when not the default."""
    found = host_port(url)
    if found is None:
        return None
    host, port = found
    host = f"[{host}]" if ":" in host else host
    return host if port == DEFAULT_PORTS[urlsplit(url).scheme.lower()] else f"{host}:{port}"


def absolute(base: str, href: str | None) -> str | None:
    """The link's absolute URL without its fragment, or None for links that cannot be followed.
    Backslashes become slashes, as browsers read them in http(s) URLs (`http:\\\\host\\a`)."""
    if not href or href.startswith(("javascript:", "mailto:", "tel:", "data:")):
        return None
    href = href.strip().replace("\\", "/")
    try:
        url = urldefrag(urljoin(base, href))[0]
    except ValueError:  # "http://[::1/x": an unbalanced IPv6 bracket, say — one bad link, not a bad page
        return None
    return url if len(url) <= MAX_URL and "\x00" not in url else None


# A URL already in canonical form, as most links a site writes are: lower-case host of plain labels, no
# default or zero-led port, a path of unreserved characters without dot segments, a query of key=value
# pairs (checked for order below), no fragment. canonicalize_url returns it unchanged; canonical() runs in
# the coordinator for every link and every page, so it skips w3lib's parse for these.
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_UNRESERVED = r"[A-Za-z0-9._~-]"
PLAIN_HOST = rf"(?:{_LABEL}\.)*{_LABEL}"  # lower-case labels of letters, digits and inner hyphens (fetch uses it too)
_PLAIN = re.compile(
    rf"(https?)://{PLAIN_HOST}(?::([1-9][0-9]{{0,4}}))?((?:/{_UNRESERVED}*)+)"
    rf"(?:\?({_UNRESERVED}+={_UNRESERVED}*(?:&{_UNRESERVED}+={_UNRESERVED}*)*))?")


def _already_canonical(url: str) -> bool:
    m = _PLAIN.fullmatch(url)
    if m is None or "/." in m.group(3) or "xn--" in url:  # dot segments; IDNA labels are w3lib's to check
        return False
    scheme, port, query = m.group(1), m.group(2), m.group(4)
    if port is not None and int(port) == DEFAULT_PORTS[scheme]:
        return False
    if query is not None:
        pairs = [tuple(pair.split("=", 1)) for pair in query.split("&")]
        return pairs == sorted(pairs)
    return True


def canonical(url: str) -> str:
    """The form two spellings of one page share: scheme and host lower-cased, default port dropped, dot
    segments resolved, percent-encoding normalised, query arguments sorted, fragment dropped (w3lib's
    canonicalize_url, as Scrapy's request fingerprints use it). Work units that are not URLs
    (`sql:news:1`) pass through unchanged."""
    return url if _already_canonical(url) else _canonicalized(url)


def _canonicalized(url: str) -> str:
    scheme = url.split(":", 1)[0].lower()
    if scheme not in ("http", "https"):
        return url
    try:
        parts = urlsplit(url)
        if parts.port == DEFAULT_PORTS[scheme]:  # w3lib keeps an explicit default port
            netloc = parts.netloc.rsplit(":", 1)[0]
            url = parts._replace(netloc=netloc).geturl()
        return canonicalize_url(url)
    except ValueError:  # an unparseable port or bracket: the URL is its own canonical form
        return url


def frontier_key(request) -> int:
    """A Request's fingerprint, computed once and kept on it (a link is keyed when the frontier sees it
    and again when its page is done: one canonicalisation serves both)."""
    if request.key is None:
        request.key = fingerprint(request.url)
    return request.key


def fingerprint(url: str) -> int:
    """A stable signed 64-bit key of the canonical URL (fits a BIGINT column on every database)."""
    digest = hashlib.blake2b(canonical(url).encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def split_credentials(url: str) -> tuple[str, tuple[str, tuple[str, str]] | None]:
    """`http://user:pw@host/x` → (`http://host/x`, (origin, (user, pw))). The URL without its userinfo is
    what is fetched, stored and followed, so a password in a start URL never reaches listings.url, the
    frontier or failures; the fetcher sends it as Basic auth to that origin only."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    clean = urlunsplit((parts.scheme, hostport, parts.path, parts.query, parts.fragment))
    return clean, (origin_of(clean), (unquote(user), unquote(password)))


def origin_of(url: str) -> str:
    """scheme://host:port with the port always written, lower case: the key credentials are kept under."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    return f"{parts.scheme.lower()}://{(parts.hostname or '').lower()}:{port}"
