"""Real SMTP peers for tests: a recording next hop and a raw-wire client.

The next hop is a stock aiosmtpd server on an ephemeral loopback port inside the
test's own event loop; its behaviour (refuse a recipient, answer DATA with a given
reply, hold the reply, drop the connection) is set per test through plain
attributes, never by patching the relay.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class Delivered:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    xforward: dict[str, str]


@dataclass
class NextHopBehaviour:
    refuse_rcpts: dict[str, str] = field(default_factory=dict)
    data_reply: str = "250 2.0.0 Ok: queued as TESTQ1"
    #: When set, DATA waits for this event before answering.
    hold_data_reply: asyncio.Event | None = None
    #: Close the connection instead of answering the end of DATA.
    drop_at_end_of_data: bool = False
    advertise_xforward: bool = True
    #: Answer this step ("MAIL", "RCPT" or "DATA" = the end of DATA) with 421 and close
    #: the connection, like a next hop shutting down mid-session; ``times_421`` times.
    reply_421_at: str | None = None
    times_421: int = 1


class RecordingHandler:
    def __init__(self, behaviour: NextHopBehaviour) -> None:
        self.behaviour = behaviour
        self.delivered: list[Delivered] = []
        self.data_started = asyncio.Event()
        self.commands: list[str] = []
        self._delivery = asyncio.Condition()

    async def wait_delivered(self, count: int, timeout_seconds: float = 10.0) -> None:
        """Wait until ``count`` messages have been delivered (bounded)."""
        async with asyncio.timeout(timeout_seconds), self._delivery:
            await self._delivery.wait_for(lambda: len(self.delivered) >= count)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if self.behaviour.advertise_xforward:
            return [*responses[:-1], "250-XFORWARD NAME ADDR PROTO HELO", responses[-1]]
        return responses

    def _closing_421(self, server: SMTP, step: str) -> str | None:
        if self.behaviour.reply_421_at != step or self.behaviour.times_421 <= 0:
            return None
        self.behaviour.times_421 -= 1
        # aiosmtpd writes the reply after this returns; the close comes after it.
        asyncio.get_running_loop().call_soon(server.transport.close)
        return "421 4.3.2 Service shutting down, closing transmission channel"

    async def handle_MAIL(self, server, session, envelope, address, options):
        self.commands.append(f"MAIL {address}")
        if (closing := self._closing_421(server, "MAIL")) is not None:
            return closing
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(self, server, session, envelope: Envelope, address, options):
        self.commands.append(f"RCPT {address}")
        if (closing := self._closing_421(server, "RCPT")) is not None:
            return closing
        refusal = self.behaviour.refuse_rcpts.get(address)
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_RSET(self, server, session, envelope):
        self.commands.append("RSET")
        return "250 2.0.0 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope):
        self.data_started.set()
        if self.behaviour.hold_data_reply is not None:
            await self.behaviour.hold_data_reply.wait()
        if self.behaviour.drop_at_end_of_data:
            server.transport.close()
            return "421 4.4.2 dropped"  # never reaches the client
        if (closing := self._closing_421(server, "DATA")) is not None:
            return closing
        if self.behaviour.data_reply.startswith("2"):
            self.delivered.append(
                Delivered(
                    envelope.mail_from,
                    list(envelope.rcpt_tos),
                    envelope.original_content,
                    dict(getattr(session, "xforward", {})),
                )
            )
            async with self._delivery:
                self._delivery.notify_all()
        return self.behaviour.data_reply


class XforwardSMTP(SMTP):
    """aiosmtpd plus just enough XFORWARD to record what the relay passes on."""

    async def smtp_XFORWARD(self, arg):
        attributes = dict(word.split("=", 1) for word in (arg or "").split())
        self.session.xforward = {**getattr(self.session, "xforward", {}), **attributes}
        await self.push("250 2.0.0 Ok")


@dataclass
class RunningNextHop:
    handler: RecordingHandler
    behaviour: NextHopBehaviour
    port: int
    server: asyncio.Server


@contextlib.asynccontextmanager
async def running_next_hop(
    behaviour: NextHopBehaviour | None = None, port: int = 0
) -> AsyncIterator[RunningNextHop]:
    behaviour = behaviour or NextHopBehaviour()
    handler = RecordingHandler(behaviour)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: XforwardSMTP(
            handler, hostname="nexthop.test", enable_SMTPUTF8=True, data_size_limit=64 * 2**20
        ),
        host="127.0.0.1",
        port=port,
    )
    try:
        yield RunningNextHop(handler, behaviour, server.sockets[0].getsockname()[1], server)
    finally:
        if behaviour.hold_data_reply is not None:
            behaviour.hold_data_reply.set()
        server.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await server.wait_closed()


class WireClient:
    """An SMTP client that writes exactly the bytes a test gives it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, host: str, port: int) -> WireClient:
        reader, writer = await asyncio.open_connection(host, port, limit=2**20)
        return cls(reader, writer)

    async def reply(self) -> tuple[int, str]:
        """Read one (possibly multi-line) reply."""
        lines = []
        async with asyncio.timeout(30):
            while True:
                line = await self.reader.readline()
                if not line:
                    raise ConnectionResetError("server closed the connection")
                lines.append(line.decode("utf-8", "replace").rstrip("\r\n"))
                if len(line) < 4 or line[3:4] != b"-":
                    break
        return int(lines[-1][:3]), "\n".join(text[4:] for text in lines)

    async def command(self, line: str | bytes) -> tuple[int, str]:
        raw = line if isinstance(line, bytes) else line.encode("utf-8")
        self.writer.write(raw + b"\r\n")
        await self.writer.drain()
        return await self.reply()

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def transaction(self, mail_from: str, rcpts: list[str], wire_data: bytes) -> tuple[int, str]:
        """EHLO-less helper: MAIL, RCPTs, DATA with already dot-stuffed ``wire_data``."""
        code, text = await self.command(f"MAIL FROM:<{mail_from}>")
        assert code == 250, (code, text)
        for rcpt in rcpts:
            code, text = await self.command(f"RCPT TO:<{rcpt}>")
            assert code == 250, (code, text)
        code, text = await self.command("DATA")
        assert code == 354, (code, text)
        await self.send_raw(wire_data)
        return await self.reply()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


def dot_stuff(message: bytes) -> bytes:
    """Independent, simple implementation for tests: message → DATA wire bytes."""
    lines = message.split(b"\r\n")
    if lines and lines[-1] == b"":
        lines.pop()
    stuffed = [b"." + line if line.startswith(b".") else line for line in lines]
    return b"".join(line + b"\r\n" for line in stuffed) + b".\r\n"


async def send_one(
    port: int, message: bytes, mail_from: str = "boss@example.org",
    rcpts: tuple[str, ...] = ("ann@example.net",), host: str = "127.0.0.1",
) -> int:
    """One whole session (banner, EHLO, one transaction) with ``message``; the final code."""
    client = await WireClient.connect(host, port)
    try:
        await client.reply()
        await client.command("EHLO client.test")
        code, _ = await client.transaction(mail_from, list(rcpts), dot_stuff(message))
        return code
    finally:
        await client.close()
