"""Validators and conditional GETs for the demo server, so incremental crawls can be tested against it.

Every 200 answer carries ``ETag`` (a strong tag: a hash of the body, so it changes exactly when the bytes
do) and ``Last-Modified`` (set by the page: a listing's last change, else the served day's date).
``If-None-Match`` decides when present (RFC 9110 §13.2.2: ``If-Modified-Since`` is then ignored); a match
(weak comparison, ``*`` matches any page) or an ``If-Modified-Since`` not older than ``Last-Modified``
turns a GET or HEAD into 304 with the validators and no body. Unparseable dates are ignored, as the RFC
says, and non-200 answers are never made conditional.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from email.utils import format_datetime, parsedate_to_datetime

Response = tuple[int, dict[str, str], bytes]


def http_date(day: dt.date) -> str:
    """Midnight UTC of `day` in the IMF-fixdate form HTTP uses ("Mon, 30 Jun 2025 00:00:00 GMT")."""
    return format_datetime(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC), usegmt=True)


def etag(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'


def _parse_date(text: str) -> dt.datetime | None:
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def _tag_matches(header: str, tag: str) -> bool:
    if header.strip() == "*":
        return True
    opaque = tag.removeprefix("W/")
    return any(t.strip().removeprefix("W/") == opaque for t in header.split(","))


def not_modified(request: Mapping[str, str], headers: Mapping[str, str]) -> bool:
    """Whether the client's copy (as its conditional headers describe it) is this answer's."""
    inm = request.get("If-None-Match")
    if inm is not None:
        return _tag_matches(inm, headers.get("ETag", ""))
    ims, lm = request.get("If-Modified-Since"), headers.get("Last-Modified")
    if not ims or not lm:
        return False
    since, modified = _parse_date(ims), _parse_date(lm)
    return since is not None and modified is not None and modified <= since


def apply(method: str, request: Mapping[str, str], response: Response, default_modified: str) -> Response:
    """Add the validators to a 200 answer and answer 304 (empty body) when the client's copy is current."""
    status, headers, body = response
    if status != 200:
        return response
    headers = dict(headers)
    headers.setdefault("ETag", etag(body))
    headers.setdefault("Last-Modified", default_modified)
    if method in ("GET", "HEAD") and not_modified(request, headers):
        return 304, {"ETag": headers["ETag"], "Last-Modified": headers["Last-Modified"]}, b""
    return status, headers, body
