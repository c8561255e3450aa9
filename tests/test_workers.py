"""Several machines share one crawl (etl worker): three worker hosts in network namespaces, PostgreSQL and
the demo site over a bridge (tests/netns.py). Each test ends with exactly the generator's truth, every
listing written once (a trigger counts the writes), and the run closed by its last worker.

Needs root and `ip netns`: skipped with the reason where missing, a failure with ETL_REQUIRE_NETNS=1 (CI).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from etl.db import make_engine
from etl.demo.server import DemoServer
from etl.demo.site import SiteOptions
from tests import netns
from tests.test_e2e_listings import assert_matches_truth, table

pytestmark = pytest.mark.postgres
ROOT = Path(__file__).resolve().parent.parent
LISTINGS = 1500
WORKER_WAIT = 240  # seconds a worker may take, at most
DELAY, JITTER = 0.2, 0.08  # [politeness] delay of the spacing test, and what arrival times may blur of it


@pytest.fixture(scope="module")
def hosts():
    why = netns.unavailable()
    if why:
        if os.environ.get("ETL_REQUIRE_NETNS") == "1":
            pytest.fail(f"network namespaces required (ETL_REQUIRE_NETNS=1): {why}")
        pytest.skip(why)
    with netns.Hosts(3) as h:
        yield h


@pytest.fixture
def site(hosts, tmp_path, monkeypatch):
    """The demo site on the bridge, logging each request's arrival (tests/request_log.py)."""
    log = tmp_path / "requests.log"
    monkeypatch.setenv("ETL_TEST_REQUEST_LOG", str(log))
    server = DemoServer(SiteOptions(listings=LISTINGS, encoding="gbk"), host=netns.GATEWAY, port=0,
                        extra_apps=("tests.request_log:app",))
    base = server.start()
    yield base, log
    server.stop()


def prepare(pg_url: str) -> str:
    """Migrate, count every write of a listing row (insert or update), and return the URL the hosts use."""
    subprocess.run([sys.executable, "-m", "etl.cli", "db", "upgrade", "--db", pg_url], check=True,
                   capture_output=True, cwd=ROOT)
    engine = make_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE etl_test_writes (listing_id text NOT NULL)"))
        conn.execute(text("CREATE FUNCTION etl_test_count() RETURNS trigger AS $$ BEGIN "
                          "INSERT INTO etl_test_writes VALUES (NEW.listing_id); RETURN NEW; END $$ LANGUAGE plpgsql"))
        conn.execute(text("CREATE TRIGGER etl_test_count AFTER INSERT OR UPDATE ON listings "
                          "FOR EACH ROW EXECUTE FUNCTION etl_test_count()"))
    engine.dispose()
    return pg_url.replace("127.0.0.1", netns.GATEWAY).replace("localhost", netns.GATEWAY)


def write_config(tmp_path: Path, base: str, listings: int = LISTINGS) -> Path:
    lines = [line for line in (ROOT / "config/demo.toml").read_text(encoding="utf-8").splitlines()
             if not line.startswith("demo = ")]
    text_ = "\n".join(lines).replace("[source]\n", f'[source]\nbase_url = "{base}"\n', 1)
    path = tmp_path / "shared.toml"
    path.write_text(text_, encoding="utf-8")
    return path


class Worker:
    def __init__(self, hosts: netns.Hosts, i: int, config: Path, db_url: str, tmp_path: Path, *sets: str,
                 env: dict[str, str] | None = None) -> None:
        self.i = i
        self.out = tmp_path / f"worker{i}-{time.monotonic_ns()}.log"
        argv = [sys.executable, "-m", "etl.cli", "worker", str(config), "--db", db_url, "--quiet",
                "--set", "run.lease=5", "--set", "run.fetch_threads=8", "--set", "run.parse_processes=1",
                *[a for s in sets for a in ("--set", s)]]
        self.proc = subprocess.Popen(hosts.command(i, argv), cwd=ROOT, stdout=self.out.open("w"),
                                     stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, **(env or {})})

    def signal(self, sig: int) -> None:
        os.killpg(self.proc.pid, sig)

    def wait(self) -> int:
        try:
            return self.proc.wait(WORKER_WAIT)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            raise AssertionError(f"worker {self.i} still running after {WORKER_WAIT} s:\n{self.log()[-3000:]}") from None

    def log(self) -> str:
        return self.out.read_text(errors="replace")


def start(hosts, config, db_url, tmp_path, *sets: str, first_env: dict[str, str] | None = None) -> list[Worker]:
    return [Worker(hosts, i, config, db_url, tmp_path, *sets, env=first_env if i == 1 else None) for i in (1, 2, 3)]


def pages_done(pg_url: str, worker: Worker | None = None) -> int:
    sql = "SELECT coalesce(sum(pages_ok), 0) AS n FROM workers"
    if worker is not None:
        sql += f" WHERE host = 'w{worker.i}'"
    return int(table(pg_url, sql)[0]["n"])


def wait_for(pg_url: str, pages: int, worker: Worker | None = None) -> None:
    deadline = time.monotonic() + WORKER_WAIT
    while pages_done(pg_url, worker) < pages:
        assert time.monotonic() < deadline, "the workers made no progress"
        time.sleep(0.2)


def assert_exact(pg_url: str, listings: int = LISTINGS) -> None:
    """The truth, every listing written exactly once, the run closed as succeeded with the pages added up."""
    failures = table(pg_url, "SELECT url, stage, error FROM failures")
    assert not failures, f"{len(failures)} failures, e.g. {failures[:3]}"
    assert_matches_truth(pg_url, listings=listings)
    twice = table(pg_url, "SELECT listing_id, count(*) AS n FROM etl_test_writes GROUP BY listing_id HAVING count(*) > 1")
    assert not twice, f"{len(twice)} listings written more than once, e.g. {twice[:3]}"
    assert table(pg_url, "SELECT count(*) AS n FROM etl_test_writes")[0]["n"] == listings
    run = table(pg_url, "SELECT * FROM runs")
    assert [r["status"] for r in run] == ["succeeded"], run
    assert run[0]["rows_written"] == listings


def test_three_hosts_crawl_exactly_once_and_share_the_work(hosts, site, pg_url, tmp_path):
    base, log = site
    db_url = prepare(pg_url)
    workers = start(hosts, write_config(tmp_path, base), db_url, tmp_path)
    codes = [w.wait() for w in workers]
    assert codes == [0, 0, 0], "\n".join(w.log()[-2000:] for w in workers)
    assert_exact(pg_url)
    shares = table(pg_url, "SELECT host, pages_ok, rows_written, status FROM workers ORDER BY host")
    assert [s["host"] for s in shares] == ["w1", "w2", "w3"]  # three machines, by their own hostnames
    assert all(s["status"] == "finished" and s["pages_ok"] > 0 for s in shares), shares
    run = table(pg_url, "SELECT pages_ok, rows_written FROM runs")[0]
    assert sum(s["pages_ok"] for s in shares) == run["pages_ok"]  # added up, not overwritten
    assert sum(s["rows_written"] for s in shares) == run["rows_written"] == LISTINGS
    closers = [w for w in workers if "closed the run: succeeded" in w.log()]
    assert len(closers) == 1, [w.log()[-500:] for w in workers]
    paths = [line.split(" ", 1)[1] for line in log.read_text().splitlines()]
    assert paths.count("/robots.txt") == 1, "robots.txt is fetched once per run, by one worker"
    # every page fetched; again only if its worker was starved past its lease (the fencing then drops one copy)
    assert len(set(paths)) - 1 == run["pages_ok"] and len(paths) - 1 <= run["pages_ok"] * 1.02


def test_kill_9_of_one_worker_mid_batch(hosts, site, pg_url, tmp_path):
    base, _ = site
    db_url = prepare(pg_url)
    # its writer sleeps inside each transaction, so the kill lands in an open batch (rows written, not committed)
    workers = start(hosts, write_config(tmp_path, base), db_url, tmp_path, first_env={"ETL_TEST_SLOW_BATCH": "0.5"})
    wait_for(pg_url, 100, workers[0])
    workers[0].signal(signal.SIGKILL)  # the whole host's worker: coordinator, fetch, parse and writer
    assert [w.wait() for w in workers[1:]] == [0, 0]
    assert_exact(pg_url)


def test_a_worker_stopped_past_its_lease_cannot_write_late(hosts, site, pg_url, tmp_path):
    base, _ = site
    db_url = prepare(pg_url)
    workers = start(hosts, write_config(tmp_path, base), db_url, tmp_path)
    wait_for(pg_url, 100, workers[0])
    workers[0].signal(signal.SIGSTOP)  # with pages in flight, as a long GC pause or a frozen VM
    deadline = time.monotonic() + 60
    while table(pg_url, "SELECT count(*) AS n FROM frontier WHERE state = 'pending' AND lease_owner LIKE 'w1:%'")[0]["n"]:
        assert time.monotonic() < deadline, "the stopped worker's pages were never taken over"
        time.sleep(0.5)  # past its lease, until the others have taken every page it held
    workers[0].signal(signal.SIGCONT)
    assert [w.wait() for w in workers] == [0, 0, 0], workers[0].log()[-2000:]
    assert "taken over by another worker" in workers[0].log()  # its late commit was refused
    assert_exact(pg_url)


def test_a_cut_link_and_back(hosts, site, pg_url, tmp_path):
    base, _ = site
    db_url = prepare(pg_url)
    workers = start(hosts, write_config(tmp_path, base), db_url, tmp_path)
    wait_for(pg_url, 100, workers[0])
    hosts.cut(1)
    try:
        time.sleep(5 + 4)
    finally:
        hosts.restore(1)
    assert [w.wait() for w in workers] == [0, 0, 0], "\n".join(w.log()[-1500:] for w in workers)
    assert_exact(pg_url)


def test_postgresql_restarted_mid_run(hosts, site, pg_url, tmp_path):
    base, _ = site
    db_url = prepare(pg_url)
    workers = start(hosts, write_config(tmp_path, base), db_url, tmp_path)
    wait_for(pg_url, 150)
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"], check=True,
                   capture_output=True)
    codes = [w.wait() for w in workers]
    assert_exact(pg_url)
    assert codes == [0, 0, 0], "\n".join(w.log()[-1500:] for w in workers)


def test_politeness_holds_across_workers(hosts, pg_url, tmp_path, monkeypatch):
    """delay between request starts to the host, across all three workers, as the server saw them arrive."""
    log = tmp_path / "requests.log"
    monkeypatch.setenv("ETL_TEST_REQUEST_LOG", str(log))
    with DemoServer(SiteOptions(listings=120, encoding="gbk"), host=netns.GATEWAY, port=0,
                    extra_apps=("tests.request_log:app",)) as server:
        db_url = prepare(pg_url)
        workers = start(hosts, write_config(tmp_path, server.base_url, 120), db_url, tmp_path,
                        f"politeness.delay={DELAY}")
        assert [w.wait() for w in workers] == [0, 0, 0], "\n".join(w.log()[-1500:] for w in workers)
    assert_exact(pg_url, listings=120)
    arrivals = sorted(float(line.split(" ", 1)[0]) for line in log.read_text().splitlines())
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    assert len(arrivals) > 100
    # As the server saw them arrive: each request's start (spaced by `delay` exactly, by the database's
    # clock) plus what the network and a busy machine add to it, which differs from one request to the next
    assert min(gaps) >= DELAY - JITTER, f"two requests {min(gaps) * 1000:.1f} ms apart (delay {DELAY * 1000:.0f} ms)"
    assert sorted(gaps)[len(gaps) // 2] >= DELAY - 0.005  # the typical gap is the delay, not less
    hosts_used = table(pg_url, "SELECT count(*) AS n FROM workers WHERE pages_ok > 0")[0]["n"]
    assert hosts_used >= 2  # the work was shared, not done by one worker while the others waited


def test_a_worker_leaves_on_sigterm_and_gives_its_pages_back(hosts, site, pg_url, tmp_path):
    base, _ = site
    db_url = prepare(pg_url)
    workers = start(hosts, write_config(tmp_path, base), db_url, tmp_path)
    wait_for(pg_url, 100, workers[0])
    workers[0].signal(signal.SIGTERM)  # a pod scaled down, a machine going into maintenance
    codes = [w.wait() for w in workers]
    assert_exact(pg_url)
    assert codes[0] == 130 and codes[1:] == [0, 0], "\n".join(w.log()[-1500:] for w in workers)
    left = table(pg_url, "SELECT status FROM workers WHERE host = 'w1'")
    assert left == [{"status": "interrupted"}]
