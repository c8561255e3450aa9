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
from urllib.parse import urldefrag, urljoin, urlsplit

from w3lib.url import canonicalize_url

MAX_URL = 2000  # longer links are not followed (servers and index keys have limits; no real page needs more)


def allowed(url: str, domains: tuple[str, ...]) -> bool:
    """http(s) only, and on one of the allowed hosts or their subdomains."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    host = parts.hostname.lower()
    return any(host == d or host.endswith("." + d) for d in domains)


def absolute(base: str, href: str | None) -> str | None:
    """The link's absolute URL without its fragment, or None for links that cannot be followed."""
    if not href or href.startswith(("javascript:", "mailto:", "tel:", "data:")):
        return None
    try:
        url = urldefrag(urljoin(base, href.strip()))[0]
    except ValueError:  # "http://[::1/x": an unbalanced IPv6 bracket, say — one bad link, not a bad page
        return None
    return url if len(url) <= MAX_URL and "\x00" not in url else None


def canonical(url: str) -> str:
    """The form two spellings of one page share: scheme and host lower-cased, default port dropped, dot
    segments resolved, percent-encoding normalised, query arguments sorted, fragment dropped (w3lib's
    canonicalize_url, as Scrapy's request fingerprints use it). Work units that are not URLs
    (`sql:news:1`) pass through unchanged."""
    scheme = url.split(":", 1)[0].lower()
    if scheme not in ("http", "https"):
        return url
    try:
        parts = urlsplit(url)
        if parts.port == {"http": 80, "https": 443}[scheme]:  # w3lib keeps an explicit default port
            netloc = parts.netloc.rsplit(":", 1)[0]
            url = parts._replace(netloc=netloc).geturl()
        return canonicalize_url(url)
    except ValueError:  # an unparseable port or bracket: the URL is its own canonical form
        return url


def fingerprint(url: str) -> int:
    """A stable signed 64-bit key of the canonical URL (fits a BIGINT column on every database)."""
    digest = hashlib.blake2b(canonical(url).encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)
