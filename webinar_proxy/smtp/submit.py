"""Sending one whole message to an SMTP server (the demo's client, organizer notices).

Uses the relay's own next-hop client, so a message is dot-stuffed and framed
exactly as relayed mail is.
"""

from __future__ import annotations

from collections.abc import Sequence

from webinar_proxy.settings import HostPort
from webinar_proxy.smtp import wire
from webinar_proxy.smtp.nexthop import NextHop
from webinar_proxy.smtp.replies import Reply


async def submit(
    address: HostPort,
    mail_from: str,
    rcpt_tos: Sequence[str],
    content: bytes,
    *,
    local_hostname: str = "webinar-proxy",
    timeout_seconds: float = 60.0,
) -> Reply:
    """Send ``content``; the server's reply to the end of DATA, or the first refusal.

    Raises ``NextHopError`` when the server cannot be reached or drops the connection.
    """
    connection = NextHop(address, local_hostname=local_hostname, connect_timeout=timeout_seconds,
                         command_timeout=timeout_seconds)
    try:
        reply = await _transaction(connection, mail_from, rcpt_tos, content)
    except BaseException:
        # Cancelled, closed with its task (GeneratorExit) or failed: no QUIT dialogue,
        # which would await inside the unwinding; the connection is closed at once.
        connection.close()
        raise
    await connection.quit()
    return reply


async def _transaction(connection: NextHop, mail_from: str, rcpt_tos: Sequence[str],
                       content: bytes) -> Reply:
    await connection.open()
    reply = await connection.mail(mail_from, ["BODY=8BITMIME"] if _is_8bit(content) else [])
    if not reply.is_success:
        return reply
    accepted = 0
    refusal: Reply | None = None
    for rcpt in rcpt_tos:
        reply = await connection.rcpt(rcpt, [])
        if reply.is_success:
            accepted += 1
        else:
            refusal = refusal or reply
    if not accepted:
        assert refusal is not None
        return refusal
    content = wire.normalise_line_endings(content)
    return await connection.data(wire.stuff(content), wire.EMPTY_DATA)


def _is_8bit(content: bytes) -> bool:
    return not content.isascii()
