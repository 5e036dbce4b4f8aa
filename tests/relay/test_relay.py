"""The SMTP edge against a real next hop on loopback: fidelity, per-recipient verdicts,
failure replies, access control, limits."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import aiosmtplib
import pytest

from tests.support.relay import running_relay, smtp_settings
from tests.support.smtp import NextHopBehaviour, WireClient, dot_stuff, running_next_hop
from webinar_proxy.seam import InboundMessage, Processed, TemporaryFailure

SENDER = "organizer@example.org"


def _message(body: bytes, subject: str = "test") -> bytes:
    return (
        f"From: <{SENDER}>\r\nTo: <a@example.net>\r\nSubject: {subject}\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
    ).encode() + body


TRICKY = {
    "8bit": _message("Привет, мир — ünïcödé\r\n".encode()),
    "leading-dots": _message(b".\r\n..\r\n.hidden line\r\n...three\r\nend\r\n"),
    "998-byte line": _message(b"x" * 998 + b"\r\n" + b"." + b"y" * 997 + b"\r\n"),
    "crlf kept": _message(b"line one\r\n\r\n\r\nline after two blank lines\r\n"),
    "no final newline": _message(b"last line without CRLF") + b"\r\n",
}


async def _send(port: int, wire: bytes, rcpts=("a@example.net",), mail_from=SENDER):
    client = await WireClient.connect("127.0.0.1", port)
    try:
        assert (await client.reply())[0] == 220
        assert (await client.command("EHLO client.test"))[0] == 250
        return await client.transaction(mail_from, list(rcpts), wire)
    finally:
        await client.close()


@pytest.mark.parametrize("name", sorted(TRICKY))
async def test_tricky_messages_arrive_byte_for_byte(name):
    message = TRICKY[name]
    async with running_next_hop() as hop, running_relay(smtp_settings(hop.port)) as relay:
        code, text = await _send(relay.port, dot_stuff(message))
        assert code == 250, text
        assert "queued as TESTQ1" in text  # the next hop's own reply is relayed
    assert [d.content for d in hop.handler.delivered] == [message]


async def test_20_megabyte_message_arrives_intact():
    line = b"0123456789abcdefghijklmnopqrstuvwxyz" * 2 + b"\r\n"
    body = line * (20 * 2**20 // len(line))
    message = _message(body)
    async with running_next_hop() as hop, running_relay(smtp_settings(hop.port)) as relay:
        code, text = await _send(relay.port, dot_stuff(message))
        assert code == 250, text
    assert len(hop.handler.delivered) == 1
    assert hop.handler.delivered[0].content == message


async def test_smtputf8_addresses_are_relayed():
    sender, rcpt = "организатор@пример.рф", "участник@пример.рф"
    message = _message("Тест\r\n".encode())
    async with running_next_hop() as hop, running_relay(smtp_settings(hop.port)) as relay:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=relay.port)
        await client.connect()
        try:
            errors, _ = await client.sendmail(sender, [rcpt], message, mail_options=["SMTPUTF8"])
        finally:
            await client.quit()
    assert errors == {}
    assert hop.handler.delivered[0].mail_from == sender
    assert hop.handler.delivered[0].rcpt_tos == [rcpt]
    assert hop.handler.delivered[0].content == message


async def test_refused_recipient_gets_the_next_hops_verdict_and_others_one_copy_each():
    behaviour = NextHopBehaviour(refuse_rcpts={"b@example.net": "550 5.1.1 <b@example.net>: unknown"})
    async with running_next_hop(behaviour) as hop, running_relay(smtp_settings(hop.port)) as relay:
        client = await WireClient.connect("127.0.0.1", relay.port)
        await client.reply()
        await client.command("EHLO client.test")
        assert (await client.command(f"MAIL FROM:<{SENDER}>"))[0] == 250
        assert (await client.command("RCPT TO:<a@example.net>"))[0] == 250
        assert await client.command("RCPT TO:<b@example.net>") == (550, "5.1.1 <b@example.net>: unknown")
        assert (await client.command("RCPT TO:<c@example.net>"))[0] == 250
        assert (await client.command("DATA"))[0] == 354
        await client.send_raw(dot_stuff(_message(b"hello\r\n")))
        assert (await client.reply())[0] == 250
        await client.close()
    assert len(hop.handler.delivered) == 1
    assert hop.handler.delivered[0].rcpt_tos == ["a@example.net", "c@example.net"]


async def test_next_hop_down_gives_451_and_nothing_is_relayed():
    with socket.socket() as probe:  # a loopback port with nobody listening
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    async with running_relay(smtp_settings(dead_port)) as relay:
        client = await WireClient.connect("127.0.0.1", relay.port)
        await client.reply()
        await client.command("EHLO client.test")
        code, text = await client.command(f"MAIL FROM:<{SENDER}>")
        assert code == 451 and text.startswith("4.4.1"), text
        assert (await client.command("RCPT TO:<a@example.net>"))[0] == 503
        await client.close()


@pytest.mark.parametrize("reply", ["451 4.3.0 try later", "554 5.7.1 rejected by policy"])
async def test_next_hop_data_verdict_is_relayed(reply):
    behaviour = NextHopBehaviour(data_reply=reply)
    async with running_next_hop(behaviour) as hop, running_relay(smtp_settings(hop.port)) as relay:
        code, text = await _send(relay.port, dot_stuff(_message(b"x\r\n")))
    assert (code, text) == (int(reply[:3]), reply[4:])
    assert hop.handler.delivered == []


async def test_next_hop_dropping_the_connection_at_end_of_data_gives_451():
    behaviour = NextHopBehaviour(drop_at_end_of_data=True)
    async with running_next_hop(behaviour) as hop, running_relay(smtp_settings(hop.port)) as relay:
        code, text = await _send(relay.port, dot_stuff(_message(b"x\r\n")))
    assert code == 451 and text.startswith("4.4.2"), text


class FailingPipeline:
    def __init__(self, error: Exception) -> None:
        self.error = error

    async def process(self, message: InboundMessage) -> Processed:
        raise self.error


@pytest.mark.parametrize(
    "error", [RuntimeError("bug in our code"), TemporaryFailure("Webinar API unavailable")]
)
async def test_pipeline_failure_gives_451_and_the_next_hop_gets_nothing(error):
    async with running_next_hop() as hop, running_relay(
        smtp_settings(hop.port), FailingPipeline(error)
    ) as relay:
        code, text = await _send(relay.port, dot_stuff(_message(b"x\r\n")))
        assert code == 451, text
        assert "bug in our code" not in text  # internals are logged, not told to the client
    assert hop.handler.delivered == []
    assert hop.handler.commands[-1] == "RSET"  # the next hop's transaction was aborted


class HangingPipeline:
    async def process(self, message: InboundMessage) -> Processed:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_deadline_gives_451_and_no_delivery():
    settings = smtp_settings(0, deadline_seconds=0.2)
    async with running_next_hop() as hop:
        settings = settings.model_copy(update={"next_hop": smtp_settings(hop.port).next_hop})
        async with running_relay(settings, HangingPipeline()) as relay:
            code, text = await _send(relay.port, dot_stuff(_message(b"x\r\n")))
    assert code == 451 and text.startswith("4.4.7"), text
    assert hop.handler.delivered == []


async def test_client_outside_allowed_networks_gets_554():
    async with running_next_hop() as hop, running_relay(
        smtp_settings(hop.port, allowed_clients=(ipaddress.IPv4Network("192.0.2.0/24"),))
    ) as relay:
        client = await WireClient.connect("127.0.0.1", relay.port)
        code, text = await client.reply()
        assert code == 554 and text.startswith("5.7.1"), text
        with pytest.raises(ConnectionResetError):
            await client.command("EHLO client.test")
        await client.close()
    assert hop.handler.commands == []


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6 on this machine")
async def test_ipv6_loopback_client_is_allowed_by_default():
    settings = smtp_settings(0)
    async with running_next_hop() as hop:
        settings = settings.model_copy(
            update={"listen": type(settings.listen)("::1", 0), "next_hop": smtp_settings(hop.port).next_hop}
        )
        try:
            relay_cm = running_relay(settings)
            relay = await relay_cm.__aenter__()
        except OSError as exc:
            pytest.skip(f"cannot bind ::1: {exc}")
        try:
            code, _ = await _send_v6(relay.port)
            assert code == 250
        finally:
            await relay_cm.__aexit__(None, None, None)


async def _send_v6(port: int):
    client = await WireClient.connect("::1", port)
    try:
        assert (await client.reply())[0] == 220
        await client.command("EHLO client.test")
        return await client.transaction(SENDER, ["a@example.net"], dot_stuff(_message(b"v6\r\n")))
    finally:
        await client.close()


async def test_message_over_the_size_limit_gets_552():
    async with running_next_hop() as hop, running_relay(
        smtp_settings(hop.port, max_message_size=2048)
    ) as relay:
        client = await WireClient.connect("127.0.0.1", relay.port)
        await client.reply()
        _, ehlo = await client.command("EHLO client.test")
        assert "SIZE 2048" in ehlo
        assert (await client.command(f"MAIL FROM:<{SENDER}> SIZE=4096"))[0] == 552
        too_big = dot_stuff(_message(b"z" * 5000 + b"\r\n"))
        code, text = await client.transaction(SENDER, ["a@example.net"], too_big)
        assert code == 552, text
        # the session goes on: a small message after the big one is relayed
        code, text = await client.transaction(SENDER, ["a@example.net"], dot_stuff(_message(b"ok\r\n")))
        assert code == 250, text
        await client.close()
    assert [d.content for d in hop.handler.delivered] == [_message(b"ok\r\n")]


async def test_xforward_is_accepted_and_passed_on():
    async with running_next_hop() as hop, running_relay(smtp_settings(hop.port)) as relay:
        client = await WireClient.connect("127.0.0.1", relay.port)
        await client.reply()
        _, ehlo = await client.command("EHLO postfix.test")
        assert "XFORWARD" in ehlo and "DSN" not in ehlo
        assert (await client.command("XFORWARD NAME=mua.example.org ADDR=192.0.2.7"))[0] == 250
        assert (await client.command("XFORWARD PROTO=ESMTP HELO=mua"))[0] == 250
        code, _ = await client.transaction(SENDER, ["a@example.net"], dot_stuff(_message(b"x\r\n")))
        assert code == 250
        await client.close()
    assert hop.handler.delivered[0].xforward == {
        "NAME": "mua.example.org", "ADDR": "192.0.2.7", "PROTO": "ESMTP", "HELO": "mua"
    }


async def test_rset_is_relayed_and_a_second_transaction_reuses_the_session():
    async with running_next_hop() as hop, running_relay(smtp_settings(hop.port)) as relay:
        client = await WireClient.connect("127.0.0.1", relay.port)
        await client.reply()
        await client.command("EHLO client.test")
        await client.command(f"MAIL FROM:<{SENDER}>")
        assert (await client.command("RSET"))[0] == 250
        for n in range(2):
            code, _ = await client.transaction(SENDER, ["a@example.net"], dot_stuff(_message(b"%d\r\n" % n)))
            assert code == 250
        await client.close()
    assert "RSET" in hop.handler.commands
    assert [d.content for d in hop.handler.delivered] == [_message(b"0\r\n"), _message(b"1\r\n")]


async def test_command_pipelined_after_the_final_dot_is_answered():
    async with running_next_hop() as hop, running_relay(smtp_settings(hop.port)) as relay:
        client = await WireClient.connect("127.0.0.1", relay.port)
        await client.reply()
        await client.command("EHLO client.test")
        await client.command(f"MAIL FROM:<{SENDER}>")
        await client.command("RCPT TO:<a@example.net>")
        assert (await client.command("DATA"))[0] == 354
        await client.send_raw(dot_stuff(_message(b"x\r\n")) + b"NOOP\r\n")
        assert (await client.reply())[0] == 250
        assert (await client.reply())[0] == 250  # the NOOP
        await client.close()
    assert len(hop.handler.delivered) == 1


@pytest.mark.parametrize(
    "smuggled",
    [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n"],
    ids=["LF.LF", "CR.CR", "LF.CRLF", "CRLF.LF", "CR.CRLF"],
)
async def test_bare_line_endings_never_end_data_nor_reach_the_next_hop(smuggled):
    second = b"MAIL FROM:<evil@example.com>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\nforged\r\n"
    wire = _message(b"before" + smuggled + second) + b"\r\n.\r\n"
    async with running_next_hop() as hop, running_relay(smtp_settings(hop.port)) as relay:
        code, text = await _send(relay.port, wire)
        assert code == 250, text
    assert len(hop.handler.delivered) == 1
    forwarded = hop.handler.delivered[0].content
    assert forwarded.count(b"\n") == forwarded.count(b"\r\n") == forwarded.count(b"\r")
    assert b"MAIL FROM:<evil@example.com>" in forwarded  # still inside the one message
    assert hop.handler.delivered[0].mail_from == SENDER


async def test_idle_client_is_told_421():
    async with running_next_hop() as hop, running_relay(
        smtp_settings(hop.port, idle_timeout_seconds=0.2)
    ) as relay:
        client = await WireClient.connect("127.0.0.1", relay.port)
        await client.reply()
        code, text = await client.reply()  # nothing sent: the relay speaks first
        assert code == 421, text
        await client.close()


async def test_message_far_over_the_limit_is_drained_then_refused_without_buffering():
    # Larger than the relay's read chunk, so the relay must find the terminator
    # while discarding what it reads.
    big = _message(b"q" * 900 + b"\r\n") * 3000
    async with running_next_hop() as hop, running_relay(
        smtp_settings(hop.port, max_message_size=64 * 1024)
    ) as relay:
        client = await WireClient.connect("127.0.0.1", relay.port)
        await client.reply()
        await client.command("EHLO client.test")
        code, text = await client.transaction(SENDER, ["a@example.net"], dot_stuff(big))
        assert code == 552, text
        assert (await client.command("NOOP"))[0] == 250
        await client.close()
    assert hop.handler.delivered == []
