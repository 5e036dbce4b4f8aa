"""The nearest occurrence, with answers computed by hand from the files.

Each case names the rule and the zone arithmetic behind its expected answer.
Occurrences are looked up through ``Classification.calendar`` (the copy the
lifecycle stores) and ``invitation.next_occurrence``.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.support.calendars import EARLY
from tests.support.fixtures import client_fixture
from webinar_proxy.invitation import (
    EngineError,
    EngineOptions,
    Occurrence,
    classify,
    next_occurrence,
)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def _stored(name_or_raw: str | bytes, options: EngineOptions):
    raw = client_fixture(name_or_raw) if isinstance(name_or_raw, str) else name_or_raw
    result = classify(raw, None, options, EARLY)
    assert result.uid and result.calendar, result.reason
    return result


def _ics(*lines: str) -> bytes:
    return ("\r\n".join(["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//test//EN",
                         "METHOD:REQUEST", *lines, "END:VCALENDAR"]) + "\r\n").encode()


ORGANIZER = "ORGANIZER:mailto:boss@example.com"


def test_overrides_and_exdate(options) -> None:
    # Weekly on Wednesday 10:30 Europe/Berlin (CET, UTC+1 in winter) from 4 Dec 2030
    # until 15 Jan 2031; EXDATEs 18 December and 1 January 09:30Z; overrides on 4 Dec,
    # 11 Dec (12:00 local), 25 Dec, 8 Jan (14:00 local = 13:00Z) and 15 Jan.
    result = _stored("tine20__lightning-recurring-overrides-exdate.ics", options)
    after = utc(2030, 12, 12)
    first = next_occurrence(result.calendar, result.uid, after, options)
    assert first == Occurrence(utc(2030, 12, 25, 9, 30), utc(2030, 12, 25, 10, 30),
                               utc(2030, 12, 25, 9, 30))
    later = next_occurrence(result.calendar, result.uid, utc(2030, 12, 26), options)
    assert later == Occurrence(utc(2031, 1, 8, 13), utc(2031, 1, 8, 14), utc(2031, 1, 8, 9, 30))
    skipping = next_occurrence(result.calendar, result.uid, after, options,
                               cancelled={utc(2030, 12, 25, 9, 30)})
    assert skipping is not None and skipping.start == utc(2031, 1, 8, 13)
    assert next_occurrence(result.calendar, result.uid, utc(2031, 1, 16), options) is None


def test_range_thisandfuture_moves_the_later_occurrences(options) -> None:
    # Mondays 10:00 Moscow (UTC+3) from 1 Jan 2024, 10 times; from 15 Jan on, two
    # hours later.  After 16 Jan the next is 22 Jan 12:00 Moscow = 09:00Z; its
    # RECURRENCE-ID stays the original 10:00 Moscow = 07:00Z.
    raw = _ics(
        "BEGIN:VEVENT", "UID:series-1", ORGANIZER,
        "DTSTART;TZID=Europe/Moscow:20240101T100000",
        "DTEND;TZID=Europe/Moscow:20240101T110000",
        "RRULE:FREQ=WEEKLY;COUNT=10", "END:VEVENT",
        "BEGIN:VEVENT", "UID:series-1", ORGANIZER,
        "RECURRENCE-ID;RANGE=THISANDFUTURE;TZID=Europe/Moscow:20240115T100000",
        "DTSTART;TZID=Europe/Moscow:20240115T120000",
        "DTEND;TZID=Europe/Moscow:20240115T130000", "END:VEVENT",
    )
    result = _stored(raw, options)
    found = next_occurrence(result.calendar, "series-1", utc(2024, 1, 16), options)
    assert found == Occurrence(utc(2024, 1, 22, 9), utc(2024, 1, 22, 10), utc(2024, 1, 22, 7))
    cancelled = next_occurrence(result.calendar, "series-1", utc(2024, 1, 16), options,
                                cancelled=(utc(2024, 1, 22, 7),))
    assert cancelled is not None and cancelled.start == utc(2024, 1, 29, 9)


def test_thisandfuture_instance_from_lotus_notes(options) -> None:
    # No master; the first instance has an impossible date (30 February) and is
    # skipped; the second: 5 March 2031 15:00 "W. Europe" (its VTIMEZONE: +0100 in
    # winter) = 14:00Z.
    result = _stored("lotus__notes853-recurrence-id-thisandfuture.ics", options)
    found = next_occurrence(result.calendar, result.uid, utc(2031, 3, 1), options)
    assert found == Occurrence(utc(2031, 3, 5, 14), utc(2031, 3, 5, 15, 30), utc(2031, 3, 5, 14))


def test_windows_zone_with_interval_and_until(options) -> None:
    # Every 2nd day 11:00 "W. Europe Standard Time" (Berlin, CET = UTC+1) from
    # 24 Nov 2031 until 26 Nov 10:00Z: 24 Nov 10:00Z and 26 Nov 10:00Z.
    result = _stored("exchange__teams-recurring-emoji.ics", options)
    assert result.timezone == "Europe/Berlin"
    found = next_occurrence(result.calendar, result.uid, utc(2031, 11, 25), options)
    assert found == Occurrence(utc(2031, 11, 26, 10), utc(2031, 11, 26, 10, 30),
                               utc(2031, 11, 26, 10))
    assert next_occurrence(result.calendar, result.uid, utc(2031, 11, 27), options) is None


@pytest.mark.parametrize(
    ("name", "zone", "start"),
    [
        # 14 Aug 2031 11:00 W. Europe Standard Time, summer (UTC+2)
        ("outlook__2010-request.ics", "Europe/Berlin", utc(2031, 8, 14, 9)),
        # 27 Nov 2031 09:00 FLE Standard Time (Kyiv, UTC+2), base64 calendar part
        ("exchange__online-request-base64.eml", "Europe/Kiev", utc(2031, 11, 27, 7)),
        # 15 Apr 2031 11:00 Russian Standard Time (UTC+3), quoted-printable calendar part
        ("outlook__request-qp.eml", "Europe/Moscow", utc(2031, 4, 15, 8)),
        # 20 Feb 2031 09:30 Romance Standard Time (Paris, UTC+1)
        ("exchange__2010-romance-tz.ics", "Europe/Paris", utc(2031, 2, 20, 8, 30)),
        # legacy Exchange name: 14 Mar 2031 18:00 (GMT+01.00) Sarajevo, before DST
        ("exchange__2003-cdo-legacy-tz.ics", "Europe/Sarajevo", utc(2031, 3, 14, 17)),
        # legacy Exchange name, CR-only mail: 18 Mar 2031 10:00 Tijuana, after the
        # 9 March switch to PDT (UTC-7)
        ("exchange__2003-cdo-cr-only-line-endings.eml", "America/Tijuana", utc(2031, 3, 18, 17)),
        # Lotus "Eastern" with its own VTIMEZONE: 14 Apr 2031 09:00 EDT (UTC-4)
        ("lotus__notes6-rdate-request.ics", "America/New_York", utc(2031, 4, 14, 13)),
        # Lotus "FLE": 22 Sep 2031 10:00 EEST (UTC+3)
        ("lotus__notes-invite-fle-tz.eml", "Europe/Kiev", utc(2031, 9, 22, 7)),
    ],
)
def test_windows_and_legacy_zone_names(name, zone, start, options) -> None:
    result = _stored(name, options)
    assert result.timezone == zone
    assert result.start == start
    assert result.next_occurrence is not None and result.next_occurrence.start == start


def test_russian_standard_time_without_vtimezone(options) -> None:
    # 1 Mar 2024 10:00 Moscow (UTC+3, no DST since 2014) = 07:00Z
    raw = _ics("BEGIN:VEVENT", "UID:rst", ORGANIZER,
               "DTSTART;TZID=Russian Standard Time:20240301T100000",
               "DURATION:PT1H", "END:VEVENT")
    result = _stored(raw, options)
    assert result.timezone == "Europe/Moscow"
    assert result.next_occurrence == Occurrence(utc(2024, 3, 1, 7), utc(2024, 3, 1, 8),
                                                utc(2024, 3, 1, 7))


def test_legacy_moscow_name_with_vtimezone(options) -> None:
    raw = _ics(
        "BEGIN:VTIMEZONE", "TZID:(GMT+03.00) Moscow\\, St. Petersburg\\, Volgograd",
        "BEGIN:STANDARD", "DTSTART:16010101T000000", "TZOFFSETFROM:+0300",
        "TZOFFSETTO:+0300", "END:STANDARD", "END:VTIMEZONE",
        "BEGIN:VEVENT", "UID:legacy", ORGANIZER,
        'DTSTART;TZID="(GMT+03.00) Moscow, St. Petersburg, Volgograd":20240301T100000',
        'DTEND;TZID="(GMT+03.00) Moscow, St. Petersburg, Volgograd":20240301T103000',
        "END:VEVENT",
    )
    result = _stored(raw, options)
    assert result.timezone == "Europe/Moscow"
    assert result.start == utc(2024, 3, 1, 7)


def test_all_day_weekly_read_in_the_default_zone(options) -> None:
    # Wednesdays, all day, from 23 Apr 2031.  In Moscow (UTC+3) 30 Apr starts at
    # 29 Apr 21:00Z; 23 Apr has ended by 24 Apr 00:00Z.
    result = _stored("evolution__allday-weekly-recurring.ics", options)
    assert result.all_day
    found = next_occurrence(result.calendar, result.uid, utc(2031, 4, 24), options)
    assert found == Occurrence(utc(2031, 4, 29, 21), utc(2031, 4, 30, 21), utc(2031, 4, 29, 21))
    berlin = EngineOptions(default_timezone="Europe/Berlin")  # CEST, UTC+2
    found = next_occurrence(result.calendar, result.uid, utc(2031, 4, 24), berlin)
    assert found is not None and found.start == utc(2031, 4, 29, 22)


def test_floating_times_are_read_in_the_default_zone(options) -> None:
    # 6 Oct 2031 15:00:01 floating: Moscow (UTC+3) 12:00:01Z; Berlin (CEST) 13:00:01Z;
    # the end, 9 Oct 10:00:02, in Moscow: 07:00:02Z
    result = _stored("tine20__floating-time-no-method.ics", options)
    assert result.timezone == "Europe/Moscow"
    assert result.start == utc(2031, 10, 6, 12, 0, 1)
    assert result.end == utc(2031, 10, 9, 7, 0, 2)
    berlin = EngineOptions(default_timezone="Europe/Berlin")
    found = next_occurrence(result.calendar, result.uid, utc(2031, 1, 1), berlin)
    assert found is not None and found.start == utc(2031, 10, 6, 13, 0, 1)


def test_tzid_without_vtimezone_is_read_in_the_default_zone(options) -> None:
    # TZID=BRT, no VTIMEZONE, no known meaning: 5 Feb 2031 15:00 Moscow = 12:00Z
    result = _stored("google__request-undefined-tzid.ics", options)
    assert result.start == utc(2031, 2, 5, 12)
    assert any("BRT" in warning for warning in result.warnings)


def test_open_ended_weekly_far_in_the_future(options) -> None:
    # Mondays 13:30 America/Los_Angeles from 6 Jan 2031, no end; 1 Jun 2033 is a
    # Wednesday; 6 Jun 13:30 PDT (UTC-7) = 20:30Z.
    result = _stored("google__weekly-recurring.ics", options)
    found = next_occurrence(result.calendar, result.uid, utc(2033, 6, 1), options)
    assert found is not None and found.start == utc(2033, 6, 6, 20, 30)
    skipped = next_occurrence(result.calendar, result.uid, utc(2033, 6, 1), options,
                              cancelled=frozenset({utc(2033, 6, 6, 20, 30)}))
    assert skipped is not None and skipped.start == utc(2033, 6, 13, 20, 30)


def test_instances_without_master(options) -> None:
    # Two moved instances only: 7 May 13:00Z (RID 00:00Z) and 14 May 14:00Z (RID 00:00Z)
    result = _stored("evolution__recurrence-id-override.ics", options)
    assert not result.has_master and result.recurring
    assert result.recurrence_ids == (utc(2031, 5, 7), utc(2031, 5, 14))
    found = next_occurrence(result.calendar, result.uid, utc(2031, 5, 8), options)
    assert found == Occurrence(utc(2031, 5, 14, 14), utc(2031, 5, 14, 14, 30), utc(2031, 5, 14))


def test_rescheduled_instance_with_rdate_period(options) -> None:
    # 28 Apr 2031 11:00 "Eastern" (EDT, UTC-4) = 15:00Z; RECURRENCE-ID 13:00Z
    result = _stored("lotus__notes6-reschedule-one-instance.ics", options)
    assert result.next_occurrence == Occurrence(utc(2031, 4, 28, 15), utc(2031, 4, 28, 16),
                                                utc(2031, 4, 28, 13))


def test_an_occurrence_in_progress_counts_unless_asked_otherwise(options) -> None:
    # 12 Mar 2031 10:00-10:30 Europe/Moscow = 07:00-07:30Z
    result = _stored("thunderbird__single-event.eml", options)
    during = utc(2031, 3, 12, 7, 15)
    assert next_occurrence(result.calendar, result.uid, during, options).start == utc(
        2031, 3, 12, 7)
    assert next_occurrence(result.calendar, result.uid, during, options,
                           include_ongoing=False) is None


def test_cancelled_instances_and_cancelled_series(options) -> None:
    raw = _ics(
        "BEGIN:VEVENT", "UID:daily", ORGANIZER, "DTSTART:20240301T090000Z",
        "DTEND:20240301T100000Z", "RRULE:FREQ=DAILY;COUNT=3", "END:VEVENT",
        "BEGIN:VEVENT", "UID:daily", ORGANIZER, "RECURRENCE-ID:20240302T090000Z",
        "DTSTART:20240302T090000Z", "DTEND:20240302T100000Z", "STATUS:CANCELLED",
        "END:VEVENT",
    )
    result = _stored(raw, options)
    found = next_occurrence(result.calendar, "daily", utc(2024, 3, 1, 12), options)
    assert found is not None and found.start == utc(2024, 3, 3, 9)
    cancel = _stored("akonadi__cancel-daily-series-london.ics", options)
    assert cancel.next_occurrence is None  # STATUS:CANCELLED on the whole series


def test_absurd_frequency_is_refused(options) -> None:
    raw = _ics("BEGIN:VEVENT", "UID:often", ORGANIZER, "DTSTART:20240301T090000Z",
               "RRULE:FREQ=SECONDLY", "END:VEVENT")
    result = _stored(raw, options)
    assert result.next_occurrence is None
    assert any("too frequent" in warning for warning in result.warnings)
    with pytest.raises(EngineError):
        next_occurrence(result.calendar, "often", utc(2024, 3, 1), options)


def test_naive_after_is_rejected(options) -> None:
    result = _stored("thunderbird__single-event.eml", options)
    with pytest.raises(ValueError):
        next_occurrence(result.calendar, result.uid, datetime(2022, 1, 1), options)
