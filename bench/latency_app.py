"""An extra app for the demo server (etl/demo/server.py) that makes every response take ETL_BENCH_LATENCY
seconds (default 0.05) before the site answers: a remote site's latency, on loopback. It also keeps the
most requests it ever had in flight at once in the file ETL_BENCH_PEAK (if set): what a per-host cap
across workers must bound."""

from __future__ import annotations

import os
import threading
import time

LATENCY = float(os.environ.get("ETL_BENCH_LATENCY", "0.05"))
PEAK_FILE = os.environ.get("ETL_BENCH_PEAK")
_lock = threading.Lock()
_inflight = 0
_peak = 0


def reset_peak() -> None:
    global _peak
    _peak = 0


def app(path: str):
    global _inflight, _peak
    with _lock:
        _inflight += 1
        if _inflight > _peak:
            _peak = _inflight
            if PEAK_FILE:
                with open(PEAK_FILE, "w") as f:
                    f.write(str(_peak))
    try:
        time.sleep(LATENCY)
    finally:
        with _lock:
            _inflight -= 1
    return None
