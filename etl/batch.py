"""What one writer transaction holds: the rows of finished units and their frontier bookkeeping.

Kept apart from the writer process (etl/write.py) because it is plain data with its own rules: a row's
natural key decides which row wins, what a unit replaces is deleted first, and whether the rows can then
be appended instead of upserted (rows_all_replaced) follows from those prefixes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from etl.items import UrlSeen


@dataclass
class Batch:
    rows: dict[tuple, dict[str, Any]] = field(default_factory=dict)  # natural key → row (last wins)
    links: dict[int, tuple[str, str, str]] = field(default_factory=dict)  # url_key → (url, kind, meta)
    carried: dict[int, str] = field(default_factory=dict)  # carried_key → via JSON the links refer to
    states: dict[int, str] = field(default_factory=dict)  # url_key → done | failed
    failures: list[dict[str, Any]] = field(default_factory=list)
    replaces: set[tuple] = field(default_factory=set)  # leading key values whose stored rows are replaced
    # prefixes an earlier batch of this writer replaced, which later shares of the same units fill
    replaced_earlier: set[tuple] = field(default_factory=set)
    unchanged: set[tuple] = field(default_factory=set)  # natural keys seen as stored (etl/incremental.py)
    urls: dict[int, UrlSeen] = field(default_factory=dict)  # url_state rows of the pages fetched
    # a shared run only: which unit each row, link and failure came from, to drop a lost unit's whole
    pages: set[int] = field(default_factory=set)
    row_page: dict[tuple, int] = field(default_factory=dict)
    link_page: dict[int, int] = field(default_factory=dict)
    replace_page: dict[tuple, int] = field(default_factory=dict)
    failure_page: list[int | None] = field(default_factory=list)

    def rows_all_replaced(self) -> bool:
        """Every row sits under a key prefix this batch (or, for a unit sent in shares, its first share's
        batch) deleted, so no stored row should share its key: the rows can be appended, not upserted."""
        replaced = self.replaces | self.replaced_earlier if self.replaced_earlier else self.replaces
        if not replaced or not self.rows:
            return False
        n = len(next(iter(replaced)))
        return all(k[:n] in replaced for k in self.rows)

    def __len__(self) -> int:
        """Size against batch_size: rows (and failures); frontier bookkeeping rides along uncounted
        up to four times as much, so a batch of 1000 rows is not split by its own page marks."""
        return max(len(self.rows) + len(self.failures), (len(self.states) + len(self.links)) // 4)
