"""The SMTP edge's handler: what each command does (relay MAIL/RCPT/RSET, process and forward DATA).

``RelaySession`` is one client's state; ``RelayHandler`` holds aiosmtpd's
``handle_*`` hooks.  At the end of DATA the message crosses the seam: phase one
(``Pipeline.process``) before the next hop gets it, phase two (``delivered`` or
``aborted``) in the background after the client has its reply.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import re
import secrets
from collections.abc import Sequence

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
#: A pipelined RCPT that aiosmtpd certainly hands to ``handle_RCPT`` as it is (a plain
#: path, no parameters: see ``RelaySMTP._getaddr``), so its reply can be fetched early.
_PLAIN_RCPT = re.compile(r"RCPT TO:<([^\s<>()\[\]\\,;:@\"]+@[^\s<>()\[\]\\,;:@\"]+)>", re.IGNORECASE)


def pipelined_envelope(lines: Sequence[bytes], room: int) -> tuple[list[str], bool]:
    """The recipients of the plain RCPT lines at the start of ``lines`` (at most ``room``)
    and whether DATA follows them directly: what can go to the next hop with MAIL."""
    recipients: list[str] = []
    for line in lines:
        if not line.isascii():
            break
        text = line.decode("ascii")
        match = _PLAIN_RCPT.fullmatch(text)
        if match is None:
            return recipients, bool(recipients) and text.upper() == "DATA"
        if len(recipients) >= room:
            break
        recipients.append(match[1])
    return recipients, False


def format_reply(reply: Reply) -> str:
    """A reply as aiosmtpd pushes it; multi-line texts become continuation lines."""
    lines = reply.text.splitlines() or [""]
    if len(lines) == 1:
        return f"{reply.code} {lines[0]}"
    head = "\r\n".join(f"{reply.code}-{line}" for line in lines[:-1])
    return f"{head}\r\n{reply.code} {lines[-1]}"


class BulkLane:
    """Large-mail work takes turns: at most ``width`` steps of it per event-loop turn.

    Every piece of work on a large message (a chunk read, a piece un-stuffed or
    stuffed, a slice written) is followed by ``step()``, which waits for one of the
    lane's slots and holds it through one loop turn.  Ten large messages then do one
    piece of work per turn instead of ten, their readers fill up and pause their
    sockets, and a small message's commands wait behind one piece at most.  Nothing
    waits for the network while holding a slot.  (Two slots measured no better for
    the large messages and worse for the small ones, see bench/bench_big_mail.py.)
    """

    def __init__(self, width: int = 1) -> None:
        self._slots = asyncio.Semaphore(width)

    async def step(self) -> None:
        async with self._slots:
            await asyncio.sleep(0)


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
        #: Complete command lines the client sent behind its MAIL (set while MAIL runs).
        self.pipelined: Sequence[bytes] = ()
        #: Next-hop replies to RCPTs sent along with MAIL, for the client's RCPTs in order.
        self.prefetched: collections.deque[tuple[str, Reply]] = collections.deque()
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
        self.bulk = BulkLane()

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope,
        hostname: str, responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        # DSN is deliberately not offered: aiosmtpd rejects its parameters (see README).
        return [*responses[:-1], "250-PIPELINING", "250-XFORWARD " + " ".join(XFORWARD_ATTRIBUTES),
                responses[-1]]

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
                pace=self.bulk.step,
            )
        session.prefetched.clear()
        try:
            await next_hop.open()
            xforward = session.xforward if session.xforward and next_hop.supports("xforward") else None
            if next_hop.supports("pipelining"):
                # MAIL, the plain RCPTs the client pipelined behind it and DATA in one write.
                recipients, data = pipelined_envelope(session.pipelined, self.settings.max_recipients)
                answers = await next_hop.envelope(xforward, address, options, recipients, data=data)
                reply = answers.mail
                if reply.is_success:
                    session.prefetched.extend(zip(recipients, answers.rcpts, strict=True))
            else:
                if xforward:
                    await next_hop.xforward(xforward)
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
        if session.prefetched:
            expected, reply = session.prefetched.popleft()
            if expected != address or options:
                # The lookahead mirrors aiosmtpd's parsing, so this should not happen; if it
                # does, the next hop holds a recipient the client never got: drop it all.
                log.error("session=%s pipelined RCPT out of step (%s, %s)", session.id, expected, address)
                session.prefetched.clear()
                session.next_hop.close()
                return str(replies.TEMPFAIL_NEXT_HOP_LOST)
            if reply.is_success:
                envelope.rcpt_tos.append(address)
            return format_reply(_mask_421(reply))
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
        open_there = session.in_transaction
        session.in_transaction = False
        session.xforward = {}
        session.prefetched.clear()
        if open_there:  # nothing to reset at the next hop otherwise (Postfix probes with RSET)
            await abort_next_hop_transaction(session)
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
            session.prefetched.clear()
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
        if session.prefetched:  # recipients at the next hop that the client never sent
            log.error("session=%s pipelined RCPTs left over at DATA", session.id)
            next_hop.close()
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
                    await abort_next_hop_transaction(session)
                    return replies.TEMPFAIL_DEADLINE
                except TemporaryFailure as exc:
                    log.warning("session=%s pipeline: %s", message.session_id, exc.reason)
                    await abort_next_hop_transaction(session)
                    return Reply(451, f"4.3.0 {exc.reason}")
                except Exception:
                    log.exception("session=%s pipeline failed", message.session_id)
                    await abort_next_hop_transaction(session)
                    return replies.TEMPFAIL_INTERNAL
                session.after = processed.after
                content = processed.content
                # Equal bytes count as unchanged; comparing costs only when they differ.
                session.rewritten = content is not message.content and content != message.content
                reply = await next_hop.data(*await _payload(content, self.bulk))
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


async def _payload(content: bytes, bulk: BulkLane, piece: int = wire.PIECE) -> tuple[bytes | memoryview, ...]:
    """Wire parts for ``content``; the common case sends it without a copy.  A large
    message is worked on piece by piece with the event loop free between pieces, and
    only the pieces that change are copied."""
    if len(content) <= piece:
        return _small_payload(content)
    parts: list[bytes | memoryview] = []
    view = memoryview(content)
    for start, stop in wire.pieces(content, size=piece):
        if wire.piece_needs_work(content, start, stop):
            parts.append(wire.wire_piece(content[start:stop]))
        else:
            parts.append(view[start:stop])
        await bulk.step()
    if bytes(parts[-1][-2:]) != b"\r\n":
        parts.append(b"\r\n")
    parts.append(wire.EMPTY_DATA)
    return tuple(parts)


def _small_payload(content: bytes) -> tuple[bytes, ...]:
    """``_payload`` of a small message, in one go."""
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


async def abort_next_hop_transaction(session: RelaySession) -> None:
    next_hop = session.next_hop
    if next_hop is None or not next_hop.is_open:
        return
    if next_hop.in_data:
        # It took a pipelined DATA and waits for the message: only closing aborts that.
        next_hop.close()
        return
    try:
        reply = await next_hop.rset()
    except NextHopError:
        return
    if not reply.is_success:
        next_hop.close()
