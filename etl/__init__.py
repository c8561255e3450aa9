"""Parallel web-scraping and database ETL: thread-pool fetch, process-pool parse, one batched writer."""

__version__ = "0.1.0"
