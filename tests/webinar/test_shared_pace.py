"""One pace for the whole key: relays in separate OS processes share it through the store.

Each worker (``pace_worker.py``) is a separate process with its own client and its own
store connection, calling the fake Webinar server, which enforces the platform's
2 requests/s per token and answers 429 with ``Retry-After`` above it.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from pathlib import Path

import pytest

from webinar_proxy.store import open_store
from webinar_proxy.testing.fake_webinar import FakeWebinarServer, running_fake_webinar
from webinar_proxy.webinar.pacing import SharedPace, background_calls, key_hash

WORKER = Path(__file__).with_name("pace_worker.py")
TOKEN = "shared-pace-token-0123456789"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state.db"
    return request.getfixturevalue("pg_url")


async def _run_workers(store_url: str, fake: FakeWebinarServer, count: int, rate: float,
                       calls: int) -> None:
    processes = []
    try:
        for _ in range(count):
            process = await asyncio.create_subprocess_exec(
                sys.executable, str(WORKER), store_url, fake.api_url, TOKEN, str(rate), str(calls),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            )
            processes.append(process)
        for process in processes:
            assert process.stdout is not None
            async with asyncio.timeout(30):
                assert (await process.stdout.readline()).strip() == b"ready"
        for process in processes:
            assert process.stdin is not None
            process.stdin.write(b"go\n")
            await process.stdin.drain()
        async with asyncio.timeout(120):
            for process in processes:
                assert process.stdout is not None
                assert (await process.stdout.readline()).strip() == b"done"
                assert await process.wait() == 0
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
                await process.wait()


async def test_two_processes_share_one_pace_and_never_meet_the_rate_limit(store_url) -> None:
    rate = 1.8
    async with running_fake_webinar(token=TOKEN, rate_limit=2) as fake:
        await _run_workers(store_url, fake, 2, rate, 6)
        statuses = [r.status for r in fake.requests]
        arrivals = sorted(r.at for r in fake.requests)
    assert statuses == [200] * 12
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    # Slots are 1/rate apart; arrival times carry the network's and the loop's jitter.
    assert min(gaps) > 0.8 / rate, gaps


async def test_a_retry_after_seen_by_one_process_pauses_the_other(store_url) -> None:
    async with running_fake_webinar(token=TOKEN, rate_limit=2) as fake:
        fake.add_fault("429", times=1, retry_after=2.0)
        await _run_workers(store_url, fake, 2, 1.8, 3)
        requests = list(fake.requests)
    refused = [r for r in requests if r.status == 429]
    assert len(refused) == 1
    answered = [r for r in requests if r.status == 200]
    assert len(answered) == 6
    # Nobody called between the 429 and the end of its Retry-After, bar a call whose
    # slot was already being waited for when the 429 came (at most one per process).
    early = [r for r in answered if refused[0].at < r.at < refused[0].at + 1.9]
    assert len(early) <= 1, [r.at - refused[0].at for r in answered]


async def test_background_calls_yield_to_queued_foreground_calls(tmp_path) -> None:
    store = await open_store(f"sqlite:///{tmp_path}/pace.db")
    key = key_hash(TOKEN)
    try:
        pace = SharedPace(store, TOKEN, 10.0)  # a slot every 0.1 s
        # Five calls of mails queue up: slots at +0, +0.1, … +0.4 s (epoch seconds).
        first = await store.reserve_api_slot(key, 0.1, 60.0)
        assert first is not None
        zero = time.time() + first
        for _ in range(4):
            assert await store.reserve_api_slot(key, 0.1, 60.0) is not None

        async def background() -> None:
            with background_calls():
                await pace.acquire(deadline=None)

        task = asyncio.create_task(background())
        # Its first ask has been answered "not yet" (its next ask is 0.1–0.2 s later).
        await asyncio.sleep(0.03)
        assert not task.done()
        # A mail's call arriving now goes before the waiting background call: the
        # sixth slot, +0.5 s, not the seventh.
        wait = await store.reserve_api_slot(key, 0.1, 60.0)
        assert wait is not None
        slot = time.time() + wait - zero
        assert 0.45 < slot < 0.55, slot
        await task
    finally:
        await store.close()
