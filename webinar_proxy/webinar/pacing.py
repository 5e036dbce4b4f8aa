"""Request pacing and retry timing for the Webinar API client.

The platform allows 2 requests per second per API key, counted over every program
using the key.  ``TokenBucket`` paces the callers of one process; ``SharedPace``
paces every process and host using the key, by reserving the next free slot in a
shared ``SlotBook`` (the conference store: one row per key, keyed by a hash of the
token).  Both also take a 429's ``Retry-After`` as a pause for every caller
(``push_back``).

``slot_ahead`` wins a slot before the caller takes a lock and hands it to the
first call made under the lock.

Priorities: a call made inside ``background_calls()`` (registrations, roll-forwards,
delete retries) takes a slot only when the queue ahead of it is at most
``BACKGROUND_LEAD_SLOTS`` deep; otherwise it waits and asks again.  So calls a mail
waits for are never queued behind more than about one background call.

``Backoff`` yields jittered exponential delays.  Everything takes its clock, sleep and
randomness from the caller so tests run on a virtual clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import hashlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Protocol

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


#: The pace kept by default, under the platform's 2/s: a margin for jitter in the
#: sender's timing and the network, which otherwise turns exact 0.5 s spacing into 429s.
DEFAULT_RATE = 1.8
#: How many slots may be queued ahead of a background call when it takes one.
BACKGROUND_LEAD_SLOTS = 1.0

_background: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "webinar_background_calls", default=False
)


@contextlib.contextmanager
def background_calls() -> Iterator[None]:
    """API calls made in this block (and tasks started in it) yield to mail's calls."""
    token = _background.set(True)
    try:
        yield
    finally:
        _background.reset(token)


def in_background() -> bool:
    return _background.get()


class Pace(Protocol):
    """What the client needs of ``TokenBucket`` and ``SharedPace``."""

    rate: float

    async def acquire(self, deadline: float | None = None) -> None: ...

    async def reserve(self, deadline: float | None = None) -> float: ...

    async def push_back(self, seconds: float) -> None: ...


#: How late, in intervals, a slot won ahead may still be used.  A call that late is
#: followed by the next holder's after 0.9 intervals: at 1.8/s (0.556 s), three calls
#: still never fall within one second, which a platform allowing 2/s would refuse.
LATE_SLOT_SHARE = 0.1


@dataclasses.dataclass
class _HeldSlot:
    """A slot won ahead of time (``slot_ahead``)."""

    at: float  # when it falls, on the clock
    grace: float  # how late it may still be used, in seconds
    used: bool = False


_slot_ahead: contextvars.ContextVar[_HeldSlot | None] = contextvars.ContextVar(
    "webinar_slot_ahead", default=None
)


@contextlib.asynccontextmanager
async def slot_ahead(pace: Pace, clock: Clock = time.monotonic) -> AsyncIterator[None]:
    """Win a request slot now, for the first call made in the block.

    The registration worker waits for its (background) slot here, before it takes the
    conference's key lock, so mail about the same meeting never waits for the pace
    behind that lock.  The first call uses the slot if it is made no later than
    ``LATE_SLOT_SHARE`` of an interval after the slot's time (the lock and the store
    reads in between take a few milliseconds; calling much later could crowd the next
    holder); otherwise it acquires a new one as usual.
    """
    wait = await pace.reserve()
    token = _slot_ahead.set(_HeldSlot(clock() + wait, LATE_SLOT_SHARE / pace.rate))
    try:
        yield
    finally:
        _slot_ahead.reset(token)


def take_slot_ahead(clock: Clock) -> float | None:
    """Seconds to wait for the slot won by ``slot_ahead`` (0 if it has just passed), or
    None: there is none (any more), or it passed too long ago."""
    held = _slot_ahead.get()
    if held is None or held.used:
        return None
    held.used = True
    wait = held.at - clock()
    return max(wait, 0.0) if wait >= -held.grace else None


def key_hash(token: str) -> str:
    """What the shared pace is keyed by: SHA-256 of the token (the token is never stored)."""
    return hashlib.sha256(("webinar-proxy pace\n" + token).encode()).hexdigest()


class PacingDeadline(Exception):
    """Waiting for a request slot would run past the caller's deadline."""


class SlotBook(Protocol):
    """A shared next-slot reservation (the conference store implements it)."""

    async def reserve_api_slot(self, key: str, interval: float, max_wait: float) -> float | None:
        """Reserve the next free slot of ``key`` if it is at most ``max_wait`` seconds
        away; the seconds to wait for it, or None (nothing reserved)."""

    async def push_api_slot(self, key: str, seconds: float) -> None:
        """No slot of ``key`` before ``seconds`` from now (a 429's Retry-After)."""


class SharedPace:
    """A ``TokenBucket`` whose slots live in a ``SlotBook``, shared by all its users.

    Each reservation is one statement (PostgreSQL) or one write transaction (SQLite),
    so processes on other hosts pace against the same row.  Times are the book's own
    (the database's clock for PostgreSQL), so the hosts' clocks need not agree.
    """

    def __init__(
        self,
        book: SlotBook,
        token: str,
        rate: float,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self._interval = 1.0 / rate
        self._book = book
        self._key = key_hash(token)
        self._clock = clock
        self._sleep = sleep
        self._rand = rand

    async def acquire(self, deadline: float | None = None) -> None:
        wait = await self.reserve(deadline)
        if wait > 0:
            await self._sleep(wait)

    async def reserve(self, deadline: float | None = None) -> float:
        """Reserve a slot (waiting, in the background, until one may be taken); the
        seconds until it."""
        background = in_background()
        while True:
            now = self._clock()
            left = None if deadline is None else deadline - now
            if left is not None and left < 0:
                raise PacingDeadline
            most = BACKGROUND_LEAD_SLOTS * self._interval if background else left
            wait = await self._book.reserve_api_slot(
                self._key, self._interval, 1e9 if most is None else max(most, 0.0)
            )
            if wait is not None:
                return wait
            if not background:
                raise PacingDeadline
            # Mail's calls are queued: ask again a little later (jittered, so the
            # background callers of several relays do not ask in step).
            pause = self._interval * (1.0 + self._rand())
            if deadline is not None and self._clock() + pause > deadline:
                raise PacingDeadline
            await self._sleep(pause)

    async def push_back(self, seconds: float) -> None:
        await self._book.push_api_slot(self._key, seconds)


class TokenBucket:
    """At most ``rate`` acquisitions per second on average, ``burst`` at once.

    Each caller reserves the next free slot and sleeps until it (the GCRA form of a
    token bucket), so callers are served in arrival order and one whose slot lies
    beyond its deadline is refused at once instead of queueing.  The default burst
    of 1 spaces requests evenly (one every ``1/rate`` s), which also satisfies a
    platform that counts requests in a sliding one-second window.
    """

    def __init__(
        self,
        rate: float,
        *,
        burst: int = 1,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self.rate = rate
        self.burst = burst
        self._interval = 1.0 / rate
        self._clock = clock
        self._sleep = sleep
        # Theoretical arrival time: when the bucket would be full again.
        self._full_at = clock()

    async def acquire(self, deadline: float | None = None) -> None:
        """Wait for a request slot; ``deadline`` is a time on the clock."""
        wait = await self.reserve(deadline)
        if wait > 0:
            await self._sleep(wait)

    async def reserve(self, deadline: float | None = None) -> float:
        """Reserve a request slot; the seconds until it."""
        now = self._clock()
        slot = max(now, self._full_at - (self.burst - 1) * self._interval)
        if deadline is not None and slot > deadline:
            raise PacingDeadline
        self._full_at = max(self._full_at, slot) + self._interval
        return slot - now

    async def push_back(self, seconds: float) -> None:
        """No slot before ``seconds`` from now (the platform said Retry-After)."""
        self._full_at = max(self._full_at, self._clock() + seconds)


class Backoff:
    """Delays ``base·2ⁿ`` capped at ``cap``, each jittered into its upper half."""

    def __init__(
        self, base: float = 0.5, cap: float = 10.0, *, rand: Callable[[], float] = random.random
    ) -> None:
        self.base = base
        self.cap = cap
        self._rand = rand

    def delay(self, attempt: int) -> float:
        """Delay before retry number ``attempt`` (0 for the first retry)."""
        ceiling = min(self.cap, self.base * (2 ** min(attempt, 30)))
        return ceiling / 2 + self._rand() * ceiling / 2
