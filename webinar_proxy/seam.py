"""The contract between a front door (``smtp/``, ``milter/``) and the use case.

It has two phases, and the types say so:

1. ``Pipeline.process(message)`` gets each message at its end (DATA, or the
   milter's end of message) and returns a ``Processed``: the bytes to forward
   and an ``AfterDelivery`` context object carrying whatever the use case must
   still do once the message's fate is known.
2. The front door calls exactly one of ``after.delivered()`` (the next hop or
   the MTA took the message) or ``after.aborted()`` (it did not), in the
   background after the client has its reply; ``FollowUps`` runs and tracks those
   calls so shutdown can wait for them.

When ``process`` raises there is no second phase.  A pipeline signals "try again
later" by raising ``TemporaryFailure`` (the client gets 451); any other exception
is treated the same way.  It never returns a half-written message: the content is
either the original bytes or a complete replacement.

The use case never sees SMTP or milter objects and the front doors never see
calendars: data runs one way, front door → use case, and back only as return values.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One message as received, after the transaction's recipients were accepted."""

    session_id: str
    mail_from: str
    rcpt_tos: tuple[str, ...]
    content: bytes
    #: Client attributes Postfix passed with XFORWARD (NAME, ADDR, …), if any.
    xforward: dict[str, str] = field(default_factory=dict)
    #: Event-loop time (``loop.time()``) by which the final reply must be sent.
    deadline: float = float("inf")
    #: The SASL login the MTA reported for the submitter (milter ``{auth_authen}``), if any.
    login: str | None = None
    #: The MTA's queue id (milter macro ``i``), if known.
    queue_id: str | None = None


class TemporaryFailure(Exception):
    """Processing cannot finish now; the MTA should keep the mail and retry."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AfterDelivery(Protocol):
    """Phase two: what the use case still does once the message's fate is known.

    The front door calls exactly one of the two methods, once, after its reply.
    """

    async def delivered(self) -> None:
        """The next hop (or the MTA, behind a milter) took the message."""
        ...

    async def aborted(self) -> None:
        """The message was not taken: 4xx/5xx, deadline, the client or the MTA gone."""
        ...


class NothingAfter:
    """The second phase of a message that needs none."""

    async def delivered(self) -> None:
        return None

    async def aborted(self) -> None:
        return None


NOTHING_AFTER: AfterDelivery = NothingAfter()


@dataclass(frozen=True, slots=True)
class Processed:
    """Phase one's result: the bytes to forward and the follow-up for phase two."""

    #: ``message.content`` itself when unchanged, else a complete replacement.
    content: bytes
    after: AfterDelivery = NOTHING_AFTER


class Pipeline(Protocol):
    """What a front door calls for each message (phase one)."""

    async def process(self, message: InboundMessage) -> Processed:
        ...


class PassThrough:
    """Forwards every message unchanged."""

    async def process(self, message: InboundMessage) -> Processed:
        return Processed(message.content)


class FollowUps:
    """Runs phase two in the background so no client waits for it; shutdown waits for all."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def settle(self, after: AfterDelivery, *, delivered: bool) -> None:
        task = asyncio.ensure_future(after.delivered() if delivered else after.aborted())
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("follow-up after delivery failed", exc_info=task.exception())

    def __len__(self) -> int:
        return len(self._tasks)

    async def wait(self) -> None:
        """Wait until every follow-up started so far (and any they start) has finished."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
