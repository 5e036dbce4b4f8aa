"""Fewer round trips to the next hop: PIPELINING (RFC 2920) and no RSET on an idle connection.

The next hop here is a small SMTP server of the test's own that offers PIPELINING and
holds back its reply to MAIL until DATA arrived (or a few seconds passed): a relay
that waited for each reply would show up as MAIL answered before any RCPT was seen.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from tests.support.relay import running_relay, smtp_settings
from tests.support.smtp import WireClient, dot_stuff

MESSAGE = b"From: <o@example.org>\r\nTo: <a@example.net>\r\nSubject: plain\r\n\r\nbody\r\n"
REFUSED = "nobody@example.net"
HOLD_MAIL_REPLY = 5.0


@dataclass
class Session:
    commands: list[str] = field(default_factory=list)
    #: The commands received before the reply to MAIL went out, per transaction.
    before_mail_reply: list[list[str]] = field(default_factory=list)
    messages: list[tuple[list[str], bytes]] = field(default_factory=list)
    #: Whether the connection ended with a message half sent (we were in DATA).
    closed_in_data: bool = False


@dataclass
class PipeliningHop:
    #: Seconds the reply to MAIL waits for DATA (short where the client does not pipeline).
    hold: float = HOLD_MAIL_REPLY
    port: int = 0
    sessions: list[Session] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = Session()
        self.sessions.append(session)
        writer.write(b"220 hop.test ESMTP\r\n")
        rcpts: list[str] = []
        in_data = False
        try:
            while line := await reader.readline():
                if in_data:
                    body = line + await reader.readuntil(b"\r\n.\r\n")
                    session.messages.append((rcpts, body))
                    in_data = False
                    writer.write(b"250 2.0.0 Ok: queued\r\n")
                    continue
                command = line.decode().rstrip("\r\n")
                session.commands.append(command)
                verb = command.split(" ", 1)[0].upper()
                if verb == "EHLO":
                    writer.write(b"250-hop.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
                elif verb == "MAIL":
                    rcpts = []
                    seen = [command]
                    # Hold the reply until the client shows it did not wait for it.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.hold):
                            while seen[-1].upper() != "DATA":
                                seen.append((await reader.readline()).decode().rstrip("\r\n"))
                    session.before_mail_reply.append(seen)
                    writer.write(b"250 2.1.0 Ok\r\n")
                    for held in seen[1:]:
                        session.commands.append(held)
                        if held.upper().startswith("RCPT"):
                            address = held.split("<", 1)[1].rstrip(">")
                            if address == REFUSED:
                                writer.write(b"550 5.1.1 <nobody@example.net>: no such user\r\n")
                            else:
                                rcpts.append(address)
                                writer.write(b"250 2.1.5 Ok\r\n")
                        elif held.upper() == "DATA":
                            if rcpts:
                                in_data = True
                                writer.write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                            else:
                                writer.write(b"554 5.5.1 Error: no valid recipients\r\n")
                elif verb == "RCPT":
                    rcpts.append(command.split("<", 1)[1].rstrip(">"))
                    writer.write(b"250 2.1.5 Ok\r\n")
                elif verb == "DATA":
                    in_data = True
                    writer.write(b"354 go ahead\r\n")
                elif verb == "QUIT":
                    writer.write(b"221 2.0.0 Bye\r\n")
                    break
                else:
                    writer.write(b"250 2.0.0 Ok\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        session.closed_in_data = in_data


@contextlib.asynccontextmanager
async def pipelining_hop(hold: float = HOLD_MAIL_REPLY) -> AsyncIterator[PipeliningHop]:
    hop = PipeliningHop(hold)
    server = await asyncio.start_server(hop.serve, "127.0.0.1", 0)
    hop.port = server.sockets[0].getsockname()[1]
    try:
        yield hop
    finally:
        server.close()
        # The relay closed its side; let each session see that before the loop ends.
        if hop.tasks:
            await asyncio.wait(hop.tasks, timeout=10)


async def pipelined(client: WireClient, rcpts: list[str]) -> list[tuple[int, str]]:
    """MAIL, RCPTs and DATA in one write, as Postfix does; their replies."""
    commands = ["MAIL FROM:<o@example.org>", *(f"RCPT TO:<{r}>" for r in rcpts), "DATA"]
    await client.send_raw("".join(c + "\r\n" for c in commands).encode())
    return [await client.reply() for _ in commands]


async def test_mail_rcpts_and_data_reach_the_next_hop_in_one_go():
    async with pipelining_hop() as hop, running_relay(smtp_settings(hop.port)) as relay:
        client = await WireClient.connect("127.0.0.1", relay.port)
        await client.reply()
        _, ehlo = await client.command("EHLO client.test")
        assert "PIPELINING" in ehlo.splitlines()
        answers = await pipelined(client, ["a@example.net", "b@example.net"])
        assert [code for code, _ in answers] == [250, 250, 250, 354]
        await client.send_raw(dot_stuff(MESSAGE))
        assert (await client.reply())[0] == 250
        await client.close()
    [session] = hop.sessions
    assert session.before_mail_reply == [
        ["MAIL FROM:<o@example.org>", "RCPT TO:<a@example.net>", "RCPT TO:<b@example.net>", "DATA"]
    ]
    assert session.messages == [(["a@example.net", "b@example.net"], dot_stuff(MESSAGE))]


async def test_a_refused_recipient_is_refused_to_the_client_and_the_rest_get_the_mail():
    async with pipelining_hop() as hop, running_relay(smtp_settings(hop.port)) as relay:
        client = await WireClient.connect("127.0.0.1", relay.port)
        await client.reply()
        await client.command("EHLO client.test")
        answers = await pipelined(client, ["a@example.net", REFUSED])
        assert [code for code, _ in answers] == [250, 250, 550, 354]
        assert "no such user" in answers[2][1]  # the next hop's own words
        await client.send_raw(dot_stuff(MESSAGE))
        assert (await client.reply())[0] == 250

        # Every recipient refused: DATA is refused and the connection stays usable.
        answers = await pipelined(client, [REFUSED])
        assert [code for code, _ in answers] == [250, 550, 503]
        assert (await client.command("RSET"))[0] == 250  # as Postfix does after a refused DATA
        answers = await pipelined(client, ["b@example.net"])
        assert [code for code, _ in answers] == [250, 250, 354]
        await client.send_raw(dot_stuff(MESSAGE))
        assert (await client.reply())[0] == 250
        await client.close()
    [session] = hop.sessions
    assert [rcpts for rcpts, _ in session.messages] == [["a@example.net"], ["b@example.net"]]


async def test_a_client_that_does_not_pipeline_is_relayed_command_by_command():
    async with pipelining_hop(hold=0.1) as hop, running_relay(smtp_settings(hop.port)) as relay:
        client = await WireClient.connect("127.0.0.1", relay.port)
        await client.reply()
        await client.command("EHLO client.test")
        code, _ = await client.transaction("o@example.org", ["a@example.net"], dot_stuff(MESSAGE))
        assert code == 250
        await client.close()
    [session] = hop.sessions
    assert session.messages == [(["a@example.net"], dot_stuff(MESSAGE))]


async def test_rset_is_passed_on_only_when_a_transaction_is_open_there():
    async with pipelining_hop(hold=0.1) as hop, running_relay(smtp_settings(hop.port)) as relay:
        client = await WireClient.connect("127.0.0.1", relay.port)
        await client.reply()
        await client.command("EHLO client.test")
        assert (await client.command("RSET"))[0] == 250  # nothing open anywhere
        answers = await pipelined(client, ["a@example.net"])
        assert [code for code, _ in answers] == [250, 250, 354]
        await client.send_raw(dot_stuff(MESSAGE))
        assert (await client.reply())[0] == 250
        assert (await client.command("RSET"))[0] == 250  # Postfix probing a cached connection
        assert (await client.command("MAIL FROM:<o@example.org>"))[0] == 250
        assert (await client.command("RSET"))[0] == 250  # this one aborts a transaction
        await client.close()
    [session] = hop.sessions
    assert [c for c in session.commands if c.upper() == "RSET"] == ["RSET"]
    assert session.commands[-2:] == ["MAIL FROM:<o@example.org>", "RSET"]


async def test_a_message_too_big_after_a_pipelined_data_drops_the_next_hop_transaction():
    settings = smtp_settings
    async with pipelining_hop() as hop, running_relay(settings(hop.port, max_message_size=1024)) as relay:
        client = await WireClient.connect("127.0.0.1", relay.port)
        await client.reply()
        await client.command("EHLO client.test")
        answers = await pipelined(client, ["a@example.net"])
        assert [code for code, _ in answers] == [250, 250, 354]
        await client.send_raw(dot_stuff(MESSAGE + b"x" * 2048 + b"\r\n"))
        assert (await client.reply())[0] == 552
        # The next transaction gets a fresh next-hop connection and goes through.
        answers = await pipelined(client, ["b@example.net"])
        assert [code for code, _ in answers] == [250, 250, 354]
        await client.send_raw(dot_stuff(MESSAGE))
        assert (await client.reply())[0] == 250
        await client.close()
    first, second = hop.sessions
    assert first.closed_in_data and first.messages == []  # no message slipped through
    assert second.messages == [(["b@example.net"], dot_stuff(MESSAGE))]
