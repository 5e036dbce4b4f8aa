"""Invitation mails and calendars written inline by the engine and fuzz tests.

``calendar``/``mail`` build the engine tests' invitation (one VEVENT, extra lines
appended); ``fuzz_event``/``fuzz_mail`` the fuzz regressions' minimal one.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime

LINK = "https://events.webinar.ru/demo-org/1234567"
OTHER_LINK = "https://events.webinar.ru/demo-org/7654321"
#: A fixed "now" before every corpus event, so each has an upcoming occurrence.
EARLY = datetime(1990, 1, 1, tzinfo=UTC)


def calendar(*event_lines: str, method: str = "REQUEST") -> str:
    lines = [
        "BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//test//EN", f"METHOD:{method}",
        "BEGIN:VEVENT", "UID:meeting-42@example.com", "DTSTAMP:20240101T000000Z",
        "DTSTART:20240301T090000Z", "DTEND:20240301T100000Z", "SUMMARY:Planning",
        "ORGANIZER;CN=Boss;SENT-BY=\"MAILTO:Assistant@Example.com\":MAILTO:Boss@Example.com",
        "ATTENDEE;CN=Ann;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION:mailto:ann@example.com",
        "ATTENDEE;CUTYPE=ROOM;CN=Room 1:mailto:room1@example.com",
        *event_lines, "END:VEVENT", "END:VCALENDAR", "",
    ]
    return "\r\n".join(lines)


def mail(ics: str, *, headers: str = "", from_: str = "Boss <boss@example.com>",
         encoding: str = "7bit") -> bytes:
    body = ics.encode()
    if encoding == "base64":
        body = base64.encodebytes(body).replace(b"\n", b"\r\n")
    head = (
        f"From: {from_}\r\nTo: ann@example.com\r\nSubject: Planning\r\n{headers}"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/alternative; boundary="b1"\r\n\r\n'
        "--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlanning meeting\r\n"
        '--b1\r\nContent-Type: text/calendar; charset=utf-8; method=REQUEST\r\n'
        f"Content-Transfer-Encoding: {encoding}\r\n\r\n"
    ).encode()
    return head + body + b"\r\n--b1--\r\n"


def fuzz_mail(ics: str, method: str = "REQUEST") -> bytes:
    return (
        "From: Organizer <organizer@example.com>\r\nTo: a@example.net\r\nSubject: fuzz\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nYou are invited.\r\n"
        f"--b\r\nContent-Type: text/calendar; charset=utf-8; method={method}\r\n\r\n{ics}\r\n--b--\r\n"
    ).encode()


def fuzz_event(*lines: str, end: str = "END:VCALENDAR") -> str:
    return "\r\n".join([
        "BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//fuzz//EN", "METHOD:REQUEST", "BEGIN:VEVENT",
        "UID:fuzz-1@example.com", "DTSTAMP:20240101T000000Z", "DTSTART:20240105T100000Z",
        "DTEND:20240105T110000Z", "ORGANIZER:mailto:organizer@example.com", "LOCATION:@webinar",
        *lines, "END:VEVENT", end,
    ]) + "\r\n"
