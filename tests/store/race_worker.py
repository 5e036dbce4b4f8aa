"""A relay stand-in for the cross-process lock race (run as a script, not a test module).

Usage: ``python race_worker.py STORE_URL ORGANIZER UID NAME``.  Opens the store,
prints ``ready``, waits for a line on stdin (the start signal), then does what the
lifecycle does for a new invitation: lock the key, look, create if absent,
unlock.  Prints ``created`` or ``found``.
"""

from __future__ import annotations

import asyncio
import sys

from webinar_proxy.store import ConferenceRecord, open_store

PLATFORM_CALL_SECONDS = 0.3


async def main(url: str, organizer: str, uid: str, name: str) -> None:
    store = await open_store(url, pool_size=2, lock_pool_size=2)
    try:
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        async with store.key_lock(organizer, uid):
            existing = await store.get(organizer, uid)
            if existing is None:
                # Stands in for the platform's create call between look and write (not a
                # wait for anything): without the lock, every racer would create.
                await asyncio.sleep(PLATFORM_CALL_SECONDS)
                await store.put(ConferenceRecord(organizer, uid, summary=name))
                print("created", flush=True)
            else:
                print("found", flush=True)
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
