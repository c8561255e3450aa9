"""Progress reporting: a live line on a terminal, a periodic log line otherwise (cron, systemd, k8s)."""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("etl.progress")


class Progress:
    def __init__(self, stream=None, interval: float | None = None, enabled: bool = True) -> None:
        self.stream = stream or sys.stderr
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.enabled = enabled
        self.interval = interval if interval is not None else (0.5 if self.tty else 10.0)
        self.started = time.monotonic()
        self.last = self.started
        self.base_pages: int | None = None

    def line(self, stats, inflight: int) -> str:
        elapsed = time.monotonic() - self.started
        pages = stats.pages_ok + stats.pages_failed
        if self.base_pages is None:
            self.base_pages = pages
        rate = (pages - self.base_pages) / elapsed if elapsed > 0 else 0.0
        return (f"pages {pages:,} ({rate:,.0f}/s) | rows {stats.rows:,} | failed {stats.pages_failed:,} "
                f"| in flight {inflight} | {elapsed:,.0f}s")

    def update(self, stats, inflight: int) -> None:
        now = time.monotonic()
        if self.base_pages is None:
            self.base_pages = stats.pages_ok + stats.pages_failed
        if not self.enabled or now - self.last < self.interval:
            return
        self.last = now
        if self.tty:
            self.stream.write("\r\033[K" + self.line(stats, inflight))
            self.stream.flush()
        else:
            log.info("%s", self.line(stats, inflight))

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
