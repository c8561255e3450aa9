"""The seam between the Fetcher and an HTTP library: one GET, its status, headers and decoded body.

Everything a crawl decides about a response (allowed domains, redirects, robots.txt, politeness, retries,
size limits, the failure texts) lives in etl/fetch/fetcher.py, once, so that both engines behave alike by
construction; an engine only moves bytes and says, in the same words, why it could not.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from typing import Protocol

PROXY_ENV = frozenset({"http_proxy", "https_proxy", "all_proxy", "no_proxy", "netrc"})


def env_configured() -> bool:
    """Whether the environment names a proxy or a .netrc: only then must an engine read it per request
    (requests re-reading it costs ~20% of fetch CPU; both engines skip it alike)."""
    return bool(PROXY_ENV.intersection(k.lower() for k in os.environ))


def ca_bundle() -> str | None:
    """The CA bundle the environment names, as requests reads it (REQUESTS_CA_BUNDLE, then CURL_CA_BUNDLE)."""
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or None


class TransportError(Exception):
    """No response to judge: `error` is the failure's text, worded as the requests engine words it
    (`ConnectionError: …`), so failure rows read the same whichever engine fetched them."""

    def __init__(self, error: str, retryable: bool, too_slow: bool = False) -> None:
        super().__init__(error)
        self.error, self.retryable, self.too_slow = error, retryable, too_slow

    @property
    def kind(self) -> str:
        """The exception's name the text starts with (`ConnectionError`)."""
        return self.error.partition(":")[0]


class Reply(Protocol):
    """One response: header names lower-cased (repeated headers joined by ", "), the body decoded."""

    status: int
    headers: Mapping[str, str]

    def chunks(self) -> Iterator[bytes]:
        """The decoded body; raises TransportError when it cannot be read to its end in time."""
        ...


class Engine(Protocol):
    def get(self, url: str, headers: dict[str, str] | None, auth: tuple[str, str] | None, limit: int,
            whole: bool) -> AbstractContextManager[Reply]:
        """GET `url`, no redirect followed, cookies kept per thread. `limit`: decoded bytes worth reading
        (the engine may stop there); `whole`: the body is wanted whole, so a declared Content-Length above
        `limit` need not be read at all. Raises TransportError."""
        ...


def basic_auth(user: str, password: str) -> str:
    """The Authorization value requests sends for (user, password): latin-1 when it can, else UTF-8."""
    pair = f"{user}:{password}"
    try:
        raw = pair.encode("latin-1")
    except UnicodeEncodeError:
        raw = pair.encode("utf-8")
    return "Basic " + base64.b64encode(raw).decode("ascii")

