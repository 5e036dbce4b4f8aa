"""Fixtures for the Webinar client and fake: a running fake on loopback, a virtual clock,
and clients wired to both.

The virtual clock drives the client's pacing, backoff and deadline, so no test waits
on real time for them; only per-attempt HTTP timeouts are real (kept short).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from webinar_proxy.testing.fake_webinar import FakeWebinarServer, running_fake_webinar
from webinar_proxy.webinar import WebinarClient
from webinar_proxy.webinar.pacing import Backoff

TOKEN = "test-token-5f0c1d2e3a4b"
ORG = "myorg"


class VirtualClock:
    """A monotonic clock that only moves when someone sleeps on it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(seconds, 0.0)
        await asyncio.sleep(0)

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def token() -> str:
    return TOKEN


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
async def fake() -> AsyncIterator[FakeWebinarServer]:
    async with running_fake_webinar(token=TOKEN, organization=ORG) as server:
        yield server


ClientFactory = Callable[..., WebinarClient]


@pytest.fixture
async def make_client(
    fake: FakeWebinarServer, clock: VirtualClock
) -> AsyncIterator[ClientFactory]:
    """Build clients against ``fake`` on the virtual clock; all are closed afterwards."""
    made: list[WebinarClient] = []

    def build(**overrides: Any) -> WebinarClient:
        options: dict[str, Any] = {
            "api_url": fake.api_url,
            "token": TOKEN,
            "rate_limit": 2.0,
            "connect_timeout": 5.0,
            "read_timeout": 5.0,
            "call_deadline": 30.0,
            "clock": clock,
            "sleep": clock.sleep,
            "backoff": Backoff(0.05, 1.0, rand=lambda: 0.5),
        }
        options.update(overrides)
        client = WebinarClient(**options)
        made.append(client)
        return client

    yield build
    for client in made:
        await client.aclose()


@pytest.fixture
async def client(make_client: ClientFactory) -> WebinarClient:
    return make_client()
