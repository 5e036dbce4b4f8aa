"""Property tests: generated MIME trees with a calendar part somewhere in them.

Random nesting (mixed / alternative / related), charsets, transfer encodings and
attachments; the calendar part may be inline text/calendar or an .ics attachment.
Whatever the shape, the rewrite keeps every part in place, is idempotent, and
produces a mail the stdlib parser and icalendar read.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime

import icalendar
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.calendars import LINK, OTHER_LINK
from webinar_proxy.invitation import EngineOptions, classify, remove_conference, rewrite

UID = "prop-1@example.com"
NOW = datetime(2024, 1, 1, tzinfo=UTC)
OPTIONS = EngineOptions()
CHARSETS = ("utf-8", "koi8-r", "iso-8859-1", "windows-1251", "us-ascii")
ENCODINGS = ("7bit", "8bit", "quoted-printable", "base64")


@dataclass
class Leaf:
    content_type: str
    body: bytes  # decoded
    charset: str | None
    encoding: str
    filename: str | None = None


@dataclass
class Multi:
    subtype: str
    children: list = field(default_factory=list)


def _text(charset: str):
    alphabet = st.characters(codec=charset, exclude_categories=("Cc", "Cs"))
    return st.text(alphabet, max_size=40)


@st.composite
def text_leaf(draw, content_type: str) -> Leaf:
    charset = draw(st.sampled_from(CHARSETS))
    lines = draw(st.lists(_text(charset), min_size=1, max_size=4))
    text = "\r\n".join(lines) + "\r\n"
    if content_type == "text/html":
        text = f"<html><body>\r\n<p>{text}</p>\r\n</body></html>\r\n"
    body = text.encode(charset)
    encoding = draw(st.sampled_from(ENCODINGS))
    if encoding == "7bit" and not body.isascii():
        encoding = "8bit"
    return Leaf(content_type, body, charset, encoding)


@st.composite
def attachment(draw) -> Leaf:
    data = draw(st.binary(max_size=300))
    return Leaf("application/octet-stream", data, None, "base64", "data.bin")


@st.composite
def calendar_leaf(draw) -> Leaf:
    charset = draw(st.sampled_from(("utf-8", "koi8-r", "windows-1251")))
    summary = draw(_text(charset)).replace("\\", "")
    summary = summary.replace(";", "\\;").replace(",", "\\,")
    location = draw(st.sampled_from(["", "LOCATION:@webinar", "LOCATION:Room 1\\, @webinar"]))
    lines = [
        "BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//prop//EN", "METHOD:REQUEST",
        "BEGIN:VEVENT", f"UID:{UID}", "DTSTAMP:20240101T000000Z", "SEQUENCE:3",
        "DTSTART:20240301T090000Z", "DTEND:20240301T100000Z", f"SUMMARY:{summary}",
        "ORGANIZER:mailto:boss@example.com", "ATTENDEE:mailto:ann@example.com",
        *([location] if location else []),
        "END:VEVENT", "END:VCALENDAR", "",
    ]
    body = "\r\n".join(lines).encode(charset)
    kind = draw(st.sampled_from(["inline", "application/ics", "octet-stream"]))
    encoding = draw(st.sampled_from(ENCODINGS))
    if encoding == "7bit" and not body.isascii():
        encoding = "8bit"
    if kind == "inline":
        return Leaf("text/calendar", body, charset, encoding)
    content_type = "application/ics" if kind == "application/ics" else "application/octet-stream"
    return Leaf(content_type, body, None if kind == "octet-stream" else charset, encoding,
                "invite.ics")


def tree(depth: int = 0):
    leaves = st.one_of(text_leaf("text/plain"), text_leaf("text/html"), attachment())
    if depth >= 2:
        return leaves
    return st.one_of(
        leaves,
        st.builds(
            Multi,
            st.sampled_from(["mixed", "alternative", "related"]),
            st.lists(st.deferred(lambda: tree(depth + 1)), min_size=1, max_size=3),
        ),
    )


@st.composite
def message(draw) -> bytes:
    root = Multi(draw(st.sampled_from(["mixed", "alternative"])),
                 draw(st.lists(tree(1), min_size=0, max_size=3)))
    holders = [root]
    stack = [root]
    while stack:
        node = stack.pop()
        for child in node.children:
            if isinstance(child, Multi):
                holders.append(child)
                stack.append(child)
    holder = holders[draw(st.integers(0, len(holders) - 1))]
    position = draw(st.integers(0, len(holder.children)))
    holder.children.insert(position, draw(calendar_leaf()))
    headers = (b"From: Boss <boss@example.com>\r\nTo: ann@example.com\r\n"
               b"Subject: generated\r\nMIME-Version: 1.0\r\n")
    counter = iter(range(1000))
    return headers + _serialise(root, counter)


def _encode(leaf: Leaf) -> bytes:
    if leaf.encoding == "base64":
        return base64.encodebytes(leaf.body).replace(b"\n", b"\r\n")
    if leaf.encoding == "quoted-printable":
        return binascii.b2a_qp(leaf.body, istext=True).replace(b"\r\n", b"\n").replace(
            b"\n", b"\r\n")
    return leaf.body


def _serialise(node, counter) -> bytes:
    if isinstance(node, Leaf):
        params = f"; charset={node.charset}" if node.charset else ""
        if node.content_type == "text/calendar":
            params += "; method=REQUEST"
        head = f"Content-Type: {node.content_type}{params}\r\n"
        if node.filename:
            head += f'Content-Disposition: attachment; filename="{node.filename}"\r\n'
        head += f"Content-Transfer-Encoding: {node.encoding}\r\n\r\n"
        return head.encode() + _encode(node)
    boundary = f"b{next(counter)}-=_x"
    parts = [f'Content-Type: multipart/{node.subtype}; boundary="{boundary}"\r\n\r\n'.encode()]
    for child in node.children:
        parts.append(f"--{boundary}\r\n".encode() + _serialise(child, counter) + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts)


def _leaves(raw: bytes) -> list[email.message.Message]:
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    return [part for part in parsed.walk() if not part.is_multipart()]


def _is_calendar(part) -> bool:
    return (part.get_filename() or "").endswith(".ics") or part.get_content_type() in (
        "text/calendar", "application/ics")


PROPERTY_SETTINGS = settings(max_examples=80, deadline=None, database=None,
                             suppress_health_check=[HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(message())
def test_rewrite_keeps_every_part_and_is_idempotent(raw: bytes) -> None:
    result = classify(raw, "boss@example.com", OPTIONS, NOW)
    assert result.processable, result.reason
    assert result.uid == UID and result.from_organizer

    out = rewrite(raw, UID, LINK, OPTIONS)
    before, after = _leaves(raw), _leaves(out)
    assert [p.get_content_type() for p in before] == [p.get_content_type() for p in after]
    assert rewrite(out, UID, LINK, OPTIONS) == out

    seen_plain = seen_html = False
    for old, new in zip(before, after, strict=True):
        if _is_calendar(old):
            text = new.get_payload(decode=True).decode(new.get_content_charset() or "utf-8")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                event = icalendar.Calendar.from_ical(text).walk("VEVENT")[0]
            assert str(event["CONFERENCE"]) == LINK
            assert str(event["SEQUENCE"]) == "3" and str(event["UID"]) == UID
            assert LINK in str(event["DESCRIPTION"])
        elif old.get_content_type() == "text/plain" and not seen_plain:
            seen_plain = True
            assert LINK in new.get_content()
        elif old.get_content_type() == "text/html" and not seen_html:
            seen_html = True
            assert f'href="{LINK}"' in new.get_content()
        else:
            assert old.get_payload(decode=True) == new.get_payload(decode=True)


@PROPERTY_SETTINGS
@given(message())
def test_relink_and_remove(raw: bytes) -> None:
    out = rewrite(rewrite(raw, UID, LINK, OPTIONS), UID, OTHER_LINK, OPTIONS)
    for part in _leaves(out):
        if part.get_content_maintype() == "text" or _is_calendar(part):
            payload = part.get_payload(decode=True) or b""
            assert LINK.encode() not in payload.replace(b"\r\n ", b"")
    removed = remove_conference(out, UID, OPTIONS)
    for old, new in zip(_leaves(raw), _leaves(removed), strict=True):
        assert old.get_content_type() == new.get_content_type()
        payload = new.get_payload(decode=True) or b""
        assert b"events.webinar.ru" not in payload.replace(b"\r\n ", b"")
