"""Large mail is worked on piece by piece, taking turns on the event loop (``BulkLane``).

The piece-wise un-stuffing of received DATA and the piece-wise wire form for the next
hop must give exactly the bytes of the whole-message functions, whatever the pieces
cut: lines starting with dots, bare CR and LF, lines longer than a piece.  And a large
message with all of these goes through the real relay to the next hop intact.
"""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.relay import running_relay, smtp_settings
from tests.support.smtp import WireClient, dot_stuff, running_next_hop
from webinar_proxy.smtp import wire
from webinar_proxy.smtp.handler import BulkLane, _payload, _small_payload
from webinar_proxy.smtp.protocol import _unstuffed

FRAGMENTS = st.sampled_from([b"a", b"..", b".", b"\r\n", b"\r", b"\n", b"x" * 40, b"\r\n.", b"\r\n..", b" "])
MESSAGES = st.lists(FRAGMENTS, min_size=1, max_size=80).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(message=MESSAGES, piece=st.integers(min_value=1, max_value=64))
async def test_piecewise_wire_form_is_the_whole_message_one(message: bytes, piece: int):
    expected = b"".join(_small_payload(message))
    parts = await _payload(message, BulkLane(), piece=piece)
    assert b"".join(bytes(part) for part in parts) == expected


@settings(max_examples=300, deadline=None)
@given(message=MESSAGES, piece=st.integers(min_value=1, max_value=64))
async def test_piecewise_unstuffing_is_the_whole_message_one(message: bytes, piece: int):
    received = bytearray(b"".join(_small_payload(wire.normalise_line_endings(message))))
    assert await _unstuffed(bytearray(received), BulkLane(), piece=piece) == wire.unstuff(received)


def test_pieces_cover_the_data_and_end_after_a_line():
    data = b"ab\r\n" * 10 + b"x" * 50 + b"\r\nend"
    spans = list(wire.pieces(data, size=8))
    assert spans[0][0] == 0 and spans[-1][1] == len(data)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
    assert all(data[start:stop].endswith(b"\r\n") for start, stop in spans[:-1])


async def test_a_large_message_with_dots_and_bare_line_ends_arrives_intact():
    line = b"." * 3 + b"x" * 70 + b"\r\n"
    body = (line * 30_000) + b"bare\nlf and bare\rcr\r\n" + (b"y" * 900 + b"\r\n") * 1000 + b".end\r\n"
    message = b"From: <o@example.org>\r\nTo: <a@example.net>\r\nSubject: big\r\n\r\n" + body
    assert len(message) > 4 * wire.PIECE
    async with running_next_hop() as hop, running_relay(smtp_settings(hop.port)) as relay:
        client = await WireClient.connect("127.0.0.1", relay.port)
        await client.reply()
        await client.command("EHLO client.test")
        code, _ = await client.transaction("o@example.org", ["a@example.net"], dot_stuff(message))
        assert code == 250
        await client.close()
    [delivered] = hop.handler.delivered
    assert delivered.content == wire.normalise_line_endings(message)
