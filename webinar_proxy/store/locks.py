"""Per-key locks of the SQLite backend's ``key_lock``: in-process, and across processes.

One ``asyncio.Lock`` per key, created on first use and dropped when nobody holds
or waits for it, so the table stays as small as the set of keys in use.
``asyncio.Lock`` hands the lock to waiters in arrival order.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import hashlib
import os
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager


class KeyLocks:
    def __init__(self) -> None:
        # key -> (lock, number of tasks holding or waiting for it)
        self._entries: dict[Hashable, tuple[asyncio.Lock, int]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def waiting(self, key: Hashable) -> int:
        """Tasks waiting for ``key`` (not counting the holder)."""
        lock, users = self._entries.get(key, (None, 0))
        return users - 1 if lock is not None and lock.locked() else users

    @asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        lock, users = self._entries.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._entries[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._entries[key]
            if users == 1:
                del self._entries[key]
            else:
                self._entries[key] = (lock, users - 1)


#: Byte ranges in the lock file: keys are spread over this many stripes.
STRIPES = 1 << 20
_POLL_FIRST, _POLL_MAX = 0.002, 0.05


def stripe(key: str) -> int:
    """A key's byte offset in the lock file; the same in every process (not ``hash()``)."""
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest(),
                          "big") % STRIPES


class FileKeyLocks:
    """Per-key locks that also hold across processes (several relay workers, the CLI).

    Each key maps to a one-byte POSIX record lock in ``path``.  Record locks belong
    to the process, not the task, so tasks of one process first queue on an
    in-process lock of the same stripe.  The record lock is taken without blocking
    and retried with a short backoff, so the event loop never waits on it.  A
    process that dies drops its locks with it (the kernel releases them).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._local = KeyLocks()
        self._fd: int | None = None

    def waiting(self, key: str) -> int:
        return self._local.waiting(stripe(key))

    def _file(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        return self._fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        offset = stripe(key)
        async with self._local.hold(offset):
            fd = self._file()
            delay = _POLL_FIRST
            while True:
                try:
                    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EACCES, errno.EAGAIN):
                        raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, _POLL_MAX)
            try:
                yield
            finally:
                fcntl.lockf(fd, fcntl.LOCK_UN, 1, offset)
