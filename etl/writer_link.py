"""The coordinator's end of the writer process: start it, send it bundled messages, sync, stop it.

Why a module of its own: every wait on the writer has a timeout and a liveness check, and a writer that
dies without a database error is recoverable (the coordinator reloads the frontier and starts another).
Keeping that here leaves the coordinator about the frontier. The messages are in etl/items.py.
"""

from __future__ import annotations

import logging
import queue
import time
from typing import Any

from etl.items import Bundle, PageDone, PageRows, Stop, Sync, Synced, WriterDone, WriterError
from etl.write import WriterSettings, writer_main

log = logging.getLogger("etl.pipeline")

BUNDLE = 64  # messages per pickle and pipe write (and at most batch_size rows: see post)


class RunFailed(Exception):
    """The run cannot go on (writer gone, database unreachable); str() is the one line for the user."""


class WriterLost(Exception):
    """The writer process died without reporting a database error (killed, crashed): restartable."""


class WriterLink:
    def __init__(self, ctx) -> None:
        self.ctx = ctx
        self.outgoing: list[Any] = []  # messages not sent yet (see post)
        self.outgoing_rows = 0
        self.bundle_rows = 1000  # the writer's batch_size, once started
        self.last_post = time.monotonic()
        self.process = None
        self.done: WriterDone | None = None  # what the writer reported when it stopped

    def start(self, settings: WriterSettings) -> None:
        self.settings = settings
        self.bundle_rows = max(1, settings.batch_size)
        self.inbox = self.ctx.Queue(maxsize=256)
        self.outbox = self.ctx.Queue(maxsize=4)
        self.outgoing, self.outgoing_rows = [], 0
        self.process = self.ctx.Process(target=writer_main, args=(settings, self.inbox, self.outbox),
                                        name="etl-writer", daemon=False)
        self.process.start()
        log.info("writer process started (pid %d)", self.process.pid)

    @property
    def exitcode(self) -> int | None:
        return self.process.exitcode

    # ---------------------------------------------------------------------------------- sending
    def post(self, msg: Any) -> None:
        """Queue a message; they travel in bundles (one pickle and pipe write per bundle) of at most BUNDLE
        messages and batch_size rows, so the 256 bundles the queue holds stay small whatever the pages hold."""
        rows = len(msg.rows) if type(msg) is PageDone or type(msg) is PageRows else 0
        if self.outgoing and self.outgoing_rows + rows > self.bundle_rows:
            self.flush()
        self.outgoing.append(msg)
        self.outgoing_rows += rows
        if len(self.outgoing) >= BUNDLE or self.outgoing_rows >= self.bundle_rows:
            self.flush()

    def flush(self) -> None:
        if self.outgoing:
            bundle, self.outgoing, self.outgoing_rows = self.outgoing, [], 0
            self.send(Bundle(bundle))
        self.last_post = time.monotonic()

    def flush_if_idle(self, seconds: float = 0.05) -> None:
        """Send what waits once nothing has been posted for a moment (a slow crawl still commits)."""
        if self.outgoing and time.monotonic() - self.last_post > seconds:
            self.flush()

    def send(self, msg: Any) -> None:
        while True:
            if not self.process.is_alive():
                self._gone()
            try:
                self.inbox.put(msg, timeout=1.0)
                return
            except queue.Full:
                continue

    def discard(self) -> None:
        """Forget unsent messages (the writer died: their pages are still pending in the database)."""
        self.outgoing, self.outgoing_rows = [], 0

    # ---------------------------------------------------------------------------------- waiting
    def sync(self) -> None:
        """Have the writer commit everything it holds, and wait until it has."""
        self.flush()
        self.send(Sync())
        deadline = time.monotonic() + self.settings.retry_seconds + 60
        while True:
            try:
                msg = self.outbox.get(timeout=1.0)
            except queue.Empty:
                if not self.process.is_alive():
                    self._gone()
                if time.monotonic() > deadline:
                    raise RunFailed("the writer did not answer a sync within its timeout") from None
                continue
            if type(msg) is Synced:
                return
            if type(msg) is WriterError:
                raise RunFailed(f"database writes failed: {msg.message}")

    def stop(self, timeout: float = 120.0) -> int:
        """Let the writer commit what it has and exit; returns the rows it wrote."""
        if self.process.is_alive():
            self.flush()
            self.send(Stop())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = self.outbox.get(timeout=0.5)
            except queue.Empty:
                if not self.process.is_alive() and self.process.exitcode is not None:
                    try:
                        msg = self.outbox.get(timeout=0.5)
                    except queue.Empty:
                        raise WriterLost(f"the writer process died (exit code {self.process.exitcode})") from None
                else:
                    continue
            if type(msg) is WriterError:
                self.process.join(timeout=10)
                self.inbox.cancel_join_thread()
                raise RunFailed(f"database writes failed: {msg.message}")
            if type(msg) is WriterDone:
                self.process.join(timeout=10)
                self.done = msg
                return msg.rows_written
        self.process.kill()  # it ignores SIGTERM (only the coordinator stops the run)
        raise RunFailed("the writer did not finish within its timeout")

    def close(self) -> None:
        """Last resort at the end of a run (normally stop() has already joined it)."""
        if self.process is not None and self.process.is_alive():
            self.process.join(timeout=5)
            if self.process.is_alive():
                self.process.kill()  # it ignores SIGTERM (only the coordinator stops the run)
                self.process.join(timeout=5)

    def _gone(self) -> None:
        # Messages still buffered for a dead reader must not block this process's exit.
        self.inbox.cancel_join_thread()
        error = self._error()
        if error:
            raise RunFailed(f"database writes failed: {error}")
        raise WriterLost(f"the writer process died (exit code {self.process.exitcode})")

    def _error(self) -> str | None:
        try:
            msg = self.outbox.get(timeout=0.5)
        except queue.Empty:
            return None
        return msg.message if type(msg) is WriterError else None
