"""An extra app for the demo server (etl/demo/server.py) that makes every response take ETL_BENCH_LATENCY
seconds (default 0.05) before the site answers: a remote site's latency, on loopback."""

from __future__ import annotations

import os
import time

LATENCY = float(os.environ.get("ETL_BENCH_LATENCY", "0.05"))


def app(path: str):
    time.sleep(LATENCY)
    return None
