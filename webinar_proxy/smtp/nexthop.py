"""The relay's SMTP client side: one connection to the next hop per client session.

Commands are relayed and the next hop's replies come back unchanged, so every
recipient gets the next hop's own verdict.  When the next hop offers PIPELINING,
``envelope`` writes XFORWARD, MAIL, the RCPTs the client already sent and DATA in
one write and then reads the replies in order (RFC 2920).  The message body is sent
as already dot-stuffed wire bytes (see ``wire.py``) in slices, waiting for the
socket to drain after each, so a large message neither holds the event loop nor
sits whole in the transport's buffer.

A small client on asyncio streams rather than aiosmtplib: aiosmtplib reads one reply
per command written, so it cannot pipeline, and its ``data()`` normalises and
dot-stuffs with regular expressions over the whole message.

Any failure of the connection itself (refused, timed out, dropped, garbled) is a
``NextHopError``; after one, the connection is closed and must not be reused.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from webinar_proxy.settings import HostPort
from webinar_proxy.smtp.replies import Reply

# Postfix's smtpd answers within its own 300 s command timeout; a command reply
# slower than this means the next hop is stuck, and the message deadline will
# normally cut in first anyway.
DEFAULT_COMMAND_TIMEOUT = 300.0
#: Bytes of message body written before waiting for the socket to drain.
WRITE_SLICE = 256 * 1024
_LINE_LIMIT = 64 * 1024


class NextHopError(Exception):
    """The connection to the next hop failed; ``reached`` tells whether it ever answered."""

    def __init__(self, message: str, *, reached: bool) -> None:
        super().__init__(message)
        self.reached = reached


@dataclass(frozen=True)
class EnvelopeReplies:
    """The next hop's replies to one pipelined envelope, in the order sent."""

    mail: Reply
    rcpts: tuple[Reply, ...]
    #: The reply to DATA when it was sent along (354: the next hop waits for the message).
    data: Reply | None


def _encode_path(address: str) -> bytes:
    # aiosmtpd decodes SMTPUTF8 arguments with surrogateescape; this restores the bytes.
    return address.encode("utf-8", errors="surrogateescape")


def _line(*args: bytes) -> bytes:
    return b" ".join(args) + b"\r\n"


def _mail_line(sender: str, options: Sequence[str]) -> bytes:
    return _line(b"MAIL", b"FROM:<" + _encode_path(sender) + b">", *(o.encode() for o in options))


def _rcpt_line(recipient: str, options: Sequence[str]) -> bytes:
    return _line(b"RCPT", b"TO:<" + _encode_path(recipient) + b">", *(o.encode() for o in options))


def _xforward_line(attributes: dict[str, str]) -> bytes:
    return _line(b"XFORWARD", *(f"{name}={value}".encode() for name, value in attributes.items()))


class NextHop:
    """A lazily opened connection to the next hop."""

    def __init__(
        self,
        address: HostPort,
        *,
        local_hostname: str,
        connect_timeout: float,
        command_timeout: float = DEFAULT_COMMAND_TIMEOUT,
        pace: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.address = address
        #: Awaited between slices of a message body (``BulkLane.step``): large mail takes turns.
        self._pace = pace
        self._local_hostname = local_hostname
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._extensions: set[str] = set()
        #: True between a 354 to a pipelined DATA and the reply to the message.
        self.in_data = False

    @property
    def is_open(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    async def open(self) -> None:
        if self.is_open:
            return
        self.close()
        try:
            await self._connect_and_greet()
        except BaseException:
            self.close()  # whatever cut it short (a cancel, too): no half-open connection left
            raise

    async def _connect_and_greet(self) -> None:
        try:
            async with asyncio.timeout(self._connect_timeout):
                self._reader, self._writer = await asyncio.open_connection(
                    self.address.host, self.address.port, limit=_LINE_LIMIT
                )
        except (OSError, TimeoutError) as exc:
            raise NextHopError(f"connect to {self.address}: {exc or 'timed out'}", reached=False) from exc
        try:
            async with asyncio.timeout(self._connect_timeout):
                banner = await self._read_reply()
            if banner.code != 220:
                raise NextHopError(f"{self.address} greeted with {banner.code} {banner.text}", reached=True)
            self._writer.write(_line(b"EHLO", self._local_hostname.encode()))
            ehlo = await self._read_reply_within()
        except (OSError, TimeoutError, EOFError, ValueError) as exc:
            raise NextHopError(f"EHLO to {self.address}: {exc or 'timed out'}", reached=True) from exc
        if ehlo.code != 250:
            raise NextHopError(f"EHLO to {self.address} answered {ehlo.code} {ehlo.text}", reached=True)
        self._extensions = {line.split(" ", 1)[0].lower() for line in ehlo.text.splitlines()[1:] if line}

    def supports(self, extension: str) -> bool:
        return self.is_open and extension.lower() in self._extensions

    async def _read_reply(self) -> Reply:
        assert self._reader is not None
        lines: list[str] = []
        while True:
            raw = await self._reader.readline()
            if not raw.endswith(b"\n"):
                raise EOFError("connection closed")
            text = raw.rstrip(b"\r\n").decode("utf-8", "surrogateescape")
            if len(text) < 3 or not text[:3].isdigit() or text[3:4] not in ("", " ", "-"):
                raise ValueError(f"malformed reply {text[:80]!r}")
            lines.append(text[4:])
            if text[3:4] != "-":
                return Reply(int(text[:3]), "\n".join(lines))

    async def _read_reply_within(self) -> Reply:
        async with asyncio.timeout(self._command_timeout):
            return await self._read_reply()

    async def _exchange(self, what: str, request: bytes, replies: int) -> list[Reply]:
        """Write ``request`` (one or several commands) and read ``replies`` replies."""
        writer = self._require()
        try:
            writer.write(request)
            answers = [await self._read_reply_within() for _ in range(replies)]
        except (OSError, TimeoutError, EOFError, ValueError) as exc:
            self.close()
            raise NextHopError(f"{what} to {self.address}: {exc or 'timed out'}", reached=True) from exc
        if any(answer.code == 421 for answer in answers):
            self.close()  # the next hop is closing the session
        return answers

    async def command(self, *args: bytes) -> Reply:
        [reply] = await self._exchange(args[0].decode(), _line(*args), 1)
        return reply

    async def xforward(self, attributes: dict[str, str]) -> Reply:
        [reply] = await self._exchange("XFORWARD", _xforward_line(attributes), 1)
        return reply

    async def mail(self, sender: str, options: list[str]) -> Reply:
        [reply] = await self._exchange("MAIL", _mail_line(sender, options), 1)
        return reply

    async def rcpt(self, recipient: str, options: list[str]) -> Reply:
        [reply] = await self._exchange("RCPT", _rcpt_line(recipient, options), 1)
        return reply

    async def rset(self) -> Reply:
        return await self.command(b"RSET")

    async def envelope(
        self, xforward: dict[str, str] | None, sender: str, options: list[str],
        recipients: Sequence[str], *, data: bool,
    ) -> EnvelopeReplies:
        """XFORWARD (if given), MAIL, RCPT for each of ``recipients`` (no options) and,
        with ``data``, DATA: one write, then every reply.  Needs PIPELINING."""
        request = [_xforward_line(xforward)] if xforward else []
        request += [_mail_line(sender, options), *(_rcpt_line(r, []) for r in recipients)]
        if data:
            request.append(b"DATA\r\n")
        answers = await self._exchange("MAIL", b"".join(request), len(request))
        if xforward:
            answers = answers[1:]
        data_reply = answers[-1] if data else None
        self.in_data = data_reply is not None and data_reply.code == 354 and self.is_open
        return EnvelopeReplies(answers[0], tuple(answers[1 : 1 + len(recipients)]), data_reply)

    async def data(self, *payload: bytes | memoryview) -> Reply:
        """Send DATA (unless it went with the envelope) and then ``payload``, whose parts
        together are dot-stuffed lines ending with ``CRLF.CRLF`` (parts avoid
        concatenating large messages)."""
        if not self.in_data:
            start = await self.command(b"DATA")
            if start.code != 354:
                return start
        self.in_data = False
        writer = self._require()
        if len(payload) > 1 and sum(len(part) for part in payload) <= WRITE_SLICE:
            # A small message goes in one write, terminator included: one segment for
            # the next hop to read instead of two.
            payload = (b"".join(payload),)
        try:
            for part in payload:
                with memoryview(part) as view:
                    for offset in range(0, len(view), WRITE_SLICE):
                        if self._pace is not None and offset:
                            await self._pace()
                        writer.write(view[offset : offset + WRITE_SLICE])
                        await writer.drain()
            reply = await self._read_reply_within()
        except (OSError, TimeoutError, EOFError, ValueError) as exc:
            self.close()
            raise NextHopError(f"end of DATA to {self.address}: {exc or 'timed out'}", reached=True) from exc
        if reply.code == 421:
            self.close()
        return reply

    async def quit(self) -> None:
        try:
            if self.is_open and not self.in_data:
                with contextlib.suppress(NextHopError, TimeoutError):
                    async with asyncio.timeout(5):
                        await self.command(b"QUIT")
        finally:
            self.close()

    def close(self) -> None:
        self.in_data = False
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            self._reader = None

    def _require(self) -> asyncio.StreamWriter:
        if not self.is_open:
            self.close()
            raise NextHopError(f"connection to {self.address} lost", reached=True)
        assert self._writer is not None
        return self._writer
