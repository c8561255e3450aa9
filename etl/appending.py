"""Append or upsert: which way a batch's rows go into their table.

Appending (Dialect.insert_fresh_rows: COPY straight into the table on PostgreSQL, no stage table and no
conflict clause) costs the database less than the upsert (bench/writer.py), but only rows whose keys no
stored row holds may take it. Some rows are known to be such (under key prefixes the batch deleted); for
the rest, AppendGuess guesses, and a key that is there after all fails the append inside a savepoint and
sends the rows through the upsert."""

from __future__ import annotations

from typing import Any


class AppendGuess:
    """Whether rows whose keys nothing says are new should be appended anyway (where the dialect can:
    Dialect.appends). A first crawl's keys are all new, and appending them is the cheaper way in; on a
    re-run most keys are stored, the append fails at the first one and the rows are upserted after all.
    So appending goes on while it works, and after a miss waits 2, 4 … up to WAIT_MOST batches before it
    is tried again: a re-run pays one failed append in 64 batches, a run that moves on to new keys
    (another city after a known one) finds out soon."""

    WAIT_MOST = 64

    def __init__(self, possible: bool) -> None:
        self.possible = possible
        self.wait, self.waited = 0, 0  # batches to upsert before the next try, and upserted since the miss

    def worth_trying(self) -> bool:
        if not self.possible:
            return False
        if self.waited >= self.wait:
            return True
        self.waited += 1
        return False

    def worked(self) -> None:
        self.wait, self.waited = 0, 0

    def missed(self) -> None:
        self.wait, self.waited = min(max(2, self.wait * 2), self.WAIT_MOST), 0


def append_or_upsert(conn, dialect, guess: AppendGuess | None, table, key: tuple[str, ...], keep: tuple[str, ...],
                     rows: list[dict[str, Any]], const: dict[str, Any] | None = None) -> None:
    """Write rows, appending them when `guess` is None (their keys are known to be new) or says to try.
    Errors worth a retry of the whole transaction (Dialect.is_transient) are raised from either path."""
    if guess is None or guess.worth_trying():
        try:
            with conn.begin_nested():
                dialect.insert_fresh_rows(conn, table, key, keep, rows, const)
            if guess is not None:
                guess.worked()
            return
        except Exception as exc:
            if dialect.is_transient(exc):
                raise
            if guess is not None:
                guess.missed()
    with conn.begin_nested():
        dialect.upsert_rows(conn, table, key, keep, rows, const)
