"""The per-key lock contract on both backends, and the cross-process race on PostgreSQL.

Nothing here sleeps to let things happen: tasks meet at events, and "B is now
waiting for the lock" is read from the store itself (``lock_waiters``: the
asyncio lock's queue on SQLite, ``pg_locks`` on PostgreSQL) in a bounded loop.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from webinar_proxy.store import ConferenceRecord, open_store
from webinar_proxy.store.locks import KeyLocks

ORGANIZER = "boss@example.org"
UID = "race-uid@example.org"
#: Upper bound for anything that should happen promptly; reaching it fails the test.
PROMPTLY = 20.0
WORKER = Path(__file__).with_name("race_worker.py")


async def wait_for_waiters(store, count: int, organizer: str = ORGANIZER, uid: str = UID) -> None:
    for _ in range(2000):
        if await store.lock_waiters(organizer, uid) == count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never saw {count} waiters on the lock")


async def create_once(store, start: asyncio.Event, name: str) -> bool:
    """The lifecycle's critical section: look, create if absent; True when this one created."""
    await start.wait()
    async with store.key_lock(ORGANIZER, UID):
        existing = await store.get(ORGANIZER, UID)
        await store.ping()  # a round trip between look and write, where a racer would slip in
        if existing is None:
            await store.put(ConferenceRecord(ORGANIZER, UID, summary=name))
            return True
        return False


async def test_two_tasks_racing_on_one_key_create_once(store):
    start = asyncio.Event()
    racers = [asyncio.create_task(create_once(store, start, name)) for name in ("t1", "t2")]
    start.set()
    async with asyncio.timeout(PROMPTLY):
        created = await asyncio.gather(*racers)
    assert sorted(created) == [False, True]
    winner = "t1" if created[0] else "t2"
    assert (await store.get(ORGANIZER, UID)).summary == winner


async def test_contending_tasks_all_queue_then_one_creates(store):
    start = asyncio.Event()
    async with store.key_lock(ORGANIZER, UID):
        racers = [asyncio.create_task(create_once(store, start, f"t{n}")) for n in range(4)]
        start.set()
        await wait_for_waiters(store, 4)
    async with asyncio.timeout(PROMPTLY):
        created = await asyncio.gather(*racers)
    assert created.count(True) == 1
    assert len(await store.find_by_uid(UID)) == 1


async def test_waiters_proceed_one_at_a_time_in_arrival_order(store):
    entered: list[str] = []
    inside = 0
    most_inside = 0

    async def waiter(name: str) -> None:
        nonlocal inside, most_inside
        async with store.key_lock(ORGANIZER.upper(), UID):
            inside += 1
            most_inside = max(most_inside, inside)
            entered.append(name)
            for _ in range(3):
                await store.ping()
            inside -= 1

    async with store.key_lock(ORGANIZER, UID):
        first = asyncio.create_task(waiter("first"))
        await wait_for_waiters(store, 1)
        second = asyncio.create_task(waiter("second"))
        await wait_for_waiters(store, 2)
        assert entered == []
    async with asyncio.timeout(PROMPTLY):
        await asyncio.gather(first, second)
    assert entered == ["first", "second"]
    assert most_inside == 1
    assert await store.lock_waiters(ORGANIZER, UID) == 0


async def test_different_keys_never_wait_for_each_other(store):
    keys = [(ORGANIZER, f"uid-{n}") for n in range(5)] + [("other@example.org", UID)]
    release = asyncio.Event()
    holding = [asyncio.Event() for _ in keys]

    async def hold(index: int) -> None:
        organizer, uid = keys[index]
        async with store.key_lock(organizer, uid):
            holding[index].set()
            await release.wait()

    async with store.key_lock(ORGANIZER, UID):
        holders = [asyncio.create_task(hold(index)) for index in range(len(keys))]
        async with asyncio.timeout(PROMPTLY):
            for event in holding:
                await event.wait()
            # Every key is held at once and queries still get through.
            assert await store.get(ORGANIZER, UID) is None
        release.set()
        await asyncio.gather(*holders)


async def test_lock_is_released_when_the_block_raises(store):
    with pytest.raises(RuntimeError):
        async with store.key_lock(ORGANIZER, UID):
            raise RuntimeError("lifecycle failed")
    async with asyncio.timeout(PROMPTLY), store.key_lock(ORGANIZER, UID):
        pass


async def test_a_cancelled_holder_releases_the_lock(store):
    entered = asyncio.Event()

    async def holder() -> None:
        async with store.key_lock(ORGANIZER, UID):
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(holder())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with asyncio.timeout(PROMPTLY), store.key_lock(ORGANIZER, UID):
        pass


async def test_a_cancelled_waiter_leaves_the_queue(store):
    async def waiter() -> None:
        async with store.key_lock(ORGANIZER, UID):
            raise AssertionError("a cancelled waiter must never enter")

    async with store.key_lock(ORGANIZER, UID):
        task = asyncio.create_task(waiter())
        await wait_for_waiters(store, 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await wait_for_waiters(store, 0)
    async with asyncio.timeout(PROMPTLY), store.key_lock(ORGANIZER, UID):
        assert await store.lock_waiters(ORGANIZER, UID) == 0


async def test_in_process_lock_table_forgets_unused_keys():
    locks = KeyLocks()
    release = asyncio.Event()
    held = asyncio.Event()

    async def holder() -> None:
        async with locks.hold("k"):
            held.set()
            await release.wait()

    async def waiter() -> None:
        async with locks.hold("k"):
            pass

    first = asyncio.create_task(holder())
    await held.wait()
    second = asyncio.create_task(waiter())
    third = asyncio.create_task(waiter())
    await asyncio.sleep(0)  # let both reach the lock's queue
    assert locks.waiting("k") == 2
    third.cancel()
    with pytest.raises(asyncio.CancelledError):
        await third
    assert locks.waiting("k") == 1
    release.set()
    await asyncio.gather(first, second)
    assert len(locks) == 0


@pytest.mark.postgres
@pytest.mark.parametrize("held_at_start", [False, True], ids=["free-race", "queued-race"])
async def test_relay_processes_racing_on_one_key_create_once(pg_url, held_at_start):
    """Separate OS processes, each with its own pool, all after one key at the same moment."""
    workers = 2 if not held_at_start else 4
    store = await open_store(pg_url)
    processes = []
    try:
        for number in range(workers):
            processes.append(
                await asyncio.create_subprocess_exec(
                    sys.executable, str(WORKER), pg_url, ORGANIZER, UID, f"p{number}",
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                )
            )
        async with asyncio.timeout(PROMPTLY):
            for process in processes:
                assert (await process.stdout.readline()).strip() == b"ready"
        if held_at_start:
            # Hold the key first, so every worker is provably queued on it before any runs.
            async with store.key_lock(ORGANIZER, UID):
                for process in processes:
                    process.stdin.write(b"go\n")
                await wait_for_waiters(store, workers)
        else:
            for process in processes:
                process.stdin.write(b"go\n")
        async with asyncio.timeout(PROMPTLY):
            outputs = [await process.communicate() for process in processes]
        verdicts = [stdout.decode().strip() for stdout, _ in outputs]
        assert [process.returncode for process in processes] == [0] * workers
        assert verdicts.count("created") == 1, verdicts
        assert verdicts.count("found") == workers - 1, verdicts
        records = await store.find_by_uid(UID)
        assert len(records) == 1
        assert records[0].summary == f"p{verdicts.index('created')}"
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
                await process.wait()
        await store.close()


@pytest.mark.postgres
async def test_two_stores_exclude_each_other(pg_url):
    """Two independent pools (as two relay instances have) on one key."""
    first, second = await open_store(pg_url), await open_store(pg_url)
    try:
        async with first.key_lock(ORGANIZER, UID):
            entered = asyncio.Event()

            async def other_instance() -> None:
                async with second.key_lock(ORGANIZER, UID):
                    entered.set()

            task = asyncio.create_task(other_instance())
            await wait_for_waiters(first, 1)
            assert not entered.is_set()
        async with asyncio.timeout(PROMPTLY):
            await task
        assert entered.is_set()
    finally:
        await first.close()
        await second.close()
