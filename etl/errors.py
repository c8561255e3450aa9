"""One helper for every error message we store or show: the first line of the database's (or library's)
own words, bounded — a failures row or a log line, never a traceback or a page of SQL."""

from __future__ import annotations


def one_line(exc: BaseException, limit: int = 300) -> str:
    """First line of the driver's message (SQLAlchemy wraps it in .orig), at most `limit` characters."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0][:limit] if text else ""


class FileSourceError(Exception):
    """A user's file or settings for the files source cannot be used; the message is one line saying what
    to change. Lives here so that etl.sources.filefmt and filefetch share it without importing each other."""
