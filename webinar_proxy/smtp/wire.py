"""DATA on the wire: finding its end, undoing and redoing dot-stuffing (RFC 5321 §4.5.2).

Pure byte functions, kept apart so that the rules that decide where a message ends
— the place SMTP smuggling attacks aim at — are small and tested on their own.

Only ``CRLF . CRLF`` ends DATA.  Bare LF and bare CR are never line ends here, and
a message that contains them is normalised to CRLF before it is forwarded, so the
next hop cannot read a different message boundary than we did.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

END_OF_DATA = b"\r\n.\r\n"
#: DATA consisting of nothing but the terminator (an empty message).
EMPTY_DATA = b".\r\n"
_BARE_LINE_ENDING = re.compile(rb"\r(?!\n)|(?<!\r)\n")
#: Size of the pieces large messages are worked on in (see ``pieces``).
PIECE = 256 * 1024


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


# ---- large messages, piece by piece ----------------------------------------------------
#
# Each whole-message operation above holds the event loop for tens of milliseconds on
# a 20 MB message.  The front door works on large messages in pieces instead and
# yields between them.  A piece ends just after a CRLF, so every piece starts at the
# beginning of a line, and the line-start rules of dot-stuffing apply to each piece
# on its own: the functions below give the same bytes as the whole-message ones.


def pieces(data: bytes | bytearray, end: int | None = None, size: int = PIECE) -> Iterator[tuple[int, int]]:
    """(start, stop) spans covering ``data[:end]``, about ``size`` bytes each, each but
    the last ending just after a CRLF (a longer line makes a longer piece)."""
    end = len(data) if end is None else end
    start = 0
    while start < end:
        if start + size >= end:
            yield start, end
            return
        cut = data.rfind(b"\r\n", start, start + size)
        if cut < 0:
            cut = data.find(b"\r\n", start + size, end)
            if cut < 0 or cut + 2 >= end:
                yield start, end
                return
        yield start, cut + 2
        start = cut + 2


def piece_is_stuffed(data: bytes | bytearray, start: int, stop: int) -> bool:
    """Whether ``data[start:stop]`` (a piece) holds a dot-stuffed line to undo."""
    return data.startswith(b"..", start, stop) or data.find(b"\r\n..", start, stop) >= 0


def unstuff_piece(piece: bytes) -> bytes:
    """``unstuff`` for one piece of received DATA without its terminator."""
    if piece.startswith(b".."):
        piece = piece[1:]
    return piece.replace(b"\r\n..", b"\r\n.") if b"\r\n.." in piece else piece


def piece_needs_work(message: bytes, start: int, stop: int) -> bool:
    """Whether the piece ``message[start:stop]`` needs normalising or stuffing."""
    crlf = message.count(b"\r\n", start, stop)
    return (
        message.count(b"\n", start, stop) != crlf
        or message.count(b"\r", start, stop) != crlf
        or message.startswith(b".", start, stop)
        or message.find(b"\r\n.", start, stop) >= 0
    )


def wire_piece(piece: bytes) -> bytes:
    """One piece of a message in wire form: line endings normalised, dot-stuffed (no
    CRLF added at the end: see ``stuff`` for the last piece)."""
    if has_bare_line_endings(piece):
        piece = normalise_line_endings(piece)
    if piece.startswith(b"."):
        piece = b"." + piece
    return piece.replace(b"\r\n.", b"\r\n..") if b"\r\n." in piece else piece
