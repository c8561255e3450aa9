"""A worker's side of the leased frontier: claim pending entries, renew the leases, give them back.

The database clock decides every lease (now() on the server), so machines whose clocks disagree still
agree on who holds what. A claim is one statement: the entries it takes are locked with SKIP LOCKED, so
concurrent claims never block each other nor take the same entry; an entry whose lease has expired is
claimable like a fresh one, which is how a dead worker's work comes back (no reaper). Every claim counts
(`claims`): an entry claimed more than MAX_CLAIMS times kills or stalls every worker that takes it, and
the worker that claims it once more records it as failed instead of trying again.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from etl import carried, db, schema
from etl.dialects import dialect_for
from etl.errors import one_line
from etl.items import Request

log = logging.getLogger("etl.shared")

MAX_CLAIMS = 5  # claims of one entry before it is recorded as failed


@dataclass(slots=True)
class Claimed:
    request: Request
    claims: int  # this claim included


class Claims:
    """The coordinator's connection to the shared frontier (an engine of its own, one connection)."""

    def __init__(self, url: str, run_id: int, owner: str, lease: float, urgent_kinds: tuple[str, ...] = ()) -> None:
        self.url, self.run_id, self.owner, self.lease = url, run_id, owner, lease
        self.urgent_kinds = urgent_kinds
        self.engine = db.make_engine(url)
        self.errors = (SQLAlchemyError, *dialect_for(url).errors)  # what a database going away raises

    def _until(self):
        return func.now() + dt.timedelta(seconds=self.lease)

    def claim(self, limit: int, mine: set[int] = frozenset()) -> list[Claimed]:
        """Up to `limit` pending entries nobody holds (or whose lease expired), the urgent kinds first.
        Entries leased to this worker that it does not know of (`mine`: what it works on) are taken too:
        a claim whose commit went through while its answer was lost (the database restarted) left them."""
        out: list[Claimed] = []
        with self.engine.begin() as conn:
            for urgent in ((True, False) if self.urgent_kinds else (None,)):
                if len(out) >= limit:
                    break
                out += self._claim(conn, limit - len(out), urgent, mine)
        return out

    def _claim(self, conn, limit: int, urgent: bool | None, mine: set[int]) -> list[Claimed]:
        f = schema.frontier
        free = or_(f.c.lease_until.is_(None), f.c.lease_until < func.now(),
                   and_(f.c.lease_owner == self.owner, f.c.url_key.notin_(sorted(mine))))
        where = [f.c.run_id == self.run_id, f.c.state == "pending", free]
        if urgent is not None:
            where.append(f.c.kind.in_(self.urgent_kinds) if urgent else f.c.kind.notin_(self.urgent_kinds))
        chosen = (select(f.c.url_key).where(*where).limit(limit).with_for_update(skip_locked=True)
                  .scalar_subquery())
        stmt = (update(f).where(f.c.run_id == self.run_id, f.c.url_key.in_(chosen))
                .values(lease_owner=self.owner, lease_until=self._until(), claims=f.c.claims + 1)
                .returning(f.c.url, f.c.kind, f.c.meta, f.c.url_key, f.c.claims))
        claimed = [Claimed(Request.from_frontier(url, kind, meta, key), claims)
                   for url, kind, meta, key, claims in conn.execute(stmt)]
        carried.resolve(conn, self.run_id, [c.request for c in claimed])  # the facet texts they refer to
        return claimed

    def renew(self, mine: set[int]) -> set[int] | None:
        """Extend the leases of the entries this worker works on (`mine`) and say it is alive. Returns those
        still held (one missing was taken over while this worker was away, or finished by another), or None
        if the database is away (the leases may then expire: the fencing check keeps late commits out).
        Rows are locked in key order and those the writer holds skipped, as the writer's fence locks them."""
        f, w = schema.frontier, schema.workers
        try:
            with self.engine.begin() as conn:
                held: set[int] = set()
                ordered = sorted(mine)
                for i in range(0, len(ordered), 500):
                    chosen = (select(f.c.url_key).where(f.c.run_id == self.run_id,
                                                        f.c.url_key.in_(ordered[i:i + 500]),
                                                        f.c.lease_owner == self.owner, f.c.state == "pending")
                              .order_by(f.c.url_key).with_for_update(skip_locked=True).scalar_subquery())
                    held.update(conn.execute(update(f).where(f.c.run_id == self.run_id, f.c.url_key.in_(chosen))
                                             .values(lease_until=self._until()).returning(f.c.url_key)).scalars())
                conn.execute(update(w).where(w.c.run_id == self.run_id, w.c.worker == self.owner)
                             .values(seen_at=func.now()))
            return held
        except self.errors as exc:
            log.warning("cannot renew this worker's leases (%s); pages may be taken over", one_line(exc, 300))
            self.engine.dispose()
            return None

    def release(self, keys: list[int] | None = None) -> None:
        """Give back this worker's leases (all, or those of `keys`): another worker may take them at once."""
        f = schema.frontier
        cond = [f.c.run_id == self.run_id, f.c.lease_owner == self.owner, f.c.state == "pending"]
        # a claim given back unworked is no claim: `claims` counts the workers that failed on an entry
        undo = {"lease_owner": None, "lease_until": None, "claims": func.greatest(f.c.claims - 1, 0)}
        try:
            with self.engine.begin() as conn:
                if keys is None:
                    conn.execute(update(f).where(*cond).values(**undo))
                for i in range(0, len(keys or ()), 500):
                    conn.execute(update(f).where(*cond, f.c.url_key.in_(keys[i:i + 500])).values(**undo))
        except self.errors as exc:
            log.warning("cannot give back this worker's leases (%s): they expire in %.0f s",
                        one_line(exc, 300), self.lease)

    def left(self) -> bool:
        """Is any entry of the run still pending (held by a worker or not)?"""
        f = schema.frontier
        with self.engine.connect() as conn:
            return bool(conn.execute(select(exists().where(and_(f.c.run_id == self.run_id,
                                                                f.c.state == "pending")))).scalar())

    def close(self) -> None:
        self.engine.dispose()
