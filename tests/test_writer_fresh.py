"""Rows under key prefixes their batch replaces are stored exactly as the upsert would store them, on every
database, whether the dialect appends them (PostgreSQL COPYs straight into the table) or upserts them; a key
that is there after all (a concurrent writer of the same unit) falls back to the upsert, losing nothing."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import pytest

from etl.dialects import dialect_for
from etl.items import PageDone, PageRows
from etl.targets import target_spec
from etl.write import Batch, Writer
from tests.test_e2e_listings import table
from tests.test_faults_db import HOSTILE, writer_for_run

BACKENDS = ["sqlite_url", pytest.param("pg_url", marks=pytest.mark.postgres),
            pytest.param("mysql_url", marks=pytest.mark.mysql)]


def listing_rows(n: int, title: str, source: str = "t") -> list[dict[str, Any]]:
    texts = HOSTILE * (n // len(HOSTILE) + 1)
    return [{"source": source, "listing_id": f"{i:04d}", "title": f"{title} {i}", "community": texts[i],
             "extras": {"note": texts[i]}} for i in range(n)]


def write(writer: Writer, pages: list[PageDone]) -> None:
    batch = Batch()
    for page in pages:
        writer.add(batch, page)
    writer.flush(batch)


def stored(url: str) -> list[tuple]:
    got = table(url, "SELECT source, listing_id, title, community, extras FROM listings ORDER BY source, listing_id")
    return [(r["source"], r["listing_id"], r["title"], r["community"],
             (r["extras"] if isinstance(r["extras"], dict) else json.loads(r["extras"]))["note"]) for r in got]


def expected(url: str, rows: list[dict[str, Any]]) -> list[tuple]:
    nul = dialect_for(url).nul_in_text  # documented: NUL -> U+FFFD where text cannot hold it
    fix = (lambda s: s) if nul else (lambda s: s.replace("\x00", "\ufffd"))
    return sorted((r["source"], r["listing_id"], r["title"], fix(r["community"]), fix(r["extras"]["note"]))
                  for r in rows)


def send_in_shares(writer: Writer, key: int, rows: list[dict[str, Any]], prefixes: list[tuple]) -> None:
    """300 rows of one unit as the coordinator sends a page bigger than batch_size = 100: two PageRows
    shares (the first with what the unit replaces), then its PageDone, each batch committed."""
    writer.take(PageRows(key, rows[:100], prefixes))
    writer.take(PageRows(key, rows[100:200], []))
    writer.take(PageDone(key, rows[200:], [], "done"))
    writer.commit()


@pytest.fixture
def fresh_writes(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], list[tuple[str, int]]]:
    """fresh_writes(url): the (table, rows) of every insert_fresh_rows call of that URL's dialect from now on."""
    calls: list[tuple[str, int]] = []

    def spy(url: str) -> list[tuple[str, int]]:
        dialect = type(dialect_for(url))
        original = dialect.insert_fresh_rows

        def spying(self, conn, table, key, keep, rows, const=None):
            calls.append((table.name, len(rows)))
            return original(self, conn, table, key, keep, rows, const)

        monkeypatch.setattr(dialect, "insert_fresh_rows", spying)
        return calls

    return spy


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_replaced_prefix_rewritten_in_bulk_holds_exactly_the_new_rows(
        backend: str, request: pytest.FixtureRequest, fresh_writes: Callable[[str], list[tuple[str, int]]]) -> None:
    url = request.getfixturevalue(backend)
    fresh = fresh_writes(url)
    writer = writer_for_run(url)
    other = listing_rows(60, "kept", source="u")  # another prefix, not replaced: stays as it is
    write(writer, [PageDone(1, listing_rows(200, "old"), [], "done", replaces=[("t",)]), PageDone(2, other, [], "done")])
    assert [t for t, _ in fresh] == []  # rows of a prefix not replaced in the batch: the upsert
    new = listing_rows(150, "new")  # fewer rows: 150..199 of the old ones must be gone
    write(writer, [PageDone(3, new, [], "done", replaces=[("t",)])])
    writer.engine.dispose()
    assert [t for t, _ in fresh] == ["listings"]
    assert stored(url) == expected(url, new + other)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_key_stored_after_the_delete_falls_back_to_the_upsert(
        backend: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """As if another writer of the same unit committed its rows between this one's DELETE and its insert:
    the bulk append meets keys already there, and the batch is upserted instead (no failure, no loss)."""
    url = request.getfixturevalue(backend)
    writer = writer_for_run(url)
    write(writer, [PageDone(1, listing_rows(120, "old"), [], "done")])
    monkeypatch.setattr(Writer, "_delete_replaced", lambda self, conn, replaces: None)
    new = listing_rows(120, "new")
    write(writer, [PageDone(2, new, [], "done", replaces=[("t",)])])
    writer.engine.dispose()
    assert stored(url) == expected(url, new)
    assert table(url, "SELECT count(*) AS n FROM failures")[0]["n"] == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_later_shares_of_a_replacing_unit_are_appended_too(
        backend: str, request: pytest.FixtureRequest, fresh_writes: Callable[[str], list[tuple[str, int]]]) -> None:
    """A unit's rows in shares (PageRows, PageRows, PageDone), one batch each: the first share's batch
    deletes what was stored under the unit's prefixes, the later batches hold rows under them too."""
    url = request.getfixturevalue(backend)
    fresh = fresh_writes(url)
    prepared = writer_for_run(url)  # listings without history: this is about the rows path alone
    prepared.engine.dispose()
    writer = Writer(dataclasses.replace(prepared.s, batch_size=100,
                                        target=target_spec("listings", None, {}, track=[])))
    rows = [{**r, "source": f"s{i % 3}"} for i, r in enumerate(listing_rows(300, "unit"))]
    prefixes = sorted({(r["source"],) for r in rows})
    before = [{**r, "source": f"s{i % 3}"} for i, r in enumerate(listing_rows(250, "before"))]
    writer.take(PageDone(6, before, [], "done"))  # stored rows under the same prefixes
    writer.commit()
    send_in_shares(writer, 7, rows, prefixes)
    writer.engine.dispose()
    assert stored(url) == expected(url, rows)
    assert writer.replaced_by_unit == {}
    assert [n for _, n in fresh] == [100, 100, 100], fresh


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_replaced_prefix_holding_nul_deletes_what_was_stored_under_it(
        backend: str, request: pytest.FixtureRequest) -> None:
    """PostgreSQL stores NUL as U+FFFD: the DELETE of a replace must look for what was stored, not refuse
    the literal (psycopg2 cannot send a NUL) nor miss the rows."""
    url = request.getfixturevalue(backend)
    writer = writer_for_run(url)
    write(writer, [PageDone(1, listing_rows(80, "old", source="n\x00ul"), [], "done")])
    new = listing_rows(60, "new", source="n\x00ul")
    write(writer, [PageDone(2, new, [], "done", replaces=[("n\x00ul",)])])
    writer.engine.dispose()
    stored_source = "n\x00ul" if dialect_for(url).nul_in_text else "n\ufffdul"
    assert stored(url) == expected(url, [{**r, "source": stored_source} for r in new])


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_replacing_unit_in_shares_redone_in_the_same_run_keeps_one_version_per_key(
        backend: str, request: pytest.FixtureRequest) -> None:
    """With history on, a redo of a unit sent in shares (a page re-queued after a writer recovery) finds its
    later shares' rows deleted by its first share, so their versions look new again: the version this run
    already wrote is rewritten, not inserted twice (a primary-key violation that failed the batch before)."""
    url = request.getfixturevalue(backend)
    prepared = writer_for_run(url)
    prepared.engine.dispose()
    writer = Writer(dataclasses.replace(prepared.s, batch_size=100))
    rows = [{**r, "source": f"s{i % 3}", "total_price": 100 + i} for i, r in enumerate(listing_rows(300, "unit"))]
    prefixes = sorted({(r["source"],) for r in rows})
    for _ in range(2):
        send_in_shares(writer, 7, rows, prefixes)
    writer.engine.dispose()
    assert stored(url) == expected(url, rows)
    versions = table(url, "SELECT count(*) AS n FROM listing_history")[0]["n"]
    keys = table(url, "SELECT count(*) AS n FROM (SELECT DISTINCT source, listing_id FROM listing_history) d")[0]["n"]
    assert (versions, keys) == (300, 300)
