"""The next hop misbehaving, against the real ``webinar-proxy serve`` process: it
refuses connections, answers 421 mid-session and closes, or stalls past the
deadline.  The client always gets a 4xx it can retry, the next transaction on the
same session works over a new next-hop connection, and nothing is delivered twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.faults.helpers import (
    ANN,
    BOSS,
    PLAIN,
    TOKEN,
    invitations,
    meeting,
    relay_env,
    send,
    serve,
    wait_until,
)
from tests.support.smtp import NextHopBehaviour, WireClient, dot_stuff, running_next_hop
from webinar_proxy.testing.fake_webinar import running_fake_webinar

UNUSED_API = "http://127.0.0.1:9/v3"  # plain mail never calls the API


@contextlib.asynccontextmanager
async def session(port: int) -> AsyncIterator[WireClient]:
    client = await WireClient.connect("127.0.0.1", port)
    try:
        assert (await client.reply())[0] == 220
        assert (await client.command("EHLO client.test"))[0] == 250
        yield client
    finally:
        await client.close()


async def transaction(client: WireClient, message: bytes, rcpts: tuple[str, ...] = (ANN,)) -> int:
    """MAIL, RCPTs, DATA on an open session; the first refusal or the reply to DATA.
    A refused transaction is reset, as an MTA does before its next one."""
    code, _ = await client.command(f"MAIL FROM:<{BOSS}>")
    accepted = 0
    if code == 250:
        for rcpt in rcpts:
            reply, _ = await client.command(f"RCPT TO:<{rcpt}>")
            accepted += reply == 250
            code = reply if reply != 250 else code
        if accepted:
            data, _ = await client.command("DATA")
            if data == 354:
                await client.send_raw(dot_stuff(message))
                code, _ = await client.reply()
            else:
                code = data
    if code != 250:
        assert (await client.command("RSET"))[0] == 250
    return code


async def test_next_hop_refusing_connections_gives_451_at_mail_and_no_conference(tmp_path: Path):
    with socket.socket() as placeholder:  # bound, not listening: connections are refused
        placeholder.bind(("127.0.0.1", 0))
        hop_port = placeholder.getsockname()[1]
        async with running_fake_webinar(token=TOKEN) as fake:
            env = relay_env(next_hop_port=hop_port, api_url=fake.api_url,
                            store_url=f"sqlite:///{tmp_path}/state.db")
            with serve(env) as relay:
                for message in (PLAIN, meeting("hop-down@example.org")):
                    code, text = await send(relay.port, message)
                    assert (code, text[:5]) == (451, "4.4.1"), text
                assert fake.state()["events"] == []  # refused before DATA: nothing reserved
                placeholder.close()
                async with running_next_hop(port=hop_port) as hop:
                    assert (await send(relay.port, PLAIN))[0] == 250
                    assert (await send(relay.port, meeting("hop-down@example.org")))[0] == 250
                    assert len(fake.state()["events"]) == 1
                    await hop.handler.wait_delivered(3)  # both, and the organizer's notice
    assert hop.handler.delivered[0].content == PLAIN
    assert len(invitations(hop.handler.delivered)) == 1


@pytest.mark.parametrize("step", ["MAIL", "RCPT", "DATA"])
async def test_421_mid_session_gives_451_and_the_next_transaction_works(tmp_path: Path, step: str):
    behaviour = NextHopBehaviour(reply_421_at=step)
    async with running_next_hop(behaviour) as hop:
        env = relay_env(next_hop_port=hop.port, api_url=UNUSED_API, store_url=f"sqlite:///{tmp_path}/s.db")
        with serve(env) as relay:
            async with session(relay.port) as client:
                assert await transaction(client, PLAIN) == 451
                assert hop.handler.delivered == []
                assert await transaction(client, PLAIN) == 250  # same client session
    assert [d.content for d in hop.handler.delivered] == [PLAIN]


async def test_421_after_one_recipient_loses_nothing_and_duplicates_nothing(tmp_path: Path):
    # RCPT ann → 250, RCPT bob → 421 and the next hop hangs up: DATA cannot go
    # anywhere, so the whole transaction is refused and retried.
    behaviour = NextHopBehaviour(reply_421_at="RCPT")
    rcpts = (ANN, "bob@example.net")
    async with running_next_hop(behaviour) as hop:
        behaviour.reply_421_at = None
        env = relay_env(next_hop_port=hop.port, api_url=UNUSED_API, store_url=f"sqlite:///{tmp_path}/s.db")
        with serve(env) as relay:
            async with session(relay.port) as client:
                code, _ = await client.command(f"MAIL FROM:<{BOSS}>")
                assert code == 250
                assert (await client.command(f"RCPT TO:<{ANN}>"))[0] == 250
                behaviour.reply_421_at = "RCPT"
                code, text = await client.command("RCPT TO:<bob@example.net>")
                assert (code, text[:5]) == (451, "4.4.2"), text
                assert (await client.command("DATA"))[0] == 354
                await client.send_raw(dot_stuff(PLAIN))
                code, text = await client.reply()
                assert code == 451, text
                assert (await client.command("RSET"))[0] == 250
                assert await transaction(client, PLAIN, rcpts) == 250
    [delivered] = hop.handler.delivered
    assert delivered.rcpt_tos == list(rcpts)


async def test_next_hop_stalling_past_the_deadline_gives_451_and_one_delivery_on_retry(tmp_path: Path):
    hold = asyncio.Event()
    behaviour = NextHopBehaviour(hold_data_reply=hold)
    invite = meeting("stall@example.org")
    async with running_fake_webinar(token=TOKEN) as fake, running_next_hop(behaviour) as hop:
        env = relay_env(next_hop_port=hop.port, api_url=fake.api_url,
                        store_url=f"sqlite:///{tmp_path}/state.db", deadline=2.0, call_deadline=1.0)
        with serve(env) as relay:
            async with session(relay.port) as client:
                for message in (PLAIN, invite):
                    code = await transaction(client, message)
                    assert code == 451  # 4.4.7 after smtp.deadline_seconds
                    # the relay's output is collected by a reader thread: wait for the line
                    await wait_until(lambda: "deadline" in relay.log(), "the deadline in the log")
                assert hop.handler.delivered == []
                behaviour.hold_data_reply = None
                hold.set()  # the stalled replies come now, to connections already closed
                for _ in range(5):
                    await asyncio.sleep(0)
                assert hop.handler.delivered == []
                for message in (PLAIN, invite):
                    assert await transaction(client, message) == 250
            # the organizer hears of the conference with the delivery that finally went out
            await hop.handler.wait_delivered(3)
    state = fake.state()
    assert len(state["events"]) == 1 and len(state["sessions"]) == 1
    assert hop.handler.delivered[0].content == PLAIN
    [copy] = invitations(hop.handler.delivered)
    assert state["events"][0]["link"].encode() in copy.content
    [notice] = [d for d in hop.handler.delivered if d.mail_from == "<>"]
    body = email.message_from_bytes(notice.content, policy=email.policy.default).get_body()
    assert notice.rcpt_tos == [BOSS] and state["events"][0]["link"] in body.get_content()
