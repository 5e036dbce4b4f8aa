"""Classification of built mails: triggers, organizer checks, links, bad input."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.support.calendars import LINK, calendar, mail
from webinar_proxy.invitation import EngineLimits, EngineOptions, classify
from webinar_proxy.mail import MimeLimits

NOW = datetime(2024, 1, 1, tzinfo=UTC)


def test_ordinary_mail_is_not_a_calendar_mail(options) -> None:
    raw = b"From: a@example.com\r\nSubject: hi\r\n\r\nhello\r\n"
    result = classify(raw, "a@example.com", options, NOW)
    assert (result.processable, result.is_imip, result.reason) == (
        False, False, "not a calendar mail")


def test_reads_an_invitation(options) -> None:
    result = classify(mail(calendar(), encoding="base64"), None, options, NOW)
    assert result.processable and result.reason == "ok"
    assert (result.method, result.uid) == ("REQUEST", "meeting-42@example.com")
    assert (result.organizer, result.sent_by) == ("boss@example.com", "assistant@example.com")
    assert result.summary == "Planning"
    assert (result.start, result.end) == (datetime(2024, 3, 1, 9, tzinfo=UTC),
                                          datetime(2024, 3, 1, 10, tzinfo=UTC))
    assert result.duration.total_seconds() == 3600
    assert [(a.address, a.is_person) for a in result.attendees] == [
        ("ann@example.com", True), ("room1@example.com", False)]
    assert result.attendees[0].role == "REQ-PARTICIPANT"
    assert result.attendees[1].cutype == "ROOM"
    assert result.triggers == () and not result.conference_requested
    assert result.next_occurrence.start == datetime(2024, 3, 1, 9, tzinfo=UTC)


@pytest.mark.parametrize(
    ("mail_from", "from_header", "expected"),
    [
        ("boss@example.com", "Someone <x@example.org>", True),
        ("<BOSS@EXAMPLE.COM>", "x@example.org", True),
        (None, "Boss <Boss@Example.com>", True),
        ("assistant@example.com", "x@example.org", True),  # SENT-BY
        ("ann@example.com", "Ann <ann@example.com>", False),  # forwarded by an attendee
        ("", "", False),
    ],
)
def test_from_organizer(mail_from, from_header, expected, options) -> None:
    result = classify(mail(calendar(), from_=from_header), mail_from, options, NOW)
    assert result.from_organizer is expected


def test_triggers(options) -> None:
    keyword = classify(mail(calendar("LOCATION:Room 5 @Webinar")), None, options, NOW)
    assert keyword.triggers == ("location",) and keyword.conference_requested
    prop = classify(mail(calendar("X-WEBINAR-CONFERENCE:TRUE")), None, options, NOW)
    assert prop.triggers == ("property",)
    header = classify(mail(calendar(), headers="X-Webinar-Conference: yes\r\n"), None,
                      options, NOW)
    assert header.triggers == ("header",)
    off = classify(mail(calendar("X-WEBINAR-CONFERENCE:FALSE"),
                        headers="X-Webinar-Conference: no\r\n"), None, options, NOW)
    assert off.triggers == ()
    custom = EngineOptions(location_keyword="#conf")
    assert classify(mail(calendar("LOCATION:#CONF")), None, custom, NOW).triggers == (
        "location",)


def test_our_link_is_recognised(options) -> None:
    ours = classify(mail(calendar(f"CONFERENCE;VALUE=URI:{LINK}")), None, options, NOW)
    assert ours.has_our_link and ours.our_link == LINK
    foreign = classify(mail(calendar("LOCATION:https://meet.google.com/abc")), None,
                       options, NOW)
    assert not foreign.has_our_link and foreign.our_link is None
    lookalike = classify(mail(calendar("LOCATION:https://events.webinar.ru.evil.com/x")),
                         None, options, NOW)
    assert not lookalike.has_our_link


def test_cancel_with_recurrence_id(options) -> None:
    ics = calendar("RECURRENCE-ID:20240301T090000Z", "STATUS:CANCELLED", method="CANCEL")
    result = classify(mail(ics), None, options, NOW)
    assert result.method == "CANCEL" and result.status == "CANCELLED"
    assert result.recurrence_ids == (datetime(2024, 3, 1, 9, tzinfo=UTC),)
    assert not result.has_master


def test_json_dict_has_the_documented_keys(options) -> None:
    data = classify(mail(calendar()), "boss@example.com", options, NOW).to_json_dict()
    for key in ("method", "uid", "organizer", "from_organizer", "conference_requested",
                "has_our_link", "attendees", "recurring", "next_occurrence", "processable",
                "reason"):
        assert key in data
    assert data["next_occurrence"] == "2024-03-01T09:00:00Z"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff" * 1000,
        b"Content-Type: text/calendar\r\n\r\nBEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\n",
        b"Content-Type: text/calendar\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!!",
        b"Content-Type: text/calendar\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nabc",
        b'Content-Type: multipart/mixed; boundary="x"\r\n\r\n--x\r\n'
        b"Content-Type: text/calendar\r\n\r\nBEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n",
        b"Content-Type: text/calendar\r\n\r\nBEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\n"
        b"DTSTART:2024XXXX\r\nUID:a\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
        b"BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\nUID:x\r\n"
        b"ORGANIZER:mailto:a@b.c\r\nDTSTART;TZID=Nowhere/Else:20240101T100000\r\n"
        b"RRULE:FREQ=DAILY;UNTIL=garbage\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
    ],
)
def test_bad_input_never_raises(raw, options) -> None:
    result = classify(raw, None, options, NOW)
    assert not result.reason.startswith("internal error"), result.reason


def test_limits_make_mail_not_processable() -> None:
    nested = b'Content-Type: multipart/mixed; boundary="b0"\r\n\r\n'
    for level in range(1, 30):
        nested += f'--b{level - 1}\r\nContent-Type: multipart/mixed; boundary="b{level}"\r\n\r\n'.encode()
    nested += b"--b29\r\nContent-Type: text/calendar\r\n\r\nBEGIN:VCALENDAR\r\n"
    options = EngineOptions()
    result = classify(nested, None, options, NOW)
    assert not result.processable and "deeper" in result.reason

    many = b'Content-Type: multipart/mixed; boundary="m"\r\n\r\n' + (
        b"--m\r\nContent-Type: text/calendar\r\n\r\nBEGIN:VCALENDAR\r\n" * 20) + b"--m--\r\n"
    result = classify(many, None, options, NOW)
    assert not result.processable and "calendar parts" in result.reason

    small = EngineOptions(limits=EngineLimits(mime=MimeLimits(max_calendar_bytes=100)))
    result = classify(mail(calendar()), None, small, NOW)
    assert not result.processable and "larger than" in result.reason


def test_now_must_be_aware(options) -> None:
    result = classify(mail(calendar()), None, options, datetime(2024, 1, 1))
    assert not result.processable and "internal error" in result.reason
