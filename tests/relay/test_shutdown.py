"""SIGTERM on the real ``webinar-proxy serve`` process: in-flight mail is finished or
left to the client, never acknowledged without delivery."""

from __future__ import annotations

import asyncio
import signal

from tests.support.relay import free_port
from tests.support.serve import serve_process
from tests.support.smtp import NextHopBehaviour, WireClient, dot_stuff, running_next_hop

MESSAGE = b"From: <o@example.org>\r\nSubject: s\r\n\r\nbody\r\n"


def _env(next_hop_port: int, listen_port: int, grace: float) -> dict[str, str]:
    return {
        "WEBINAR_PROXY_SMTP__LISTEN": f"127.0.0.1:{listen_port}",
        "WEBINAR_PROXY_SMTP__NEXT_HOP": f"127.0.0.1:{next_hop_port}",
        "WEBINAR_PROXY_SMTP__SHUTDOWN_GRACE_SECONDS": str(grace),
        "WEBINAR_PROXY_WEBINAR__TOKEN": "test-token",
    }




async def _start_transaction(port: int) -> WireClient:
    client = await WireClient.connect("127.0.0.1", port)
    await client.reply()
    await client.command("EHLO client.test")
    await client.command("MAIL FROM:<o@example.org>")
    await client.command("RCPT TO:<a@example.net>")
    assert (await client.command("DATA"))[0] == 354
    await client.send_raw(dot_stuff(MESSAGE))
    return client


async def test_sigterm_waits_for_the_transaction_in_flight_to_finish():
    hold = asyncio.Event()
    async with running_next_hop(NextHopBehaviour(hold_data_reply=hold)) as hop:
        port = free_port()
        with serve_process(_env(hop.port, port, grace=30)) as process:
            client = await _start_transaction(port)
            await hop.handler.data_started.wait()
            process.send_signal(signal.SIGTERM)
            # a new client is no longer accepted once the listener is closed
            hold.set()
            code, _ = await client.reply()
            await client.close()
            assert code == 250
            assert await asyncio.to_thread(process.wait, 30) == 0
    assert [d.content for d in hop.handler.delivered] == [MESSAGE]


async def test_sigterm_past_the_grace_period_never_answers_250():
    hold = asyncio.Event()
    async with running_next_hop(NextHopBehaviour(hold_data_reply=hold)) as hop:
        port = free_port()
        with serve_process(_env(hop.port, port, grace=0.5)) as process:
            client = await _start_transaction(port)
            await hop.handler.data_started.wait()
            process.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(process.wait, 30) == 0
            try:
                code, _ = await client.reply()
            except ConnectionError:
                code = None
            await client.close()
            hold.set()
    # The next hop never answered, so nothing was delivered and nothing was acknowledged.
    assert code != 250
    assert hop.handler.delivered == []
