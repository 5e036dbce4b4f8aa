"""The SMTP edge: an aiosmtpd server that relays each transaction to the next hop.

What it guarantees:

* MAIL, RCPT and RSET are relayed to the next hop as they arrive, over one
  next-hop connection per client session (opened at the first MAIL), and the
  client gets the next hop's own reply to each.
* At the end of DATA the message goes through the pipeline and then to the next
  hop; the client hears 250 only after the next hop said 250.  Anything else we
  cannot vouch for — next hop unreachable or gone, the deadline passed, the
  pipeline failed, our own bug — is a 4xx, never a 5xx and never a 250.
* Clients outside ``smtp.allowed_clients`` get 554 and nothing is relayed.

Three roles, three modules: ``handler`` (what each command does, and the seam at
the end of DATA), ``protocol`` (``RelaySMTP``, aiosmtpd's protocol where it does not
fit a relay) and this one, ``RelayServer``, the listener: start, addresses, settle,
graceful shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Iterable

from webinar_proxy.metrics import Metrics
from webinar_proxy.seam import Pipeline
from webinar_proxy.settings import SmtpSettings
from webinar_proxy.smtp import replies
from webinar_proxy.smtp.handler import RelayHandler
from webinar_proxy.smtp.protocol import RelaySMTP

log = logging.getLogger("webinar_proxy.smtp")


class RelayServer:
    """The listening relay: start, address, graceful shutdown."""

    def __init__(self, settings: SmtpSettings, pipeline: Pipeline, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.handler = RelayHandler(settings, pipeline, metrics)
        self.connections: set[RelaySMTP] = set()
        self._server: asyncio.Server | None = None
        #: True while connections handed over by a supervisor are taken (``adopt``).
        self._adopting = False

    def _protocol_factory(self) -> RelaySMTP:
        return RelaySMTP(self.handler, registry=self.connections)

    def start_adopting(self) -> None:
        """Serve connections accepted elsewhere (a worker of a group: its supervisor
        accepts and hands each connection to the least busy worker) instead of listening."""
        self._adopting = True

    async def adopt(self, sock: socket.socket, on_closed: Callable[[], None]) -> None:
        """Serve ``sock``, a client connection accepted by the supervisor; ``on_closed``
        is called once when it is gone."""
        if not self._adopting:
            sock.close()
            on_closed()
            return
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(
                lambda: RelaySMTP(self.handler, registry=self.connections, on_lost=on_closed), sock=sock)
        except OSError as exc:
            log.warning("handed-over connection lost before it was served: %s", exc)
            sock.close()
            on_closed()

    async def start(self) -> None:
        """Listen on ``smtp.listen`` (one process; a worker of a group adopts instead)."""
        loop = asyncio.get_running_loop()
        host = self.settings.listen.host
        self._server = await loop.create_server(
            self._protocol_factory, host=host, port=self.settings.listen.port,
            reuse_address=True, start_serving=True,
        )

    @property
    def addresses(self) -> list[tuple[str, int]]:
        assert self._server is not None
        return [sock.getsockname()[:2] for sock in self._server.sockets]

    @property
    def port(self) -> int:
        return self.addresses[0][1]

    def is_serving(self) -> bool:
        """True while the listener is bound and accepting (for /healthz)."""
        return self._adopting or (self._server is not None and self._server.is_serving())

    async def settle(self) -> None:
        """Wait for the follow-ups (phase two of the seam) started after replies to finish."""
        await self.handler.follow_ups.wait()

    def busy_connections(self) -> Iterable[RelaySMTP]:
        return [c for c in self.connections if c.session and c.relay_session().in_transaction]

    async def shutdown(self, grace: float) -> None:
        """Stop accepting; let transactions in flight finish within ``grace``; close."""
        if self._server is None and not self._adopting:
            return
        self._adopting = False
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            if not connection.relay_session().in_transaction and connection.transport is not None:
                connection.transport.write(f"{replies.TEMPFAIL_SHUTTING_DOWN}\r\n".encode())
                connection.transport.close()
        busy = [asyncio.ensure_future(c.relay_session().wait_idle()) for c in self.busy_connections()]
        if busy:
            _, pending = await asyncio.wait(busy, timeout=grace)
            for waiter in pending:
                waiter.cancel()
        for connection in list(self.connections):
            if connection.transport is not None:
                if not connection.relay_session().processing:
                    connection.transport.write(f"{replies.TEMPFAIL_SHUTTING_DOWN}\r\n".encode())
                connection.transport.close()
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self._server.wait_closed()
        self._server = None
