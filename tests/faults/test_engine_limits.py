"""One poisoned invitation never stops the mail: the real ``webinar-proxy serve`` with
small engine limits, real SMTP peers, real slow or big invitations.

* An invitation that takes longer than ``policy.engine_timeout_seconds`` is forwarded
  unchanged (250) soon after the limit while plain mail keeps flowing, and afterwards
  the relay uses no CPU: the worker that was reading it is gone.
* SIGHUP while a worker is busy reloads at once; SIGTERM exits within the grace
  period although the worker would be busy for longer.
* An invitation that needs more than ``policy.engine_memory_mb``: forwarded unchanged,
  and the replacement worker (same limit) handles the next invitation.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from tests.faults.helpers import BOSS, PLAIN, TOKEN, meeting, relay_env, send
from tests.support.heavy import heavy_invitation
from tests.support.processes import cpu_seconds, gone
from tests.support.serve import Serve, running_serve
from tests.support.smtp import running_next_hop
from webinar_proxy.testing.fake_platform import DEFAULT_LINK_BASE
from webinar_proxy.testing.fake_webinar import running_fake_webinar

TIMEOUT = 0.2
#: Bound for a plain mail's reply while the engine is busy (the issue's figure).
PLAIN_REPLY_SECONDS = 2.0
#: What the relay may add to the engine timeout for a poisoned mail: receiving and
#: forwarding ~4 MB on loopback, killing the worker.
POISON_MARGIN_SECONDS = 3.0
LINK_HOST = urlsplit(DEFAULT_LINK_BASE).netloc.encode()


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue
    return found


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its live children."""
    return sum(cpu_seconds(process) for process in [pid, *_children(pid)])


async def _settles_idle(pid: int, window: float = 1.0, most: float = 0.1, within: float = 20.0) -> float:
    """Wait until the process tree uses at most ``most`` s of CPU over ``window`` s
    (a replacement worker's start-up is allowed to finish); the last window's CPU."""
    used = float("inf")
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        before = _cpu_seconds(pid)
        await asyncio.sleep(window)
        used = _cpu_seconds(pid) - before
        if used <= most:
            break
    return used



async def _wait_children(pid: int, count: int, within: float = 30.0) -> list[int]:
    async with asyncio.timeout(within):
        while len(children := _children(pid)) != count:  # noqa: ASYNC110 - polling /proc
            await asyncio.sleep(0.05)
    return children


async def _engine_stopped(serve: Serve) -> dict[str, float]:
    assert serve.metrics_port is not None
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        text = (await http.get(f"http://127.0.0.1:{serve.metrics_port}/metrics")).text
    return {reason: float(value) for reason, value in
            re.findall(r'webinar_proxy_engine_stopped_total\{reason="(\w+)"\} ([0-9.e+]+)', text)}


def _env(hop_port: int, api_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    return relay_env(next_hop_port=hop_port, api_url=api_url, store_url=f"sqlite:///{tmp_path}/state.db",
                     metrics__listen="127.0.0.1:0", smtp__shutdown_grace_seconds="1",
                     policy__engine_workers="1", **extra)


async def test_a_slow_invitation_is_forwarded_unchanged_after_the_timeout_while_plain_mail_flows(
        tmp_path: Path):
    poison = heavy_invitation("slow@example.org")
    async with running_fake_webinar(token=TOKEN) as fake, running_next_hop() as hop:
        env = _env(hop.port, fake.api_url, tmp_path, policy__engine_timeout_seconds=str(TIMEOUT))
        async with running_serve(env) as serve:
            pid = serve.process.pid
            [worker] = await _wait_children(pid, 1)
            stop = asyncio.Event()
            plain_seconds: list[float] = []
            plain_codes: list[int] = []

            async def plain_mail() -> None:
                while not stop.is_set():
                    started = time.monotonic()
                    code, _ = await send(serve.smtp_port, PLAIN)
                    plain_seconds.append(time.monotonic() - started)
                    plain_codes.append(code)

            async def poisoned() -> tuple[int, float]:
                started = time.monotonic()
                code, _ = await send(serve.smtp_port, poison)
                return code, time.monotonic() - started

            flowing = asyncio.ensure_future(plain_mail())
            try:
                code, seconds = await poisoned()
            finally:
                stop.set()
                await flowing

            assert code == 250
            assert seconds < TIMEOUT + POISON_MARGIN_SECONDS, seconds
            assert plain_codes and set(plain_codes) == {250}
            assert max(plain_seconds) < PLAIN_REPLY_SECONDS, plain_seconds
            # The worker that read the poison was killed and replaced; nothing spins.
            await _wait_children(pid, 1)
            assert gone(worker)
            assert await _settles_idle(pid) <= 0.1
            assert (await _engine_stopped(serve))["timeout"] == 1
            # The engine still works for the next invitation.
            assert (await send(serve.smtp_port, meeting("after-slow@example.org")))[0] == 250
        log = serve.output
    delivered = [d.content for d in hop.handler.delivered]
    assert poison in delivered  # byte for byte: not processable, forwarded unchanged
    assert delivered.count(PLAIN) == len(plain_codes)
    [after] = [d for d in delivered if b"after-slow@example.org" in d and b"Content-Type: text/calendar" in d
               and d.startswith(b"From:")]
    assert LINK_HOST in after
    warnings = [line for line in log.splitlines() if "not processable (engine timeout)" in line]
    assert len(warnings) == 1 and "WARNING" in warnings[0] and "session=" in warnings[0], log


async def test_sighup_and_sigterm_with_a_busy_worker_never_wait_for_it(tmp_path: Path):
    # Three copies of a long calendar: several seconds of honest work for the engine.
    poison = heavy_invitation("busy@example.org", copies=3)
    async with running_fake_webinar(token=TOKEN) as fake, running_next_hop() as hop:
        env = _env(hop.port, fake.api_url, tmp_path, policy__engine_timeout_seconds="120")
        async with running_serve(env) as serve:
            pid = serve.process.pid
            [worker] = await _wait_children(pid, 1)
            attempt = asyncio.ensure_future(send(serve.smtp_port, poison))
            # Wait until the worker is computing (its CPU time grows), then stop the relay.
            start_cpu = _cpu_seconds(worker)
            async with asyncio.timeout(30):
                while _cpu_seconds(worker) < start_cpu + 0.3:  # noqa: ASYNC110 - polling /proc
                    await asyncio.sleep(0.05)
            # SIGHUP does not wait for the busy worker either.
            serve.process.send_signal(signal.SIGHUP)
            async with asyncio.timeout(5):
                while "reloaded" not in serve.output:  # noqa: ASYNC110 - the log is collected by a task
                    await asyncio.sleep(0.02)
            assert _cpu_seconds(worker) > start_cpu  # still at it
            started = time.monotonic()
            serve.process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(30):
                status = await serve.process.wait()
            took = time.monotonic() - started
            code, _ = await attempt
        assert status == 0, serve.output
        assert took < 1 + 1.5, took  # grace 1 s, plus the process's own exit
        assert code != 250
        assert gone(worker)
    assert hop.handler.delivered == []


async def test_an_invitation_past_the_memory_limit_is_forwarded_unchanged(tmp_path: Path):
    # A long calendar plus 20 MiB of text: more than a 100 MiB address space holds,
    # while an ordinary invitation needs well under half of it.
    poison = heavy_invitation("big@example.org", padding_mb=20)
    async with running_fake_webinar(token=TOKEN) as fake, running_next_hop() as hop:
        env = _env(hop.port, fake.api_url, tmp_path, policy__engine_timeout_seconds="60",
                   policy__engine_memory_mb="100")
        async with running_serve(env) as serve:
            pid = serve.process.pid
            [worker] = await _wait_children(pid, 1)
            assert (await send(serve.smtp_port, poison))[0] == 250
            await _wait_children(pid, 1)
            assert gone(worker)
            assert (await _engine_stopped(serve))["memory"] == 1
            invite = meeting("after-big@example.org")
            assert (await send(serve.smtp_port, invite, BOSS))[0] == 250
        log = serve.output
    delivered = [d.content for d in hop.handler.delivered]
    assert poison in delivered
    [rewritten] = [d for d in delivered if b"after-big@example.org" in d and d.startswith(b"From:")]
    assert LINK_HOST in rewritten
    warnings = [line for line in log.splitlines() if "not processable (engine memory)" in line]
    assert len(warnings) == 1 and "WARNING" in warnings[0], log
