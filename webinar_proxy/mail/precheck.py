"""Tell ordinary mail from possible calendar mail by looking at header blocks only.

A calendar part always announces itself in its own header block (its type, or an
``.ics`` file name), so we read the top-level headers, follow multipart boundaries
and read each part's header block, never decoding or copying a body.  The header
blocks and parts are cut by the same functions ``structure.parse_structure`` uses
(one MIME walker), so the two cannot disagree about where a part starts.
Cost is a boundary search over the message (a fraction of a millisecond per MB)
plus a few microseconds per part.  A ``True`` answer means "look closer", not
"this is an invitation".
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from webinar_proxy.mail.structure import boundary_positions, header_block_end

# Words that, in a Content-Type or Content-Disposition header, label calendar data.
_CALENDAR_HINTS = (b"calendar", b"/ics", b".ics", b".ical", b".vcs", b"x-ics", b".ifb")
# Content-Type and Content-Disposition headers including their folded continuation lines.
_LABEL_HEADERS = re.compile(
    rb"(?:^|[\r\n])content-(?:type|disposition)[ \t]*:[^\r\n]*(?:(?:\r\n|\n|\r)[ \t][^\r\n]*)*"
)
_CONTENT_TYPE = re.compile(rb"(?:^|[\r\n])content-type:[ \t\r\n]*([a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+)")
_BOUNDARY = re.compile(rb"""boundary[ \t\r\n]*=[ \t\r\n]*(?:"([^"]+)"|([^;\s]+))""", re.IGNORECASE)
# Headers longer than this are not headers; whatever follows is treated as body.
_MAX_HEADER_BLOCK = 256 * 1024
# Beyond these we stop looking and let the full reader decide (and refuse).
_MAX_ENTITIES = 500
_MAX_DEPTH = 20


def _header_block(raw: bytes, start: int, end: int) -> tuple[bytes, int]:
    header_end, body_start = header_block_end(raw, start, min(end, start + _MAX_HEADER_BLOCK))
    return raw[start:header_end], body_start


def _parts(raw: bytes, boundary: bytes, start: int, end: int) -> Iterator[tuple[int, int]]:
    """(start, end) of each part of a multipart body, cut as ``parse_structure`` cuts them."""
    previous = None
    for line_start, content_start, closing in boundary_positions(raw, boundary, start, end):
        if previous is not None:
            yield previous, max(line_start, previous)
        previous = None if closing else content_start
    if previous is not None:
        yield previous, end


def looks_like_bare_calendar(raw: bytes) -> bool:
    """Whether ``raw`` is an iCalendar file rather than a mail (UTF-8 or UTF-16)."""
    head = raw[:256]
    utf16 = head[1:8:2] == b"\x00" * 4 or head[0:8:2] == b"\x00" * 4
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or utf16:
        for codec in ("utf-16", "utf-16-le", "utf-16-be"):
            try:
                head = raw[:256].decode(codec, errors="ignore").encode("ascii", errors="ignore")
            except LookupError:  # pragma: no cover - stdlib codecs
                continue
            if head.lstrip(b" \t\r\n")[:15].upper() == b"BEGIN:VCALENDAR":
                return True
        return False
    return head.lstrip(b"\xef\xbb\xbf \t\r\n")[:15].upper() == b"BEGIN:VCALENDAR"


def may_carry_calendar(raw: bytes) -> bool:
    """Whether any header block of ``raw`` labels calendar data (cheap, no MIME tree)."""
    if looks_like_bare_calendar(raw):
        return True
    pending = [(0, len(raw), 0)]
    seen = 0
    while pending:
        start, end, depth = pending.pop()
        seen += 1
        if seen > _MAX_ENTITIES or depth > _MAX_DEPTH:
            return True
        header, body_start = _header_block(raw, start, end)
        labelled, content_type = _read_header_block(header)
        if labelled:
            return True
        if content_type.startswith(b"multipart/"):
            boundary_match = _BOUNDARY.search(header)
            if boundary_match is None:
                continue
            boundary = boundary_match.group(1) or boundary_match.group(2)
            for part_start, part_end in _parts(raw, boundary, body_start, end):
                pending.append((part_start, part_end, depth + 1))
        elif content_type in (b"message/rfc822", b"message/global"):
            pending.append((body_start, end, depth + 1))
    return False


def _read_header_block(header: bytes) -> tuple[bool, bytes]:
    """Whether a Content-Type/Disposition labels calendar data, and the entity's type."""
    lowered = header.lower()
    labelled = any(
        hint in label.group() for label in _LABEL_HEADERS.finditer(lowered) for hint in _CALENDAR_HINTS
    )
    match = _CONTENT_TYPE.search(lowered)
    return labelled, match.group(1) if match else b"text/plain"


def headers_may_carry_calendar(header_block: bytes) -> bool:
    """Whether a message with this top-level header block can hold a calendar part at all.

    False for a single-part message whose type and disposition say nothing of
    calendars (text/plain, text/html, an image…): its body need not be read.  True
    for multiparts and attached messages, whose parts are only known from the body.
    """
    labelled, content_type = _read_header_block(header_block)
    return labelled or content_type.startswith((b"multipart/", b"message/"))
