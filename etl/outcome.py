"""What a run did, as the coordinator counts it (Stats), and the one-line reasons a run ends partial or
failed without any single page being at fault."""

from __future__ import annotations

from dataclasses import dataclass, field

NOTHING_SUCCEEDED = "every page failed, none succeeded (is the source down or refusing us?); see the failures table"
NO_ROW_FROM_ITEMS = ("no row was extracted: {:,} list items had no key or no detail link "
                     "(does [items] key / detail match the pages?)")
NOTHING_STORED = ("the database refused every row of the run ({:,}; the first: {}): does the table have a column "
                  "or constraint the rows do not fill? See the failures table")


@dataclass
class Stats:
    pages_ok: int = 0
    pages_failed: int = 0
    rows: int = 0
    skipped: int = 0
    keyless: int = 0  # list items without a key or detail link (this session)
    no_rows_because: str | None = None  # pages had items, none gave a row: why (a partial run)
    by_status: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    failures: int = 0  # rows of the failures table for this run, every stage (fetch, parse, write)
    cut_short: str | None = None  # why the run stopped with work left (run.max_pages)
    rows_refused: int = 0  # rows the database refused in the whole run (the writer's count)
    refusal: str | None = None  # the first refusal's error
    failed_because: str | None = None  # the one line of a run that finished but failed
