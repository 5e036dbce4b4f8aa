"""The engine pool with real worker processes: the same answers as the engine itself,
and every way a worker can be stopped (timeout, memory, crash, shutdown, the parent
dying) ends with the worker gone and the pool still serving."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support.calendars import LINK, calendar, mail
from tests.support.env import clean_env
from tests.support.heavy import heavy_invitation
from tests.support.processes import cpu_seconds, gone
from tests.support.relay import REPO
from webinar_proxy.cli.inspect import run_inspect
from webinar_proxy.invitation import (
    EngineError,
    EngineOptions,
    EnginePool,
    EngineStopped,
    EngineUnavailable,
    classify,
    next_occurrence,
    rewrite,
)
from webinar_proxy.seam import InboundMessage, TemporaryFailure
from webinar_proxy.settings import PolicySettings, Settings, SmtpSettings, StoreSettings, WebinarSettings
from webinar_proxy.testing.fake_webinar import running_fake_webinar
from webinar_proxy.wiring import open_services

NOW = datetime(2024, 1, 1, tzinfo=UTC)
INVITE = mail(calendar("LOCATION:@webinar", "RRULE:FREQ=WEEKLY;COUNT=5"))
PLAIN = b"From: <o@example.org>\r\nTo: <a@example.net>\r\nSubject: plain\r\n\r\nno calendar\r\n"


async def _computing(pid: int) -> None:
    """Wait until the worker is busy with the call (its CPU time grows)."""
    start = cpu_seconds(pid)
    async with asyncio.timeout(30):
        while cpu_seconds(pid) < start + 0.2:  # noqa: ASYNC110 - polling /proc
            await asyncio.sleep(0.02)


async def test_the_pool_answers_as_the_engine_does(options: EngineOptions) -> None:
    pool = EnginePool(workers=2, timeout_seconds=30, memory_mb=512)
    await pool.start()
    try:
        assert len(pool.pids) == 2
        local = classify(INVITE, "boss@example.com", options, NOW)
        remote = await pool.classify(INVITE, "boss@example.com", options, NOW)
        assert remote == local and remote.processable and remote.recurring
        assert await pool.rewrite(INVITE, "meeting-42@example.com", LINK, options) == \
            rewrite(INVITE, "meeting-42@example.com", LINK, options)
        after = datetime(2024, 3, 2, tzinfo=UTC)
        assert await pool.next_occurrence(remote.calendar, "meeting-42@example.com", after, options) == \
            next_occurrence(remote.calendar, "meeting-42@example.com", after, options)
        # The engine's own errors come back as they are; the worker stays.
        pids = pool.pids
        with pytest.raises(EngineError) as refused:
            await pool.rewrite(INVITE, "no-such-uid", LINK, options)
        assert not isinstance(refused.value, EngineStopped)
        with pytest.raises(ValueError, match="https"):
            await pool.rewrite(INVITE, "meeting-42@example.com", "http://insecure.example/", options)
        assert pool.pids == pids
        # Many calls at once share the workers.
        results = await asyncio.gather(*(pool.classify(INVITE, None, options, NOW) for _ in range(20)))
        assert {r.uid for r in results} == {"meeting-42@example.com"}
    finally:
        await pool.close()
    assert all(gone(pid) for pid in pids)


async def test_a_call_past_the_timeout_stops_its_worker_and_the_pool_goes_on(options: EngineOptions) -> None:
    stopped: list[str] = []
    pool = EnginePool(workers=1, timeout_seconds=0.2, memory_mb=512, on_stopped=stopped.append)
    await pool.start()
    try:
        [worker] = pool.pids
        with pytest.raises(EngineStopped) as caught:
            await pool.classify(heavy_invitation(), None, options, NOW)
        assert caught.value.reason == "timeout" and str(caught.value) == "engine timeout"
        assert stopped == ["timeout"]
        assert gone(worker)
        result = await pool.classify(INVITE, None, options, NOW)  # waits for the replacement
        assert result.processable and pool.pids != [worker]
    finally:
        await pool.close()


async def test_a_worker_past_its_memory_limit_is_replaced(options: EngineOptions) -> None:
    stopped: list[str] = []
    pool = EnginePool(workers=1, timeout_seconds=60, memory_mb=100, on_stopped=stopped.append)
    await pool.start()
    try:
        [worker] = pool.pids
        with pytest.raises(EngineStopped) as caught:
            await pool.classify(heavy_invitation(padding_mb=20), None, options, NOW)
        assert caught.value.reason == "memory" and stopped == ["memory"]
        assert gone(worker)
        assert (await pool.classify(INVITE, None, options, NOW)).processable
    finally:
        await pool.close()


async def test_a_worker_that_dies_mid_call_is_a_crash(options: EngineOptions) -> None:
    stopped: list[str] = []
    pool = EnginePool(workers=1, timeout_seconds=60, memory_mb=512, on_stopped=stopped.append)
    await pool.start()
    try:
        [worker] = pool.pids
        call = asyncio.ensure_future(pool.classify(heavy_invitation(), None, options, NOW))
        await _computing(worker)
        os.kill(worker, signal.SIGKILL)
        with pytest.raises(EngineStopped) as caught:
            await call
        assert caught.value.reason == "crash" and stopped == ["crash"]
        assert (await pool.classify(INVITE, None, options, NOW)).processable
    finally:
        await pool.close()


async def test_close_kills_a_busy_worker_at_once(options: EngineOptions) -> None:
    pool = EnginePool(workers=1, timeout_seconds=120, memory_mb=512)
    await pool.start()
    [worker] = pool.pids
    call = asyncio.ensure_future(pool.classify(heavy_invitation(copies=3), None, options, NOW))
    await _computing(worker)
    started = time.monotonic()
    await pool.close()
    with pytest.raises(EngineUnavailable):
        await call
    assert time.monotonic() - started < 2 and gone(worker)
    with pytest.raises(EngineUnavailable):
        await pool.classify(INVITE, None, options, NOW)


async def test_a_memory_limit_too_small_to_start_is_refused() -> None:
    pool = EnginePool(workers=1, timeout_seconds=1, memory_mb=8)
    try:
        with pytest.raises(EngineUnavailable, match="engine_memory_mb"):
            await pool.start()
    finally:
        await pool.close()


def test_workers_die_with_their_parent() -> None:
    program = (
        "import asyncio, sys\n"
        "from webinar_proxy.invitation import EnginePool\n"
        "async def main():\n"
        "    pool = EnginePool(workers=2, timeout_seconds=1, memory_mb=512)\n"
        "    await pool.start()\n"
        "    print(*pool.pids, flush=True)\n"
        "    await asyncio.sleep(3600)\n"
        "asyncio.run(main())\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", program], cwd=REPO, env=clean_env(),
                              stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        pids = [int(pid) for pid in parent.stdout.readline().split()]
        assert len(pids) == 2 and not any(gone(pid) for pid in pids)
    finally:
        parent.kill()  # SIGKILL: no code of the parent runs
        parent.wait(timeout=10)
        if parent.stdout is not None:
            parent.stdout.close()
    deadline = time.monotonic() + 10
    while not all(gone(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert all(gone(pid) for pid in pids)


async def test_ordinary_mail_never_needs_the_engine(tmp_path: Path) -> None:
    """With the pool closed, plain mail still passes (no engine call at all), while an
    invitation asks the MTA to retry (451), never forwarded half-read."""
    async with running_fake_webinar(token="t") as fake:
        settings = Settings(
            smtp=SmtpSettings(), webinar=WebinarSettings(api_url=fake.api_url, token="t"),
            store=StoreSettings(url=f"sqlite:///{tmp_path}/state.db"),
            policy=PolicySettings(engine_workers=1),
        )
        async with open_services(settings) as services:
            await services.engine.close()
            plain = InboundMessage("s1", "o@example.org", ("a@example.net",), PLAIN)
            assert (await services.pipeline.process(plain)).content is PLAIN
            invite = InboundMessage("s2", "boss@example.com", ("ann@example.com",), INVITE)
            with pytest.raises(TemporaryFailure):
                await services.pipeline.process(invite)


def test_inspect_reports_the_engine_timeout(tmp_path: Path, capsys) -> None:
    path = tmp_path / "slow.eml"
    path.write_bytes(heavy_invitation())
    args = argparse.Namespace(file=str(path), mail_from=None, now=None, link=None, json=False)
    settings = Settings(policy=PolicySettings(engine_timeout_seconds=0.2))
    assert run_inspect(args, settings) == 0
    out = capsys.readouterr().out
    assert "not processable: engine timeout" in out and "processable            False" in out
