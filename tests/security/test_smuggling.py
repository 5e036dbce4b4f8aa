"""SMTP smuggling: a bare CR or LF around a dot in the middle of DATA must never end the
message nor start a second one — not at the relay, and not at the next hop, even a
lenient one that would take a bare line end as a line end.  The smuggled sequence is
also sent split across TCP writes at every position."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from tests.support.relay import running_relay, smtp_settings
from tests.support.smtp import WireClient, running_next_hop

SENDER = "organizer@example.org"
SMUGGLED = {
    "LF.LF": b"\n.\n",
    "CR.CR": b"\r.\r",
    "LF.CRLF": b"\n.\r\n",
    "CRLF.LF": b"\r\n.\n",
    "CR.CRLF": b"\r.\r\n",
    "CRLF.CR": b"\r\n.\r",
    "LF.CR": b"\n.\r",
}
SECOND = (b"MAIL FROM:<evil@example.com>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\n"
          b"From: <ceo@example.org>\r\nSubject: forged\r\n\r\nforged\r\n")
#: What a lenient next hop would take as the end of DATA: a dot alone between any line ends.
LENIENT_END = re.compile(rb"(?:\r\n|\r|\n)\.(?:\r\n|\r|\n)")


def _wire(smuggled: bytes) -> bytes:
    head = b"From: <organizer@example.org>\r\nTo: <a@example.net>\r\nSubject: hi\r\n\r\nbefore"
    return head + smuggled + SECOND + b"after\r\n.\r\n"


@dataclass
class RawNextHop:
    """A minimal SMTP server that records the exact bytes of every DATA it receives."""

    port: int = 0
    data: list[bytes] = field(default_factory=list)
    commands: list[bytes] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 raw.test ESMTP\r\n")
        try:
            while line := await reader.readuntil(b"\r\n"):
                verb = line[:4].upper()
                self.commands.append(line)
                if verb == b"EHLO":
                    writer.write(b"250-raw.test\r\n250 8BITMIME\r\n")
                elif verb == b"DATA":
                    writer.write(b"354 go\r\n")
                    self.data.append(await reader.readuntil(b"\r\n.\r\n"))
                    writer.write(b"250 2.0.0 Ok: queued as RAW\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 bye\r\n")
                    break
                else:
                    writer.write(b"250 2.0.0 Ok\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def running_raw_next_hop() -> AsyncIterator[RawNextHop]:
    hop = RawNextHop()
    server = await asyncio.start_server(hop.handle, "127.0.0.1", 0, limit=2**24)
    hop.port = server.sockets[0].getsockname()[1]
    try:
        yield hop
    finally:
        server.close()


async def _send_in_pieces(port: int, pieces: list[bytes], pipelined: int = 0) -> list[tuple[int, str]]:
    """One transaction whose DATA goes in ``pieces`` (one write and drain each), then
    NOOP and QUIT; every reply the relay gave after DATA's 354, in order."""
    client = await WireClient.connect("127.0.0.1", port)
    try:
        assert (await client.reply())[0] == 220
        assert (await client.command("EHLO client.test"))[0] == 250
        assert (await client.command(f"MAIL FROM:<{SENDER}>"))[0] == 250
        assert (await client.command("RCPT TO:<a@example.net>"))[0] == 250
        assert (await client.command("DATA"))[0] == 354
        for piece in pieces:
            await client.send_raw(piece)
        replies = [await client.reply() for _ in range(1 + pipelined)]
        # Had the relay ended DATA early, it would have answered the smuggled MAIL, RCPT
        # and DATA too: those replies would come before the NOOP's and QUIT's.
        replies.append(await client.command("NOOP"))
        replies.append(await client.command("QUIT"))
        async with asyncio.timeout(10):
            assert await client.reader.read() == b""
        return replies
    finally:
        await client.close()


def _splits(wire: bytes, smuggled: bytes) -> list[list[bytes]]:
    """The DATA split at every position inside (and at both edges of) the smuggled sequence."""
    at = wire.index(smuggled)
    return [[wire[:cut], wire[cut:]] for cut in range(at, at + len(smuggled) + 1)]


@pytest.mark.parametrize("name", sorted(SMUGGLED))
async def test_smuggled_end_never_ends_data_at_the_relay(name):
    smuggled = SMUGGLED[name]
    wire = _wire(smuggled)
    async with running_next_hop() as hop, running_relay(smtp_settings(hop.port)) as relay:
        for pieces in [[wire], *_splits(wire, smuggled), [bytes([b]) for b in wire]]:
            replies = await _send_in_pieces(relay.port, pieces)
            assert [code for code, _ in replies] == [250, 250, 221], (pieces, replies)
            assert "queued as TESTQ1" in replies[0][1]
    count = len(_splits(wire, smuggled)) + 2
    assert len(hop.handler.delivered) == count
    assert [c for c in hop.handler.commands if c.startswith("MAIL")] == [f"MAIL {SENDER}"] * count
    assert all(d.rcpt_tos == ["a@example.net"] for d in hop.handler.delivered)
    for delivered in hop.handler.delivered:
        content = delivered.content
        assert content.count(b"\n") == content.count(b"\r\n") == content.count(b"\r")
        assert b"MAIL FROM:<evil@example.com>" in content and content.endswith(b"after\r\n")


@pytest.mark.parametrize("name", sorted(SMUGGLED))
async def test_what_reaches_the_next_hop_has_crlf_only_and_one_possible_end(name):
    """Even a next hop that reads bare CR or LF as line ends sees one message."""
    smuggled = SMUGGLED[name]
    wire = _wire(smuggled)
    async with running_raw_next_hop() as hop, running_relay(smtp_settings(hop.port)) as relay:
        for pieces in _splits(wire, smuggled):
            replies = await _send_in_pieces(relay.port, pieces)
            assert [code for code, _ in replies] == [250, 250, 221], replies
    assert len(hop.data) == len(_splits(wire, smuggled))
    mails = [c for c in hop.commands if c.startswith(b"MAIL")]
    assert mails == [b"MAIL FROM:<%s>\r\n" % SENDER.encode()] * len(hop.data)
    for raw in hop.data:
        assert raw.count(b"\n") == raw.count(b"\r\n") == raw.count(b"\r")
        ends = [m.end() for m in LENIENT_END.finditer(raw)]
        assert ends == [len(raw)], raw  # the only dot line is the real terminator
        assert b"\r\n..\r\n" in raw  # the smuggled dot went out dot-stuffed


async def test_pipelined_commands_after_a_smuggled_end_are_data():
    # A client pipelining a "second transaction" after a bare-LF dot: all of it is DATA.
    wire = _wire(b"\n.\n") + b"NOOP\r\n"
    async with running_next_hop() as hop, running_relay(smtp_settings(hop.port)) as relay:
        replies = await _send_in_pieces(relay.port, [wire], pipelined=1)
    assert [code for code, _ in replies] == [250, 250, 250, 221]  # DATA, pipelined NOOP, NOOP, QUIT
    assert len(hop.handler.delivered) == 1
