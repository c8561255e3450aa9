"""etl worker on one machine: what it refuses (one line, exit 2), the job lock between `etl run` and the
workers of a shared run, and a sql source's key ranges split among two workers (the same mentions as one
`etl run`). The network-namespace tests of the shared crawl are in tests/test_workers.py."""

from __future__ import annotations

import subprocess
import sys

import pytest

from etl.dialects import dialect_for
from tests.conftest import ROOT
from tests.test_e2e_listings import table


def etl(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "etl.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def one_error_line(done: subprocess.CompletedProcess) -> str:
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr
    return errors[0]


def test_sqlite_refuses_etl_worker(tmp_path) -> None:
    done = etl("worker", "config/demo-shared.toml", "--db", f"sqlite:///{tmp_path}/x.db")
    assert done.returncode == 2
    assert "which sqlite cannot do: use PostgreSQL" in one_error_line(done)
    assert not (tmp_path / "x.db").exists() or (tmp_path / "x.db").stat().st_size == 0


@pytest.mark.postgres
def test_a_demo_site_served_per_process_is_refused(pg_url: str) -> None:
    done = etl("worker", "config/demo.toml", "--db", pg_url)
    assert done.returncode == 2
    assert "etl demo serve" in one_error_line(done) and "source.base_url" in one_error_line(done)


@pytest.mark.postgres
def test_etl_run_and_workers_exclude_each_other(pg_url: str) -> None:
    dialect = dialect_for(pg_url)
    run_lock = dialect.named_lock(pg_url, "etl:job:demo-listings")  # as an `etl run` holds it
    assert run_lock.acquire()
    try:
        done = etl("worker", "config/demo-shared.toml", "--db", pg_url)
        assert done.returncode == 2
        assert "is running on one machine (etl run)" in one_error_line(done)
    finally:
        run_lock.release()
    worker_lock = dialect.named_lock(pg_url, "etl:job:demo-listings", shared=True)  # as a worker holds it
    other_worker = dialect.named_lock(pg_url, "etl:job:demo-listings", shared=True)
    assert worker_lock.acquire() and other_worker.acquire()  # workers share it
    try:
        done = etl("run", "config/demo.toml", "--db", pg_url)
        assert done.returncode == 2
        assert "is already running" in one_error_line(done)
    finally:
        worker_lock.release()
        other_worker.release()


@pytest.mark.postgres
def test_two_workers_split_a_sql_source_and_match_one_run(pg_url: str, pg_server: str) -> None:
    sets = ["--set", "source.sql.chunk_rows=250", "--set", "run.lease=5", "--set", "run.parse_processes=1",
            "--quiet"]
    single = etl("run", "config/news-stocks.toml", "--db", pg_url, *sets)
    assert single.returncode == 0, single.stderr[-2000:]
    want = table(pg_url, "SELECT news_id, stock_code, mention_count, score FROM stock_mentions "
                         "WHERE source = 'news-stocks'")
    workers = [subprocess.Popen([sys.executable, "-m", "etl.cli", "worker", "config/news-stocks.toml", "--db", pg_url,
                                 "--set", "job=news-stocks-shared", *sets], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [w.communicate(timeout=300) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [o[1][-1500:] for o in outs]
    got = table(pg_url, "SELECT news_id, stock_code, mention_count, score FROM stock_mentions "
                        "WHERE source = 'news-stocks-shared'")
    assert len(want) > 1000
    assert sorted(tuple(r.values()) for r in got) == sorted(tuple(r.values()) for r in want)
    shares = table(pg_url, "SELECT w.pages_ok FROM workers w JOIN runs r ON r.id = w.run_id "
                           "WHERE r.job = 'news-stocks-shared'")
    assert len(shares) == 2 and all(s["pages_ok"] > 0 for s in shares), shares  # both read key ranges
    assert sum(s["pages_ok"] for s in shares) == 80  # 20,000 rows in ranges of 250, each read once
