"""Locate MIME entities in a raw message by byte offsets, without re-serialising it.

The stdlib parser builds a tree but forgets where each part sat in the original
bytes, and writing the tree back out refolds headers.  To change one leaf and keep
every other byte, we scan the message ourselves: each entity knows the byte range
of its header block and of its body, so a rewrite can splice new bytes in.

Header blocks are read with the stdlib ``email`` header parser (compat32, which
does not refold or validate), bodies are never decoded here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.errors import MissingHeaderBodySeparatorDefect
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32

from webinar_proxy.mail.limits import MimeLimits

_HEADER_PARSER = BytesHeaderParser(policy=compat32)
# End of a header block: the first empty line, read as the stdlib parser reads lines
# (CRLF, a lone CR and a lone LF each end one): a line ending followed by another.
# "\n\r" + text and "\r\n\n" are empty lines to it too; missing them, the header
# block ran on past the parser's, whose body then held a header line the rewrite changed.
_BLANK_LINE = re.compile(rb"(?:\r\n|\r(?!\n)|\n)(?:\r\n|\r|\n)")
_CALENDAR_TYPES = frozenset(
    {"text/calendar", "application/ics", "text/x-vcalendar", "application/x-ics"}
)
_CALENDAR_SUFFIXES = (".ics", ".ical", ".icalendar", ".vcs", ".ifb")


class MimeError(ValueError):
    """The message cannot be read as MIME within the limits."""


@dataclass(eq=False)
class MimeEntity:
    """One MIME entity: where its header block and its body are in the raw bytes."""

    start: int
    #: End of the header block (its last line ending included, the empty line not).
    header_end: int
    body_start: int
    end: int
    headers: Message
    depth: int
    #: True for anything inside a ``message/*`` part (a bounce, a forwarded mail).
    in_attached_message: bool
    children: list[MimeEntity] = field(default_factory=list)

    @property
    def headers_complete(self) -> bool:
        """The parser read the whole header block (a malformed line ends it early, and
        the header lines after it are not seen)."""
        return not any(isinstance(defect, MissingHeaderBodySeparatorDefect)
                       for defect in self.headers.defects)

    @property
    def content_type(self) -> str:
        return self.headers.get_content_type()

    @property
    def is_multipart(self) -> bool:
        return self.headers.get_content_maintype() == "multipart"

    @property
    def transfer_encoding(self) -> str:
        value = self.headers.get("content-transfer-encoding", "7bit")
        return str(value).strip().lower() or "7bit"

    @property
    def charset(self) -> str | None:
        value = self.headers.get_param("charset")
        if isinstance(value, tuple):  # RFC 2231 form
            value = value[2]
        if not value:
            return None
        return str(value).strip().strip("'\"").lower() or None

    @property
    def filename(self) -> str | None:
        try:
            name = self.headers.get_filename() or self.headers.get_param("name")
        except (TypeError, ValueError, LookupError):
            return None
        if isinstance(name, tuple):
            name = name[2]
        return str(name).strip().strip("'\"") if name else None

    @property
    def is_attachment(self) -> bool:
        disposition = str(self.headers.get("content-disposition", "")).split(";")[0]
        return disposition.strip().lower() == "attachment"

    @property
    def mime_method(self) -> str | None:
        value = self.headers.get_param("method")
        if isinstance(value, tuple):
            value = value[2]
        if not value:
            return None
        return str(value).strip().upper() or None

    @property
    def looks_like_calendar(self) -> bool:
        """A calendar by its label: the type, or an ``.ics``-style file name."""
        if self.is_multipart or self.headers.get_content_maintype() == "message":
            return False
        if self.content_type in _CALENDAR_TYPES:
            return True
        name = (self.filename or "").lower()
        return name.endswith(_CALENDAR_SUFFIXES)

    def walk(self):
        yield self
        for child in self.children:
            yield from child.walk()


def header_block_end(raw: bytes, start: int, end: int) -> tuple[int, int]:
    """Return (end of headers, start of body) for the entity starting at ``start``."""
    if raw.startswith((b"\r", b"\n"), start):
        # No headers at all: the body starts right after the empty line.
        newline = 2 if raw.startswith(b"\r\n", start) else 1
        return start, start + newline
    match = _BLANK_LINE.search(raw, start, end)
    if match is None:
        return end, end
    # Keep the header block's own final line ending inside the header range.
    sep = match.group()
    line_end = 2 if sep.startswith(b"\r\n") else 1
    return match.start() + line_end, match.end()


def boundary_positions(raw: bytes, boundary: bytes, start: int, end: int):
    """Yield (line_start, content_start, is_closing) for each delimiter line."""
    marker = b"--" + boundary
    position = start
    while True:
        found = raw.find(marker, position, end)
        if found < 0:
            return
        position = found + len(marker)
        if found != start and raw[found - 1] not in b"\r\n":
            continue  # not at the start of a line
        closing = raw.startswith(b"--", position)
        after = position + 2 if closing else position
        # Only transport padding may follow the boundary on its line.
        line_end = after
        while line_end < end and raw[line_end] in b" \t":
            line_end += 1
        if line_end < end and raw[line_end] not in b"\r\n":
            continue
        if raw.startswith(b"\r\n", line_end):
            content_start = line_end + 2
        elif line_end < end:
            content_start = line_end + 1
        else:
            content_start = line_end
        # The line ending before the delimiter belongs to the delimiter.
        line_start = found
        if line_start > start and raw[line_start - 1] == 0x0A:
            line_start -= 1
            if line_start > start and raw[line_start - 1] == 0x0D:
                line_start -= 1
        elif line_start > start and raw[line_start - 1] == 0x0D:
            line_start -= 1
        yield line_start, content_start, closing
        if closing:
            return


class _Scanner:
    def __init__(self, raw: bytes, limits: MimeLimits) -> None:
        self.raw = raw
        self.limits = limits
        self.count = 0

    def entity(self, start: int, end: int, depth: int, in_message: bool) -> MimeEntity:
        if depth > self.limits.max_depth:
            raise MimeError(f"MIME nesting deeper than {self.limits.max_depth}")
        self.count += 1
        if self.count > self.limits.max_parts:
            raise MimeError(f"more than {self.limits.max_parts} MIME parts")
        header_end, body_start = header_block_end(self.raw, start, end)
        headers = _HEADER_PARSER.parsebytes(self.raw[start:header_end])
        entity = MimeEntity(start, header_end, body_start, end, headers, depth, in_message)
        if entity.is_multipart:
            self._split_multipart(entity)
        elif entity.content_type in ("message/rfc822", "message/global") and (
            entity.transfer_encoding in ("7bit", "8bit", "binary")
        ):
            entity.children.append(self.entity(body_start, end, depth + 1, True))
        return entity

    def _split_multipart(self, entity: MimeEntity) -> None:
        boundary = entity.headers.get_param("boundary")
        if isinstance(boundary, tuple):
            boundary = boundary[2]
        if not boundary:
            return  # treated as an opaque leaf
        marker = str(boundary).encode("utf-8", "surrogateescape")
        previous_content = None
        for line_start, content_start, closing in boundary_positions(
            self.raw, marker, entity.body_start, entity.end
        ):
            if previous_content is not None:
                # Two delimiter lines in a row: an empty part, not a negative range.
                part_end = max(line_start, previous_content)
                entity.children.append(
                    self.entity(
                        previous_content, part_end, entity.depth + 1, entity.in_attached_message
                    )
                )
            previous_content = None if closing else content_start
        if previous_content is not None:
            # No closing delimiter: the last part runs to the end.
            entity.children.append(
                self.entity(
                    previous_content, entity.end, entity.depth + 1, entity.in_attached_message
                )
            )


def parse_structure(raw: bytes, limits: MimeLimits) -> MimeEntity:
    """Map the MIME tree of ``raw``; raises ``MimeError`` beyond the limits."""
    if len(raw) > limits.max_message_bytes:
        raise MimeError(f"message larger than {limits.max_message_bytes} bytes")
    start = 3 if raw.startswith(b"\xef\xbb\xbf") else 0  # a UTF-8 BOM before the headers
    return _Scanner(raw, limits).entity(start, len(raw), 0, False)


def calendar_entities(root: MimeEntity) -> list[MimeEntity]:
    """Parts that are labelled as calendars, in document order."""
    return [entity for entity in root.walk() if entity.looks_like_calendar]


def body_text_entities(root: MimeEntity) -> tuple[MimeEntity | None, MimeEntity | None]:
    """The first readable text/plain and text/html parts of the message itself.

    Attachments, calendar copies and anything inside an attached message are
    skipped.  Apple Mail splits one HTML body into several parts around
    attachments; only the first one gets the join block.  So is a part without the
    empty line that starts a body (an empty part, or headers only): text written
    there would land in its headers or in the next delimiter line; and so is a part
    whose header block has a malformed line.
    """
    plain = html = None
    for entity in root.walk():
        if entity.in_attached_message or entity.is_attachment or entity.looks_like_calendar:
            continue
        if entity.body_start <= entity.header_end and not entity.children:
            continue
        if not entity.headers_complete:
            continue  # a changed charset or encoding line would not be read back
        if entity.filename and entity is not root:
            continue
        if entity.content_type == "text/plain" and plain is None:
            plain = entity
        elif entity.content_type == "text/html" and html is None:
            html = entity
    return plain, html
