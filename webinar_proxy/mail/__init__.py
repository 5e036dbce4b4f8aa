"""MIME handling for invitation mails (stdlib only, no I/O).

Owns: the cheap raw-bytes pre-check (``may_carry_calendar``), the byte-offset MIME
map (``parse_structure``) used to find calendar parts anywhere in the tree
(base64/QP, any charset, ``.ics`` attachments, nested multiparts, bounces), reading
a part's text and writing changed text back as byte splices (``payload``), and the
fenced join block for text/plain and text/html bodies (``joinblock``).

It knows nothing about iCalendar; ``webinar_proxy.invitation`` joins it with
``webinar_proxy.calendar``.
"""

from webinar_proxy.mail.limits import MimeLimits
from webinar_proxy.mail.payload import (
    PartText,
    PayloadError,
    Splice,
    apply_splices,
    decode_text,
    encode_part_text,
    read_part_text,
)
from webinar_proxy.mail.precheck import looks_like_bare_calendar, may_carry_calendar
from webinar_proxy.mail.structure import (
    MimeEntity,
    MimeError,
    body_text_entities,
    calendar_entities,
    parse_structure,
)

__all__ = [
    "MimeEntity",
    "MimeError",
    "MimeLimits",
    "PartText",
    "PayloadError",
    "Splice",
    "apply_splices",
    "body_text_entities",
    "calendar_entities",
    "decode_text",
    "encode_part_text",
    "looks_like_bare_calendar",
    "may_carry_calendar",
    "parse_structure",
    "read_part_text",
]
