"""One thread that drives every fetch thread's libcurl transfer through a single multi handle.

Why: with `curl_easy_perform` on each of 16 fetch threads, every header line and body buffer libcurl hands
to Python wakes a thread that must win the GIL from 15 others; at a saturated fetch stage that convoy cost
about as much CPU as everything else the fetch process does. Here the fetch threads keep their easy handles
(options, cookies) and their blocking call, but the transfers run in one driver thread on libcurl's multi
interface (socket_action, so no select() limit on descriptor numbers): the callbacks all run on that one
thread, and a fetch thread sleeps on a lock until its transfer is done. libcurl keeps one connection cache
for the multi handle, so connections are shared by the fetch threads instead of held per thread.
"""

from __future__ import annotations

import os
import selectors
import threading
import time
from collections import deque

import pycurl

IDLE_EXIT = 10.0  # seconds without a transfer before the driver thread ends (perform() starts it again)
POLL_MAX = 1.0  # longest single wait for sockets, so new transfers and the idle clock are looked at


_EVENTS = {pycurl.POLL_IN: selectors.EVENT_READ, pycurl.POLL_OUT: selectors.EVENT_WRITE}  # else both


class DriverGone(Exception):
    """The transfer's result never came back within its wait limit (the driver thread is stuck or died)."""


class _Waiter:
    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = threading.Lock()
        self.done.acquire()
        self.error: tuple[int, str] | None = None

    def finish(self, error: tuple[int, str] | None = None) -> None:
        self.error = error
        self.done.release()


class MultiDriver:
    """`perform(curl)` behaves as `curl.perform()` (it raises the same pycurl.error), run on the driver."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.incoming: deque[tuple[pycurl.Curl, _Waiter]] = deque()
        self.thread: threading.Thread | None = None
        self.wake_w = -1  # the running driver's wakeup pipe (write end); -1 when no driver runs

    def perform(self, curl: pycurl.Curl, wait_limit: float) -> None:
        waiter = _Waiter()
        with self.lock:
            self.incoming.append((curl, waiter))
            if self.thread is None:
                read_end, self.wake_w = os.pipe()
                os.set_blocking(read_end, False)
                os.set_blocking(self.wake_w, False)
                self.thread = threading.Thread(target=self._run, args=(read_end, self.wake_w),
                                               name="curl-multi", daemon=True)
                self.thread.start()
            else:
                try:
                    os.write(self.wake_w, b"x")
                except BlockingIOError:  # the pipe is full of wakeups already
                    pass
        if not waiter.done.acquire(timeout=wait_limit):
            raise DriverGone(f"no result from libcurl within {wait_limit:g}s")
        if waiter.error is not None:
            raise pycurl.error(*waiter.error)

    def _run(self, wake_r: int, wake_w: int) -> None:
        try:
            _Loop(self, wake_r).run()
        finally:
            os.close(wake_r)
            os.close(wake_w)


class _Loop:
    """The driver thread's state: the multi handle, its sockets and timer, the transfers in flight."""

    def __init__(self, driver: MultiDriver, wake_r: int) -> None:
        self.driver, self.wake_r = driver, wake_r
        self.multi = pycurl.CurlMulti()
        self.selector = selectors.DefaultSelector()
        self.selector.register(wake_r, selectors.EVENT_READ)
        self.deadline: float | None = None  # libcurl's timer: when it wants socket_action(TIMEOUT)
        self.running: dict[pycurl.Curl, _Waiter] = {}
        self.multi.setopt(pycurl.M_SOCKETFUNCTION, self._on_socket)
        self.multi.setopt(pycurl.M_TIMERFUNCTION, self._on_timer)

    def _on_socket(self, what: int, fd: int, multi: object, data: object) -> None:
        """libcurl says which events it waits for on a socket (or that it is done with it)."""
        registered = fd in self.selector.get_map()
        if what == pycurl.POLL_REMOVE:
            if registered:
                self.selector.unregister(fd)
            return
        events = _EVENTS.get(what, selectors.EVENT_READ | selectors.EVENT_WRITE)
        if registered:
            self.selector.modify(fd, events)
        else:
            self.selector.register(fd, events)

    def _on_timer(self, ms: int) -> None:
        self.deadline = None if ms < 0 else time.monotonic() + ms / 1000

    def run(self) -> None:
        idle_since = time.monotonic()
        try:
            while True:
                self._take_new()
                if self.running:
                    idle_since = time.monotonic()
                elif time.monotonic() - idle_since > IDLE_EXIT:
                    with self.driver.lock:
                        if not self.driver.incoming:
                            self.driver.thread, self.driver.wake_w = None, -1
                            return
                    continue
                self._wait_and_act()
                self._collect()
        except BaseException:
            with self.driver.lock:
                self.driver.thread, self.driver.wake_w = None, -1
                stranded = list(self.driver.incoming)
                self.driver.incoming.clear()
            for _, waiter in [*self.running.items(), *stranded]:
                waiter.finish((pycurl.E_FAILED_INIT, "the libcurl driver thread failed"))
            raise
        finally:
            for curl in self.running:
                self.multi.remove_handle(curl)
            self.multi.close()  # it may still tell _on_socket to forget sockets: the selector goes last
            self.selector.close()

    def _take_new(self) -> None:
        with self.driver.lock:  # one lock for all that arrived: the fetch threads wait on it to hand over
            if not self.driver.incoming:
                return
            arrived = list(self.driver.incoming)
            self.driver.incoming.clear()
        for taken, (curl, waiter) in enumerate(arrived):
            try:
                self.multi.add_handle(curl)
            except pycurl.error as exc:
                waiter.finish((exc.args[0], str(exc.args[1])))
                continue
            except BaseException:  # back in line, so that run() tells each of them the driver failed
                with self.driver.lock:
                    self.driver.incoming.extendleft(reversed(arrived[taken:]))
                raise
            self.running[curl] = waiter

    def _wait_and_act(self) -> None:
        timeout = POLL_MAX
        if self.deadline is not None:
            timeout = min(timeout, max(0.0, self.deadline - time.monotonic()))
        ready = self.selector.select(timeout) if timeout > 0 or not self.running else []
        for key, events in ready:
            if key.fd == self.wake_r:
                try:
                    while os.read(self.wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
                continue
            flags = (pycurl.CSELECT_IN if events & selectors.EVENT_READ else 0) | (
                pycurl.CSELECT_OUT if events & selectors.EVENT_WRITE else 0)
            self.multi.socket_action(key.fd, flags)
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.deadline = None
            self.multi.socket_action(pycurl.SOCKET_TIMEOUT, 0)

    def _collect(self) -> None:
        while True:
            left, ok, failed = self.multi.info_read()
            for curl in ok:
                self.multi.remove_handle(curl)
                self.running.pop(curl).finish()
            for curl, code, message in failed:
                self.multi.remove_handle(curl)
                self.running.pop(curl).finish((code, str(message)))
            if not left:
                return
