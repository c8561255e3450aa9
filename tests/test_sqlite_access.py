"""A SQLite file another process holds locked, or one that cannot be written: one line and exit 2 at once,
not a traceback after the 60 s busy timeout (issue 12 item 19)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

_HOLD = ("import sqlite3, sys, time\n"
         "con = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
         "con.execute('BEGIN EXCLUSIVE')\n"
         "con.execute('CREATE TABLE IF NOT EXISTS _held(x)')\n"
         "print('held', flush=True)\n"
         "time.sleep(120)\n")


def _run(db: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "etl.cli", "run", str(ROOT / "config/demo.toml"), "--db",
                           f"sqlite:///{db}", "--quiet", "--set", "source.demo.listings=100"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def _migrated(tmp_path: Path) -> Path:
    db = tmp_path / "etl.db"
    subprocess.run([sys.executable, "-m", "etl.cli", "db", "upgrade", "--db", f"sqlite:///{db}"], cwd=ROOT,
                   check=True, capture_output=True, timeout=60)
    return db


def test_a_database_locked_by_another_process_is_one_line(tmp_path: Path) -> None:
    db = _migrated(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        result = _run(db)
        waited = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait(timeout=10)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "locked by another process" in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert waited < 55, waited  # answered before the 60 s busy timeout would have run out


def test_a_read_only_database_is_one_line(tmp_path: Path) -> None:
    db = _migrated(tmp_path)
    if not shutil.which("chattr") or subprocess.run(["chattr", "+i", str(db)], capture_output=True).returncode:
        pytest.skip("needs root and chattr on this file system to make a file read-only for root")
    try:
        result = _run(db)
    finally:
        subprocess.run(["chattr", "-i", str(db)], check=True)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "read-only" in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
