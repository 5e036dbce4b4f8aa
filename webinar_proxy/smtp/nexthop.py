"""The relay's SMTP client side: one connection to the next hop per client session.

Commands are relayed one by one and the next hop's replies come back unchanged,
so every recipient gets the next hop's own verdict.  The message body is sent as
already dot-stuffed wire bytes (see ``wire.py``) instead of through aiosmtplib's
``data()``, which normalises and dot-stuffs with regular expressions over the whole
message — by far its largest cost for big mail.

Any failure of the connection itself (refused, timed out, dropped, garbled) is a
``NextHopError``; after one, the connection is closed and must not be reused.
"""

from __future__ import annotations

import aiosmtplib
from aiosmtplib import SMTPException

from webinar_proxy.settings import HostPort
from webinar_proxy.smtp.replies import Reply

# Postfix's smtpd answers within its own 300 s command timeout; a command reply
# slower than this means the next hop is stuck, and the message deadline will
# normally cut in first anyway.
DEFAULT_COMMAND_TIMEOUT = 300.0


class NextHopError(Exception):
    """The connection to the next hop failed; ``reached`` tells whether it ever answered."""

    def __init__(self, message: str, *, reached: bool) -> None:
        super().__init__(message)
        self.reached = reached


def _encode_path(address: str) -> bytes:
    # aiosmtpd decodes SMTPUTF8 arguments with surrogateescape; this restores the bytes.
    return address.encode("utf-8", errors="surrogateescape")


class NextHop:
    """A lazily opened connection to the next hop."""

    def __init__(
        self,
        address: HostPort,
        *,
        local_hostname: str,
        connect_timeout: float,
        command_timeout: float = DEFAULT_COMMAND_TIMEOUT,
    ) -> None:
        self.address = address
        self._local_hostname = local_hostname
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._client: aiosmtplib.SMTP | None = None

    @property
    def is_open(self) -> bool:
        return self._client is not None and self._client.is_connected

    async def open(self) -> None:
        if self.is_open:
            return
        self.close()
        client = aiosmtplib.SMTP(
            hostname=self.address.host,
            port=self.address.port,
            local_hostname=self._local_hostname,
            timeout=self._command_timeout,
            use_tls=False,
            start_tls=False,
        )
        try:
            await client.connect(timeout=self._connect_timeout)
        except (SMTPException, OSError, TimeoutError) as exc:
            client.close()
            raise NextHopError(f"connect to {self.address}: {exc}", reached=False) from exc
        try:
            response = await client.ehlo()
        except (SMTPException, OSError, TimeoutError) as exc:
            client.close()
            raise NextHopError(f"EHLO to {self.address}: {exc}", reached=True) from exc
        if response.code != 250:
            client.close()
            raise NextHopError(
                f"EHLO to {self.address} answered {response.code} {response.message}",
                reached=True,
            )
        self._client = client

    def supports(self, extension: str) -> bool:
        return self._client is not None and self._client.supports_extension(extension)

    async def command(self, *args: bytes) -> Reply:
        client = self._require()
        try:
            response = await client.execute_command(*args)
        except (SMTPException, OSError, TimeoutError) as exc:
            self.close()
            verb = args[0].decode()
            raise NextHopError(f"{verb} to {self.address}: {exc}", reached=True) from exc
        if response.code == 421:
            # The next hop is closing the session; aiosmtplib closes its side too.
            self.close()
        return Reply(response.code, response.message)

    async def xforward(self, attributes: dict[str, str]) -> Reply:
        words = [f"{name}={value}".encode() for name, value in attributes.items()]
        return await self.command(b"XFORWARD", *words)

    async def mail(self, sender: str, options: list[str]) -> Reply:
        return await self.command(
            b"MAIL", b"FROM:<" + _encode_path(sender) + b">", *(o.encode() for o in options)
        )

    async def rcpt(self, recipient: str, options: list[str]) -> Reply:
        return await self.command(
            b"RCPT", b"TO:<" + _encode_path(recipient) + b">", *(o.encode() for o in options)
        )

    async def rset(self) -> Reply:
        return await self.command(b"RSET")

    async def data(self, *payload: bytes) -> Reply:
        """Send DATA and then ``payload``, whose parts together are dot-stuffed
        lines ending with ``CRLF.CRLF`` (parts avoid concatenating large messages)."""
        start = await self.command(b"DATA")
        if start.code != 354:
            return start
        client = self._require()
        protocol = client.protocol
        if protocol is None:
            self.close()
            raise NextHopError(f"DATA to {self.address}: connection lost", reached=True)
        try:
            for part in payload:
                protocol.write(part)
            response = await protocol.read_response(timeout=self._command_timeout)
        except (SMTPException, OSError, TimeoutError) as exc:
            self.close()
            raise NextHopError(f"end of DATA to {self.address}: {exc}", reached=True) from exc
        return Reply(response.code, response.message)

    async def quit(self) -> None:
        client = self._client
        if client is None:
            return
        try:
            if client.is_connected:
                await client.quit(timeout=5)
        except (SMTPException, OSError, TimeoutError):
            pass
        finally:
            self.close()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _require(self) -> aiosmtplib.SMTP:
        if self._client is None or not self._client.is_connected:
            self.close()
            raise NextHopError(f"connection to {self.address} lost", reached=True)
        return self._client
