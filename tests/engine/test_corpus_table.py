"""Every corpus file is classified without error, as a person reading it would.

The table was written by reading the files (their METHOD, UID and ORGANIZER lines,
base64 parts decoded by hand), not from the engine's output.  Organizer addresses
are given lower-cased, which is the engine's documented normal form.
"""

from __future__ import annotations

import pytest

from tests.engine.conftest import EARLY, corpus_bytes, corpus_names
from webinar_proxy.engine import classify

T = "4f0162146d61cb2c06cbe2abf94636f4526abe16"
TB = "02e79b96"
KCAL = "libkcal-1387792342.429"
APPLE = "1E71F9C8-AEDA-48EB-98D0-76E898F6BB5C"
APPLE_ORG = "ical-living-on+d7cdf68d-8b73-4df1-ad3b-f08002fb285f@example.com"
KDE = "uosj936i6arrtl9c2i5r2mfuvg"
TMAIL = "ea127690-0440-404b-af98-9823c855a283"
OUTLOOK2010 = (
    "040000008200E00074C5B7101A82E00800000000B02E5C95A5F1D2010000000000000000"
    "1000000093544CFB75D75A42B698FD2C940B3285"
)

# file: (processable, method, uid, organizer)
EXPECTED: dict[str, tuple[bool, str | None, str | None, str | None]] = {
    # a bounce: the invitation is inside message/rfc822, not sent by anyone here
    "apple-calendarserver__dsn-bounce-with-invite.eml": (
        False, "REQUEST", APPLE, "xyzzy+8e16b897-d544-4217-88e9-a363d0846f6c@example.com"),
    "apple-calendarserver__lotus-notes6-calconnect-rdate-request.ics": (
        True, "REQUEST", "E88157FE01BE8A5C85256FDB006EBCC3-Lotus_Notes_Generated",
        "icalchair@coffeebean.com"),
    "apple-calendarserver__lotus-notes6-reschedule-one-instance.ics": (
        True, "REQUEST", "6BA1ECA4D58B306C85256FDB0071B664-Lotus_Notes_Generated",
        "icalchair@coffeebean.com"),
    "apple-calendarserver__mail-reply-accepted.eml": (True, "REPLY", APPLE, APPLE_ORG),
    "apple-calendarserver__reply-missing-attendee.eml": (True, "REPLY", APPLE, APPLE_ORG),
    "apple-calendarserver__reply-missing-organizer.eml": (False, "REPLY", APPLE, None),
    "calcard__exchange2010-teams-recurring-emoji.ics": (
        False, "REQUEST",
        "040000C08200E00074C5B7101A89E00800000000EEB3773267BEA601000000000000000010000000"
        "23B1CC4F9EF21B4BBA06F5F3B4E42720", None),
    "evolution__allday-weekly-recurring.ics": (
        True, "REQUEST", "invite-detached", "organizer@no.where"),
    "evolution__cancel.ics": (True, "CANCEL", "invite", "organizer@no.where"),
    "evolution__recurrence-id-override.ics": (
        True, "REQUEST", "invite-detached", "organizer@no.where"),
    "evolution__reply.ics": (True, "REPLY", "invite", "organizer@no.where"),
    "evolution__request-update-seq2.ics": (True, "REQUEST", "invite", "organizer@no.where"),
    "horde__exchange2007-request.ics": (
        False, "REQUEST",
        "040000008200E00074C5B7101A82E0080000000040F4DEBF64F0D00100000000000000001000000"
        "0A1F2AAD0A2CAF64C9C9CE7B21CC9DA79", None),
    "horde__horde-request-sao-paulo-vtimezone.ics": (
        True, "REQUEST", "20170131152036.pQok0jheDVK9bVccvieikqI@webmail.domain.br",
        "user@domain.br"),
    # several VCALENDAR objects (REQUEST, REPLY, CANCEL, COUNTER) in one file
    "ical4j__rfc-incoming-with-counter.ics": (
        False, "REQUEST", "calsrv.example.com-873970198738777@example.com", "b@example.com"),
    "ical4j__windows-live-request.ics": (
        True, "REQUEST", "9177c616-46dc-4755-bab1-5fdfecd31b6b", "abc@outlook.com"),
    "ical4j__yahoo-request.ics": (
        True, "REQUEST", "19df7f27-3f11-4c04-bf80-9df63e1be04d", "abc@yahoo.com"),
    "icalendar__davmail-freebusy-reply.ics": (False, "REPLY", None, None),
    "icalendar__exchange-cdo-request.ics": (False, "REQUEST", None, None),
    "icalendar__exchange2010-same-start-vtimezone.ics": (
        False, "REQUEST",
        "040000008200E00074C5B7101A82E0080000000090E19664858ED20100000000000000", None),
    # truncated calendar bodies: only the METHOD line is readable
    "james__counter-two-calendar-parts-bogus-charset.eml": (False, "COUNTER", None, None),
    "james__gmail-forwarded-invite.eml": (
        True, "REQUEST", "ah86k5m342bmcrbe9khkkhln00@google.com", "duprat@gmail.com"),
    "james__obm-meeting-without-uid.ics": (False, "REQUEST", None, None),
    "james__obm-meeting.ics": (
        True, "REQUEST",
        "f1514f44bf39311568d640727cff54e819573448d09d2e5677987ff29caa01a9e047feb2aab16e43439a6"
        "08f28671ab7c10e754ce92be513f8e04ae9ff15e65a9819cf285a6962bc",
        "ouazana@linagora.com"),
    # the calendar text sits where the part headers should be; its Content-Type says REPLY
    "james__obm-reply-ics-in-header-malformed.eml": (False, "REPLY", None, None),
    "james__openpaas-nodemailer-invite.eml": (
        True, "REQUEST", "d41ce126-5e9c-45a6-a979-4bc5db77914e", "rbevillard@linagora.com"),
    "james__outlook-counter-new-time-proposed.eml": (False, "COUNTER", None, None),
    "james__yahoo-invitation.eml": (
        True, "REQUEST", "5014513f-1026-4b58-82cf-80d4fc060bbe", "obmlinagora@yahoo.fr"),
    "kde-akonadi__cancel-daily-series-london.ics": (True, "CANCEL", KDE, "their-email@dev.nul"),
    "kde-akonadi__update-one-occurrence.ics": (True, "REQUEST", KDE, "their-email@dev.nul"),
    "kde-akonadi__yahoo-bug235749.ics": (
        True, "REQUEST", "b6f0466a-8877-49d0-a4fc-8ee18ffd8e07", "xyz@yahoo.ca"),
    # "ORGANIZER;mailto:..." (the colon after the name is missing)
    "kde-akonadi__zimbra-cancel-one-occurrence.ics": (
        True, "CANCEL", KDE, "their-email@dev.nul"),
    "kde-kcalutils__allday-qp-body.ics": (
        True, "REQUEST", "libkcal-896183435.377", "testusera@example.com"),
    "kde-kcalutils__counter-qp-body.ics": (True, "COUNTER", KCAL, "testusera@example.com"),
    "kde-kcalutils__declinecounter.ics": (
        True, "DECLINECOUNTER", KCAL, "testusera@example.com"),
    "kde-kcalutils__delegation-reply.ics": (True, "REPLY", KCAL, "testusera@example.com"),
    "kde-kcalutils__delegation-request.ics": (True, "REQUEST", KCAL, "testusera@example.com"),
    "kde-kcalutils__recurring-inline-attachment.ics": (
        True, "REQUEST", "libkcal-566240351.793", "testusera@example.com"),
    "kde-kcalutils__tentative-reply.ics": (True, "REPLY", KCAL, "testusera@example.com"),
    "kolab__kde-libkcal-itip-request.ics": (
        True, "REQUEST", "ac6b0aee-2519-4e5c-9a25-48c57064c9f0", "rolf@mykolab.com"),
    "kolab__lotus-notes-853-recurrence-id-thisandfuture.ics": (
        False, "REQUEST", "7e93e8e8eef16f28aa33b78cd73613ebff", None),
    "libical__complex-mime-request.eml": (
        True, "REQUEST", "calsvr.example.com-873970198738777-8aa", "foo1@example.com"),
    # dozens of VCALENDAR objects in one file: beyond the limit
    "libical__rfc2446-all-methods.ics": (False, "PUBLISH", None, None),
    # an mbox: read as its first message
    "libical__rfc2446-examples.mbox": (
        True, "PUBLISH", "0981234-1234234-23@example.com", "a@example.com"),
    "libical__simple-mime-request.eml": (
        True, "REQUEST", "calsvr.example.com-873970198738777-8aa", "foo1@example.com"),
    "nextcloud-mail__google-request.eml": (
        True, "REQUEST", "69d4c40b4a274636bf23517938df9673@example.org", "alice@example.org"),
    "nextcloud-mail__outlook-com-request.eml": (
        True, "REQUEST", "1F0BD3F6FEFC421AAA5BE992D6992B6A", "alice@example.org"),
    "nylas__exchange2010-romance-tz.ics": (
        True, "REQUEST",
        "040000008200E00074C5B7101A82E008000000005853D6D90C4BD00100000000000000001000000008"
        "27DA11FE47F5489049C8464AB0838A",
        "inbox.apptest2@inboxapp.onmicrosoft.com"),
    "nylas__google-cancel.ics": (
        True, "CANCEL", "c74p2nmutcd0kt69ku7rs8vu2g@google.com", "inboxapptest.french@gmail.com"),
    "nylas__google-reply-accepted.ics": (True, "REPLY", "cccc@nylas.com", "test2@example.com"),
    "nylas__google-weekly-recurring.ics": (
        True, "REQUEST", "flg2h6nam1cb1uqetgfkslrfrc@google.com", "foobar@nilas.com"),
    "nylas__icloud-allday.ics": (
        True, "REQUEST", "8153F823-B9F1-4BE0-ADFB-5FEEB01C08A9",
        "2_hezdsojzgeztsmjzgi4tsojrgnoifyhpytdqmciaf5u2j7kguydtwmzsmex4qj23absxjo6rjcxda"
        "@imip.me.com"),
    "nylas__icloud-cancel-paris-full-vtimezone.ics": (
        True, "CANCEL", "5919D444-7C99-4687-A526-FC5D10091318", "invalid@example.com"),
    "nylas__icloud-invite-french.eml": (
        True, "REQUEST", "65BEB44C-9B9F-4DE3-BA5F-8153629CA077",
        "2_haytgmjxgi3dimbthaytgmjxgkqxktowbntdxza5j7ok4x6h4wqskbcgmgaiwvi2xhkvxssznu4d4"
        "@imip.me.com"),
    "nylas__iphone-via-exchange.ics": (
        True, "REQUEST", "091BD1D08D29478193C4AD1C0E60965400000000000000000000000000000000",
        "inbox.apptest2@inboxapp.onmicrosoft.com"),
    # labelled text/calendar; method=REQUEST, but the payload is plain text
    "proton-bridge__ics-attachment-odd-name.eml": (False, "REQUEST", None, None),
    "proton-bridge__outlook16-single-part-invite.eml": (
        True, "REQUEST",
        "040000008200E00074C5B7101A82E008000000003080B2796B37D901000000000000000010000000"
        "1236CD1CD93CA9449C6FF1AC4DEAC44E", "username@proton.local"),
    "thunderbird__aspnetemail-publish-booking.eml": (
        True, "PUBLISH", "20160824T204000Z-568860280@example.com", "someone@example.com"),
    "thunderbird__cancel-repeat-event.eml": (True, "CANCEL", TB, "sender@example.com"),
    "thunderbird__cancel-single-event.eml": (True, "CANCEL", TB, "sender@example.com"),
    "thunderbird__event-with-file-attachment.eml": (
        True, "REQUEST", "02e79b96-file", "sender@example.com"),
    "thunderbird__exception-major.eml": (True, "REQUEST", TB, "sender@example.com"),
    "thunderbird__exception-minor.eml": (True, "REQUEST", TB, "sender@example.com"),
    "thunderbird__google-meet-invite.eml": (
        True, "REQUEST", "65m17hsdolmotv3kvmrtg40ont@google.com", "example@gmail.com"),
    "thunderbird__ical4j-publish-non-invite.eml": (
        True, "PUBLISH", "1e5fd4e6-bc52-439c-ac76-40da54f57c77@secure.example.com",
        "noreply@example.com"),
    "thunderbird__latin1-encoded-no-uid.ics": (False, None, None, None),
    # MIME says method=REQUEST; the body has no METHOD and no ORGANIZER
    "thunderbird__lotus-notes-invite-fle-tz.eml": (
        False, "REQUEST", "36138BFC6A7B03EFC2258776003DB5C5", None),
    "thunderbird__outlook-invite.eml": (
        True, "REQUEST",
        "030000008200E00074C5B7101A82E0080000000060B608D090DDD701000000000000000010000000"
        "4BE0CFFA54BCF64E956E34143362C3C0", "marge@example.org"),
    "thunderbird__outlook-teams-invite.eml": (
        True, "REQUEST",
        "056000008200E00074C5B7101A82E008000000001AF84C64CBC8D601000000000000000010000000"
        "403B5AC10A0EB444A947D2B499A4B98C", "marge@example.com"),
    "thunderbird__repeat-event.eml": (True, "REQUEST", TB, "sender@example.com"),
    "thunderbird__repeat-update-major.eml": (True, "REQUEST", TB, "sender@example.com"),
    "thunderbird__repeat-update-minor.eml": (True, "REQUEST", TB, "sender@example.com"),
    "thunderbird__single-event.eml": (True, "REQUEST", TB, "sender@example.com"),
    "thunderbird__update-major.eml": (True, "REQUEST", TB, "sender@example.com"),
    "thunderbird__update-minor.eml": (True, "REQUEST", TB, "sender@example.com"),
    "tine20__calendar-cancel.eml": (True, "CANCEL", T, "l.kneschke@caldav.org"),
    "tine20__calendar-reply-accepted.eml": (True, "REPLY", T, "l.kneschke@caldav.org"),
    "tine20__calendar-reply-declined.eml": (True, "REPLY", T, "l.kneschke@caldav.org"),
    "tine20__calendar-request.eml": (True, "REQUEST", T, "l.kneschke@caldav.org"),
    # the ORGANIZER value is a principal path; its EMAIL parameter has the address
    "tine20__calendarserver-request.ics": (
        True, "REQUEST", "9320E052-6AF0-45E7-9352-04BBEC898D47", "mail@corneliusweiss.de"),
    "tine20__exchange-cdo-external.ics": (
        True, "REQUEST", "040000008200E00074C5B7101A82E00800000000F04200929A03CD01000000000000000",
        "name@example.com"),
    "tine20__exchange-cdo-invite.eml": (
        True, "REQUEST",
        "040000008200E00074C5B7101A82E00800000000F04200929A03CD01000000000000000010000000"
        "A9E90330A8A0F547903AAFDBDD6A0D26", "name@example.com"),
    "tine20__exchange2010-recurring-count1.ics": (
        True, "REQUEST",
        "040000008200E00074C5B7101A82E0080000000060C9996DFC1BD301000000000000000010000000"
        "FFBCF26484A5714B9FAB976702B5075D", "l.kneschke@caldav.org"),
    "tine20__floating-time-no-method.ics": (
        False, None, "2017-10-06 15:00:01_160@demo.icalendar.org", None),
    "tine20__google-reply-organizer-without-mailto.ics": (
        True, "REPLY", "62050f080e53ca8e00353ff0a89c6c6aa4af3dec", "unittest@tine20.org"),
    "tine20__google-request-undefined-tzid.ics": (
        True, "REQUEST", "3evgs2i0jdkofmibc9u5cah0a9@google.com", "xxxxx@gmail.com"),
    "tine20__ical5-reply-accepted.ics": (
        True, "REPLY", "a8d10369e051094ae9322bd65e8afecac010bfc8", "unittest@tine20.org"),
    "tine20__invalid-imip.eml": (
        True, "REQUEST", "32b41dbb4c7634259165b755de5e5d957abd37ca", "p.schuele@metaways.de"),
    "tine20__ios-invitation.eml": (
        True, "REQUEST", "cb2e1063da91d655e82f5287cbedb58e9676189d", "unittest@tine20.org"),
    "tine20__lightning-invitation.eml": (
        True, "REQUEST", "6f59364f-987e-48bb-a0d1-5512a2ba5570", "pwulf@tine20.org"),
    # a stored CalDAV object, not an iTIP message
    "tine20__lightning-recurring-overrides-exdate.ics": (
        False, None, "ac714fd2aaee06a7d1ebe69710a8317bbc38ffd7", "unittest@tine20.org"),
    "tine20__lotus-notes-852-request.ics": (
        True, "REQUEST", "A5C4058C8C5926C8C12579B100622D66-Lotus_Notes_Generated",
        "paul.wulf@de.ibm.com"),
    "tine20__mac-ical-invitation.eml": (
        True, "REQUEST", "48560E48-9DE3-41F1-8F03-7607C67F7A8F", "pwulf@tine20.org"),
    "tine20__meetup-invite.eml": (
        True, "PUBLISH", "event_wsftpypqbzb@meetup.com", "info@meetup.com"),
    "tine20__outlook2010-request.ics": (True, "REQUEST", OUTLOOK2010, "l.kneschke@caldav.org"),
    "tine20__outlook2010-reschedule.ics": (
        True, "REQUEST", OUTLOOK2010, "l.kneschke@caldav.org"),
    "tine20__request-exdate-override.ics": (
        True, "REQUEST", "012b00cf72f8f3606d736411a592c804d3c9d481", "p.schuele@metaways.de"),
    "tine20__teams-join-meeting.eml": (
        True, "REQUEST",
        "040000008200E00074C5B7101A82E00800000000FC4C0D8742A6D801000000000000000010000000"
        "B262F2D35F59C4469B57F95241EE1AE3", "p.hartog@outlook.com"),
    # a UTF-16 PUBLISH of many events
    "tine20__utf16-encoded-publish.ics": (False, "PUBLISH", "370555012409828", None),
    "tine20__zoom-invite.eml": (False, None, "0fa368d4-7747-4a50-960d-417cb23a9f71", None),
    # MIME method=REQUEST but the body says CANCEL: the body wins
    "tmail__cancel-method-mismatch.eml": (True, "CANCEL", TMAIL, "alice@do.main.tld"),
    # no METHOD in the body: the MIME parameter is used
    "tmail__ics-missing-method.eml": (True, "REQUEST", TMAIL, "alice@do.main.tld"),
    "tmail__two-invalid-ics-attachments.eml": (True, "REQUEST", TMAIL, "ouazana@domain.tld"),
    "zimbra__dsn-bounce-appointment.eml": (
        False, "REQUEST", "4dd50a2d-1bb9-403f-9c17-be8356cdf6f6", "dkarp@zimbra.com"),
    "zimbra__exchange-cdo-all-day.eml": (
        True, "REQUEST",
        "040000008200E00074C5B7101A82E00800000000400C7483375EC501000000000000000010000000"
        "B856105CBE6D7345A06C856E9BD4F45F", "user1@example.zimbra.com"),
    "zimbra__exchange-cdo-recurring.eml": (
        True, "REQUEST",
        "040000008200E00074C5B7101A82E00800000000F0BC424F5761C5010000000000000000100000002C"
        "10E79C9140CF41B7E18816DF121033", "tom@example.zimbra.com"),
    "zimbra__exchange2003-cdo-cr-only-line-endings.eml": (
        True, "REQUEST",
        "040000008200E00074C5B7101A82E00800000000D079DCA18658C501000000000000000010000000"
        "43A59ACEA33EB945ABFE059EA9289BED", "schemers@example.zimbra.com"),
    "zimbra__new-request-rsvp-false.eml": (
        True, "REQUEST", "8282cdfc-a5a6-4ed4-84e2-be12c2bc4af8", "org@testdomain.com"),
    "zimbra__outlook12-zco-russian-koi8r.eml": (
        True, "REQUEST",
        "041000008200E00074C5B7101A82E0080000000000E8B0F815A5CA01000000000000000010000000"
        "EA075A61ADE9284F85949CD39FACEEF4", "av1@zmmighp-vm2.delhi.corp.yahoo.com"),
    "zimbra__outlook14-zco-reply-accepted.eml": (
        False, "REPLY", "5baee2a1-9064-4356-9b3c-f56b02050088", None),
    "zimbra__web-client-invite.eml": (
        True, "REQUEST", "5baee2a1-9064-4356-9b3c-f56b02050088", "test@zimbra.com"),
    "zimbra__web-client-update-no-rsvp.eml": (
        True, "REQUEST", "ad22c92b-680c-436b-98b0-def254c953d5", "org@testdomain.com"),
}


def test_table_covers_the_whole_corpus() -> None:
    names = corpus_names()
    if not names:
        pytest.skip("invitation corpus not found")
    assert sorted(EXPECTED) == names


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_file_is_read_as_expected(name: str, options) -> None:
    raw = corpus_bytes(name)
    result = classify(raw, None, options, EARLY)
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
    result = classify(corpus_bytes("tmail__cancel-method-mismatch.eml"), None, options, EARLY)
    assert (result.mime_method, result.method) == ("REQUEST", "CANCEL")


def test_sent_by_is_read_and_counts_as_the_organizer(options) -> None:
    raw = corpus_bytes("james__yahoo-invitation.eml")
    result = classify(raw, "OBMLinagora@Yahoo.FR", options, EARLY)
    assert result.sent_by == "obmlinagora@yahoo.fr"
    assert result.from_organizer


def test_misspelled_send_by_parameter_is_accepted(options) -> None:
    result = classify(corpus_bytes("tine20__invalid-imip.eml"), None, options, EARLY)
    assert result.sent_by == "p.schuele@metaways.de"
    resources = [a for a in result.attendees if not a.is_person]
    assert [a.cutype for a in resources] == ["RESOURCE"]


def test_bounce_is_found_but_not_processable(options) -> None:
    result = classify(corpus_bytes("zimbra__dsn-bounce-appointment.eml"), None, options, EARLY)
    assert result.in_attached_message
    assert "attached message" in result.reason
