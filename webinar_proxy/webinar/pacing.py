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

    The default burst of 1 spaces requests evenly (one every ``1/rate`` s), which
    also satisfies a platform that counts requests in a sliding one-second window.
    Waiters are served in arrival order.
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
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._updated = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> float:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        return now

    async def acquire(self, deadline: float | None = None) -> None:
        """Take one token, waiting as needed; ``deadline`` is a time on the clock."""
        async with self._lock:
            # Bounded: each pass either takes a token or sleeps until one is due.
            for _ in range(1000):
                now = self._refill()
                # The tolerance absorbs float rounding, which could otherwise leave
                # 0.999… tokens and a wait too small to move a large clock value.
                if self._tokens >= 1 - 1e-9:
                    self._tokens = max(self._tokens - 1, 0.0)
                    return
                wait = (1 - self._tokens) / self.rate
                if deadline is not None and now + wait > deadline:
                    raise PacingDeadline
                await self._sleep(wait)
            raise PacingDeadline  # pragma: no cover - a clock that never advances


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
