"""Real invitations that are legitimately slow or big to read, for the engine's limits.

Nothing here is malformed: a meeting with thousands of attendees and a long calendar
(just inside the reader's limits) takes the engine seconds and tens of MiB; attached
``.ics`` copies multiply that; a large text part adds to what a worker holds.  With a
small ``policy.engine_timeout_seconds`` or ``policy.engine_memory_mb`` they stand in
for a hostile mail without depending on any parser bug.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

from tests.support.invites import invitation

ATTENDEES = 4_900
COMMENT_LINES = 40_000


def heavy_invitation(uid: str = "heavy@example.org", *, copies: int = 1, padding_mb: int = 0,
                     start: datetime | None = None) -> bytes:
    """About 3.5 MB of calendar per copy (seconds of parsing, ~60 MiB of a worker's
    address space); ``copies`` - 1 attached ``.ics`` copies; ``padding_mb`` MiB of text."""
    start = start or datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(days=7)
    people = tuple(f"person{i}@example.net" for i in range(ATTENDEES))
    notes = tuple(f"COMMENT:agenda item {i} {'x' * 50}" for i in range(COMMENT_LINES))
    mail = invitation(uid=uid, attendees=people, start=start, end=start + timedelta(hours=1),
                      extra_vevent_lines=notes)
    # One short To: (the helper lists every attendee there; SMTP lines stop at 1000 bytes).
    to_start = mail.index(b"\r\nTo: ") + 2
    mail = mail[:to_start] + b"To: ann@example.net" + mail[mail.index(b"\r\n", to_start):]
    ics = mail[mail.index(b"BEGIN:VCALENDAR"):mail.rindex(b"END:VCALENDAR") + len(b"END:VCALENDAR\r\n")]
    attached = b"".join(
        b'--b1\r\nContent-Type: application/ics; name="invite.ics"\r\n'
        b'Content-Disposition: attachment; filename="invite.ics"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(ics).replace(b"\n", b"\r\n")
        for _ in range(copies - 1)
    )
    padding = b""
    if padding_mb:
        line = b"minutes of the previous meeting, kept for reference " * 1 + b"\r\n"
        padding = (b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
                   + line * (padding_mb * 1024 * 1024 // len(line)))
    return mail.replace(b"\r\n--b1--", b"\r\n" + attached + padding + b"--b1--")
