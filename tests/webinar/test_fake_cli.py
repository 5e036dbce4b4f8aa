"""``webinar-proxy fake-webinar`` as a real process: readiness line, service, clean stop."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from webinar_proxy.webinar import WebinarClient

REPO = Path(__file__).resolve().parents[2]
READY = re.compile(r"^fake-webinar listening on (http://127\.0\.0\.1:\d+/v3)$")


@pytest.fixture
async def fake_process() -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "webinar_proxy", "fake-webinar",
        "--listen", "127.0.0.1:0", "--token", "cli-token-123456", "--organization", "acme",
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode().strip()
        match = READY.match(line)
        assert match, f"unexpected first line {line!r}"
        yield process, match[1]
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_serves_and_stops_cleanly_on_signal(fake_process, signum) -> None:
    process, api_url = fake_process
    async with WebinarClient(api_url, "cli-token-123456", rate_limit=50) as client:
        zones = await client.timezones()
        assert zones[0].name == "Europe/Moscow"
    process.send_signal(signum)
    assert await asyncio.wait_for(process.wait(), 30) == 0
    assert process.stdout is not None
    rest = (await process.stdout.read()).decode()
    assert "fake-webinar stopped" in rest


async def test_bad_listen_address_is_a_usage_error() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "webinar_proxy", "fake-webinar", "--listen", "nonsense",
        "--token", "x", cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2
    assert b"--listen" in stderr
