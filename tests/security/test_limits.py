"""Resource limits of the SMTP edge, each with its reply: connections at once, recipients
per mail, command line length, idle clients, calendar size and MIME depth, and memory
that stays bounded whatever the client sends."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.support.invites import invitation
from tests.support.product import running_product
from tests.support.relay import running_relay, smtp_settings
from tests.support.serve import running_serve
from tests.support.smtp import (
    NextHopBehaviour,
    RecordingHandler,
    WireClient,
    XforwardSMTP,
    dot_stuff,
    running_next_hop,
)
from webinar_proxy.seam import InboundMessage, Processed
from webinar_proxy.settings import SmtpSettings
from webinar_proxy.testing.fake_webinar import running_fake_webinar

SENDER = "organizer@example.org"
MESSAGE = b"From: <organizer@example.org>\r\nTo: <a@example.net>\r\nSubject: plain\r\n\r\nbody\r\n"
T0 = datetime(2022, 3, 1, 9, 0, tzinfo=UTC)
START = datetime(2022, 3, 16, 11, 0, tzinfo=UTC)
END = START + timedelta(minutes=30)


async def _greeted(port: int) -> WireClient:
    client = await WireClient.connect("127.0.0.1", port)
    assert (await client.reply())[0] == 220
    assert (await client.command("EHLO client.test"))[0] == 250
    return client


async def _closed_by_server(client: WireClient) -> None:
    async with asyncio.timeout(10):
        assert await client.reader.read() == b""


def test_defaults():
    settings = SmtpSettings()
    assert settings.max_connections == 100
    assert settings.max_recipients == 1000  # Postfix's smtpd_recipient_limit


async def test_connection_over_max_connections_gets_421_before_the_banner():
    async with running_next_hop() as hop, running_relay(smtp_settings(hop.port, max_connections=2)) as relay:
        first, second = await _greeted(relay.port), await _greeted(relay.port)
        third = await WireClient.connect("127.0.0.1", relay.port)
        assert await third.reply() == (421, "4.7.0 Too many connections, try again later")
        await _closed_by_server(third)
        await third.close()
        # the two admitted sessions work; when one leaves, a new client is admitted
        code, _ = await second.transaction(SENDER, ["a@example.net"], dot_stuff(MESSAGE))
        assert code == 250
        assert (await first.command("QUIT"))[0] == 221
        await _closed_by_server(first)
        fourth = await _greeted(relay.port)
        for client in (first, second, fourth):
            await client.close()
    assert len(hop.handler.delivered) == 1


async def test_recipients_over_max_recipients_get_452_and_are_not_relayed():
    async with running_next_hop() as hop, running_relay(smtp_settings(hop.port, max_recipients=3)) as relay:
        client = await _greeted(relay.port)
        assert (await client.command(f"MAIL FROM:<{SENDER}>"))[0] == 250
        for n in range(3):
            assert (await client.command(f"RCPT TO:<r{n}@example.net>"))[0] == 250
        assert await client.command("RCPT TO:<r3@example.net>") == (452, "4.5.3 Too many recipients")
        assert (await client.command("DATA"))[0] == 354
        await client.send_raw(dot_stuff(MESSAGE))
        assert (await client.reply())[0] == 250
        # the limit is per transaction: the next one may have three again
        code, _ = await client.transaction(SENDER, ["r3@example.net"], dot_stuff(MESSAGE))
        assert code == 250
        await client.close()
    assert "RCPT r3@example.net" in hop.handler.commands
    assert [d.rcpt_tos for d in hop.handler.delivered] == [
        ["r0@example.net", "r1@example.net", "r2@example.net"], ["r3@example.net"]
    ]


@pytest.mark.parametrize("length", [600, 5000, 2 * 2**20], ids=["600", "5000", "2MiB"])
async def test_overlong_command_line_gets_500_and_the_session_goes_on(length):
    async with running_next_hop() as hop, running_relay(smtp_settings(hop.port)) as relay:
        client = await _greeted(relay.port)
        line = b"MAIL FROM:<" + b"a" * length + b"@example.org>"
        await client.send_raw(line[: len(line) // 2])  # split across writes
        code, text = await client.command(line[len(line) // 2 :])
        assert (code, text) == (500, "Command line too long")
        assert (await client.command("NOOP"))[0] == 250
        code, _ = await client.transaction(SENDER, ["a@example.net"], dot_stuff(MESSAGE))
        assert code == 250
        await client.close()
    assert [c for c in hop.handler.commands if c.startswith("MAIL")] == [f"MAIL {SENDER}"]


async def test_half_a_command_then_silence_gets_421_and_close():
    async with running_next_hop() as hop, running_relay(
        smtp_settings(hop.port, idle_timeout_seconds=0.3)
    ) as relay:
        client = await _greeted(relay.port)
        await client.send_raw(b"MAIL FROM:<organizer@exa")  # no CRLF, then nothing
        assert await client.reply() == (421, "4.4.2 Idle too long, closing connection")
        await _closed_by_server(client)
        await client.close()
    assert hop.handler.commands == []


async def test_a_byte_at_a_time_does_not_keep_a_command_alive():
    # The idle timer restarts only on a complete command, not on every byte received.
    async with running_next_hop() as hop, running_relay(
        smtp_settings(hop.port, idle_timeout_seconds=0.5)
    ) as relay:
        client = await _greeted(relay.port)

        async def dribble() -> None:
            for byte in b"NOOP " + b"x" * 400:  # 20 s at this pace, never a CRLF
                client.writer.write(bytes([byte]))
                await asyncio.sleep(0.05)

        dribbler = asyncio.ensure_future(dribble())
        try:
            assert (await client.reply())[0] == 421
            await _closed_by_server(client)
        finally:
            dribbler.cancel()
        await client.close()
    assert hop.handler.commands == []


class SlowPipeline:
    """Processing that takes longer than the idle timeout, well within the deadline."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def process(self, message: InboundMessage) -> Processed:
        await asyncio.sleep(self.seconds)
        return Processed(message.content)


async def test_processing_longer_than_the_idle_timeout_is_not_cut_off():
    # Regression: the idle timer ran on while the message was processed, so a message
    # whose processing outlasted smtp.idle_timeout_seconds got 421 and the connection
    # closed under the next hop (risking a duplicate), though the deadline allowed it.
    async with running_next_hop() as hop, running_relay(
        smtp_settings(hop.port, idle_timeout_seconds=0.3, deadline_seconds=30), SlowPipeline(1.0)
    ) as relay:
        client = await _greeted(relay.port)
        code, text = await client.transaction(SENDER, ["a@example.net"], dot_stuff(MESSAGE))
        assert code == 250, text
        await client.close()
    assert len(hop.handler.delivered) == 1


async def test_a_slow_but_steady_data_upload_is_not_idle():
    message = MESSAGE + b"x" * 70 + b"\r\n"
    wire = dot_stuff(message * 1)
    async with running_next_hop() as hop, running_relay(
        smtp_settings(hop.port, idle_timeout_seconds=0.5)
    ) as relay:
        client = await _greeted(relay.port)
        assert (await client.command(f"MAIL FROM:<{SENDER}>"))[0] == 250
        assert (await client.command("RCPT TO:<a@example.net>"))[0] == 250
        assert (await client.command("DATA"))[0] == 354
        pieces = [wire[i : i + 8] for i in range(0, len(wire), 8)]
        for piece in pieces:  # about 2 s in all, each gap well under the idle timeout
            await client.send_raw(piece)
            await asyncio.sleep(0.1)
        assert (await client.reply())[0] == 250
        await client.close()
    assert [d.content for d in hop.handler.delivered] == [message]


class LongLineSMTP(XforwardSMTP):
    """A next hop that, like Postfix (line_length_limit splits, never refuses), takes long lines."""

    line_length_limit = 2**20


async def test_data_lines_longer_than_998_and_a_big_header_block_pass_unchanged():
    # The relay does not enforce RFC 5321's 1000-octet line limit inside DATA nor a header
    # size: it forwards them as they are and leaves the policy to the next hop (README).
    header = b"".join(b"X-Filler-%d: %s\r\n" % (n, b"h" * 900) for n in range(1200))  # ~1 MiB
    message = header + MESSAGE + b"L" * 100_000 + b"\r\n"
    handler = RecordingHandler(NextHopBehaviour())
    hop = await asyncio.get_running_loop().create_server(
        lambda: LongLineSMTP(handler, hostname="nexthop.test", data_size_limit=2**26),
        host="127.0.0.1", port=0,
    )
    try:
        async with running_relay(smtp_settings(hop.sockets[0].getsockname()[1])) as relay:
            client = await _greeted(relay.port)
            code, text = await client.transaction(SENDER, ["a@example.net"], dot_stuff(message))
            assert code == 250, text
            await client.close()
    finally:
        hop.close()
    assert [d.content for d in handler.delivered] == [message]


def _nested(message: bytes, depth: int) -> bytes:
    """``message``'s MIME body wrapped in ``depth`` levels of multipart/mixed."""
    head, _, body = message.partition(b"\r\n\r\n")
    headers = [h for h in head.split(b"\r\n") if not h.lower().startswith(b"content-type")]
    inner = b"\r\n".join(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-type"))
    part = inner + b"\r\n\r\n" + body
    for level in range(depth):
        boundary = b"n%d" % level
        part = (b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\r\n\r\n--' + boundary
                + b"\r\n" + part + b"\r\n--" + boundary + b"--\r\n")
    return b"\r\n".join(headers) + b"\r\n" + part


@pytest.mark.parametrize("case", ["calendar over 4 MiB", "MIME depth 13"])
async def test_invitation_beyond_the_engine_limits_passes_untouched_and_makes_nothing(tmp_path, case):
    if case == "calendar over 4 MiB":
        description = "DESCRIPTION:" + "d" * 70
        invite = invitation(start=START, end=END,
                            extra_vevent_lines=tuple([description] * (4 * 2**20 // 80 + 100)))
    else:
        invite = _nested(invitation(start=START, end=END), 13)
    async with running_product(tmp_path, T0) as product:
        code, text = await product.send(invite, "boss@example.org", ["ann@example.net"])
        assert code == 250, text
        assert product.state()["events"] == []
        assert await product.services.store.get("boss@example.org", "scenario-1@example.org") is None
    assert product.delivered() == [invite]


async def test_nesting_just_within_the_limit_is_processed(tmp_path):
    # the other side of the MIME-depth test: the same mail, less deep, gets its conference
    invite = _nested(invitation(start=START, end=END), 10)
    async with running_product(tmp_path, T0) as product:
        code, text = await product.send(invite, "boss@example.org", ["ann@example.net"])
        assert code == 250, text
        assert len(product.state()["events"]) == 1


@pytest.mark.slow
async def test_endless_lines_are_drained_with_bounded_memory(tmp_path: Path):
    """The real ``serve`` process: 256 MiB of DATA without a line end (limit 1 MiB), then
    a 64 MiB command line; the peak RSS grows by far less than what was sent."""
    async with running_fake_webinar(token="rss-token") as fake, running_next_hop() as hop:
        env = {
            "WEBINAR_PROXY_SMTP__LISTEN": "127.0.0.1:0",
            "WEBINAR_PROXY_SMTP__NEXT_HOP": f"127.0.0.1:{hop.port}",
            "WEBINAR_PROXY_SMTP__MAX_MESSAGE_SIZE": str(2**20),
            "WEBINAR_PROXY_SMTP__SHUTDOWN_GRACE_SECONDS": "1",
            "WEBINAR_PROXY_WEBINAR__TOKEN": "rss-token",
            "WEBINAR_PROXY_WEBINAR__API_URL": fake.api_url,
            "WEBINAR_PROXY_STORE__URL": f"sqlite:///{tmp_path}/state.db",
        }
        async with running_serve(env) as serve:
            client = await _greeted(serve.smtp_port)
            # warm up: one ordinary mail, so the baseline includes the code paths used
            code, _ = await client.transaction(SENDER, ["a@example.net"], dot_stuff(MESSAGE))
            assert code == 250
            baseline = serve.peak_rss_kib()

            assert (await client.command(f"MAIL FROM:<{SENDER}>"))[0] == 250
            assert (await client.command("RCPT TO:<a@example.net>"))[0] == 250
            assert (await client.command("DATA"))[0] == 354
            chunk = b"A" * 2**20
            for _ in range(256):
                await client.send_raw(chunk)
            code, text = await client.command(b"\r\n.")  # CRLF . CRLF ends it at last
            assert code == 552, text

            chunk = b"B" * 2**20
            for _ in range(64):
                await client.send_raw(chunk)
            assert (await client.command(b""))[0] == 500
            assert (await client.command("NOOP"))[0] == 250
            await client.close()
            growth_mib = (serve.peak_rss_kib() - baseline) / 1024
            print(f"peak RSS {baseline / 1024:.1f} MiB, growth {growth_mib:.1f} MiB")
        assert len(hop.handler.delivered) == 1
    # 320 MiB went in; the relay may hold the 1 MiB limit, a read chunk and copies of them
    assert growth_mib < 24, f"peak RSS grew by {growth_mib:.1f} MiB"
