"""The Postfix queue id for the per-mail log line: XFORWARD IDENT, else the first Received."""

from __future__ import annotations

import logging

import pytest

from tests.support.relay import running_relay, smtp_settings
from tests.support.smtp import WireClient, dot_stuff, running_next_hop
from webinar_proxy.smtp.queueid import HEADER_SCAN_LIMIT, queue_id, queue_id_from_received

BODY = b"\r\nbody\r\n"

# Received headers as Postfix writes them (short hex ids and enable_long_queue_ids).
POSTFIX_SUBMISSION = (
    b"Received: from [192.0.2.10] (unknown [192.0.2.10])\r\n"
    b"\t(Authenticated sender: boss@example.org)\r\n"
    b"\tby mail.example.org (Postfix) with ESMTPSA id 4Xyz1T3kQbz9sWq\r\n"
    b"\tfor <ann@example.net>; Mon,  1 Jul 2024 10:00:00 +0300 (MSK)\r\n"
)
POSTFIX_PICKUP = (
    b"Received: by mail.example.org (Postfix, from userid 1000)\r\n"
    b"\tid 3F2A91C0B1; Mon,  1 Jul 2024 10:00:00 +0300 (MSK)\r\n"
)
POSTFIX_SMTP = (
    b"Received: from client.example.net (client.example.net [198.51.100.7])\r\n"
    b"\tby mx.example.org (Postfix) with ESMTPS id 9C4E12A0F3\r\n"
    b"\tfor <bob@example.org>; Mon,  1 Jul 2024 10:00:01 +0300 (MSK)\r\n"
)
OLDER_HOP = (
    b"Received: from laptop.example.org by relay.example.org with ESMTP id OLDERHOP01;\r\n"
    b"\tMon,  1 Jul 2024 09:59:59 +0300\r\n"
)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (POSTFIX_SUBMISSION, "4Xyz1T3kQbz9sWq"),
        (POSTFIX_PICKUP, "3F2A91C0B1"),
        (POSTFIX_SMTP + OLDER_HOP, "9C4E12A0F3"),  # only the first (newest) Received counts
        (b"Subject: s\r\n" + POSTFIX_SMTP, "9C4E12A0F3"),
        (POSTFIX_SMTP.replace(b"Received:", b"RECEIVED:"), "9C4E12A0F3"),
        (POSTFIX_SMTP.replace(b"\r\n", b"\n"), "9C4E12A0F3"),
        (b"Received: from a by b (Postfix) with ESMTP; Mon, 1 Jul 2024\r\n", None),
        (b"Subject: no received header\r\n", None),
        (b"Received: by x (Postfix) id <script>\r\n", None),  # never anything odd in a log line
    ],
)
def test_queue_id_from_postfix_received_headers(headers: bytes, expected: str | None):
    assert queue_id_from_received(headers + b"From: <o@example.org>\r\n" + BODY) == expected


def test_only_the_header_block_is_read():
    in_body = b"Subject: s\r\n\r\n" + POSTFIX_SMTP
    assert queue_id_from_received(in_body) is None
    late = b"X-Filler: " + b"a" * HEADER_SCAN_LIMIT + b"\r\n" + POSTFIX_SMTP + BODY
    assert queue_id_from_received(late) is None


def test_xforward_ident_wins_and_is_checked():
    content = POSTFIX_SMTP + BODY
    assert queue_id(content, {"IDENT": "7D1E0A2B3C"}) == "7D1E0A2B3C"
    assert queue_id(content, {"IDENT": "[UNAVAILABLE]"}) == "9C4E12A0F3"
    assert queue_id(content, {"NAME": "client.example.net"}) == "9C4E12A0F3"
    assert queue_id(BODY, {}) is None


async def test_the_mail_log_line_carries_the_queue_id(caplog):
    caplog.set_level(logging.INFO, logger="webinar_proxy.smtp")
    message = POSTFIX_SUBMISSION + b"From: <boss@example.org>\r\nSubject: s\r\n" + BODY
    async with running_next_hop() as hop, running_relay(smtp_settings(hop.port)) as relay:
        client = await WireClient.connect("127.0.0.1", relay.port)
        try:
            await client.reply()
            await client.command("EHLO client.test")
            assert (await client.transaction("boss@example.org", ["ann@example.net"],
                                             dot_stuff(message)))[0] == 250
            assert (await client.command("XFORWARD IDENT=5B7C9D1E2F NAME=client.example.net"))[0] == 250
            assert (await client.transaction("boss@example.org", ["ann@example.net"],
                                             dot_stuff(message)))[0] == 250
        finally:
            await client.close()
    lines = [r.getMessage() for r in caplog.records if "outcome=" in r.getMessage()]
    assert len(lines) == 2
    assert " queue_id=4Xyz1T3kQbz9sWq " in lines[0]
    assert " queue_id=5B7C9D1E2F " in lines[1]
