"""Shared pieces of the fault tests: the real ``serve`` process with its log, an SMTP
sender that survives the relay dying, and bounded waits on conditions."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.support.env import serve_env
from tests.support.invites import invitation
from tests.support.smtp import Delivered, WireClient, dot_stuff
from webinar_proxy.store import ConferenceRecord, open_store

REPO = Path(__file__).resolve().parents[2]
TOKEN = "fault-token-3b9e21c4"
BOSS = "boss@example.org"
ANN = "ann@example.net"
PLAIN = b"From: <o@example.org>\r\nTo: <a@example.net>\r\nSubject: plain\r\n\r\nno calendar here\r\n"
_LISTENING = re.compile(r"listening on (?:\[[^\]]+\]|[^:\s]+):(\d+)")


def meeting(uid: str, **options: object) -> bytes:
    """An invitation asking for a conference, a week ahead of the real clock (the
    ``serve`` process reads invitations with the real clock)."""
    start = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(days=7)
    return invitation(uid=uid, start=start, end=start + timedelta(minutes=30), **options)  # type: ignore[arg-type]


def relay_env(
    *, next_hop_port: int, api_url: str, store_url: str, deadline: float = 30.0,
    call_deadline: float = 20.0, read_timeout: float = 20.0, **extra: str,
) -> dict[str, str]:
    env = {
        "WEBINAR_PROXY_SMTP__LISTEN": "127.0.0.1:0",
        "WEBINAR_PROXY_SMTP__NEXT_HOP": f"127.0.0.1:{next_hop_port}",
        "WEBINAR_PROXY_SMTP__HOSTNAME": "relay.test",
        "WEBINAR_PROXY_SMTP__DEADLINE_SECONDS": str(deadline),
        "WEBINAR_PROXY_WEBINAR__API_URL": api_url,
        "WEBINAR_PROXY_WEBINAR__TOKEN": TOKEN,
        "WEBINAR_PROXY_WEBINAR__RATE_LIMIT": "1000",
        "WEBINAR_PROXY_WEBINAR__CALL_DEADLINE_SECONDS": str(call_deadline),
        "WEBINAR_PROXY_WEBINAR__READ_TIMEOUT_SECONDS": str(read_timeout),
        "WEBINAR_PROXY_WEBINAR__CONNECT_TIMEOUT_SECONDS": "2",
        "WEBINAR_PROXY_STORE__URL": store_url,
        # one pass at start-up, then none during the test: tests drive the scheduler
        "WEBINAR_PROXY_SCHEDULER__INTERVAL_SECONDS": "3600",
    }
    env.update({f"WEBINAR_PROXY_{key.upper()}": value for key, value in extra.items()})
    return env


@dataclass
class Relay:
    """A running ``webinar-proxy serve``; its output is read on a thread into ``lines``."""

    process: subprocess.Popen[str]
    port: int
    lines: list[str] = field(default_factory=list)

    def log(self) -> str:
        return "".join(self.lines)

    def kill(self) -> None:
        """SIGKILL: no shutdown code of ours runs."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    async def send(self, message: bytes, mail_from: str = BOSS, rcpts: tuple[str, ...] = (ANN,)) -> int:
        return (await send(self.port, message, mail_from, rcpts))[0]


@contextlib.contextmanager
def serve(env: dict[str, str]) -> Iterator[Relay]:
    """``python -m webinar_proxy serve`` as a child; yields once it is listening."""
    full_env = serve_env()
    full_env.update(env)
    process = subprocess.Popen(
        [sys.executable, "-m", "webinar_proxy", "serve"], cwd=REPO, env=full_env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: list[str] = []
    ready = threading.Event()
    port: list[int] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if not port and (match := _LISTENING.search(line)):
                port.append(int(match[1]))
                ready.set()
        ready.set()  # exited

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        if not ready.wait(30) or not port:
            raise AssertionError("relay not ready:\n" + "".join(lines))
        yield Relay(process, port[0], lines)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        reader.join(timeout=10)
        if process.stdout:
            process.stdout.close()


async def send(
    port: int, message: bytes, mail_from: str = BOSS, rcpts: tuple[str, ...] = (ANN,)
) -> tuple[int, str]:
    """One transaction on a new session; the reply to the end of DATA (or the first
    refusal).  A connection the relay dropped without a reply reads as ``(0, why)``."""
    client = await WireClient.connect("127.0.0.1", port)
    try:
        await client.reply()
        await client.command("EHLO client.test")
        code, text = await client.command(f"MAIL FROM:<{mail_from}>")
        if code != 250:
            return code, text
        for rcpt in rcpts:
            code, text = await client.command(f"RCPT TO:<{rcpt}>")
            if code != 250:
                return code, text
        code, text = await client.command("DATA")
        if code != 354:
            return code, text
        await client.send_raw(dot_stuff(message))
        return await client.reply()
    except ConnectionError as exc:
        return 0, f"connection lost: {exc}"
    finally:
        await client.close()


async def wait_until(condition: Callable[[], object], what: str, limit: float = 20.0) -> None:
    """Poll ``condition`` (cheap, in-memory state) until true; fail after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def invitations(delivered: list[Delivered]) -> list[Delivered]:
    """Delivered invitation copies (organizer notices, sent with a null sender, left out)."""
    return [d for d in delivered if b"text/calendar" in d.content and d.mail_from not in ("", "<>")]


def requested(fake: object, method: str, pattern: str) -> bool:
    """Whether the fake has received a ``method`` call whose path matches ``pattern``."""
    return any(r.method == method and re.fullmatch(pattern, r.path)
               for r in list(fake.requests))  # type: ignore[attr-defined]


async def stored(url: str, uid: str) -> ConferenceRecord | None:
    store = await open_store(url)
    try:
        return await store.get(BOSS, uid)
    finally:
        await store.close()


def live(fake) -> tuple[list[int], list[int]]:  # type: ignore[no-untyped-def]
    state = fake.state()
    return [e["eventId"] for e in state["events"]], [s["eventSessionId"] for s in state["sessions"]]
