"""Inputs the fuzzer (``fuzz/fuzz_engine.py``) found breaking the engine, one test each.

Each input is the smallest form of the finding, written out; ``check`` runs the
whole chain and its invariants (see ``fuzz/target.py``).  A hang would block for
ever, so a generous alarm turns it into a failure instead.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from fuzz.target import LINK, MAIL_FROM, NOW, OPTIONS, check
from tests.support.calendars import fuzz_event as _event
from tests.support.calendars import fuzz_mail as _mail
from webinar_proxy.invitation import classify, rewrite


class _Hung(BaseException):
    pass


@pytest.fixture(autouse=True)
def no_hang() -> Iterator[None]:
    def alarm(signum, frame):
        raise _Hung("the engine did not return within 120 s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(120)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("interval", ["0", "-1"])
def test_rrule_with_interval_zero_does_not_hang(interval: str) -> None:
    """dateutil never advances with INTERVAL=0: the occurrence search looped for ever."""
    raw = _mail(_event(f"RRULE:FREQ=DAILY;INTERVAL={interval}"))
    result = classify(raw, MAIL_FROM, OPTIONS, NOW)
    assert result.next_occurrence is None
    assert any("INTERVAL" in warning for warning in result.warnings)
    check(raw)


@pytest.mark.parametrize("end", ["END:VCALEN-AR", "", "END:VEVENT"])
def test_calendar_without_its_end_line(end: str) -> None:
    """icalendar reads a VCALENDAR whose END line is missing or damaged; the stored copy
    (``minimal_calendar``) did not, and classify fell into its internal-error catch-all."""
    raw = _mail(_event(end=end))
    result = classify(raw, MAIL_FROM, OPTIONS, NOW)
    assert not result.reason.startswith("internal error"), result.reason
    if result.processable:
        assert b"UID:fuzz-1@example.com" in result.calendar
    check(raw)
    bare = _event(end=end).encode()
    assert not classify(bare, MAIL_FROM, OPTIONS, NOW).reason.startswith("internal error")
    check(bare)


@pytest.mark.parametrize("odd_part", ["", "Content-Type: text/plain; charset=utf-8\r\n"],
                         ids=["empty-part", "headers-only"])
def test_part_without_a_body_gets_no_join_block(odd_part: str) -> None:
    """Two delimiter lines in a row (an empty part) or a part with headers and no empty
    line: the join block went into the delimiter or header line and broke the MIME tree."""
    raw = (
        "From: Organizer <organizer@example.com>\r\nTo: a@example.net\r\nSubject: fuzz\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="b"\r\n\r\n'
        f"--b\r\n{odd_part}--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nYou are invited.\r\n"
        "--b\r\nContent-Type: application/octet-stream\r\n\r\nAAAA\r\n"
        f"--b\r\nContent-Type: text/calendar; charset=utf-8; method=REQUEST\r\n\r\n{_event()}\r\n--b--\r\n"
    ).encode()
    assert check(raw) == "rewritten"
    rewritten = rewrite(raw, "fuzz-1@example.com", LINK, OPTIONS)
    assert f"--b\r\n{odd_part}--b\r\nContent-Type: text/plain".encode() in rewritten
    assert b"[webinar]" in rewritten.split(b"You are invited.")[0]


def test_vtimezone_without_its_end_line() -> None:
    """A VTIMEZONE that is never closed made the rule rebasing read past the last line."""
    ics = "\r\n".join([
        "BEGIN:VCALENDAR", "VERSION:2.0", "METHOD:REQUEST", "BEGIN:VEVENT", "UID:fuzz-1@example.com",
        'DTSTART;TZID="Custom Zone":20240105T100000', "ORGANIZER:mailto:organizer@example.com",
        "END:VEVENT", "BEGIN:VTIMEZONE", "TZID:Custom Zone", "BEGIN:STANDARD",
        "DTSTART:16010101T030000", "RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU", "TZOFFSETFROM:+0200",
        "TZOFFSETTO:+0100", "END:STANDARD", "BEGIN:DAYLIGHT", "DTSTART:16010101T020000",
        "RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU", "TZOFFSETFROM:+0100", "TZOFFSETTO:+0200",
        "END:DAYLIGHT",
    ]) + "\r\n"
    for raw in (ics.encode(), _mail(ics)):
        result = classify(raw, MAIL_FROM, OPTIONS, NOW)
        assert not result.reason.startswith("internal error"), result.reason
        check(raw)


def test_body_part_with_a_malformed_header_line_is_left_alone() -> None:
    """The parser stops at a malformed header line, so the Content-Transfer-Encoding line
    the rewrite changed after it was never read back: a second rewrite encoded the
    body again (not idempotent)."""
    raw = (
        "From: Organizer <organizer@example.com>\r\nTo: a@example.net\r\nSubject: fuzz\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        "--b\r\nCont\xc3nt-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        "WW91IGFyZSBpbnZpdGVkLg==\r\n"
        f"--b\r\nContent-Type: text/calendar; charset=utf-8; method=REQUEST\r\n\r\n{_event()}\r\n--b--\r\n"
    ).encode("latin-1")
    assert check(raw) == "rewritten"
    once = rewrite(raw, "fuzz-1@example.com", LINK, OPTIONS)
    assert b"WW91IGFyZSBpbnZpdGVkLg==\r\n--b" in once


@pytest.mark.parametrize("value", ["20240105T100000Z/PT1H", "20240105T100000Z/20240105T110000Z"])
def test_dtstart_with_a_period_value(value: str) -> None:
    """icalendar reads ``DTSTART:<start>/<duration>`` as a PERIOD (a tuple); the reader
    took it for a date and classify hit its internal-error catch-all."""
    ics = _event().replace("DTSTART:20240105T100000Z", f"DTSTART:{value}")
    raw = _mail(ics)
    result = classify(raw, MAIL_FROM, OPTIONS, NOW)
    assert not result.reason.startswith("internal error"), result.reason
    assert "unreadable DTSTART" in result.warnings
    check(raw)


def test_cr_only_header_block_gets_its_encoding_line_replaced() -> None:
    """With CR-only line endings the rewrite did not find the part's
    Content-Transfer-Encoding line and added a second one after it; the parser read
    the first (7bit) and the quoted-printable calendar no longer parsed."""
    ics = _event("SUMMARY:Встреча")  # non-ASCII: a 7bit part must become quoted-printable
    raw = (
        "From: Organizer <organizer@example.com>\rTo: a@example.net\rSubject: fuzz\r"
        'MIME-Version: 1.0\rContent-Type: multipart/mixed; boundary="b"\r\r'
        "--b\rContent-Type: text/calendar; charset=utf-8; method=REQUEST\r"
        "Content-Transfer-Encoding: 7bit\r\r" + ics.replace("\r\n", "\r") + "\r--b--\r"
    ).encode()
    assert check(raw) == "rewritten"
    once = rewrite(raw, "fuzz-1@example.com", LINK, OPTIONS)
    assert once.lower().count(b"content-transfer-encoding") == 1


@pytest.mark.parametrize("damage", [b"\x00", b"\x00\xd8A\x00"], ids=["odd-length", "lone-surrogate"])
def test_utf16_calendar_that_does_not_decode(damage: bytes) -> None:
    """The UTF-16 guess was taken without trying it: a truncated or damaged UTF-16
    calendar raised UnicodeDecodeError inside classify."""
    ics = _event().encode("utf-16-le")
    for raw in (ics + damage, _mail("").replace(b"\r\n--b--", b"").rstrip(b"\r\n") + b"\r\n" + ics + damage):
        result = classify(raw, MAIL_FROM, OPTIONS, NOW)
        assert not result.reason.startswith("internal error"), result.reason
        check(raw)


def test_calendar_part_with_a_malformed_header_line_gets_a_readable_encoding_line() -> None:
    """The calendar-part form of the malformed-header finding: the 7bit calendar needs
    quoted-printable, and the changed Content-Transfer-Encoding line sat after the
    line where the parser stops, so a second rewrite encoded the calendar again."""
    raw = (
        "From: Organizer <organizer@example.com>\r\nTo: a@example.net\r\nSubject: fuzz\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/calendar; method=REQUEST; charset=utf-8\r\n"
        "Content-Di position: inline\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
        + _event("SUMMARY:Встреча") + "\r\n--b--\r\n"
    ).encode()
    assert check(raw) == "rewritten"
