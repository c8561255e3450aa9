"""Shared memory for fetched pages, so that a page's bytes cross process boundaries once.

Without it a page travels fetch process → coordinator → parse process through two pipes: the coordinator
reads, unpickles and writes every byte of every page only to forward it. With it the fetch process writes
the pickled page into a fixed-size slot of one shared buffer, the coordinator forwards the slot's number,
and the parse process unpickles straight from the buffer.

Ownership is simple because each slot has one owner at a time: the fetch process takes free slots from
its own list; a slot it filled belongs to the coordinator until the page's result is back (or the page is
dropped), and the coordinator then hands the number back with its next batch of requests. The bytes stay
in the slot while the page is in flight, so a page whose parse process died is parsed again from it.
A page larger than a slot, or one fetched while every slot is taken, takes the pipes as before.

The buffer is an anonymous memfd passed to child processes as a file descriptor (the way multiprocessing
passes pipes), not a named /dev/shm segment: a run killed with kill -9 leaves nothing behind.
"""

from __future__ import annotations

import logging
import mmap
import os
import pickle
from collections import deque
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("etl.arena")

SLOT_BYTES = 256 * 2**10  # most HTML pages pickle to less; larger ones take the pipes


@dataclass(frozen=True, slots=True)
class Slot:
    """Where a pickled page lies in the arena."""

    index: int
    length: int


class Arena:
    """`slots` slots of `slot_bytes` each, in one shared mapping. Pickles as a file descriptor, so a child
    process started by any multiprocessing start method maps the same memory."""

    def __init__(self, fd: int, slots: int, slot_bytes: int) -> None:
        self.fd, self.slots, self.slot_bytes = fd, slots, slot_bytes
        self.map = mmap.mmap(fd, slots * slot_bytes)
        self.view = memoryview(self.map)

    @classmethod
    def create(cls, slots: int, slot_bytes: int = SLOT_BYTES) -> Arena | None:
        """A new arena, or None where the system has no memfd (the pages then take the pipes)."""
        if slots <= 0 or not hasattr(os, "memfd_create"):
            return None
        try:
            fd = os.memfd_create("etl-pages", os.MFD_CLOEXEC)
            os.ftruncate(fd, slots * slot_bytes)
            return cls(fd, slots, slot_bytes)
        except OSError as exc:
            log.info("no shared page arena (%s); pages travel through the pipes", exc)
            return None

    def __reduce__(self):
        from multiprocessing.reduction import DupFd

        return _attach, (DupFd(self.fd), self.slots, self.slot_bytes)

    def put(self, free: deque[int], data: bytes) -> Slot | None:
        """Copy `data` into a slot taken from `free` (the fetch process's list; deque.pop is atomic, so
        fetch threads need no lock). None if it does not fit or no slot is free."""
        if len(data) > self.slot_bytes:
            return None
        try:
            index = free.pop()
        except IndexError:
            return None
        start = index * self.slot_bytes
        self.view[start:start + len(data)] = data
        return Slot(index, len(data))

    def load(self, slot: Slot) -> Any:
        start = slot.index * self.slot_bytes
        return pickle.loads(self.view[start:start + slot.length])

    def close(self) -> None:
        self.view.release()
        self.map.close()
        os.close(self.fd)


def _attach(dup, slots: int, slot_bytes: int) -> Arena:
    return Arena(dup.detach(), slots, slot_bytes)
