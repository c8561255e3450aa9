"""Named locks that live as long as the process holding them: one job runs once, migrations one at a time.

Why a lock and not a row: two `etl run`s started in the same second both read "no run is open" before
either writes one; a `running` row with a pid only tells a process on the same host whether its owner is
alive (every container has its own hostname). A lock held by the database session (PostgreSQL advisory
lock, MySQL GET_LOCK) or by the kernel (flock, for SQLite's single-machine file) is released the moment its
owner dies, kill -9 included, so "can I take it?" is exactly "is anybody else working on this?".

Each dialect says which kind it uses (`Dialect.named_lock`); this module holds the generic part.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

POLL = 0.2  # seconds between tries while waiting for a lock


class LockTimeout(Exception):
    """The lock stayed taken for the whole wait."""


def lock_key(name: str) -> int:
    """A stable signed 64-bit number for a lock name (PostgreSQL advisory locks take a bigint)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


class NamedLock:
    """Take with `acquire(wait)`; free with `release()` (idempotent). Also a context manager that waits."""

    def __init__(self, name: str, wait: float = 0.0) -> None:
        self.name = name
        self.wait = wait
        self.held = False

    def try_acquire(self) -> bool:
        raise NotImplementedError

    def _release(self) -> None:
        raise NotImplementedError

    def acquire(self, wait: float = 0.0) -> bool:
        """True once held; False if somebody else still held it after `wait` seconds."""
        deadline = time.monotonic() + wait
        while True:
            if self.try_acquire():
                self.held = True
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(POLL, max(0.0, deadline - time.monotonic())))

    def alive(self) -> bool:
        """Is it still held? (A session lock can be lost with its session.)"""
        return self.held

    def release(self) -> None:
        """Free the lock if held, and whatever it used to try (a descriptor, a connection)."""
        self.held = False
        try:
            self._release()
        except Exception:  # noqa: BLE001 - the session is gone: so is the lock
            pass

    def __enter__(self) -> NamedLock:
        if not self.acquire(self.wait):
            raise LockTimeout(f"{self.name} is still held by another process after {self.wait:.0f} s")
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class FileLock(NamedLock):
    """flock(2) on a small file, for databases that are one file on one machine (SQLite). The file lives in
    the temp directory, named by a hash of the database's real path and the lock's name, so nothing is left
    beside the user's database and a read-only database directory does not matter."""

    def __init__(self, database: str, name: str, wait: float = 0.0) -> None:
        super().__init__(name, wait)
        real = os.path.realpath(database) if database not in ("", ":memory:") else f"memory:{os.getpid()}"
        digest = hashlib.blake2b(f"{real}\0{name}".encode(), digest_size=12).hexdigest()
        self.path = _lock_dir() / f"{digest}.lock"
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        if self._fd is None:
            self._fd = _open_lock_file(self.path)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def _lock_dir() -> Path:
    path = Path(tempfile.gettempdir()) / "etl-locks"
    path.mkdir(exist_ok=True)
    try:  # shared by every user of the machine, like /tmp itself
        os.chmod(path, 0o1777)
    except PermissionError:
        pass
    return path


def _open_lock_file(path: Path) -> int:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            os.fchmod(fd, 0o666)
        except PermissionError:
            pass
        return fd
    except PermissionError:  # created by another user: a read-only descriptor can hold a flock too
        return os.open(path, os.O_RDONLY)


class SessionLock(NamedLock):
    """A lock the database server keeps for one session (PostgreSQL advisory lock, MySQL GET_LOCK): held on a
    connection of its own, in autocommit, for as long as the lock is; the server frees it when the session
    ends, however the process ended."""

    def __init__(self, connect: Callable[[], Any], name: str, take: str, free: str, params: dict,
                 wait: float = 0.0) -> None:
        super().__init__(name, wait)
        self.connect, self.take, self.free, self.params = connect, take, free, params  # connect() → an Engine
        self._engine = None
        self._conn = None
        self._taken = False

    def try_acquire(self) -> bool:
        from sqlalchemy import text

        if self._conn is None:
            self._engine = self.connect()
            self._conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        self._taken = bool(self._conn.execute(text(self.take), self.params).scalar())
        return self._taken

    def alive(self) -> bool:
        """Is the session holding the lock still there (a database restart ends it, and the lock with it)?"""
        from sqlalchemy import text

        try:
            return self._conn is not None and self._taken and self._conn.execute(text("SELECT 1")).scalar() == 1
        except Exception:  # noqa: BLE001 - whatever the driver raises, the session is gone
            return False

    def _release(self) -> None:
        from sqlalchemy import text

        try:
            if self._conn is not None:
                if self._taken:
                    self._conn.execute(text(self.free), self.params)
                self._conn.close()
        finally:
            if self._engine is not None:
                self._engine.dispose()
            self._conn = self._engine = None
            self._taken = False
