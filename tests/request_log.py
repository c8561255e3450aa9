"""An extra app for the demo server (etl/demo/server.py): writes each request's arrival time and path to the
file named by ETL_TEST_REQUEST_LOG, then lets the site answer."""

from __future__ import annotations

import os
import threading
import time

_lock = threading.Lock()


def app(path: str):
    with _lock, open(os.environ["ETL_TEST_REQUEST_LOG"], "a") as log:
        log.write(f"{time.time():.6f} {path}\n")
    return None
