"""The MTA side of the milter protocol, for tests: a small client over a real socket.

Built on ``kilter.protocol``'s message classes (the same codec the product uses for
framing, but the MTA's half of the conversation — what to send when, and applying
the filter's edits to the message — is written here, the way an MTA does it).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from kilter.protocol import (
    Accept,
    ActionFlags,
    AddHeader,
    Body,
    ChangeHeader,
    Continue,
    Discard,
    EndOfHeaders,
    EndOfMessage,
    EnvelopeFrom,
    EnvelopeRecipient,
    Header,
    Macro,
    Negotiate,
    Progress,
    ProtocolFlags,
    Reject,
    ReplaceBody,
    ReplyCode,
    TemporaryFailure,
)
from kilter.protocol.buffer import SimpleBuffer
from kilter.protocol.messages import Message

#: What Postfix 3.x offers in its SMFIC_OPTNEG.
OFFERED_ACTIONS = ActionFlags(0x1FF)
OFFERED_PROTOCOL = ProtocolFlags(0x1FFFFF)
FINAL = (Continue, Accept, Reject, Discard, TemporaryFailure, ReplyCode)


def pack(message: Message) -> bytes:
    content = getattr(message, "content", None) or getattr(message, "value", None) or b""
    buffer = SimpleBuffer(len(content) + 4096)
    message.pack(buffer)
    return buffer[:].tobytes()


def headers_of(content: bytes) -> tuple[list[tuple[str, bytes]], bytes]:
    """(name, value after the colon with its leading space, folded with LF) and the body."""
    block, _, body = content.partition(b"\r\n\r\n")
    headers: list[tuple[str, bytes]] = []
    for line in block.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and headers:
            headers[-1] = (headers[-1][0], headers[-1][1] + b"\n" + line)
        elif line:
            name, _, value = line.partition(b":")
            headers.append((name.decode("ascii"), value))
    return headers, body


@dataclass
class Outcome:
    """What the filter answered for one message, and the message after its edits."""

    #: The stage the final answer came at: "mail", "eoh", "body" or "eom".
    stage: str
    reply: Message
    edits: list[Message] = field(default_factory=list)
    progress: int = 0
    body_chunks_sent: int = 0
    message: bytes = b""

    @property
    def reply_text(self) -> str:
        assert isinstance(self.reply, ReplyCode)
        return bytes(self.reply.content).rstrip(b"\x00").decode()


class MtaClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.negotiated: Negotiate | None = None

    @classmethod
    async def connect(cls, port: int, *, actions: ActionFlags = OFFERED_ACTIONS,
                      protocol: ProtocolFlags = OFFERED_PROTOCOL) -> MtaClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = cls(reader, writer)
        await client.send(Negotiate(6, actions, protocol))
        answer = await client.receive()
        assert isinstance(answer, Negotiate), answer
        client.negotiated = answer
        return client

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()

    async def send(self, message: Message) -> None:
        self.writer.write(pack(message))
        await self.writer.drain()

    async def receive(self) -> Message:
        header = await self.reader.readexactly(4)
        size = int.from_bytes(header, "big")
        data = header + await self.reader.readexactly(size)
        buffer = SimpleBuffer(len(data) + 16)
        buffer[:] = data
        message, _ = Message.unpack(buffer)
        message.freeze()
        return message

    def _flag(self, flag: ProtocolFlags) -> bool:
        assert self.negotiated is not None
        return flag in self.negotiated.protocol_flags

    async def _answer(self) -> Message:
        return await self.receive()

    async def message(self, content: bytes, mail_from: str, rcpts: list[str], *,
                      macros: dict[str, str] | None = None, chunk: int = 65_535) -> Outcome:
        """One transaction as Postfix drives it; returns the answer and the edited message."""
        await self.send(Macro(ord("M"), macros or {}))
        await self.send(EnvelopeFrom(f"<{mail_from}>".encode()))
        if not self._flag(ProtocolFlags.NR_SENDER):
            answer = await self._answer()
            if not isinstance(answer, Continue):
                return Outcome("mail", answer, message=content)
        for rcpt in rcpts:
            await self.send(EnvelopeRecipient(f"<{rcpt}>".encode()))
            if not self._flag(ProtocolFlags.NR_RECIPIENT):
                assert isinstance(await self._answer(), Continue)
        headers, body = headers_of(content)
        for name, value in headers:
            await self.send(Header(name, value if self._flag(ProtocolFlags.HEADER_LEADING_SPACE)
                                   else value.removeprefix(b" ")))
            if not self._flag(ProtocolFlags.NR_HEADER):
                assert isinstance(await self._answer(), Continue)
        await self.send(EndOfHeaders())
        answer = await self._answer()
        if not isinstance(answer, Continue):
            return Outcome("eoh", answer, message=content)
        sent = 0
        for start in range(0, len(body), chunk):
            await self.send(Body(body[start : start + chunk]))
            sent += 1
            answer = await self._answer()
            if not isinstance(answer, Continue):
                return Outcome("body", answer, body_chunks_sent=sent, message=content)
        await self.send(Macro(ord("E"), macros or {}))
        await self.send(EndOfMessage(b""))
        outcome = Outcome("eom", Continue(), body_chunks_sent=sent)
        while True:
            answer = await self.receive()
            if isinstance(answer, Progress):
                outcome.progress += 1
            elif isinstance(answer, FINAL):
                outcome.reply = answer
                break
            else:
                outcome.edits.append(answer)
        outcome.message = apply_edits(headers, body, outcome.edits)
        return outcome


def apply_edits(headers: list[tuple[str, bytes]], body: bytes, edits: list[Message]) -> bytes:
    """The message as an MTA would queue it after the filter's edits."""
    headers = list(headers)
    new_body: bytearray | None = None
    for edit in edits:
        if isinstance(edit, ReplaceBody):
            new_body = (new_body or bytearray()) + bytes(edit.content)
        elif isinstance(edit, ChangeHeader):
            positions = [i for i, (name, _) in enumerate(headers) if name.lower() == edit.name.lower()]
            target = positions[edit.index - 1]
            if bytes(edit.value):
                headers[target] = (headers[target][0], bytes(edit.value))
            else:
                del headers[target]
        elif isinstance(edit, AddHeader):
            headers.append((edit.name, bytes(edit.value)))
        else:
            raise AssertionError(f"unexpected edit {edit!r}")
    block = b"".join(name.encode() + b":" + value.replace(b"\n", b"\r\n") + b"\r\n"
                     for name, value in headers)
    return block + b"\r\n" + (bytes(new_body) if new_body is not None else body)
