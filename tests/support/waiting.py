"""Wait for a condition the product reaches in the background (attendees registered by
the registration worker, say): poll it until it holds, or fail after ``within`` seconds."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(probe: Callable[[], Awaitable[T]], done: Callable[[T], bool],
                     within: float = 20.0) -> T:
    """The first value of ``probe()`` for which ``done`` holds; the last one is shown on failure."""
    value = await probe()
    try:
        async with asyncio.timeout(within):
            while not done(value):
                await asyncio.sleep(0.05)
                value = await probe()
    except TimeoutError:
        raise AssertionError(f"not reached within {within} s; last seen: {value!r}") from None
    return value
