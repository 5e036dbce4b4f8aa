"""The whole product on loopback: fake Webinar server, relay with the invitation
pipeline, real SQLite (or PostgreSQL) store, recording next hop."""

from __future__ import annotations

import contextlib
import email
import email.policy
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.support.relay import running_relay
from tests.support.smtp import NextHopBehaviour, RunningNextHop, WireClient, dot_stuff, running_next_hop
from webinar_proxy.settings import (
    HostPort,
    PolicySettings,
    SchedulerSettings,
    Settings,
    SmtpSettings,
    StoreSettings,
    WebinarSettings,
)
from webinar_proxy.smtp.server import RelayServer
from webinar_proxy.testing.fake_webinar import running_fake_webinar
from webinar_proxy.webinar.pacing import Backoff
from webinar_proxy.wiring import Services, open_services

TOKEN = "fake-token-5d1c9a7e"


class Clock:
    """A settable clock for the lifecycle (invitation times are compared with it)."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Product:
    fake: Any
    hop: RunningNextHop
    relay: RelayServer
    services: Services
    settings: Settings
    clock: Clock
    #: Register queued attendees after each message (no scheduler runs here), so the
    #: fake's state shows them as a relay shows them moments later.
    drain: bool = True

    async def send(self, message: bytes, mail_from: str, rcpts: list[str]) -> tuple[int, str]:
        try:
            return await self._send(message, mail_from, rcpts)
        finally:
            if self.drain:
                await self.services.registrations.drain()

    async def _send(self, message: bytes, mail_from: str, rcpts: list[str]) -> tuple[int, str]:
        client = await WireClient.connect("127.0.0.1", self.relay.port)
        try:
            await client.reply()
            await client.command("EHLO client.test")
            code, text = await client.command(f"MAIL FROM:<{mail_from}>")
            if code != 250:
                return code, text
            for rcpt in rcpts:
                code, text = await client.command(f"RCPT TO:<{rcpt}>")
                assert code == 250, (code, text)
            assert (await client.command("DATA"))[0] == 354
            await client.send_raw(dot_stuff(message))
            return await client.reply()
        finally:
            await client.close()

    def state(self) -> dict[str, Any]:
        return self.fake.state()

    def delivered(self) -> list[bytes]:
        return [d.content for d in self.hop.handler.delivered]


@contextlib.asynccontextmanager
async def running_product(
    tmp_path: Path,
    now: datetime = datetime(2022, 3, 1, 9, 0, tzinfo=UTC),
    *,
    store_url: str | None = None,
    policy: dict[str, Any] | None = None,
    hop_behaviour: NextHopBehaviour | None = None,
    smtp: dict[str, Any] | None = None,
    fake_options: dict[str, Any] | None = None,
    call_deadline: float = 5.0,
    clock_factory: Callable[[datetime], Clock] = Clock,
    client_options: dict[str, Any] | None = None,
) -> AsyncIterator[Product]:
    clock = clock_factory(now)
    async with (
        running_fake_webinar(token=TOKEN, **(fake_options or {})) as fake,
        running_next_hop(hop_behaviour) as hop,
    ):
        settings = Settings(
            smtp=SmtpSettings(
                listen=HostPort("127.0.0.1", 0), next_hop=HostPort("127.0.0.1", hop.port),
                hostname="relay.test", **(smtp or {}),
            ),
            webinar=WebinarSettings(
                api_url=fake.api_url, token=TOKEN, rate_limit=1000, call_deadline_seconds=call_deadline,
                read_timeout_seconds=2, connect_timeout_seconds=2,
            ),
            store=StoreSettings(url=store_url or f"sqlite:///{tmp_path}/state.db"),
            policy=PolicySettings(**(policy or {})),
            scheduler=SchedulerSettings(),
        )
        fast = {"backoff": Backoff(base=0.01, cap=0.05), **(client_options or {})}
        async with (
            open_services(settings, clock=clock, client_options=fast) as services,
            running_relay(settings.smtp, services.pipeline) as relay,
        ):
            yield Product(fake, hop, relay, services, settings, clock)


def with_header(message: bytes, header: bytes) -> bytes:
    """The message with one more header line at the top (the bytes stay otherwise as they are)."""
    return header.rstrip(b"\r\n") + b"\r\n" + message


def calendar_text(message: bytes) -> bytes:
    parsed = email.message_from_bytes(message, policy=email.policy.default)
    parts = [p for p in parsed.walk() if p.get_content_type() == "text/calendar"]
    # unfold, so a link split across folded lines reads whole
    return b"".join(p.get_payload(decode=True) for p in parts).replace(b"\r\n ", b"")
