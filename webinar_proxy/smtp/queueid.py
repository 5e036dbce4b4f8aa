"""The Postfix queue id of a message, for the per-mail log line.

Postfix tells it two ways: XFORWARD ``IDENT=`` (the up-stream queue id, sent by the
after-queue ``content_filter`` transport) and the ``Received:`` header it prepends
(``by mx.example.com (Postfix) with ESMTPSA id 4Xyz1AbcD2z9``).  XFORWARD wins; the
header is looked for in the first ``Received:`` of the header block only, and only
in its first ``HEADER_SCAN_LIMIT`` bytes, so a large message costs nothing extra.

The result goes into a log line, so only a short run of letters and digits is ever
returned; anything else counts as "no queue id".
"""

from __future__ import annotations

import re
from collections.abc import Mapping

#: Bytes of the message searched for the header block.
HEADER_SCAN_LIMIT = 64 * 1024

_QUEUE_ID_RE = re.compile(rb"^[0-9A-Za-z]{5,32}$")
_RECEIVED_ID_RE = re.compile(rb"(?:^|[\s;(])id\s+([0-9A-Za-z]{5,32})(?=[\s;)]|$)", re.IGNORECASE)
_FOLDED_RE = re.compile(rb"\r?\n[ \t]+")


def _end_of_headers(head: bytes) -> int:
    ends = [index for index in (head.find(b"\r\n\r\n"), head.find(b"\n\n")) if index >= 0]
    return min(ends) if ends else len(head)


def _first_received(content: bytes) -> bytes | None:
    head = content[:HEADER_SCAN_LIMIT]
    head = head[: _end_of_headers(head)]
    # A header line starts at the beginning or after a line break, never folded.
    if head[:9].lower() == b"received:":
        start = 9
    else:
        match = re.search(rb"\nreceived:", head, re.IGNORECASE)
        if match is None:
            return None
        start = match.end()
    end = start
    while True:
        newline = head.find(b"\n", end)
        if newline < 0:
            return head[start:]
        if head[newline + 1 : newline + 2] not in (b" ", b"\t"):
            return head[start:newline]
        end = newline + 1


def queue_id_from_received(content: bytes) -> str | None:
    """The ``id`` clause of the first ``Received:`` header, if it is a plausible queue id."""
    header = _first_received(content)
    if header is None:
        return None
    match = _RECEIVED_ID_RE.search(_FOLDED_RE.sub(b" ", header))
    return match.group(1).decode("ascii") if match else None


def queue_id(content: bytes, xforward: Mapping[str, str] | None = None) -> str | None:
    """The Postfix queue id: XFORWARD ``IDENT`` if plausible, else the first ``Received:``."""
    ident = (xforward or {}).get("IDENT", "")
    if ident and _QUEUE_ID_RE.match(ident.encode("ascii", "replace")):
        return ident
    return queue_id_from_received(content)
