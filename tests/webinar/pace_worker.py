"""One relay's worth of API calls on a shared pace (run as a script, not a test module).

Usage: ``python pace_worker.py STORE_URL API_URL TOKEN RATE CALLS``.  Opens the store,
builds the client the way ``wiring`` does (a ``SharedPace`` on the store), prints
``ready``, waits for a line on stdin (the start signal), makes CALLS uncached calls
(``GET /timezones``) and prints ``done``.  Also used by ``bench/bench_pace.py``.
"""

from __future__ import annotations

import asyncio
import sys

from webinar_proxy.store import open_store
from webinar_proxy.webinar import WebinarClient
from webinar_proxy.webinar.pacing import SharedPace


async def main(url: str, api_url: str, token: str, rate: str, calls: str) -> None:
    store = await open_store(url, pool_size=2, lock_pool_size=2)
    try:
        pace = SharedPace(store, token, float(rate))
        async with WebinarClient(api_url, token, rate_limit=float(rate), pace=pace,
                                 call_deadline=120.0) as client:
            print("ready", flush=True)
            await asyncio.to_thread(sys.stdin.readline)
            for _ in range(int(calls)):
                await client.ping()
            print("done", flush=True)
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
