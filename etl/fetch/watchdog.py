"""Whole-response deadlines that free the thread: a server trickling a byte a second never trips the read
timeout (each byte resets it), and a thread blocked in a socket read cannot be interrupted. So a watchdog
thread shuts down the socket of a response past its deadline; the blocked read returns at once, the fetch
fails as "slower than total_timeout" (retryable) and the thread takes the next request.

Headers can trickle too, before requests hands us a response object, so the socket is found through the
connection itself: our urllib3 connection classes attach themselves to the calling thread's deadline when
they write a request.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

TICK = 0.25  # how late past its deadline a response may be cut

_current = threading.local()  # .deadline: the Deadline of the response this thread is waiting for


class Deadline:
    """One response's deadline and the connection carrying it (None until the request is written)."""

    __slots__ = ("at", "conn", "fired", "watchdog")

    def __init__(self, watchdog: Watchdog, at: float) -> None:
        self.watchdog, self.at = watchdog, at
        self.conn: Any = None
        self.fired = False

    def passed(self) -> bool:
        return self.fired or time.monotonic() > self.at

    def attach(self, conn: Any) -> None:
        """Under the watchdog's lock, so that a connection handed back to the pool and taken by another
        thread is never cut for this deadline: the connection names the one deadline it serves now."""
        with self.watchdog.lock:
            self.conn = conn
            conn._etl_deadline = self


class Watchdog:
    """One per Fetcher; its thread runs only while some response is being waited for."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.armed: set[Deadline] = set()
        self.thread: threading.Thread | None = None

    @contextmanager
    def guard(self, seconds: float) -> Iterator[Deadline]:
        deadline = Deadline(self, time.monotonic() + seconds)
        with self.lock:
            self.armed.add(deadline)
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="fetch-watchdog", daemon=True)
                self.thread.start()
        _current.deadline = deadline
        try:
            yield deadline
        finally:
            _current.deadline = None
            with self.lock:
                self.armed.discard(deadline)
                if deadline.conn is not None and getattr(deadline.conn, "_etl_deadline", None) is deadline:
                    deadline.conn._etl_deadline = None

    def _run(self) -> None:
        while True:
            time.sleep(TICK)
            with self.lock:
                if not self.armed:
                    self.thread = None
                    return
                now = time.monotonic()
                for deadline in self.armed:
                    if not deadline.fired and deadline.at <= now and deadline.conn is not None:
                        _cut(deadline)


def _cut(deadline: Deadline) -> None:
    """Shut the socket down (not close: shutdown wakes a read blocked in another thread, close may not).
    `fired` is set first: the woken thread must see it, or a cut during the headers reads as an empty 200."""
    conn = deadline.conn
    if getattr(conn, "_etl_deadline", None) is not deadline:
        return  # already serving another response
    sock = getattr(conn, "sock", None)
    if sock is None:
        return  # still connecting: connect_timeout bounds that; checked again next tick
    deadline.fired = True
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed by the peer: the read returns anyway


def _attach(conn: Any) -> None:
    deadline = getattr(_current, "deadline", None)
    if deadline is not None:
        deadline.attach(conn)


class _WatchedHTTPConnection(HTTPConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        _attach(self)
        super().request(*args, **kwargs)


class _WatchedHTTPSConnection(HTTPSConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        _attach(self)
        super().request(*args, **kwargs)


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class WatchedAdapter(HTTPAdapter):
    """requests' adapter, its connections reporting to the calling thread's deadline (proxied ones too)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_POOLS)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if hasattr(manager, "pool_classes_by_scheme"):
            manager.pool_classes_by_scheme = dict(_POOLS)
        return manager
