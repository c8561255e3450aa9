"""A database that comes up after the job starts (a container next to it still initialising): with
`[database] connect_wait` the run start retries the refused connection instead of exiting 2 at once."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from sqlalchemy.engine import make_url

from etl import cli
from tests.conftest import ROOT
from tests.test_e2e_listings import table


def _relay_after(delay: float, target: tuple[str, int]) -> tuple[int, threading.Event]:
    """A TCP port that refuses connections for `delay` seconds, then relays to `target`."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens: connections are refused until the relay starts
    stop = threading.Event()

    def pump(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def serve() -> None:
        time.sleep(delay)
        server = socket.create_server(("127.0.0.1", port))
        server.settimeout(0.5)
        while not stop.is_set():
            try:
                client, _ = server.accept()
            except TimeoutError:
                continue
            upstream = socket.create_connection(target)
            threading.Thread(target=pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=pump, args=(upstream, client), daemon=True).start()
        server.close()

    threading.Thread(target=serve, daemon=True).start()
    return port, stop


@pytest.mark.postgres
def test_a_database_that_comes_up_late_is_waited_for(pg_url: str, capsys) -> None:
    url = make_url(pg_url)
    port, stop = _relay_after(3.0, (url.host, url.port or 5432))
    late = url.set(port=port).render_as_string(hide_password=False)
    try:
        code = cli.main(["run", str(ROOT / "config/demo.toml"), "--db", late, "--quiet",
                         "--set", "source.demo.listings=100", "--set", "database.connect_wait=30"])
    finally:
        stop.set()
    captured = capsys.readouterr()
    assert code == 0, captured.out + captured.err
    assert table(pg_url, "SELECT count(*) AS n FROM listings")[0]["n"] == 100


def test_without_connect_wait_a_refused_connection_is_exit_2_at_once(capsys) -> None:
    started = time.monotonic()
    code = cli.main(["run", str(ROOT / "config/demo.toml"), "--db", "postgresql://nobody@127.0.0.1:1/x", "--quiet"])
    assert code == 2 and "cannot connect" in capsys.readouterr().err
    assert time.monotonic() - started < 20
