"""Every file of the in-repository corpus is classified as a person reading it would.

The table was written from the files themselves (their METHOD, UID and ORGANIZER
lines; base64 and quoted-printable parts decoded by hand), not from the engine's
output.  Organizer addresses are given lower-cased, which is the engine's documented
normal form.  The files live in ``tests/fixtures/clients``; its README.md says what
each one is for.
"""

from __future__ import annotations

import pytest

from tests.support.calendars import EARLY
from tests.support.fixtures import client_fixture, client_fixture_names
from webinar_proxy.invitation import classify

TB = "9a4f6c1e-3b7d-4e52-8c11-5f0e2d7b9a43"
TB_SERIES = "c5d0e3b2-7f41-4a9e-9e6d-2b8a1f3c4d57"
TB_ORG = "irina.sokolova@example.com"
OUTLOOK16 = (
    "040000008200E00074C5B7101A82E00800000000D0A3C21E7F3ADB01000000000000000010000000"
    "C8E1F3A9B46D2F4E8A5B7C3D9E1F2A4B"
)
OUTLOOK14 = (
    "040000008200E00074C5B7101A82E00800000000E07B3F5C8A9ADB01000000000000000010000000"
    "2F4A6C8E0B1D3F5A7C9E1B3D5F7A9C1E"
)
ZCO = (
    "041000008200E00074C5B7101A82E00800000000E0F1A2B3C4D5C701000000000000000010000000"
    "FA0B1C2D3E4F5A6B7C8D9EAFB0C1D2E3"
)
GOOGLE = "7kq2m4v9c1d3f5h7j9l1n3p5r7@google.com"
GOOGLE_ORG = "alice.weber@example.org"
APPLE = "6F2C8E1A-4B3D-4C5E-9F7A-1B2C3D4E5F60"
APPLE_ORG = "sophie.laurent@example.fr"
YANDEX = "xnUzq7wPyandex.ru3f9c2e1d7b5a"
YANDEX_ORG = "e.smirnova@yandex.example"
ZIMBRA = "4b6d8f0a-2c4e-4f6a-8b0c-d2e4f6a8b0c2"
EVO_ORG = "organizer@gnome.example"
KCAL = "libkcal-1029384756.512"
KDE_ORG = "testuser.a@kde.example"
AKONADI = "q2w4e6r8t0y2u4i6o8p0a2s4d6"
TINE = "8c1f3e5a7b9d2f4a6c8e0b2d4f6a8c0e2b4d6f8a"
TINE_ORG = "l.kuehn@tine.example"
TMAIL = "d7f9b1c3-e5a7-4c9e-b1d3-f5a7c9e1b3d5"
ACME = "acme-calsrv-873970198738777-8aa@acme.example"
# file: (processable, method, uid, organizer)
EXPECTED: dict[str, tuple[bool, str | None, str | None, str | None]] = {
    # --- KDE akonadi iTIP handler --------------------------------------------------
    "akonadi__cancel-daily-series-london.ics": (True, "CANCEL", AKONADI, "their.name@kde.example"),
    "akonadi__update-one-occurrence.ics": (True, "REQUEST", AKONADI, "their.name@kde.example"),
    # blank lines, "mailto:mailto:" attendees, single-quoted CNs
    "akonadi__yahoo-blank-lines-double-mailto.ics": (
        True, "REQUEST", "e4f6a8c0-2b4d-4f6e-8a0c-2e4a6c8e0a2c", "maple.leaf@yahoo.example"),
    # --- Apple ---------------------------------------------------------------------
    # a bounce: the invitation is inside message/rfc822, not sent by anyone here
    "apple__dsn-bounce-with-invite.eml": (
        False, "REQUEST", APPLE, "server+4c2e6a8b-0d1f-4e3a-b5c7-d9e1f3a5b7c9@caldav.example.fr"),
    "apple__ical-invitation.eml": (True, "REQUEST", APPLE, APPLE_ORG),
    "apple__mail-reply-accepted.eml": (True, "REPLY", APPLE, APPLE_ORG),
    "apple__reply-missing-attendee.eml": (True, "REPLY", APPLE, APPLE_ORG),
    "apple__reply-missing-organizer.eml": (False, "REPLY", APPLE, None),
    "aspnetemail__publish-booking.eml": (
        True, "PUBLISH", "20310820T100000Z-918273645@restaurant.example", "booking@restaurant.example"),
    # the ORGANIZER value is a principal URN; its EMAIL parameter has the address
    "calendarserver__request-principal-organizer.ics": (
        True, "REQUEST", "0C2E4A6C-8E0A-4C2E-A6C8-E0A2C4E6A8C0", APPLE_ORG),
    # a REPLY with a VFREEBUSY and no VEVENT
    "davmail__freebusy-reply.ics": (False, "REPLY", None, None),
    # --- Evolution -----------------------------------------------------------------
    "evolution__allday-weekly-recurring.ics": (True, "REQUEST", "evo-allday-weekly", EVO_ORG),
    "evolution__cancel.ics": (True, "CANCEL", "evo-single", EVO_ORG),
    "evolution__recurrence-id-override.ics": (True, "REQUEST", "evo-detached", EVO_ORG),
    "evolution__reply.ics": (True, "REPLY", "evo-single", EVO_ORG),
    "evolution__request-update-seq2.ics": (True, "REQUEST", "evo-single", EVO_ORG),
    # --- Exchange ------------------------------------------------------------------
    # every line ends in a lone CR
    "exchange__2003-cdo-cr-only-line-endings.eml": (
        True, "REQUEST",
        "040000008200E00074C5B7101A82E00800000000D0E1F2A3B4C5C701000000000000000010000000"
        "ABCDEF0123456789ABCDEF0123456789", "sam.ortiz@example.zimbra.com"),
    "exchange__2003-cdo-legacy-tz.ics": (
        True, "REQUEST", "040000008200E00074C5B7101A82E00800000000B0C1D2E3F405C701000000000000000",
        "edin.kovac@example.ba"),
    "exchange__2010-romance-tz.ics": (
        True, "REQUEST",
        "040000008200E00074C5B7101A82E008000000005F3E1A2B7C4ADC01000000000000000010000000"
        "7D8E9FA0B1C2D3E4F5061728394A5B6C",
        "claire.dubois@example.fr"),
    "exchange__cdo-all-day.eml": (
        True, "REQUEST",
        "040000008200E00074C5B7101A82E00800000000407C1D2E3F4ADC01000000000000000010000000"
        "C0FFEE0011223344556677889900AABB", "kate.moore@example.zimbra.com"),
    "exchange__online-request-base64.eml": (
        True, "REQUEST",
        "040000008200E00074C5B7101A82E00800000000A06E2C1B4F2ADC01000000000000000010000000"
        "E3F1A27C9B5D4E4A8C2D6F1B3A5E7C9D", "olena.kovalenko@example.org"),
    # a Teams meeting without ORGANIZER
    "exchange__teams-recurring-emoji.ics": (
        False, "REQUEST",
        "040000008200E00074C5B7101A82E008000000004F2B8C1D9E3ADC01000000000000000010000000"
        "A1B2C3D4E5F60718293A4B5C6D7E8F90", None),
    # --- Google --------------------------------------------------------------------
    # forwarded by an attendee: still the organizer's meeting
    "gmail__forwarded-invite.eml": (True, "REQUEST", GOOGLE, GOOGLE_ORG),
    "gmail__meet-invite.eml": (True, "REQUEST", "3h5j7l9n1p3r5t7v9x1z3b5d7f@google.com", GOOGLE_ORG),
    "gmail__request.eml": (True, "REQUEST", GOOGLE, GOOGLE_ORG),
    "google__cancel.ics": (True, "CANCEL", GOOGLE, GOOGLE_ORG),
    "google__reply-accepted.ics": (True, "REPLY", GOOGLE, GOOGLE_ORG),
    "google__request-undefined-tzid.ics": (
        True, "REQUEST", "1a3c5e7g9i1k3m5o7q9s1u3w5y@google.com", "rafael.souza@example.com.br"),
    "google__weekly-recurring.ics": (
        True, "REQUEST", "9v8u7t6s5r4q3p2o1n0m9l8k7j@google.com", "priya.nair@example.com"),
    "horde__request-sao-paulo-vtimezone.ics": (
        True, "REQUEST", "20310301180000.Xk7pQ2mZ9wL4vB1n@webmail.horde.example",
        "bruno.costa@horde.example"),
    # MIME method=REQUEST, body METHOD:PUBLISH: the body wins
    "ical4j__publish-non-invite.eml": (
        True, "PUBLISH", "4a6c8e0b-2d4f-4a6c-8e0b-2d4f6a8c0e2b@portal.example", "noreply@portal.example"),
    # --- Apple iCloud / iOS ----------------------------------------------------------
    "icloud__allday.ics": (
        True, "REQUEST", "D4B6F8A0-2C4E-4F6A-8B0D-2F4A6C8E0B2D",
        "2_gezdcnbqgi2tamjrgiytcmzxgm4tenbqgm3dsmbqgayteobvgu2dk@imip.me.com"),
    "icloud__cancel-paris-full-vtimezone.ics": (
        True, "CANCEL", "8E0A2C4E-6A8C-4E0A-9C2E-4A6C8E0A2C4E", "luc.bernard@example.fr"),
    "icloud__invite-french.eml": (
        True, "REQUEST", "B2D4F6A8-0C2E-4A6C-8E0A-C2E4A6C8E0B2",
        "2_haydcmbqgi3tenjzgm2dcnbxgqztcmrvgu4tsnjsgezdomrvg4ytcnbv@imip.me.com"),
    "ios__iphone-via-exchange.ics": (
        True, "REQUEST", "4A7C0E2B5D8F1A3C6E9B2D4F7A0C3E5B00000000000000000000000000000000",
        "daan.devries@example.onmicrosoft.com"),
    # --- KDE KOrganizer / Kontact -----------------------------------------------------
    "kontact__libkcal43-request.ics": (
        True, "REQUEST", "7c9e1b3d-5f7a-4c9e-b1d3-f5a7c9e1b3d5", "rolf.kaiser@kolab.example"),
    # the body is still quoted-printable (=3D, soft breaks)
    "korganizer__allday-qp-body.ics": (True, "REQUEST", "libkcal-2039485761.114", KDE_ORG),
    "korganizer__counter-qp-body.ics": (True, "COUNTER", KCAL, KDE_ORG),
    "korganizer__declinecounter.ics": (True, "DECLINECOUNTER", KCAL, KDE_ORG),
    "korganizer__delegation-reply.ics": (True, "REPLY", KCAL, KDE_ORG),
    "korganizer__delegation-request.ics": (True, "REQUEST", KCAL, KDE_ORG),
    "korganizer__recurring-inline-attachment.ics": (
        True, "REQUEST", "libkcal-1122334455.667", KDE_ORG),
    "korganizer__tentative-reply.ics": (True, "REPLY", KCAL, KDE_ORG),
    # --- Lotus Notes -----------------------------------------------------------------
    # MIME says method=REQUEST; the body has no METHOD and no ORGANIZER
    "lotus__notes-invite-fle-tz.eml": (
        False, "REQUEST", "5A4B3C2D1E0F9A8BC2258776003DB5C5", None),
    "lotus__notes6-rdate-request.ics": (
        True, "REQUEST", "3C2B1A09F8E7D6C585256FDB006EBCC3-Lotus_Notes_Generated",
        "grace.lin@harbor.example"),
    "lotus__notes6-reschedule-one-instance.ics": (
        True, "REQUEST", "7D6C5B4A39281706F5E4D3C2B1A09F8E-Lotus_Notes_Generated",
        "grace.lin@harbor.example"),
    "lotus__notes852-request.ics": (
        True, "REQUEST", "B4C3D2E1F0A9B8C7C12579B100622D66-Lotus_Notes_Generated",
        "karl.brandt@harbor.example"),
    "lotus__notes853-recurrence-id-thisandfuture.ics": (
        False, "REQUEST", "9f8e7d6c5b4a3928170f1e2d3c4b5a6978", None),
    "meetup__publish.eml": (True, "PUBLISH", "event_303112233@meetup.example", "info@meetup.example"),
    # --- OBM / OpenPaaS ------------------------------------------------------------------
    "obm__meeting-without-uid.ics": (False, "REQUEST", None, None),
    # the calendar text sits where the part headers should be; its Content-Type says REPLY
    "obm__reply-ics-in-header-malformed.eml": (False, "REPLY", None, None),
    "openpaas__nodemailer-invite.eml": (
        True, "REQUEST", "e2c4a6b8-d0f2-4e4a-8c6e-0b2d4f6a8c0e", "remi.bertin@openpaas.example"),
    # --- Outlook -------------------------------------------------------------------------
    "outlook__2010-request.ics": (True, "REQUEST", OUTLOOK14, "j.richter@example.de"),
    "outlook__2010-reschedule.ics": (True, "REQUEST", OUTLOOK14, "j.richter@example.de"),
    "outlook__cancel.eml": (True, "CANCEL", OUTLOOK16, "a.belov@example.ru"),
    "outlook__counter-new-time-proposed.eml": (
        True, "COUNTER",
        "040000008200E00074C5B7101A82E00800000000904D7E1A3B5ADC01000000000000000010000000"
        "AB12CD34EF56AB78CD90EF12AB34CD56", "j.richter@example.de"),
    # both calendar parts are cut short: only the METHOD line is readable
    "outlook__counter-two-calendar-parts-bogus-charset.eml": (False, "COUNTER", None, None),
    "outlook__request-qp.eml": (True, "REQUEST", OUTLOOK16, "a.belov@example.ru"),
    "outlook__single-part-invite.eml": (
        True, "REQUEST",
        "040000008200E00074C5B7101A82E008000000001C9A7B5D3E0FDC01000000000000000010000000"
        "F1E2D3C4B5A6978899AABBCCDDEEFF00", "maria.li@example.ru"),
    "outlook__teams-invite.eml": (
        True, "REQUEST",
        "040000008200E00074C5B7101A82E00800000000F2E4D6C8BA9EDC01000000000000000010000000"
        "13579BDF2468ACE013579BDF2468ACE0", "megan.ross@contoso.example"),
    "outlook__zco-reply-accepted.eml": (False, "REPLY", ZCO, None),
    "outlook__zco-russian-koi8r-bom.eml": (True, "REQUEST", ZCO, "o.morozova@zco.example"),
    # labelled text/calendar; method=REQUEST, but the payload is plain text
    "proton__ics-attachment-odd-name.eml": (False, "REQUEST", None, None),
    # --- iTIP examples ---------------------------------------------------------------------
    # seventeen VCALENDAR objects in one file: beyond the limit
    "rfc5546__all-methods.ics": (False, "PUBLISH", None, None),
    # an mbox: read as its first message
    "rfc5546__examples.mbox": (True, "PUBLISH", "acme-0001@acme.example", "alpha@acme.example"),
    # REQUEST, REPLY, COUNTER and CANCEL objects in one file
    "rfc5546__request-reply-counter-cancel.ics": (
        False, "REQUEST", "acme-0002@acme.example", "alpha@acme.example"),
    "rfc6047__complex-mime-request.eml": (True, "REQUEST", ACME, "foo1@acme.example"),
    "rfc6047__simple-mime-request.eml": (True, "REQUEST", ACME, "foo1@acme.example"),
    # --- Thunderbird -------------------------------------------------------------------------
    "thunderbird__cancel-one-occurrence.eml": (True, "CANCEL", TB_SERIES, TB_ORG),
    "thunderbird__cancel-single-event.eml": (True, "CANCEL", TB, TB_ORG),
    "thunderbird__event-with-file-attachment.eml": (True, "REQUEST", f"{TB}-file", TB_ORG),
    "thunderbird__exception-major.eml": (True, "REQUEST", TB_SERIES, TB_ORG),
    "thunderbird__latin1-encoded-no-uid.ics": (False, None, None, None),
    "thunderbird__repeat-event.eml": (True, "REQUEST", TB_SERIES, TB_ORG),
    "thunderbird__reply-accepted.eml": (True, "REPLY", TB, TB_ORG),
    "thunderbird__single-event.eml": (True, "REQUEST", TB, TB_ORG),
    "thunderbird__update-major.eml": (True, "REQUEST", TB, TB_ORG),
    "thunderbird__update-minor.eml": (True, "REQUEST", TB, TB_ORG),
    # --- Tine 2.0 ----------------------------------------------------------------------------
    "tine20__calendar-cancel.eml": (True, "CANCEL", TINE, TINE_ORG),
    "tine20__calendar-reply-accepted.eml": (True, "REPLY", TINE, TINE_ORG),
    "tine20__calendar-reply-declined.eml": (True, "REPLY", TINE, TINE_ORG),
    "tine20__calendar-request.eml": (True, "REQUEST", TINE, TINE_ORG),
    "tine20__floating-time-no-method.ics": (
        False, None, "2031-10-06 15:00:01_77@demo.icalendar.example", None),
    # "ORGANIZER;CN=...:l.kuehn@tine.example" (no mailto:)
    "tine20__google-reply-organizer-without-mailto.ics": (True, "REPLY", TINE, TINE_ORG),
    "tine20__invalid-imip-send-by.eml": (True, "REQUEST", TINE, TINE_ORG),
    # a stored CalDAV object, not an iTIP message
    "tine20__lightning-recurring-overrides-exdate.ics": (
        False, None, "2d4f6a8c0e2b4d6f8a0c2e4b6d8f0a2c4e6b8d0f", TINE_ORG),
    "tine20__request-exdate-override.ics": (
        True, "REQUEST", "6f8a0c2e4b6d8f0a2c4e6b8d0f2a4c6e8b0d2f4a", "p.schulte@tine.example"),
    # a UTF-16LE PUBLISH of six events, no ORGANIZER
    "tine20__utf16-encoded-publish.ics": (False, "PUBLISH", "9081726354400", None),
    # --- tmail -------------------------------------------------------------------------------
    # MIME method=REQUEST but the body says CANCEL: the body wins
    "tmail__cancel-method-mismatch.eml": (True, "CANCEL", TMAIL, "alice@tmail.example"),
    # no METHOD in the body: the MIME parameter is used
    "tmail__ics-missing-method.eml": (True, "REQUEST", TMAIL, "alice@tmail.example"),
    "tmail__two-invalid-ics-attachments.eml": (True, "REQUEST", TMAIL, "olga@tmail.example"),
    "windows-live__request.ics": (
        True, "REQUEST", "5c1e2f3a-8b9d-4e07-a6c5-3d2e1f0a9b8c", "jen.alvarez@hotmail.example"),
    # --- Yahoo, Yandex -------------------------------------------------------------------------
    "yahoo__invitation.eml": (
        True, "REQUEST", "3b5d7f9a-1c3e-4a5b-8d7f-9a1c3e5b7d9f", "chloe.dupont@yahoo.example"),
    "yahoo__request.ics": (
        True, "REQUEST", "7d9f1b3e-5a7c-4e9f-b1d3-e5a7c9f1b3d5", "sam.yu@yahoo.example"),
    "yandex__cancel.eml": (True, "CANCEL", YANDEX, YANDEX_ORG),
    # the calendar part itself in windows-1251
    "yandex__request-windows-1251.eml": (True, "REQUEST", "Yq8mZ2kLyandex.ru5b7d9f1a3c", YANDEX_ORG),
    "yandex__request.eml": (True, "REQUEST", YANDEX, YANDEX_ORG),
    # --- Zimbra ---------------------------------------------------------------------------------
    # "ORGANIZER;mailto:..." (the colon after the name is missing)
    "zimbra__cancel-one-occurrence.ics": (
        True, "CANCEL", "ac1e3g5i-7k9m-1o3q-5s7u-9w1y3a5c7e9g", "neil.ford@zimbra.example"),
    "zimbra__dsn-bounce-appointment.eml": (False, "REQUEST", ZIMBRA, "neil.ford@zimbra.example"),
    "zimbra__web-client-invite.eml": (True, "REQUEST", ZIMBRA, "neil.ford@zimbra.example"),
    "zimbra__web-client-update-no-rsvp.eml": (True, "REQUEST", ZIMBRA, "neil.ford@zimbra.example"),
    # an "add to calendar" attachment: no METHOD, no ORGANIZER
    "zoom__webinar-registration.eml": (False, None, "ZOOM84736291055-a1b2c3d4e5f6", None),
}


def test_table_covers_the_whole_corpus() -> None:
    assert sorted(EXPECTED) == client_fixture_names()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_file_is_read_as_expected(name: str, options) -> None:
    result = classify(client_fixture(name), None, options, EARLY)
    processable, method, uid, organizer = EXPECTED[name]
    assert not result.reason.startswith("internal error"), result.reason
    assert (result.processable, result.method, result.uid, result.organizer) == (
        processable, method, uid, organizer
    ), result.reason
    assert result.is_imip
    if processable:
        assert result.reason == "ok"
        assert result.calendar.startswith(b"BEGIN:VCALENDAR")
    else:
        assert result.reason and result.reason != "ok"


def test_method_in_body_wins_over_mime_parameter(options) -> None:
    result = classify(client_fixture("tmail__cancel-method-mismatch.eml"), None, options, EARLY)
    assert (result.mime_method, result.method) == ("REQUEST", "CANCEL")


def test_sent_by_is_read_and_counts_as_the_organizer(options) -> None:
    raw = client_fixture("yahoo__invitation.eml")
    result = classify(raw, "Agenda.Bot@Yahoo.Example", options, EARLY)
    assert result.sent_by == "agenda.bot@yahoo.example"
    assert result.from_organizer


def test_misspelled_send_by_parameter_is_accepted(options) -> None:
    result = classify(client_fixture("tine20__invalid-imip-send-by.eml"), None, options, EARLY)
    assert result.sent_by == "assistant@tine.example"
    resources = [a for a in result.attendees if not a.is_person]
    assert [a.cutype for a in resources] == ["RESOURCE"]


def test_bounce_is_found_but_not_processable(options) -> None:
    result = classify(client_fixture("zimbra__dsn-bounce-appointment.eml"), None, options, EARLY)
    assert result.in_attached_message
    assert "attached message" in result.reason


def test_a_forwarded_invitation_is_not_from_the_organizer(options) -> None:
    result = classify(client_fixture("gmail__forwarded-invite.eml"), "bob.krause@example.org",
                      options, EARLY)
    assert result.processable and not result.from_organizer
