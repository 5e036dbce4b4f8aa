"""Running the real relay inside a test's event loop, and as a real process."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from tests.support.env import serve_env
from webinar_proxy.metrics import Metrics
from webinar_proxy.seam import PassThrough, Pipeline
from webinar_proxy.settings import HostPort, SmtpSettings
from webinar_proxy.smtp.server import RelayServer

REPO = Path(__file__).resolve().parents[2]


def smtp_settings(next_hop_port: int, **overrides: Any) -> SmtpSettings:
    values: dict[str, Any] = {
        "listen": HostPort("127.0.0.1", 0),
        "next_hop": HostPort("127.0.0.1", next_hop_port),
        "hostname": "relay.test",
    }
    values.update(overrides)
    return SmtpSettings(**values)


@contextlib.asynccontextmanager
async def running_relay(
    settings: SmtpSettings, pipeline: Pipeline | None = None, metrics: Metrics | None = None
) -> AsyncIterator[RelayServer]:
    relay = RelayServer(settings, pipeline or PassThrough(), metrics)
    await relay.start()
    try:
        yield relay
    finally:
        await relay.shutdown(grace=1)


@contextlib.contextmanager
def relay_process(
    env: dict[str, str], args: list[str] | None = None, ready_text: str = "listening on"
) -> Iterator[subprocess.Popen[str]]:
    """``python -m webinar_proxy serve`` as a child; returns once it logged readiness."""
    full_env = serve_env()
    full_env.update(env)
    if "WEBINAR_PROXY_STORE__URL" not in full_env:
        state = tempfile.mkdtemp(prefix="webinar-proxy-test-")
        full_env["WEBINAR_PROXY_STORE__URL"] = f"sqlite:///{state}/state.db"
    process = subprocess.Popen(
        [sys.executable, "-m", "webinar_proxy", *(args or ["serve"])],
        cwd=REPO, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 30
        seen = []
        assert process.stdout is not None
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                raise AssertionError("relay exited before it was ready:\n" + "".join(seen))
            seen.append(line)
            if ready_text in line:
                break
        else:
            raise AssertionError("relay not ready in time:\n" + "".join(seen))
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        if process.stdout:
            process.stdout.close()


def free_port() -> int:
    """A loopback port nobody listens on right now (for a child process to bind)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
