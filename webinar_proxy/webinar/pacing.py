"""Request pacing and retry timing for the Webinar API client.

``TokenBucket`` keeps the client under the platform's request rate (2/s) across all
concurrent callers; ``Backoff`` yields jittered exponential delays.  Both take their
clock, sleep and randomness from the caller so tests run on a virtual clock.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class PacingDeadline(Exception):
    """Waiting for a request slot would run past the caller's deadline."""


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
        now = self._clock()
        slot = max(now, self._full_at - (self.burst - 1) * self._interval)
        if deadline is not None and slot > deadline:
            raise PacingDeadline
        self._full_at = max(self._full_at, slot) + self._interval
        if slot > now:
            await self._sleep(slot - now)


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
