"""Rows under key prefixes their batch replaces are stored exactly as the upsert would store them, on every
database, whether the dialect appends them (PostgreSQL COPYs straight into the table) or upserts them; a key
that is there after all (a concurrent writer of the same unit) falls back to the upsert, losing nothing."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import pytest

from etl.appending import AppendGuess
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


def spy_on(monkeypatch: pytest.MonkeyPatch, url: str, method: str) -> list[tuple[str, int]]:
    """The (table, rows) of every call of that URL's dialect's `method` (insert_fresh_rows, upsert_rows)."""
    calls: list[tuple[str, int]] = []
    dialect = type(dialect_for(url))
    original = getattr(dialect, method)

    def spying(self, conn, table, key, keep, rows, const=None):
        calls.append((table.name, len(rows)))
        return original(self, conn, table, key, keep, rows, const)

    monkeypatch.setattr(dialect, method, spying)
    return calls


def listings(calls: list[tuple[str, int]]) -> list[int]:
    """The row counts of the calls on listings (the history table's versions go through the dialect too)."""
    return [n for table_name, n in calls if table_name == "listings"]


@pytest.fixture
def fresh_writes(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], list[tuple[str, int]]]:
    """fresh_writes(url): the (table, rows) of every insert_fresh_rows call of that URL's dialect from now on."""
    return lambda url: spy_on(monkeypatch, url, "insert_fresh_rows")


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_replaced_prefix_rewritten_in_bulk_holds_exactly_the_new_rows(
        backend: str, request: pytest.FixtureRequest, fresh_writes: Callable[[str], list[tuple[str, int]]]) -> None:
    url = request.getfixturevalue(backend)
    fresh = fresh_writes(url)
    writer = writer_for_run(url)
    other = listing_rows(60, "kept", source="u")  # another prefix, not replaced: stays as it is
    write(writer, [PageDone(1, listing_rows(200, "old"), [], "done", replaces=[("t",)]), PageDone(2, other, [], "done")])
    # rows of a prefix not replaced in the batch: upserted, or appended as a first crawl's (AppendGuess)
    first = [200 + 60] if dialect_for(url).appends else []
    assert listings(fresh) == first
    new = listing_rows(150, "new")  # fewer rows: 150..199 of the old ones must be gone
    write(writer, [PageDone(3, new, [], "done", replaces=[("t",)])])
    writer.engine.dispose()
    assert listings(fresh) == first + [150]
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
    fresh.clear()  # (appended, where the dialect can, as a first crawl's rows: not what this is about)
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


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_first_crawls_rows_are_appended_until_a_stored_key_sends_them_to_the_upsert(
        backend: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows under no replaced prefix, into a table without their keys (a first crawl): appended where the
    dialect can. A batch holding a stored key (a re-run) is upserted after the failed append, the stored
    rows keeping their first_seen, and the next batches are upserted without trying the append first."""
    url = request.getfixturevalue(backend)
    fresh, upserts = spy_on(monkeypatch, url, "insert_fresh_rows"), spy_on(monkeypatch, url, "upsert_rows")
    writer = writer_for_run(url)
    appends = dialect_for(url).appends
    old = listing_rows(120, "old")
    write(writer, [PageDone(1, old, [], "done")])
    assert (listings(fresh), listings(upserts)) == (([120], []) if appends else ([], [120]))
    first_seen = table(url, "SELECT first_seen FROM listings WHERE listing_id = '0007'")[0]["first_seen"]
    fresh.clear()
    upserts.clear()
    again = listing_rows(180, "again")  # 0000..0119 are stored now, 0120..0179 are new
    write(writer, [PageDone(2, again, [], "done")])
    more = [{**r, "source": "u"} for r in listing_rows(70, "more")]
    write(writer, [PageDone(3, more, [], "done")])  # new keys, but the last append missed: upserted
    writer.engine.dispose()
    assert listings(fresh) == ([180] if appends else [])
    assert listings(upserts) == [180, 70]
    assert stored(url) == expected(url, again + more)
    assert table(url, "SELECT first_seen FROM listings WHERE listing_id = '0007'")[0]["first_seen"] == first_seen
    assert table(url, "SELECT count(*) AS n FROM failures")[0]["n"] == 0


def test_the_append_guess_waits_longer_after_each_miss_and_not_after_it_worked() -> None:
    guess = AppendGuess(True)
    tries = []
    for batch in range(40):
        if guess.worth_trying():
            tries.append(batch)
            guess.missed()
    assert tries == [0, 3, 8, 17, 34]  # waits 2, 4, 8, 16 batches
    for _ in range(AppendGuess.WAIT_MOST * 4):
        guess.missed()
    assert guess.wait == AppendGuess.WAIT_MOST
    guess.worked()
    assert [guess.worth_trying() for _ in range(3)] == [True, True, True]
    assert not AppendGuess(False).worth_trying()
