"""Crash and stop: SIGKILL the whole process tree at several points, SIGTERM the coordinator, then resume.

Each scenario runs `etl run` as a real subprocess (its own process group, so one killpg reaches the
coordinator, writer, parse workers and demo server) and checks that the resumed run ends with exactly the
generator's listings: none lost, none duplicated, every field equal.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_e2e_listings import assert_matches_truth, table

LISTINGS = 5000
ROOT = Path(__file__).resolve().parent.parent


def _url(db: Path | str) -> str:
    """A SQLite file, or (a str) the URL of a server database."""
    return db if isinstance(db, str) else f"sqlite:///{db}"


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """The database a crash scenario runs against: a SQLite file, or a scratch MySQL/MariaDB database."""
    return tmp_path / "etl.db" if request.param == "sqlite" else request.getfixturevalue("mysql_url")


def start(db: Path | str, *extra: str, env: dict | None = None, stderr=subprocess.STDOUT, quiet: bool = True) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "etl.cli", "run", str(ROOT / "config/demo.toml"), "--db", _url(db),
           *(["--quiet"] if quiet else []), "--set", f"source.demo.listings={LISTINGS}", "--set", "source.demo.encoding=gbk", *extra]
    return subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=stderr, text=True)


def count(db: Path | str, sql: str = "SELECT count(*) FROM listings") -> int:
    if isinstance(db, str):
        try:
            return next(iter(table(db, sql)[0].values()))
        except Exception:  # not migrated yet
            return 0
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute(sql).fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def wait_for(db: Path | str, proc: subprocess.Popen, at_least: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while count(db) < at_least:
        assert proc.poll() is None, f"run ended early: {proc.stdout.read()}"
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.1)


def finish(db: Path | str) -> str:
    proc = start(db)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    return out


def check_complete(db: Path | str) -> None:
    url = _url(db)
    assert_matches_truth(url)
    assert count(db, "SELECT count(*) FROM frontier WHERE state = 'pending'") == 0
    runs = table(url, "SELECT id, status FROM runs ORDER BY id")
    assert len(runs) == 1 and runs[0]["status"] == "succeeded", runs  # the same run, resumed


@pytest.mark.parametrize("rows_before_kill", [1, 2500])
def test_sigkill_while_fetching_then_resume(where: Path | str, rows_before_kill: int) -> None:
    db = where
    proc = start(db)
    wait_for(db, proc, rows_before_kill)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert table(_url(db), "SELECT status FROM runs")[0]["status"] == "running"
    out = finish(db)
    assert "(resumed)" in out
    check_complete(db)


def test_sigkill_inside_a_writer_batch_then_resume(where: Path | str) -> None:
    """The writer sleeps inside each transaction (test hook), so the kill lands in an open batch."""
    db = where
    proc = start(db, env={"ETL_TEST_SLOW_BATCH": "1.5"})
    wait_for(db, proc, 1)
    time.sleep(0.5)  # the next batch is open now
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    finish(db)
    check_complete(db)


def test_sigterm_stops_in_bounded_time_and_resumes(tmp_path: Path) -> None:
    db = tmp_path / "etl.db"
    proc = start(db)
    wait_for(db, proc, 500)
    proc.send_signal(signal.SIGTERM)  # the coordinator only, as systemd/k8s do first
    t0 = time.monotonic()
    out, _ = proc.communicate(timeout=60)
    assert time.monotonic() - t0 < 30
    assert proc.returncode == 130, out
    assert "interrupted" in out
    url = f"sqlite:///{db}"
    assert table(url, "SELECT status FROM runs")[0]["status"] == "interrupted"
    written = count(db)
    assert 0 < written < LISTINGS
    assert "(resumed)" in finish(db)
    check_complete(db)


def test_parse_process_death_is_survived(tmp_path: Path) -> None:
    """A parse worker dies once mid-run (like a segfault): the pool is rebuilt, its pages re-queued."""
    db = tmp_path / "etl.db"
    proc = start(db, env={"ETL_TEST_PARSE_CRASH": f"once:{tmp_path / 'crashed'}"})
    out, _ = proc.communicate(timeout=300)
    assert (tmp_path / "crashed").exists()
    assert proc.returncode == 0, out
    check_complete(db)


def test_page_that_always_kills_its_parser_becomes_a_failure(tmp_path: Path) -> None:
    db = tmp_path / "etl.db"
    victim = table_truth_url(0)
    proc = start(db, env={"ETL_TEST_PARSE_CRASH": f"url:{victim}"})
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 1, out  # finished, with one failed page
    failures = table(f"sqlite:///{db}", "SELECT url, stage, error FROM failures")
    assert len(failures) == 1 and failures[0]["url"].endswith(victim) and failures[0]["stage"] == "parse"
    assert count(db) == LISTINGS - 1


def table_truth_url(i: int) -> str:
    from etl.demo.site import DemoSite, SiteOptions

    return DemoSite(SiteOptions(listings=LISTINGS, encoding="gbk")).truth("bj")[i]["url"]


def kill_child_mid_run(tmp_path: Path, role: str) -> tuple[subprocess.Popen, str, str]:
    """Run a job, SIGKILL only its `role` process ("writer", "fetch") after 1,000 rows, let it finish."""
    import re

    db = tmp_path / "etl.db"
    log = tmp_path / "stderr.log"
    with open(log, "w") as err:
        proc = start(db, stderr=err, quiet=False)  # the "process started (pid N)" lines are INFO
        wait_for(db, proc, 1000)
        pids = re.findall(rf"{role} process started \(pid (\d+)\)", log.read_text())
        assert pids, log.read_text()
        os.kill(int(pids[0]), signal.SIGKILL)
        out, _ = proc.communicate(timeout=300)
    return proc, out, log.read_text()


def test_writer_process_killed_mid_run_is_replaced(tmp_path: Path) -> None:
    """SIGKILL only the writer: the coordinator notices, reloads the frontier, starts a new writer."""
    import re

    proc, out, text = kill_child_mid_run(tmp_path, "writer")
    assert proc.returncode == 0, out + text
    assert "writer process lost" in text
    assert len(re.findall(r"writer process started", text)) == 2
    check_complete(tmp_path / "etl.db")


def test_second_run_while_the_first_is_alive_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "etl.db"
    first = start(db)
    try:
        wait_for(db, first, 1)
        second = start(db)
        out, _ = second.communicate(timeout=120)
        assert second.returncode == 2 and "already running" in out, out
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
    assert "(resumed)" in finish(db)
    check_complete(db)


def test_fetch_process_killed_mid_run_is_replaced(tmp_path: Path) -> None:
    proc, out, text = kill_child_mid_run(tmp_path, "fetch")
    assert proc.returncode == 0, out + text
    assert "the fetch process died" in text
    check_complete(tmp_path / "etl.db")


def test_sigterm_to_the_whole_process_group_stops_gracefully(tmp_path: Path) -> None:
    """What systemd does by default (KillMode=control-group): every process gets SIGTERM at once."""
    db = tmp_path / "etl.db"
    proc = start(db)
    wait_for(db, proc, 500)
    os.killpg(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert table(f"sqlite:///{db}", "SELECT status FROM runs")[0]["status"] == "interrupted"
    assert "(resumed)" in finish(db)
    check_complete(db)


def test_sigkill_with_a_spilled_frontier_then_resume(tmp_path: Path) -> None:
    db = tmp_path / "etl.db"
    proc = start(db, "--set", "run.frontier_memory=20")
    wait_for(db, proc, 1500)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    resume = start(db, "--set", "run.frontier_memory=20")
    out, _ = resume.communicate(timeout=300)
    assert resume.returncode == 0 and "(resumed)" in out, out
    check_complete(db)


def test_a_source_that_is_down_fails_the_run_and_the_next_run_starts_over(tmp_path: Path) -> None:
    """Nothing fetched at all is not a partial success: exit 3, status failed, and since no page is left
    pending, the next run starts afresh instead of resuming an empty run."""
    import socket

    from tests.test_config import MINIMAL  # the smallest valid crawl config, pointed at a dead port

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "down.toml"
    config.write_text(MINIMAL.replace("http://demo.test/{city}/list/", f"http://127.0.0.1:{port}/list/")
                      + "\n[politeness]\nretries = 1\n")
    db = f"sqlite:///{tmp_path / 'etl.db'}"
    for _ in range(2):
        result = subprocess.run([sys.executable, "-m", "etl.cli", "run", str(config), "--db", db, "--quiet"],
                                cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert result.returncode == 3, result.stdout + result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "every page failed" in errors[0], result.stderr
    runs = table(db, "SELECT id, status, message FROM runs ORDER BY id")
    assert [r["status"] for r in runs] == ["failed", "failed"]  # two runs: the second did not resume the first
    assert "every page failed" in runs[0]["message"]


def test_a_failed_run_with_pages_left_is_resumed(tmp_path: Path) -> None:
    """A run that failed (database away too long, writer dying) keeps its pending pages: the next run
    continues it, as exit code 3's "resumable" promises."""
    import sqlalchemy

    db = tmp_path / "etl.db"
    proc = start(db)
    wait_for(db, proc, 500)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    engine = sqlalchemy.create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:  # end it the way a RunFailed does
        conn.execute(sqlalchemy.text("UPDATE runs SET status = 'failed', message = 'database writes failed: x'"))
    engine.dispose()
    assert count(db, "SELECT count(*) FROM frontier WHERE state = 'pending'") > 0
    assert "(resumed)" in finish(db)
    check_complete(db)


def test_sigterm_with_a_spilled_frontier_still_stops(tmp_path: Path) -> None:
    """Once the frontier spilled, the loop waited for a read-back a stopping run never does (issue 12, 7)."""
    db = tmp_path / "etl.db"
    proc = start(db, "--set", "run.frontier_memory=20")
    wait_for(db, proc, 800)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=90)
    assert proc.returncode == 130, out
    assert "(resumed)" in finish(db)
    check_complete(db)


def test_max_pages_with_a_spilled_frontier_ends(tmp_path: Path) -> None:
    db = tmp_path / "etl.db"
    proc = start(db, "--set", "run.frontier_memory=20", "--set", "run.max_pages=300")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode in (0, 1), out
    assert count(db, "SELECT count(*) FROM frontier WHERE state != 'pending'") == 300


def test_children_of_a_killed_coordinator_exit_quietly(tmp_path: Path) -> None:
    """kill -9 of the coordinator alone: its children must neither hang nor print tracebacks (issue 11, 17)."""
    db = tmp_path / "etl.db"
    proc = start(db, stderr=subprocess.PIPE, quiet=False)
    wait_for(db, proc, 300)
    os.kill(proc.pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the children notice and leave (the writer commits first)
        alive = subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True, text=True).stdout.split()
        if not alive:
            break
        time.sleep(0.5)
    assert not alive, "children of the killed coordinator are still running"
    assert "Traceback" not in err and "ConnectionResetError" not in err, err[-2000:]


def test_runs_page_counts_match_the_frontier_after_a_kill(tmp_path: Path) -> None:
    """11.18: runs.pages_ok / pages_failed are committed with the frontier marks: after kill -9 they equal
    the frontier's counts at once (they lagged until the run finished), and a resume starts from them."""
    db = tmp_path / "etl.db"
    proc = start(db)
    wait_for(db, proc, 1500)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    done = count(db, "SELECT count(*) FROM frontier WHERE state = 'done'")
    failed = count(db, "SELECT count(*) FROM frontier WHERE state = 'failed'")
    assert done > 0
    assert count(db, "SELECT pages_ok FROM runs") == done
    assert count(db, "SELECT pages_failed FROM runs") == failed
    finish(db)
    assert count(db, "SELECT pages_ok FROM runs") == count(db, "SELECT count(*) FROM frontier WHERE state = 'done'")
    check_complete(db)
