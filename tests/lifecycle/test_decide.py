"""The README's invitation table, row by row, on the pure decision function."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from webinar_proxy.calendar import Attendee
from webinar_proxy.calendar.occurrences import Occurrence
from webinar_proxy.invitation import Classification
from webinar_proxy.lifecycle.decide import Action, Bookkeeping, after_request, decide, is_served
from webinar_proxy.store import ConferenceRecord, ConferenceState, Registration

ORG = "boss@example.org"
BASE = Classification(
    processable=True, reason="", is_imip=True, method="REQUEST", uid="u1", organizer=ORG,
    from_organizer=True, sequence=1, has_master=True, conference_requested=True,
    next_occurrence=Occurrence(datetime(2030, 5, 6, 10, tzinfo=UTC), datetime(2030, 5, 6, 11, tzinfo=UTC),
                               datetime(2030, 5, 6, 10, tzinfo=UTC)),
)
ACTIVE = ConferenceRecord(
    organizer=ORG, uid="u1", state=ConferenceState.ACTIVE, event_id=1, session_id=2,
    link="https://events.webinar.ru/o/1", sequence=1,
    registrations=(Registration(ORG, "ADMIN", 1), Registration("a@x.net", "GUEST", 2),
                   Registration("b@x.net", "GUEST", 3)),
)


def person(address: str) -> Attendee:
    return Attendee(address=address, name=None, role=None, cutype="INDIVIDUAL", partstat=None, is_person=True)


def room(address: str) -> Attendee:
    return Attendee(address=address, name=None, role=None, cutype="ROOM", partstat=None, is_person=False)


ROWS = [
    ("not iMIP", replace(BASE, is_imip=False), None, Action.PASS),
    ("unprocessable", replace(BASE, processable=False, reason="broken"), ACTIVE, Action.PASS),
    ("REPLY", replace(BASE, method="REPLY"), ACTIVE, Action.PASS),
    ("COUNTER", replace(BASE, method="COUNTER"), ACTIVE, Action.PASS),
    ("PUBLISH", replace(BASE, method="PUBLISH"), None, Action.PASS),
    ("REFRESH", replace(BASE, method="REFRESH"), ACTIVE, Action.PASS),
    ("DECLINECOUNTER", replace(BASE, method="DECLINECOUNTER"), ACTIVE, Action.PASS),
    ("forwarded by attendee, stored", replace(BASE, from_organizer=False), ACTIVE, Action.INSERT_LINK),
    ("forwarded by attendee, nothing stored", replace(BASE, from_organizer=False), None, Action.PASS),
    ("attendee's CANCEL", replace(BASE, method="CANCEL", from_organizer=False, status="CANCELLED"),
     ACTIVE, Action.PASS),
    ("new, trigger", BASE, None, Action.ENSURE),
    ("new, no trigger", replace(BASE, conference_requested=False), None, Action.PASS),
    ("ADD from organizer, trigger", replace(BASE, method="ADD"), None, Action.ENSURE),
    ("update with trigger", replace(BASE, sequence=2), ACTIVE, Action.ENSURE),
    ("update with our link only", replace(BASE, conference_requested=False, has_our_link=True),
     ACTIVE, Action.ENSURE),
    ("conference taken out", replace(BASE, conference_requested=False), ACTIVE, Action.REMOVE),
    ("instance only, no trigger", replace(BASE, has_master=False, conference_requested=False,
                                           recurrence_ids=(datetime(2022, 1, 1, tzinfo=UTC),)),
     ACTIVE, Action.INSERT_LINK),
    ("lower SEQUENCE", replace(BASE, sequence=0), ACTIVE, Action.INSERT_LINK),
    ("after deletion, trigger again", BASE, replace(ACTIVE, state=ConferenceState.DELETED), Action.ENSURE),
    ("CANCEL cancelled", replace(BASE, method="CANCEL", status="CANCELLED"), ACTIVE, Action.CANCEL),
    ("CANCEL covering everyone",
     replace(BASE, method="CANCEL", attendees=(person("a@x.net"), person("b@x.net"))),
     ACTIVE, Action.CANCEL),
    ("CANCEL to some", replace(BASE, method="CANCEL", attendees=(person("b@x.net"),)),
     ACTIVE, Action.UNREGISTER),
    ("CANCEL one occurrence", replace(BASE, method="CANCEL", has_master=False,
                                      recurrence_ids=(datetime(2022, 1, 1, tzinfo=UTC),)),
     ACTIVE, Action.CANCEL_OCCURRENCES),
    ("CANCEL, nothing stored", replace(BASE, method="CANCEL", status="CANCELLED"), None, Action.PASS),
    ("new, trigger, no upcoming occurrence", replace(BASE, next_occurrence=None), None, Action.PASS),
    ("always domain, no upcoming occurrence", replace(BASE, next_occurrence=None,
                                                      conference_requested=False), None, Action.PASS),
    ("retry after a failed creation", BASE, replace(ACTIVE, state=ConferenceState.CREATING, link=None,
                                                   event_id=None, session_id=None), Action.ENSURE),
]


@pytest.mark.parametrize(("classification", "record", "expected"),
                         [row[1:] for row in ROWS], ids=[row[0] for row in ROWS])
def test_decision_table(classification, record, expected):
    assert decide(classification, record).action is expected


def test_always_domains_need_no_trigger():
    assert decide(replace(BASE, conference_requested=False), None, always=True).action is Action.ENSURE


def test_served_domains():
    assert is_served("a@Corp.Example", ())
    assert is_served("a@corp.example", ("CORP.example",))
    assert not is_served("a@other.example", ("corp.example",))


def test_no_conference_for_a_meeting_without_upcoming_occurrence_says_why():
    decision = decide(replace(BASE, next_occurrence=None), None)
    assert decision.action is Action.PASS
    assert "no occurrence is upcoming" in decision.reason


def test_a_retry_after_a_failed_creation_is_not_called_an_update():
    creating = replace(ACTIVE, state=ConferenceState.CREATING, link=None, event_id=None, session_id=None)
    decision = decide(BASE, creating)
    assert decision.action is Action.ENSURE
    assert "update" not in decision.reason and "did not finish" in decision.reason
    assert decide(replace(BASE, sequence=2), ACTIVE).reason == "update of a meeting with a conference"


# --- CANCELs as calendar servers send them: decided by where the mail goes ---------

ANN, BOB, DAN = "ann@x.net", "bob@x.net", "dan@x.net"
CARL = "carl@x.net"  # SCHEDULE-AGENT=CLIENT: in the meeting, never mailed by the server
LU = "lu@example.org"  # a user the server delivers to internally: never mailed
ROOM = "room-7@example.org"
MEETING = replace(
    ACTIVE,
    registrations=(Registration(ORG, "ADMIN", 1), Registration(ANN, "GUEST", 2),
                   Registration(BOB, "GUEST", 3), Registration(CARL, "GUEST", 4),
                   Registration(LU, "GUEST", 5)),
    attendees=(ANN, BOB, CARL, LU, ROOM), mailed_to=(ANN, BOB),
)
CANCEL = replace(BASE, method="CANCEL", sequence=2, conference_requested=False)


def cancel(*lines: Attendee, sequence: int = 2, **changes) -> Classification:
    return replace(CANCEL, attendees=lines, sequence=sequence, **changes)


CANCEL_ROWS = [
    # (name, CANCEL, stored record, envelope recipients, action, uninvited)
    ("sabre: attendee removed, the CANCEL lists only them",
     cancel(person(BOB)), MEETING, [BOB], Action.UNREGISTER, {BOB}),
    ("sabre: meeting deleted, first of the per-attendee CANCELs",
     cancel(person(ANN), sequence=3), MEETING, [ANN], Action.UNREGISTER, {ANN}),
    ("sabre: meeting deleted, the last per-attendee CANCEL; never-mailed attendees "
     "(SCHEDULE-AGENT=CLIENT, local users) keep nothing alive",
     cancel(person(BOB), sequence=3), replace(MEETING, cancel_sequence=3, cancelled_to=(ANN,)),
     [BOB], Action.CANCEL, set()),
    ("sabre: room removed, the CANCEL to the room",
     cancel(room(ROOM)), MEETING, [ROOM], Action.UNREGISTER, {ROOM}),
    ("sabre: deleted, the room's CANCEL after all people's never completes it alone",
     cancel(room(ROOM), sequence=3), replace(MEETING, mailed_to=(ANN,), cancel_sequence=3),
     [ROOM], Action.UNREGISTER, {ROOM}),
    ("SOGo: CANCEL to the removed person lists those who remain",
     cancel(person(ANN), room(ROOM)), MEETING, [BOB], Action.UNREGISTER, {BOB}),
    ("SOGo: CANCEL to the removed room lists the remaining attendee",
     cancel(person(ANN), person(BOB)), MEETING, [ROOM], Action.UNREGISTER, {ROOM}),
    ("SOGo: the last mailed person removed, the lines name who remains",
     cancel(room(ROOM)), replace(MEETING, mailed_to=(BOB,)), [BOB], Action.UNREGISTER, {BOB}),
    ("SOGo: meeting deleted, one CANCEL per attendee listing everyone",
     cancel(person(ANN), person(BOB), sequence=3),
     replace(MEETING, cancel_sequence=3, cancelled_to=(BOB,)), [ANN], Action.CANCEL, set()),
    ("addresses uninvited by an earlier SEQUENCE's CANCEL no longer count",
     cancel(person(ANN), sequence=4), replace(MEETING, cancel_sequence=2, cancelled_to=(BOB,)),
     [ANN], Action.CANCEL, set()),
    ("CANCELs of an earlier SEQUENCE do not add up with this one",
     cancel(person(ANN), sequence=4),
     replace(MEETING, mailed_to=(ANN, BOB, DAN), cancel_sequence=2, cancelled_to=(BOB,)),
     [ANN], Action.UNREGISTER, {ANN}),
    ("STATUS:CANCELLED to one attendee cancels the meeting",
     cancel(person(ANN), status="CANCELLED"), MEETING, [ANN], Action.CANCEL, set()),
    ("one CANCEL to everyone mailed",
     cancel(person(ANN), person(BOB)), MEETING, [ANN, BOB], Action.CANCEL, set()),
    ("removing an attendee never registered never deletes anything",
     cancel(person(DAN)), replace(MEETING, attendees=(ANN, BOB, DAN), mailed_to=(DAN,)),
     [DAN], Action.UNREGISTER, {DAN}),
    ("a list the MTA expanded: recipients not attendees, the lines decide",
     cancel(person("team@x.net")),
     replace(MEETING, attendees=(ANN, BOB, "team@x.net"), mailed_to=(ANN, BOB, "m1@x.net")),
     ["m1@x.net"], Action.UNREGISTER, {"team@x.net"}),
    ("a list the MTA expanded, cancelled to all its members",
     cancel(person("team@x.net")),
     replace(MEETING, attendees=("team@x.net",), mailed_to=("m1@x.net", "m2@x.net"),
             registrations=(Registration(ORG, "ADMIN", 1), Registration("team@x.net", "GUEST", 2))),
     ["m1@x.net", "m2@x.net"], Action.CANCEL, set()),
    ("a record from before the envelope was kept: a CANCEL to every registered attendee",
     cancel(person(ANN), person(BOB), person(CARL), person(LU)),
     replace(MEETING, mailed_to=(), attendees=()), [ANN, BOB, CARL, LU], Action.CANCEL, set()),
    ("a record from before the envelope was kept: a CANCEL to some",
     cancel(person(ANN)), replace(MEETING, mailed_to=(), attendees=()), [ANN],
     Action.UNREGISTER, {ANN}),
    ("a copy to the organizer alone uninvites nobody",
     cancel(person(ANN), person(BOB)), MEETING, [ORG], Action.UNREGISTER, set()),
    ("a CANCEL from someone else never acts",
     cancel(person(ANN), status="CANCELLED", from_organizer=False), MEETING, [ANN],
     Action.PASS, set()),
]


@pytest.mark.parametrize(("classification", "record", "rcpts", "expected", "uninvited"),
                         [row[1:] for row in CANCEL_ROWS], ids=[row[0] for row in CANCEL_ROWS])
def test_cancel_table(classification, record, rcpts, expected, uninvited):
    decision = decide(classification, record, rcpt_tos=rcpts)
    assert decision.action is expected, decision.reason
    assert decision.uninvited == uninvited


def test_cancels_of_one_sequence_add_up_and_are_stored():
    first = decide(cancel(person(ANN), sequence=3), MEETING, rcpt_tos=[ANN])
    assert first.bookkeeping == Bookkeeping(frozenset(MEETING.attendees), frozenset({ANN, BOB}),
                                            3, frozenset({ANN}))
    stored = replace(MEETING, **first.bookkeeping.as_fields())
    assert decide(cancel(person(BOB), sequence=3), stored, rcpt_tos=[BOB]).action is Action.CANCEL


def test_a_request_stores_its_recipients_except_the_organizer_and_rooms():
    request = replace(BASE, attendees=(person(ANN), person(BOB), room(ROOM)))
    book = after_request(request, ACTIVE, [ANN, BOB, ROOM, ORG])
    assert book == Bookkeeping(frozenset({ANN, BOB, ROOM}), frozenset({ANN, BOB}), None, frozenset())
    # one more REQUEST, to a new attendee only (sabre mails only the one added)
    stored = replace(ACTIVE, **book.as_fields())
    added = replace(BASE, attendees=(person(ANN), person(BOB), person(DAN), room(ROOM)))
    assert after_request(added, stored, [DAN]).mailed_to == {ANN, BOB, DAN}


def test_a_request_finishes_the_uninvitations_before_it():
    stored = replace(MEETING, cancel_sequence=2, cancelled_to=(BOB,))
    # BOB got a CANCEL, ANN the update; CARL is no longer listed either
    update = replace(BASE, sequence=3, attendees=(person(ANN), person(LU), room(ROOM)))
    book = after_request(update, stored, [ANN])
    assert book.mailed_to == {ANN} and book.cancel_sequence is None and not book.cancelled_to
    assert {BOB, CARL} <= book.attendees  # still known as attendees: a late CANCEL names them


def test_attendees_queued_for_registration_count_as_registered():
    # The meeting was cancelled before the background worker registered anyone.
    queued = replace(MEETING, registrations=(Registration(ORG, "ADMIN", 1),), mailed_to=(ANN,))
    last = cancel(person(ANN))
    assert decide(last, queued, rcpt_tos=[ANN]).action is Action.UNREGISTER
    decision = decide(last, queued, rcpt_tos=[ANN], queued=[ANN, BOB, CARL, LU])
    assert decision.action is Action.CANCEL, decision.reason
