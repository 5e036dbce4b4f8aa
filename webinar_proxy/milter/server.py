"""The milter front door: Postfix's or Sendmail's smtpd hands us each message as it arrives.

One asyncio task per MTA connection decodes the milter protocol (version 6) with
``kilter.protocol`` and drives the same seam the SMTP edge does: the whole message
goes to ``Pipeline.process`` at end of message, a changed result goes back as edits
(only the headers that differ, the body by ``SMFIR_REPLBODY`` in chunks), and the
seam's second phase (``delivered``/``aborted``) follows once the MTA has taken the
message (or dropped it).

What it guarantees:

* Ordinary mail is accepted as early as the protocol allows: at end of headers when
  the top-level type cannot hold a calendar part, or the mail has a null sender
  (bounces, our organizer notices); otherwise at end of message,
  unchanged.  MAIL, RCPT and header events need no reply (``SMFIP_NR_*``), so they cost
  no round trip; an MTA that cannot skip the reply to MAIL gets the null-sender accept
  there.  Accept is per milter: filters after us (DKIM) still run.
* A conference that cannot be made now is ``451 4.3.0`` (SMFIR_REPLYCODE); any error
  of ours is a 451 too, never an accept of an invitation that should have been
  rewritten.  While the pipeline waits for the platform, SMFIR_PROGRESS goes out every
  ``milter.progress_interval_seconds`` so the MTA's content timeout does not fire.
* The queue id (macro ``i``) and SASL login (``{auth_authen}``) are asked for, the
  queue id is logged, the login reaches the pipeline (``policy.organizer_check = "login"``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import stat
from collections.abc import Callable
from typing import Any

from kilter.protocol import (
    Abort,
    Accept,
    ActionFlags,
    AddHeader,
    Body,
    ChangeHeader,
    Close,
    Continue,
    EndOfHeaders,
    EndOfMessage,
    EnvelopeFrom,
    EnvelopeRecipient,
    FilterProtocol,
    Header,
    InsufficientSpace,
    Macro,
    Negotiate,
    Progress,
    ProtocolFlags,
    ReplaceBody,
    ReplyCode,
    Stage,
)
from kilter.protocol.buffer import SimpleBuffer
from kilter.protocol.messages import Message

from webinar_proxy.invitation import headers_may_carry_calendar
from webinar_proxy.logs import message_context
from webinar_proxy.metrics import NO_METRICS, Metrics
from webinar_proxy.milter import message as milter_message
from webinar_proxy.seam import AfterDelivery, FollowUps, InboundMessage, Pipeline, TemporaryFailure
from webinar_proxy.settings import MilterSettings

log = logging.getLogger("webinar_proxy.milter")

PROTOCOL_VERSION = 6
#: Events we never need: no reply, or not sent at all.
_NOT_WANTED = (ProtocolFlags.NO_CONNECT | ProtocolFlags.NO_HELO | ProtocolFlags.NO_UNKNOWN
               | ProtocolFlags.NO_DATA)
#: Events that need no reply from us (we would always say "continue"; a null sender is
#: accepted at end of headers): one round trip per event saved.
_NO_REPLY = ProtocolFlags.NR_HEADER | ProtocolFlags.NR_RECIPIENT | ProtocolFlags.NR_SENDER
_ACTIONS = (ActionFlags.ADD_HEADERS | ActionFlags.CHANGE_HEADERS | ActionFlags.CHANGE_BODY
            | ActionFlags.SETSYMLIST)
MACROS = {
    Stage.ENVELOPE_FROM: ("{auth_authen}", "{mail_addr}", "i"),
    Stage.END_HEADERS: ("i",),
    Stage.END_MESSAGE: ("i",),
}
#: One protocol message is at most 64 KiB of data; the read buffer holds a few.
_BUFFER_SIZE = 4 * 65_536
#: Bodies above this are not read further: the engine would not look at them anyway.
MAX_BODY_BYTES = 64 * 1024 * 1024

REPLY_INTERNAL = b"451 4.3.0 Internal error, try again later"
REPLY_DEADLINE = b"451 4.4.7 Processing took too long, try again later"



class MilterProtocolError(Exception):
    """The MTA sent something we cannot follow; the connection is dropped (MTA: tempfail)."""


def _reply_code(text: bytes) -> ReplyCode:
    # SMFIR_REPLYCODE is a C string; '%' would be read as a format escape by libmilter MTAs.
    clean = text.replace(b"%", b"").replace(b"\r", b" ").replace(b"\n", b" ").replace(b"\x00", b"")
    return ReplyCode(clean + b"\x00")


def _address(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace").strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    return text


class ReadBuffer:
    """kilter's ``FixedSizeBuffer`` for reading, with O(1) deletes from the head.

    kilter's ``SimpleBuffer`` moves the whole buffer on every delete from the head
    (once per protocol message); this one only advances an offset and moves the
    unread rest down when new data arrives.
    """

    __slots__ = ("_data", "_end", "_start")

    def __init__(self, capacity: int) -> None:
        self._data = bytearray(capacity)
        self._start = 0
        self._end = 0

    def __len__(self) -> int:
        return len(self._data)

    @property
    def filled(self) -> int:
        return self._end - self._start

    @property
    def available(self) -> int:
        return len(self._data) - self.filled

    def _compact(self) -> None:
        if self._start:
            filled = self.filled
            self._data[:filled] = self._data[self._start : self._end]
            self._start, self._end = 0, filled

    def __setitem__(self, items: slice, data: bytes) -> None:
        if items != slice(None):
            raise ValueError("ReadBuffer only appends")
        if len(data) > self.available:
            raise InsufficientSpace
        if self._end + len(data) > len(self._data):
            self._compact()
        self._data[self._end : self._end + len(data)] = data
        self._end += len(data)

    def __getitem__(self, items: slice) -> memoryview:
        start, stop, _ = items.indices(self.filled)
        return memoryview(self._data)[self._start + start : self._start + stop]

    def __delitem__(self, items: slice) -> None:
        start, stop, _ = items.indices(self.filled)
        if start != 0:
            raise ValueError("ReadBuffer deletes from the head only")
        self._start += stop
        if self._start == self._end:
            self._start = self._end = 0

    def get_free(self, size: int) -> memoryview:  # pragma: no cover - not used for reading
        raise InsufficientSpace


def _quick_ack(writer: asyncio.StreamWriter) -> Callable[[], None]:
    """Acknowledge every read at once (Linux ``TCP_QUICKACK``, re-armed after each read).

    The MTA writes a macro and then its command as two small segments; with Nagle on
    its side and delayed ACKs on ours, the command waits about 40 ms for our ACK,
    once per round trip.  Acknowledging at once removes that stall.
    """
    sock = writer.get_extra_info("socket")
    option = getattr(socket, "TCP_QUICKACK", None)
    if sock is None or option is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return lambda: None

    def arm() -> None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, option, 1)

    arm()
    return arm


class _Transaction:
    """What one message has told us so far."""

    def __init__(self, mail_from: str) -> None:
        self.mail_from = mail_from
        self.rcpt_tos: list[str] = []
        self.headers: list[tuple[str, bytes]] = []
        self.body = bytearray()
        self.done = False  # accepted early: the MTA sends nothing more of this message


class MilterConnection:
    """One MTA connection: a sequence of SMTP sessions' transactions, one at a time."""

    def __init__(self, server: MilterServer, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.id = secrets.token_hex(5)
        self.protocol = FilterProtocol()
        self.macros: dict[str, str] = {}
        self.leading_space = False
        self.actions = ActionFlags.NONE
        self.transaction: _Transaction | None = None
        self.messages = 0
        #: Phase two of the message whose end we accepted; its fate is known at the next event.
        self.pending: AfterDelivery | None = None
        self.processing = False
        self._idle = asyncio.Event()
        self._idle.set()

    # -- I/O -------------------------------------------------------------------------
    async def run(self) -> None:
        buffer = ReadBuffer(_BUFFER_SIZE)
        quick_ack = _quick_ack(self.writer)
        try:
            while True:
                if buffer.available == 0:
                    raise MilterProtocolError("protocol message larger than the read buffer")
                data = await self.reader.read(buffer.available)
                if not data:
                    break
                quick_ack()
                buffer[:] = data
                for event in self.protocol.read_from(buffer):
                    if isinstance(event, Close):
                        return
                    await self.handle(event)
                await self.writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:
            log.exception("milter connection=%s: protocol error; closing (the MTA applies its "
                          "milter_default_action)", self.id)
        finally:
            self._settle_pending(delivered=True)
            self.writer.close()

    def send(self, message: Message, size: int = 512) -> None:
        out = SimpleBuffer(size)
        self.protocol.write_to(out, message)
        self.writer.write(out[:].tobytes())

    # -- events --------------------------------------------------------------------------
    async def handle(self, event: Message) -> None:
        if isinstance(event, Macro):
            self.macros.update(event.macros)
            return
        if isinstance(event, Negotiate):
            self._negotiate(event)
            return
        if isinstance(event, EnvelopeFrom):
            self._settle_pending(delivered=True)
            sender = _address(bytes(event.sender))
            self.transaction = _Transaction(sender)
            if self.protocol.needs_response(event):
                if not sender:
                    # Bounces and our own organizer notices (null sender): nothing to do.
                    self._accept_early(self.transaction, "mail")
                else:
                    self.send(Continue())
            return
        if isinstance(event, Abort):
            # Postfix sends SMFIC_ABORT after every transaction, also a successful one: an
            # abort after our accepted end of message ends it (see _settle_pending).
            self._settle_pending(delivered=True)
            self.transaction = None
            return
        transaction = self.transaction
        if isinstance(event, EnvelopeRecipient):
            if transaction is not None:
                transaction.rcpt_tos.append(_address(bytes(event.recipient)))
        elif isinstance(event, Header):
            if transaction is not None:
                transaction.headers.append((event.name, bytes(event.value)))
        elif isinstance(event, EndOfHeaders) and transaction is not None:
            block = milter_message.assemble(transaction.headers, b"", leading_space=self.leading_space)
            # Bounces and our own organizer notices (null sender) pass as they are, like
            # mail whose type cannot hold a calendar part.  Auto-Submitted alone does not:
            # calendar servers (Nextcloud) mark their invitations with it.
            if not transaction.mail_from or not headers_may_carry_calendar(block):
                self._accept_early(transaction, "end-of-headers")
                return
        elif isinstance(event, Body) and transaction is not None:
            transaction.body += event.content
            if len(transaction.body) > MAX_BODY_BYTES:
                self._accept_early(transaction, "body")
                return
        elif isinstance(event, EndOfMessage):
            if transaction is None:  # no MAIL FROM seen: nothing we could vouch for
                self.send(_reply_code(REPLY_INTERNAL))
                return
            transaction.body += event.content
            await self._end_of_message(transaction)
            return
        if self.protocol.needs_response(event):  # type: ignore[arg-type]
            self.send(Continue())

    def _accept_early(self, transaction: _Transaction, stage: str) -> None:
        """Ordinary mail: accept now, so the rest of it never crosses the socket."""
        transaction.done = True
        self.send(Accept())
        self.messages += 1
        queue = self.macros.get("i")
        log.info("session=%s.%d%s from=<%s> rcpts=%d outcome=passed accepted_at=%s",
                 self.id, self.messages, f" queue_id={queue}" if queue else "",
                 transaction.mail_from, len(transaction.rcpt_tos), stage)
        self.server.metrics.mail("passed")

    def _negotiate(self, offer: Negotiate) -> None:
        wanted = _NOT_WANTED | _NO_REPLY | ProtocolFlags.HEADER_LEADING_SPACE
        protocol_flags = offer.protocol_flags & wanted
        actions = offer.action_flags & _ACTIONS
        self.leading_space = ProtocolFlags.HEADER_LEADING_SPACE in protocol_flags
        self.actions = actions
        macros = MACROS if ActionFlags.SETSYMLIST in actions else {}
        if ActionFlags.CHANGE_BODY not in actions:
            log.warning("milter connection=%s: the MTA does not allow body changes; invitations "
                        "will be answered 451", self.id)
        self.send(Negotiate(PROTOCOL_VERSION, actions, protocol_flags, macros), 1024)

    async def _end_of_message(self, transaction: _Transaction) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        self.messages += 1
        self.processing = True
        self._idle.clear()
        content = milter_message.assemble(transaction.headers, bytes(transaction.body),
                                          leading_space=self.leading_space)
        message = InboundMessage(
            session_id=f"{self.id}.{self.messages}",
            mail_from=transaction.mail_from,
            rcpt_tos=tuple(transaction.rcpt_tos),
            content=content,
            deadline=started + self.server.deadline_seconds,
            login=self.macros.get("{auth_authen}") or None,
            queue_id=self.macros.get("i") or None,
        )
        with message_context(message.session_id, message.queue_id):
            await self._process(transaction, message, started)

    async def _process(self, transaction: _Transaction, message: InboundMessage, started: float) -> None:
        """Process one message, answer the MTA (edits and continue, or 451), log one line."""
        loop = asyncio.get_running_loop()
        content = message.content
        keepalive = asyncio.create_task(self._keep_alive())
        outcome, reply = "passed", b"continue"
        after: AfterDelivery | None = None
        try:
            try:
                async with asyncio.timeout_at(message.deadline):
                    processed = await self.server.pipeline.process(message)
                after = processed.after
                result = processed.content
            finally:
                keepalive.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keepalive
            if result is not content and result != content:
                outcome = "rewritten"
                self._send_edits(transaction, result)
            self.send(Continue())
            self.pending = after
        except TimeoutError:
            log.error("session=%s processing did not finish within %.0fs", message.session_id,
                      self.server.deadline_seconds)
            outcome, reply = "tempfailed", REPLY_DEADLINE
        except TemporaryFailure as exc:
            log.warning("session=%s pipeline: %s", message.session_id, exc.reason)
            outcome, reply = "tempfailed", b"451 4.3.0 " + exc.reason.encode("utf-8", "replace")
        except Exception:
            log.exception("session=%s pipeline failed", message.session_id)
            outcome, reply = "tempfailed", REPLY_INTERNAL
        finally:
            self.processing = False
            self._idle.set()
        if outcome == "tempfailed":
            self.send(_reply_code(reply))
            if after is not None:
                self.server.follow_ups.settle(after, delivered=False)
        self.transaction = None
        elapsed = loop.time() - started
        log.info("session=%s%s from=<%s> rcpts=%d size=%d outcome=%s reply=%r duration=%.3fs",
                 message.session_id, f" queue_id={message.queue_id}" if message.queue_id else "",
                 message.mail_from, len(message.rcpt_tos), len(content), outcome,
                 reply.decode("utf-8", "replace"), elapsed)
        self.server.metrics.observe_data_phase(elapsed)
        self.server.metrics.mail(outcome)

    def _send_edits(self, transaction: _Transaction, result: bytes) -> None:
        changes = milter_message.edits(transaction.headers, bytes(transaction.body), result,
                                       leading_space=self.leading_space)
        needed = ActionFlags.NONE
        if changes.body is not None:
            needed |= ActionFlags.CHANGE_BODY
        if any(edit.add for edit in changes.headers):
            needed |= ActionFlags.ADD_HEADERS
        if any(not edit.add for edit in changes.headers):
            needed |= ActionFlags.CHANGE_HEADERS
        if needed & ~self.actions:
            # Never accept an invitation we could not rewrite.
            raise TemporaryFailure("The MTA does not allow this milter to change the message")
        for edit in changes.headers:
            value = milter_message.wire_value(edit.value)
            size = len(value) + len(edit.name) + 64
            if edit.add:
                self.send(AddHeader(edit.name, value), size)
            else:
                self.send(ChangeHeader(edit.index, edit.name, value), size)
        for chunk in changes.body_chunks():
            self.send(ReplaceBody(chunk), len(chunk) + 64)

    async def _keep_alive(self) -> None:
        interval = self.server.settings.progress_interval_seconds
        while True:
            await asyncio.sleep(interval)
            self.send(Progress())
            await self.writer.drain()

    def _settle_pending(self, *, delivered: bool) -> None:
        """The accepted message's transaction is over: run the pipeline's follow-up.

        A milter never hears the MTA's final answer to the client.  The message counts
        as delivered once we accepted its end and the MTA moved on (abort, next MAIL,
        close); a filter after us or the queue refusing it is not seen (documented).
        """
        if self.pending is not None:
            after, self.pending = self.pending, None
            self.server.follow_ups.settle(after, delivered=delivered)

    async def wait_idle(self) -> None:
        await self._idle.wait()


def _remove_socket(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)


class MilterServer:
    """The milter listener: start, addresses, graceful shutdown."""

    def __init__(self, settings: MilterSettings, pipeline: Pipeline, *, deadline_seconds: float,
                 metrics: Metrics | None = None) -> None:
        if settings.listen is None:
            raise ValueError("milter.listen is not set")
        self.settings = settings
        self.pipeline = pipeline
        self.deadline_seconds = deadline_seconds
        self.metrics = metrics or NO_METRICS
        self.connections: set[MilterConnection] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.follow_ups = FollowUps()
        self._server: asyncio.Server | None = None
        #: False in a worker of a group: the supervisor owns (and removes) a unix socket path.
        self._owns_socket = True
        #: True while connections handed over by a supervisor are taken (``adopt``).
        self._adopting = False

    def start_adopting(self) -> None:
        """Serve connections accepted by a supervisor (see ``RelayServer.start_adopting``)."""
        self._owns_socket = False
        self._adopting = True

    async def adopt(self, sock: socket.socket, on_closed: Callable[[], None]) -> None:
        """Serve ``sock``, an MTA connection accepted by the supervisor; ``on_closed`` is
        called once when it is gone."""
        if not self._adopting:
            sock.close()
            on_closed()
            return
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(loop=loop)

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await self._serve(reader, writer)
            finally:
                writer.close()
                on_closed()

        try:
            await loop.connect_accepted_socket(
                lambda: asyncio.StreamReaderProtocol(reader, serve, loop=loop), sock=sock)
        except OSError as exc:
            log.warning("handed-over connection lost before it was served: %s", exc)
            sock.close()
            on_closed()

    async def start(self) -> None:
        """Listen on ``milter.listen`` (one process; a worker of a group adopts instead)."""
        listen = self.settings.listen
        assert listen is not None
        if listen.kind == "unix":
            path = listen.path
            _remove_socket(path)  # left by an earlier run that was killed
            self._server = await asyncio.start_unix_server(self._serve, path=path)
            # Access is governed by the directory (RuntimeDirectory=); the MTA runs as another user.
            os.chmod(path, 0o666)
        else:
            self._server = await asyncio.start_server(self._serve, host=listen.host, port=listen.port,
                                                      reuse_address=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = MilterConnection(self, reader, writer)
        self.connections.add(connection)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await connection.run()
        except asyncio.CancelledError:
            # Shutdown cut a message off after the grace period: no reply, so the MTA keeps it.
            pass
        finally:
            self.connections.discard(connection)
            if task is not None:
                self._tasks.discard(task)

    @property
    def addresses(self) -> list[str]:
        """Where it listens, in the notation of ``milter.listen``."""
        assert self._server is not None
        shown = []
        for sock in self._server.sockets:
            name = sock.getsockname()
            if isinstance(name, str):
                shown.append(f"unix:{name}")
            else:
                host, port = name[:2]
                shown.append(f"inet:[{host}]:{port}" if ":" in host else f"inet:{host}:{port}")
        return shown

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    def is_serving(self) -> bool:
        return self._adopting or (self._server is not None and self._server.is_serving())

    async def settle(self) -> None:
        """Wait for the follow-ups (phase two of the seam) to finish."""
        await self.follow_ups.wait()

    async def shutdown(self, grace: float) -> None:
        """Stop accepting; let messages being processed finish within ``grace``; close."""
        if self._server is None and not self._adopting:
            return
        self._adopting = False
        if self._server is not None:
            self._server.close()
        busy = [asyncio.ensure_future(c.wait_idle()) for c in self.connections if c.processing]
        if busy:
            _, pending = await asyncio.wait(busy, timeout=grace)
            for waiter in pending:
                waiter.cancel()
        for connection in list(self.connections):
            connection.writer.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self._server.wait_closed()
        listen = self.settings.listen
        if listen is not None and listen.kind == "unix" and self._owns_socket:
            _remove_socket(listen.path)
        self._server = None
        await self.settle()
