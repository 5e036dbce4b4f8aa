"""DATA on the wire: finding its end, undoing and redoing dot-stuffing (RFC 5321 §4.5.2).

Pure byte functions, kept apart so that the rules that decide where a message ends
— the place SMTP smuggling attacks aim at — are small and tested on their own.

Only ``CRLF . CRLF`` ends DATA.  Bare LF and bare CR are never line ends here, and
a message that contains them is normalised to CRLF before it is forwarded, so the
next hop cannot read a different message boundary than we did.
"""

from __future__ import annotations

import re

END_OF_DATA = b"\r\n.\r\n"
#: DATA consisting of nothing but the terminator (an empty message).
EMPTY_DATA = b".\r\n"
_BARE_LINE_ENDING = re.compile(rb"\r(?!\n)|(?<!\r)\n")


def find_end_of_data(buffer: bytes | bytearray, start: int = 0) -> int:
    """Index just past the terminator in DATA ``buffer``, or -1 while it has not arrived.

    ``buffer`` holds the bytes after the DATA command's own CRLF, so a buffer that
    begins with ``.CRLF`` is an empty message.
    """
    if buffer[:3] == EMPTY_DATA:
        return 3
    index = buffer.find(END_OF_DATA, max(0, start - len(END_OF_DATA) + 1))
    return -1 if index < 0 else index + len(END_OF_DATA)


def unstuff(data: bytes | bytearray) -> bytes:
    """The message inside received DATA (terminator included in ``data``)."""
    with memoryview(data) as view:
        body = bytes(view[: len(data) - len(EMPTY_DATA)])
    if body.startswith(b".."):
        body = body[1:]
    if b"\r\n.." in body:
        body = body.replace(b"\r\n..", b"\r\n.")
    return body


def has_bare_line_endings(message: bytes) -> bool:
    crlf = message.count(b"\r\n")
    return message.count(b"\n") != crlf or message.count(b"\r") != crlf


def normalise_line_endings(message: bytes) -> bytes:
    """Turn every bare CR and bare LF into CRLF."""
    return _BARE_LINE_ENDING.sub(b"\r\n", message)


def needs_stuffing(message: bytes) -> bool:
    return message.startswith(b".") or b"\r\n." in message


def stuff(message: bytes) -> bytes:
    """Wire form of ``message`` (CRLF line endings assumed), without the terminator."""
    if message.startswith(b"."):
        message = b"." + message
    if b"\r\n." in message:
        message = message.replace(b"\r\n.", b"\r\n..")
    if message and not message.endswith(b"\r\n"):
        message += b"\r\n"
    return message
