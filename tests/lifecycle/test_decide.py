"""The README's invitation table, row by row, on the pure decision function."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from webinar_proxy.calendar import Attendee
from webinar_proxy.calendar.occurrences import Occurrence
from webinar_proxy.engine import Classification
from webinar_proxy.lifecycle.decide import Action, decide, is_served
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
