"""The one-shot sender (demo, organizer notices): a send cut short leaves no connection open."""

from __future__ import annotations

import asyncio

from webinar_proxy.settings import HostPort
from webinar_proxy.smtp.submit import submit


async def test_a_cancelled_send_closes_its_connection_at_once() -> None:
    closed = asyncio.Event()
    at_data = asyncio.Event()

    async def silent_after_data(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 hop ESMTP\r\n")
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb == b"EHLO":
                writer.write(b"250-hop\r\n250 8BITMIME\r\n")
            elif verb in (b"MAIL", b"RCPT"):
                writer.write(b"250 ok\r\n")
            elif verb == b"DATA":
                writer.write(b"354 go on\r\n")
                at_data.set()  # and never answers the end of the message
        closed.set()
        writer.close()

    server = await asyncio.start_server(silent_after_data, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        sending = asyncio.create_task(submit(HostPort("127.0.0.1", port), "a@example.org",
                                             ["b@example.net"], b"Subject: x\r\n\r\nhello\r\n"))
        async with asyncio.timeout(10):
            await at_data.wait()
        sending.cancel()
        async with asyncio.timeout(10):
            await closed.wait()  # the next hop saw the connection end
        assert sending.cancelled()
    finally:
        server.close()
        await server.wait_closed()
