"""The contract between the SMTP edge and whatever processes a message.

The edge hands each accepted message to a ``Pipeline`` at the end of DATA and
forwards the bytes it returns.  The pipeline never sees SMTP objects and the edge
never sees calendars: this module is the seam between them.

A pipeline signals "try again later" by raising ``TemporaryFailure`` (the client
gets 451); any other exception is treated the same way by the edge.  It must not
return a half-written message: it returns either the original bytes or a
complete replacement.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


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


class Pipeline(Protocol):
    """What the edge calls for each message.

    A pipeline may also define ``async def after_delivery(message, delivered: bool)``;
    the edge calls it (in the background) once the final reply is decided, so that
    follow-up work such as a notice to the organizer happens only for mail the next
    hop accepted.
    """

    async def process(self, message: InboundMessage) -> bytes:
        """Return the bytes to forward (``message.content`` itself when unchanged)."""
        ...


class PassThrough:
    """Forwards every message unchanged."""

    async def process(self, message: InboundMessage) -> bytes:
        return message.content
