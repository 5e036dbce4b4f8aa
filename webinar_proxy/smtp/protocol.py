"""``RelaySMTP``: aiosmtpd's protocol where it does not fit a relay.

DATA is read in large chunks instead of line by line (aiosmtpd's per-line loop
dominates the CPU for large mail) and un-stuffed piece by piece; XFORWARD is
accepted and passed on, idle clients are told 421, and exceptions answer 451
instead of aiosmtpd's 500.  Lines a client pipelined behind MAIL are shown to the
handler, which sends them on with MAIL.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
from collections.abc import Callable
from typing import Any

from aiosmtpd.smtp import SMTP

from webinar_proxy.smtp import replies, wire
from webinar_proxy.smtp.handler import (
    XFORWARD_ATTRIBUTES,
    BulkLane,
    RelayHandler,
    RelaySession,
    abort_next_hop_transaction,
)

log = logging.getLogger("webinar_proxy.smtp")
_READ_CHUNK = 1 << 20
_PLAIN_PATH = re.compile(
    r"\s*<(?P<local>[^\s<>()\[\]\\,;:@\"]+)@(?P<domain>[^\s<>()\[\]\\,;:@\"]+)>"
)




class RelaySMTP(SMTP):
    """aiosmtpd's protocol, adjusted for a relay (see the module docstring)."""

    def __init__(self, handler: RelayHandler, *, registry: set[RelaySMTP],
                 on_lost: Callable[[], None] | None = None, **kwargs: Any) -> None:
        settings = handler.settings
        super().__init__(
            handler,
            data_size_limit=settings.max_message_size,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=settings.hostname,
            ident="ESMTP",
            timeout=settings.idle_timeout_seconds,
            **kwargs,
        )
        self.relay_settings = settings
        self._registry = registry
        self._on_lost = on_lost
        self._allowed = settings.allowed_clients

    def _create_session(self) -> RelaySession:
        return RelaySession(self.loop)

    # A method, not a property: aiosmtpd's __init__ runs inspect.getmembers(self).
    def relay_session(self) -> RelaySession:
        assert isinstance(self.session, RelaySession)
        return self.session

    def _client_allowed(self) -> bool:
        peer = self.session.peer if self.session else None
        if not peer:
            return False
        try:
            address = ipaddress.ip_address(peer[0].split("%")[0])
        except (ValueError, IndexError, AttributeError):
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address in network for network in self._allowed)

    async def _handle_client(self) -> None:
        if not self._client_allowed():
            log.warning("refused client %s: not in smtp.allowed_clients", self.session.peer)
            await self.push(str(replies.CLIENT_NOT_ALLOWED))
            self.transport.close()
            return
        if len(self._registry) >= self.relay_settings.max_connections:
            log.warning("refused client %s: smtp.max_connections (%d) reached",
                        self.session.peer, self.relay_settings.max_connections)
            await self.push(str(replies.TOO_MANY_CONNECTIONS))
            self.transport.close()
            return
        self._registry.add(self)
        try:
            await super()._handle_client()
        finally:
            self._registry.discard(self)

    def connection_lost(self, error: Exception | None) -> None:
        session = self.session
        super().connection_lost(error)
        self._registry.discard(self)
        if self._on_lost is not None:
            on_lost, self._on_lost = self._on_lost, None
            on_lost()
        if isinstance(session, RelaySession):
            session.in_transaction = False
            if session.next_hop is not None:
                session.next_hop.close()

    def _timeout_cb(self) -> None:
        session = self.session
        if isinstance(session, RelaySession) and session.processing:
            # Not idle: the message is being processed, under its own deadline.
            self._reset_timeout()
            return
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(f"{replies.IDLE_TIMEOUT}\r\n".encode())
        super()._timeout_cb()

    async def handle_exception(self, error: Exception) -> str:
        session = self.session
        session_id = session.id if isinstance(session, RelaySession) else "-"
        log.error("session=%s unexpected error", session_id, exc_info=error)
        if isinstance(session, RelaySession) and session.next_hop is not None:
            session.next_hop.close()
        return str(replies.TEMPFAIL_INTERNAL)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        # aiosmtpd parses every MAIL/RCPT path with the email package's header
        # parser, about 0.3 ms each (a quarter of the relay's CPU for small mail).
        # Plain <local@domain> paths, nearly all of them, take this fast path; anything
        # else (quoted local parts, source routes, the null path) gets the full parser.
        match = _PLAIN_PATH.match(arg)
        if match is None or (self.local_part_limit and len(match["local"]) > self.local_part_limit):
            return super()._getaddr(arg)
        return f"{match['local']}@{match['domain']}", arg[match.end() :]

    async def smtp_MAIL(self, arg: str | None) -> None:
        # What the client pipelined behind MAIL (RFC 2920): the handler sends the
        # plain RCPTs and DATA among it to the next hop together with MAIL.
        session = self.relay_session()
        session.pipelined = _buffered_lines(self._reader)
        try:
            await super().smtp_MAIL(arg)
        finally:
            session.pipelined = ()

    async def smtp_XFORWARD(self, arg: str | None) -> None:
        if await self.check_helo_needed("EHLO"):
            return
        if self.envelope is not None and self.envelope.mail_from:
            await self.push(str(replies.XFORWARD_IN_TRANSACTION))
            return
        attributes = {}
        for word in (arg or "").split():
            name, sep, value = word.partition("=")
            if not sep or name.upper() not in XFORWARD_ATTRIBUTES:
                await self.push(str(replies.XFORWARD_SYNTAX))
                return
            attributes[name.upper()] = value
        if not attributes:
            await self.push(str(replies.XFORWARD_SYNTAX))
            return
        self.relay_session().xforward.update(attributes)
        await self.push(str(replies.XFORWARD_OK))

    async def smtp_DATA(self, arg: str | None) -> None:
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 5.5.1 Error: need RCPT command")
            return
        if arg:
            await self.push("501 5.5.4 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        received = await self._read_data()
        if received is None:
            self.event_handler.metrics.mail("rejected")
            await self.push(str(replies.MESSAGE_TOO_BIG))
            await abort_next_hop_transaction(self.relay_session())
            self.relay_session().in_transaction = False
            self._set_post_data_state()
            return
        self.envelope.original_content = self.envelope.content = received
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push(status)

    async def _read_data(self) -> bytes | None:
        """Read DATA up to its terminator; the message, or None when over the size limit.

        A client that sends more than the limit is read to the end (RFC 5321
        §4.2.5: the reply comes after the data) while only the last bytes are kept.
        """
        reader = self._reader
        limit = self.relay_settings.max_message_size + len(wire.EMPTY_DATA)
        buffer = bytearray()
        tail: bytes | None = None  # set once over the limit: only the last bytes are kept
        while True:
            chunk = await reader.read(_READ_CHUNK)
            if not chunk:
                raise ConnectionResetError("client closed the connection during DATA")
            self._reset_timeout()  # a client sending DATA is not idle
            if tail is not None:
                await self.event_handler.bulk.step()
                tail += chunk
                index = tail.find(wire.END_OF_DATA)
                if index >= 0:
                    _push_back(reader, tail[index + len(wire.END_OF_DATA) :])
                    return None
                tail = tail[-(len(wire.END_OF_DATA) - 1) :]
                continue
            scanned = len(buffer)
            buffer += chunk
            end = wire.find_end_of_data(buffer, scanned)
            if end >= 0:
                _push_back(reader, bytes(buffer[end:]))
                del buffer[end:]
                return await _unstuffed(buffer, self.event_handler.bulk) if end <= limit else None
            if len(buffer) > limit:
                tail = bytes(buffer[-(len(wire.END_OF_DATA) - 1) :])
                buffer = bytearray()
            if len(buffer) > wire.PIECE:
                await self.event_handler.bulk.step()  # a large message: take turns


async def _unstuffed(buffer: bytearray, bulk: BulkLane, piece: int = wire.PIECE) -> bytes:
    """``wire.unstuff(buffer)``; a large message in pieces, with the event loop free between them."""
    if len(buffer) <= piece:
        return wire.unstuff(buffer)
    body_end = len(buffer) - len(wire.EMPTY_DATA)
    spans = list(wire.pieces(buffer, body_end, piece))
    stuffed = False
    for start, stop in spans:
        if wire.piece_is_stuffed(buffer, start, stop):
            stuffed = True
            break
        await bulk.step()
    with memoryview(buffer) as view:
        if not stuffed:
            return bytes(view[:body_end])
        parts = []
        for start, stop in spans:
            parts.append(wire.unstuff_piece(bytes(view[start:stop])))
            await bulk.step()
    return b"".join(parts)


def _buffered_lines(reader: asyncio.StreamReader) -> list[bytes]:
    """The complete lines already received and not yet read (the StreamReader's buffer)."""
    buffered = bytes(reader._buffer)  # type: ignore[attr-defined]
    return buffered.split(b"\r\n")[:-1]


def _push_back(reader: asyncio.StreamReader, data: bytes) -> None:
    # A client that pipelines its next command behind the final dot: hand those
    # bytes back to the stream so the command loop reads them next.  StreamReader
    # has no public unread; its buffer is a bytearray.
    if data:
        reader._buffer[0:0] = data  # type: ignore[attr-defined]
