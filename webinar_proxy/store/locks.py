"""In-process per-key locks (the SQLite backend's ``key_lock``).

One ``asyncio.Lock`` per key, created on first use and dropped when nobody holds
or waits for it, so the table stays as small as the set of keys in use.
``asyncio.Lock`` hands the lock to waiters in arrival order.
"""

from __future__ import annotations

import asyncio
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
