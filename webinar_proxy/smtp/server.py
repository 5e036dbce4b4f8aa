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

Where aiosmtpd's behaviour does not fit a relay, ``RelaySMTP`` overrides it: DATA
is read in large chunks instead of line by line (its per-line loop dominates the
CPU for large mail), XFORWARD is accepted and passed on, idle clients are told
421, and exceptions answer 451 instead of aiosmtpd's 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import secrets
from collections.abc import Iterable
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from webinar_proxy.logs import message_context
from webinar_proxy.metrics import NO_METRICS, Metrics
from webinar_proxy.seam import (
    NOTHING_AFTER,
    AfterDelivery,
    FollowUps,
    InboundMessage,
    Pipeline,
    TemporaryFailure,
)
from webinar_proxy.settings import SmtpSettings
from webinar_proxy.smtp import replies, wire
from webinar_proxy.smtp.nexthop import NextHop, NextHopError
from webinar_proxy.smtp.queueid import queue_id
from webinar_proxy.smtp.replies import Reply

log = logging.getLogger("webinar_proxy.smtp")

#: XFORWARD attributes Postfix may send (XFORWARD_README).
XFORWARD_ATTRIBUTES = ("NAME", "ADDR", "PORT", "PROTO", "HELO", "IDENT", "SOURCE")
_READ_CHUNK = 1 << 20
_PLAIN_PATH = re.compile(
    r"\s*<(?P<local>[^\s<>()\[\]\\,;:@\"]+)@(?P<domain>[^\s<>()\[\]\\,;:@\"]+)>"
)


def format_reply(reply: Reply) -> str:
    """A reply as aiosmtpd pushes it; multi-line texts become continuation lines."""
    lines = reply.text.splitlines() or [""]
    if len(lines) == 1:
        return f"{reply.code} {lines[0]}"
    head = "\r\n".join(f"{reply.code}-{line}" for line in lines[:-1])
    return f"{head}\r\n{reply.code} {lines[-1]}"


class RelaySession(Session):
    """aiosmtpd's session plus what the relay keeps per client connection."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.id = secrets.token_hex(5)
        self.next_hop: NextHop | None = None
        self.xforward: dict[str, str] = {}
        self.messages = 0
        #: True while the end of DATA is being processed (pipeline and next hop).
        self.processing = False
        #: Whether the pipeline changed the current message (for the mail metrics).
        self.rewritten = False
        #: Phase two of the message in DATA (see ``seam``), set once the pipeline returned.
        self.after: AfterDelivery = NOTHING_AFTER
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def in_transaction(self) -> bool:
        """True from an accepted MAIL until the transaction's final reply is decided."""
        return not self._idle.is_set()

    @in_transaction.setter
    def in_transaction(self, value: bool) -> None:
        if value:
            self._idle.clear()
        else:
            self._idle.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()


class RelayHandler:
    """aiosmtpd handler hooks: relay each command to the next hop."""

    def __init__(self, settings: SmtpSettings, pipeline: Pipeline, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.metrics = metrics or NO_METRICS
        self.follow_ups = FollowUps()

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope,
        hostname: str, responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        # DSN is deliberately not offered: aiosmtpd rejects its parameters (see README).
        return [*responses[:-1], "250-XFORWARD " + " ".join(XFORWARD_ATTRIBUTES), responses[-1]]

    async def handle_MAIL(
        self, server: SMTP, session: RelaySession, envelope: Envelope,
        address: str, options: list[str],
    ) -> str:
        next_hop = session.next_hop
        if next_hop is None:
            next_hop = session.next_hop = NextHop(
                self.settings.next_hop,
                local_hostname=self.settings.hostname,
                connect_timeout=self.settings.next_hop_connect_timeout_seconds,
            )
        try:
            await next_hop.open()
            if session.xforward and next_hop.supports("xforward"):
                await next_hop.xforward(session.xforward)
            reply = await next_hop.mail(address, options)
        except NextHopError as exc:
            log.warning("session=%s next hop failed at MAIL: %s", session.id, exc)
            return str(replies.TEMPFAIL_NEXT_HOP_UNREACHABLE if not exc.reached
                       else replies.TEMPFAIL_NEXT_HOP_LOST)
        if reply.is_success:
            envelope.mail_from = address
            envelope.mail_options.extend(options)
            session.in_transaction = True
        return format_reply(_mask_421(reply))

    async def handle_RCPT(
        self, server: SMTP, session: RelaySession, envelope: Envelope,
        address: str, options: list[str],
    ) -> str:
        if session.next_hop is None:
            return str(replies.TEMPFAIL_NEXT_HOP_LOST)
        if len(envelope.rcpt_tos) >= self.settings.max_recipients:
            # RFC 5321 §4.5.3.1.8: the client sends the rest in another transaction.
            return str(replies.TOO_MANY_RECIPIENTS)
        try:
            reply = await session.next_hop.rcpt(address, options)
        except NextHopError as exc:
            log.warning("session=%s next hop failed at RCPT: %s", session.id, exc)
            return str(replies.TEMPFAIL_NEXT_HOP_LOST)
        if reply.is_success:
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(options)
        return format_reply(_mask_421(reply))

    async def handle_RSET(self, server: SMTP, session: RelaySession, envelope: Envelope) -> str:
        session.in_transaction = False
        session.xforward = {}
        await _abort_next_hop_transaction(session)
        return "250 2.0.0 Ok"

    async def handle_QUIT(self, server: SMTP, session: RelaySession, envelope: Envelope) -> str:
        if session.next_hop is not None:
            await session.next_hop.quit()
        return "221 2.0.0 Bye"

    async def handle_DATA(self, server: SMTP, session: RelaySession, envelope: Envelope) -> str:
        loop = asyncio.get_running_loop()
        started = loop.time()
        session.messages += 1
        content: bytes = envelope.original_content or b""
        message = InboundMessage(
            session_id=f"{session.id}.{session.messages}",
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            content=content,
            xforward=dict(session.xforward),
            deadline=started + self.settings.deadline_seconds,
            queue_id=queue_id(content, session.xforward),
        )
        with message_context(message.session_id, message.queue_id):
            return await self._handle_message(session, message, started)

    async def _handle_message(self, session: RelaySession, message: InboundMessage,
                              started: float) -> str:
        """Process, forward, reply, and start the follow-up; one log line per message."""
        loop = asyncio.get_running_loop()
        content = message.content
        session.processing = True
        session.rewritten = False
        session.after = NOTHING_AFTER
        reply = replies.TEMPFAIL_INTERNAL  # what stands if we are cancelled (client gone)
        try:
            reply = await self._deliver(session, message)
        finally:
            session.processing = False
            session.in_transaction = False
            session.xforward = {}
            # In the background: the client's reply must not wait for follow-up mail.
            self.follow_ups.settle(session.after, delivered=reply.is_success)
            session.after = NOTHING_AFTER
        outcome = _outcome(reply)
        elapsed = loop.time() - started
        log.info(
            "session=%s%s from=<%s> rcpts=%d size=%d outcome=%s reply=%r duration=%.3fs",
            message.session_id, f" queue_id={message.queue_id}" if message.queue_id else "",
            message.mail_from,
            len(message.rcpt_tos), len(content),
            outcome, f"{reply.code} {reply.text.splitlines()[0] if reply.text else ''}",
            elapsed,
        )
        self.metrics.observe_data_phase(elapsed)
        self.metrics.mail(_mail_outcome(reply, session.rewritten))
        return format_reply(reply)

    async def _deliver(self, session: RelaySession, message: InboundMessage) -> Reply:
        next_hop = session.next_hop
        if next_hop is None or not next_hop.is_open:
            return replies.TEMPFAIL_NEXT_HOP_LOST
        # The pipeline may not eat the whole budget: the next hop needs time to take
        # the message, and giving up while it is doing so risks a duplicate delivery.
        pipeline_deadline = message.deadline - min(30.0, self.settings.deadline_seconds * 0.2)
        try:
            async with asyncio.timeout_at(message.deadline):
                try:
                    async with asyncio.timeout_at(pipeline_deadline):
                        processed = await self.pipeline.process(message)
                except TimeoutError:
                    log.error("session=%s processing did not finish within the deadline of %.0fs",
                              message.session_id, self.settings.deadline_seconds)
                    await _abort_next_hop_transaction(session)
                    return replies.TEMPFAIL_DEADLINE
                except TemporaryFailure as exc:
                    log.warning("session=%s pipeline: %s", message.session_id, exc.reason)
                    await _abort_next_hop_transaction(session)
                    return Reply(451, f"4.3.0 {exc.reason}")
                except Exception:
                    log.exception("session=%s pipeline failed", message.session_id)
                    await _abort_next_hop_transaction(session)
                    return replies.TEMPFAIL_INTERNAL
                session.after = processed.after
                content = processed.content
                # Equal bytes count as unchanged; comparing costs only when they differ.
                session.rewritten = content is not message.content and content != message.content
                reply = await next_hop.data(*_payload(content))
        except TimeoutError:
            log.error("session=%s deadline of %.0fs passed", message.session_id,
                      self.settings.deadline_seconds)
            next_hop.close()  # aborts the next hop's transaction without "."
            return replies.TEMPFAIL_DEADLINE
        except NextHopError as exc:
            log.warning("session=%s next hop failed at DATA: %s", message.session_id, exc)
            return replies.TEMPFAIL_NEXT_HOP_LOST
        except Exception:
            log.exception("session=%s forwarding failed", message.session_id)
            next_hop.close()
            return replies.TEMPFAIL_INTERNAL
        return _mask_421(reply)


def _outcome(reply: Reply) -> str:
    if reply.is_success:
        return "relayed"
    return "tempfailed" if reply.is_temporary else "rejected"


def _mail_outcome(reply: Reply, rewritten: bool) -> str:
    """The outcome for the mail metrics: relayed mail is split into rewritten and passed."""
    if reply.is_success:
        return "rewritten" if rewritten else "passed"
    return _outcome(reply)


def _payload(content: bytes) -> tuple[bytes, ...]:
    """Wire parts for ``content``; the common case sends it without a copy."""
    if wire.has_bare_line_endings(content):
        content = wire.normalise_line_endings(content)
    if wire.needs_stuffing(content) or (content and not content.endswith(b"\r\n")):
        return (wire.stuff(content), wire.EMPTY_DATA)
    return (content, wire.EMPTY_DATA)


def _mask_421(reply: Reply) -> Reply:
    # The next hop closing its session is not us closing ours: report it as 451
    # so the client keeps its connection and retries this transaction later.
    if reply.code == 421:
        return Reply(451, f"4.4.2 Next hop closed the connection: {reply.text}")
    return reply


async def _abort_next_hop_transaction(session: RelaySession) -> None:
    next_hop = session.next_hop
    if next_hop is None or not next_hop.is_open:
        return
    try:
        reply = await next_hop.rset()
    except NextHopError:
        return
    if not reply.is_success:
        next_hop.close()


class RelaySMTP(SMTP):
    """aiosmtpd's protocol, adjusted for a relay (see the module docstring)."""

    def __init__(self, handler: RelayHandler, *, registry: set[RelaySMTP], **kwargs: Any) -> None:
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
            await _abort_next_hop_transaction(self.relay_session())
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
                return wire.unstuff(buffer) if end <= limit else None
            if len(buffer) > limit:
                tail = bytes(buffer[-(len(wire.END_OF_DATA) - 1) :])
                buffer = bytearray()


def _push_back(reader: asyncio.StreamReader, data: bytes) -> None:
    # A client that pipelines its next command behind the final dot: hand those
    # bytes back to the stream so the command loop reads them next.  StreamReader
    # has no public unread; its buffer is a bytearray.
    if data:
        reader._buffer[0:0] = data  # type: ignore[attr-defined]


class RelayServer:
    """The listening relay: start, address, graceful shutdown."""

    def __init__(self, settings: SmtpSettings, pipeline: Pipeline, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.handler = RelayHandler(settings, pipeline, metrics)
        self.connections: set[RelaySMTP] = set()
        self._server: asyncio.Server | None = None

    def _protocol_factory(self) -> RelaySMTP:
        return RelaySMTP(self.handler, registry=self.connections)

    async def start(self) -> None:
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
        return self._server is not None and self._server.is_serving()

    async def settle(self) -> None:
        """Wait for the follow-ups (phase two of the seam) started after replies to finish."""
        await self.handler.follow_ups.wait()

    def busy_connections(self) -> Iterable[RelaySMTP]:
        return [c for c in self.connections if c.session and c.relay_session().in_transaction]

    async def shutdown(self, grace: float) -> None:
        """Stop accepting; let transactions in flight finish within ``grace``; close."""
        if self._server is None:
            return
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
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await self._server.wait_closed()
        self._server = None
