"""Invitation mails written by hand for lifecycle scenarios (independent of the engine)."""

from __future__ import annotations

from datetime import datetime


def _ics_time(value: datetime) -> str:
    return value.strftime("%Y%m%dT%H%M%SZ")


def invitation(
    *,
    uid: str = "scenario-1@example.org",
    organizer: str = "boss@example.org",
    attendees: tuple[str, ...] = ("ann@example.net", "bob@example.net"),
    chairs: tuple[str, ...] = (),
    rooms: tuple[str, ...] = (),
    start: datetime,
    end: datetime,
    sequence: int = 0,
    method: str = "REQUEST",
    summary: str = "Planning",
    location: str = "@webinar",
    rrule: str | None = None,
    recurrence_id: datetime | None = None,
    status: str | None = None,
    from_address: str | None = None,
    extra_vevent_lines: tuple[str, ...] = (),
    to: str | None = None,
) -> bytes:
    lines = [
        "BEGIN:VCALENDAR", "PRODID:-//webinar-proxy tests//EN", "VERSION:2.0", f"METHOD:{method}",
        "BEGIN:VEVENT", f"UID:{uid}", f"SEQUENCE:{sequence}", "DTSTAMP:20220301T080000Z",
        f"DTSTART:{_ics_time(start)}", f"DTEND:{_ics_time(end)}", f"SUMMARY:{summary}",
        f"ORGANIZER;CN=Organizer:mailto:{organizer}",
    ]
    if location:
        lines.append(f"LOCATION:{location}")
    if rrule:
        lines.append(f"RRULE:{rrule}")
    if recurrence_id is not None:
        lines.append(f"RECURRENCE-ID:{_ics_time(recurrence_id)}")
    if status:
        lines.append(f"STATUS:{status}")
    for address in chairs:
        lines.append(f"ATTENDEE;ROLE=CHAIR;CUTYPE=INDIVIDUAL:mailto:{address}")
    for address in attendees:
        lines.append(f"ATTENDEE;ROLE=REQ-PARTICIPANT;CUTYPE=INDIVIDUAL;RSVP=TRUE:mailto:{address}")
    for address in rooms:
        lines.append(f"ATTENDEE;CUTYPE=ROOM;ROLE=NON-PARTICIPANT:mailto:{address}")
    lines += [*extra_vevent_lines, "END:VEVENT", "END:VCALENDAR"]
    ics = "\r\n".join(lines) + "\r\n"
    to = to or ", ".join(attendees) or organizer
    sender = from_address or organizer
    return (
        f"From: Organizer <{sender}>\r\nTo: {to}\r\nSubject: {summary}\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/alternative; boundary="b1"\r\n\r\n'
        "--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"You are invited: {summary}\r\n\r\n"
        f'--b1\r\nContent-Type: text/calendar; charset=utf-8; method={method}\r\n\r\n'
        f"{ics}\r\n--b1--\r\n"
    ).encode()
