"""Token-bucket pacing and backoff timing, on a virtual clock."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from webinar_proxy.webinar.pacing import (
    Backoff,
    PacingDeadline,
    TokenBucket,
    slot_ahead,
    take_slot_ahead,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


async def test_two_per_second_spreads_ten_acquisitions_over_four_and_a_half_seconds() -> None:
    clock = Clock()
    bucket = TokenBucket(2.0, clock=clock, sleep=clock.sleep)
    stamps = []
    for _ in range(10):
        await bucket.acquire()
        stamps.append(clock.now)
    assert stamps[-1] - stamps[0] >= 4.5
    assert all(later - earlier >= 0.5 - 1e-9 for earlier, later in itertools.pairwise(stamps))


async def test_concurrent_callers_share_the_bucket() -> None:
    clock = Clock()
    bucket = TokenBucket(2.0, clock=clock, sleep=clock.sleep)
    stamps: list[float] = []

    async def one() -> None:
        await bucket.acquire()
        stamps.append(clock.now)

    await asyncio.gather(*(one() for _ in range(10)))
    assert max(stamps) - min(stamps) >= 4.5


async def test_idle_time_refills_only_up_to_the_burst() -> None:
    clock = Clock()
    bucket = TokenBucket(2.0, burst=1, clock=clock, sleep=clock.sleep)
    await bucket.acquire()
    clock.now += 60
    await bucket.acquire()
    before = clock.now
    await bucket.acquire()
    assert clock.now - before == pytest.approx(0.5)


async def test_a_slot_beyond_the_deadline_is_refused_without_waiting() -> None:
    clock = Clock()
    bucket = TokenBucket(2.0, clock=clock, sleep=clock.sleep)
    await bucket.acquire()
    with pytest.raises(PacingDeadline):
        await bucket.acquire(deadline=clock.now + 0.1)
    assert clock.now == 0.0


def test_backoff_grows_exponentially_is_capped_and_jittered() -> None:
    low = Backoff(0.5, 4.0, rand=lambda: 0.0)
    high = Backoff(0.5, 4.0, rand=lambda: 0.999999)
    assert [low.delay(n) for n in range(5)] == [0.25, 0.5, 1.0, 2.0, 2.0]
    assert high.delay(0) == pytest.approx(0.5)
    assert high.delay(10) == pytest.approx(4.0)


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        TokenBucket(0)
    with pytest.raises(ValueError):
        TokenBucket(2, burst=0)


async def test_a_burst_allows_that_many_at_once_then_spaces_the_rest() -> None:
    clock = Clock()
    bucket = TokenBucket(2.0, burst=2, clock=clock, sleep=clock.sleep)
    stamps = []
    for _ in range(4):
        await bucket.acquire()
        stamps.append(clock.now)
    assert stamps == [0.0, 0.0, 0.5, 1.0]


async def test_callers_queued_beyond_their_deadline_are_refused_at_once() -> None:
    clock = Clock()
    bucket = TokenBucket(2.0, clock=clock, sleep=clock.sleep)
    outcomes = await asyncio.gather(
        *(bucket.acquire(deadline=1.2) for _ in range(5)), return_exceptions=True
    )
    refused = [o for o in outcomes if isinstance(o, PacingDeadline)]
    assert len(refused) == 2  # slots at 0, 0.5 and 1.0 fit; 1.5 and 2.0 do not


async def test_a_slot_won_ahead_serves_the_first_call_only_and_not_once_it_has_passed() -> None:
    clock = Clock()
    bucket = TokenBucket(2.0, clock=clock, sleep=clock.sleep)
    await bucket.acquire()  # the bucket's next slot is 0.5 s away
    async with slot_ahead(bucket, clock):
        assert take_slot_ahead(clock) == pytest.approx(0.5)
        assert take_slot_ahead(clock) is None  # used
    assert take_slot_ahead(clock) is None  # outside the block

    async with slot_ahead(bucket, clock):  # the slot after that: 1.0 s from now
        await clock.sleep(1.04)  # the lock and the store reads took a little longer
        assert take_slot_ahead(clock) == 0.0  # 0.04 s late: call at once

    async with slot_ahead(bucket, clock):  # the next falls at 1.5 s, 0.46 s from now
        await clock.sleep(0.46 + 0.2)  # a lock was held for a while
        assert take_slot_ahead(clock) is None  # calling 0.2 s late could crowd the next holder
