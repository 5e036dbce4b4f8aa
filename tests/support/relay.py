"""Running the real relay inside a test's event loop (``serve.py`` runs it as a process)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

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


def free_port() -> int:
    """A loopback port nobody listens on right now (for a child process to bind)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
