"""Runs started at the same moment: one job runs once, and a brand-new database gets its schema once.

Each test starts real `etl` processes together (released by one barrier file, so they race within
milliseconds), on SQLite, PostgreSQL and MySQL/MariaDB.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_e2e_listings import assert_matches_truth, table

ROOT = Path(__file__).resolve().parent.parent
LISTINGS = 1500

# Each child waits for the barrier file, then runs the CLI: the processes start their real work together.
_LAUNCH = ("import os, sys, time\n"
           "deadline = time.monotonic() + 60\n"
           "while not os.path.exists(sys.argv[1]):\n"
           "    if time.monotonic() > deadline: sys.exit('no barrier')\n"
           "    time.sleep(0.001)\n"
           "sys.argv = ['etl'] + sys.argv[2:]\n"
           "from etl.cli import main\n"
           "sys.exit(main())\n")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres),
                        pytest.param("mysql", marks=pytest.mark.mysql)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'etl.db'}"
    return request.getfixturevalue("pg_url" if request.param == "postgres" else "mysql_url")


def _together(tmp_path: Path, commands: list[list[str]]) -> list[tuple[int, str]]:
    barrier = tmp_path / f"go-{time.monotonic_ns()}"
    procs = [subprocess.Popen([sys.executable, "-c", _LAUNCH, str(barrier), *cmd], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
             for cmd in commands]
    time.sleep(1.0)  # every interpreter is up and polling
    barrier.touch()
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        results.append((proc.returncode, out))
    return results


def _run_args(url: str, *extra: str) -> list[str]:
    return ["run", str(ROOT / "config/demo.toml"), "--db", url, "--quiet",
            "--set", f"source.demo.listings={LISTINGS}", "--set", "source.demo.encoding=gbk", *extra]


def test_simultaneous_migrations_of_a_new_database_all_succeed(tmp_path: Path, db_url: str) -> None:
    """11.2: four `etl db upgrade` at once on an empty database: the schema is created once, all exit 0."""
    results = _together(tmp_path, [["db", "upgrade", "--db", db_url]] * 4)
    assert [rc for rc, _ in results] == [0] * 4, results
    assert all("is at schema revision" in out for _, out in results), results


def test_two_runs_started_together_run_once(tmp_path: Path, db_url: str) -> None:
    """11.1: two `etl run`s of one job in the same instant, on a brand-new database: one runs the job,
    the other is refused with one line (exit 2) — no second run, no page fetched twice, no schema crash."""
    for attempt in range(2):
        results = _together(tmp_path, [_run_args(db_url)] * 2)
        codes = sorted(rc for rc, _ in results)
        assert codes == [0, 2], (attempt, results)
        refused = next(out for rc, out in results if rc == 2)
        assert "already running" in refused and len(refused.strip().splitlines()) == 1, refused
        runs = table(db_url, "SELECT id, status FROM runs ORDER BY id")
        assert len(runs) == attempt + 1 and runs[-1]["status"] == "succeeded", runs
        assert_matches_truth(db_url, listings=LISTINGS)


def test_two_resumes_started_together_resume_once(tmp_path: Path, db_url: str) -> None:
    """11.1: an interrupted run pending, two starts at once: one resumes it, the other is refused."""
    first = _running_past(db_url, 200)
    first.send_signal(signal.SIGTERM)
    out, _ = first.communicate(timeout=120)
    assert first.returncode == 130, out
    results = _together(tmp_path, [_run_args(db_url)] * 2)
    assert sorted(rc for rc, _ in results) == [0, 2], results
    assert "(resumed)" in next(out for rc, out in results if rc == 0)
    runs = table(db_url, "SELECT id, status FROM runs ORDER BY id")
    assert [r["status"] for r in runs] == ["succeeded"], runs
    assert_matches_truth(db_url, listings=LISTINGS)


def test_a_killed_run_frees_the_job_at_once(tmp_path: Path, db_url: str) -> None:
    """The lock dies with its holder: after kill -9 of the whole run, the next start resumes, not refused."""
    proc = _running_past(db_url, 200)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    time.sleep(0.5)  # the server notices the closed session
    again = subprocess.run([sys.executable, "-m", "etl.cli", *_run_args(db_url)], cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "(resumed)" in again.stdout, again.stdout + again.stderr
    assert_matches_truth(db_url, listings=LISTINGS)


def _running_past(url: str, rows: int) -> subprocess.Popen:
    """An `etl run` of the job that has written at least `rows` listings and is still going."""
    proc = subprocess.Popen([sys.executable, "-m", "etl.cli", *_run_args(url)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while _rows(url) < rows:
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
        time.sleep(0.05)
    return proc


def _rows(url: str) -> int:
    try:
        return next(iter(table(url, "SELECT count(*) AS n FROM listings")[0].values()))
    except Exception:  # not migrated yet
        return 0


@pytest.mark.mysql
def test_one_job_name_in_two_mysql_databases_is_two_locks(mysql_url: str, mysql_server: str) -> None:
    """GET_LOCK is server-wide: the job lock names its database, so the same job in two databases of one
    server both run (and a second start in the same database is still refused)."""
    from etl.dialects import dialect_for

    dialect = dialect_for(mysql_url)
    here, there, again = (dialect.named_lock(u, "etl:job:demo") for u in (mysql_url, mysql_server, mysql_url))
    try:
        assert here.acquire() and there.acquire()
        assert not again.acquire()
    finally:
        for lock in (here, there, again):
            lock.release()
