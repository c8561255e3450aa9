"""The fetch stage: Fetcher (redirects, politeness, robots.txt, limits; etl/fetch/fetcher.py) over one of
two HTTP engines behind one seam (engine.py): requests (requests_engine.py, with the whole-response
watchdog that frees threads stuck on trickling servers, watchdog.py) or libcurl (curl_engine.py); and
FetchStage, the process that runs Fetchers on a thread pool (stage.py)."""

from etl.fetch.fetcher import (
    MAX_REDIRECTS,
    REDIRECTS,
    RETRY_STATUS,
    ROBOTS_MAX_BYTES,
    Fetcher,
    FetchFailure,
    HostGate,
    retry_after_seconds,
)
from etl.fetch.stage import BUNDLE_BYTES, FetchStage, Sent

__all__ = ["BUNDLE_BYTES", "MAX_REDIRECTS", "REDIRECTS", "RETRY_STATUS", "ROBOTS_MAX_BYTES", "FetchFailure",
           "FetchStage", "Fetcher", "HostGate", "Sent", "retry_after_seconds"]
