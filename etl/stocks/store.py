"""What a complete run of the stock-mention job may conclude about articles it did not see.

Every article a run reads has its mentions rewritten by that run (the writer deletes the article's old
rows and inserts the new ones in one transaction), so each of its rows carries the run's id. After a run
that read the *whole* news table — status `succeeded`: no range failed, no row was refused, no
`[run] max_pages` cut — a row of the same job (source) with another run id belongs to an article that is
no longer in the table (or no longer matches `[source.sql] where`), and is deleted, in the transaction
that records the run's end.

Only the sql source is swept: it reads every row of its table each run. A crawl (news-site) or a file
source may legitimately see only the newest articles, and a partial, interrupted or failed run cannot
tell a deleted article from one it did not reach; those runs delete nothing but the mentions of the
articles they re-read.
"""

from __future__ import annotations

import logging

from sqlalchemy import delete

from etl import schema

log = logging.getLogger("etl.stocks")


def sweeps(cfg) -> bool:
    """Whether a complete run of this config may delete the mentions of articles it did not see."""
    from etl.sources.sql import SqlSettings

    return (cfg.transform.type == "stock_mentions" and cfg.target.name == "stock_mentions"
            and isinstance(cfg.source, SqlSettings))


def sweep_unseen(conn, cfg, run_id: int) -> int:
    """Delete the job's mentions that run `run_id` did not write; call only for a `succeeded` run."""
    if not sweeps(cfg):
        return 0
    t = schema.stock_mentions
    gone = conn.execute(delete(t).where(t.c.source == cfg.job, t.c.run_id != run_id)).rowcount or 0
    if gone:
        log.info("removed %d stock mentions of articles no longer in %s", gone, cfg.source.table)
    return gone
