"""Every lifecycle rule (the README's invitation table) end to end: real relay, fake Webinar server over HTTP,
real SQLite store, real next hop.  Each test checks what the next hop received and what
the fake platform holds."""

from __future__ import annotations

import asyncio
import email
import email.policy
from datetime import UTC, datetime, timedelta

from tests.support.fixtures import client_fixture
from tests.support.invites import invitation
from tests.support.product import Product, calendar_text, running_product, with_header
from webinar_proxy.store import ConferenceState

T0 = datetime(2022, 3, 1, 9, 0, tzinfo=UTC)
START = datetime(2022, 3, 16, 11, 0, tzinfo=UTC)
END = START + timedelta(minutes=30)
BOSS = "boss@example.org"
TRIGGER = b"X-Webinar-Conference: yes"


def invitations_delivered(product: Product) -> list[bytes]:
    """Delivered invitations, each as its decoded text/calendar part(s)."""
    return [calendar_text(m) for m in product.delivered() if b"text/calendar" in m]


def registered(product: Product) -> dict[str, str]:
    return {r["email"]: r["role"] for r in product.state()["registrations"]}


async def test_create_registers_people_and_rewrites_and_notifies_the_organizer(tmp_path):
    invite = invitation(
        start=START, end=END, chairs=("chair@example.net",), rooms=("room-7@example.org",)
    )
    async with running_product(tmp_path, T0) as product:
        code, text = await product.send(invite, BOSS, ["ann@example.net", "bob@example.net"])
        assert code == 250, text
        await product.hop.handler.wait_delivered(2)
        state = product.state()
        record = await product.services.store.get(BOSS, "scenario-1@example.org")
    [event] = state["events"]
    [session] = state["sessions"]
    assert event["name"] == "Planning" and event["isSeries"] is False
    assert session["startsAt"].startswith("2022-03-16T11:00")
    assert registered(product) == {
        BOSS: "ADMIN", "chair@example.net": "LECTURER",
        "ann@example.net": "GUEST", "bob@example.net": "GUEST",
    }  # the room is not a person
    assert state["letters"] == []  # sendEmail=false everywhere
    [invite_out] = invitations_delivered(product)
    notice = product.delivered()[1]
    assert b"CONFERENCE;VALUE=URI;FEATURE=AUDIO,VIDEO;LABEL=Webinar:" + event["link"].encode() in invite_out
    assert product.hop.handler.delivered[1].rcpt_tos == [BOSS]
    assert product.hop.handler.delivered[1].mail_from == "<>"  # null sender: never bounced
    parsed_notice = email.message_from_bytes(notice, policy=email.policy.default)
    assert parsed_notice["Auto-Submitted"] == "auto-generated"
    assert parsed_notice["Subject"] == "Конференция Webinar создана: Planning"
    assert event["link"] in parsed_notice.get_content()
    assert record is not None and record.state == ConferenceState.ACTIVE
    assert record.link == event["link"] and record.sequence == 0


async def test_the_same_invitation_three_times_makes_one_conference(tmp_path):
    invite = invitation(start=START, end=END)
    async with running_product(tmp_path, T0) as product:
        results = await asyncio.gather(*(
            product.send(invite, BOSS, [rcpt]) for rcpt in ("ann@example.net", "bob@example.net", "c@x.net")
        ))
        assert [code for code, _ in results] == [250, 250, 250]
        state = product.state()
    assert len(state["events"]) == 1 and len(state["sessions"]) == 1
    links = {m.split(b"LABEL=Webinar:")[1].split(b"\r\n")[0] for m in invitations_delivered(product)}
    assert links == {state["events"][0]["link"].encode()}


async def test_update_moves_the_conference_and_keeps_the_link(tmp_path):
    async with running_product(tmp_path, T0) as product:
        await product.send(invitation(start=START, end=END), BOSS, ["ann@example.net"])
        link = product.state()["events"][0]["link"]
        later = START + timedelta(days=1, hours=2)
        moved = invitation(start=later, end=later + timedelta(hours=1), sequence=1, summary="Planning v2")
        code, _ = await product.send(moved, BOSS, ["ann@example.net"])
        assert code == 250
        state = product.state()
    [event], [session] = state["events"], state["sessions"]
    assert event["link"] == link and event["name"] == "Planning v2"
    assert session["startsAt"].startswith("2022-03-17T13:00") and session["duration"] == "PT1H0M0S"
    assert link.encode() in invitations_delivered(product)[-1]


async def test_attendees_added_and_removed_follow_the_invitation(tmp_path):
    async with running_product(tmp_path, T0) as product:
        await product.send(invitation(start=START, end=END), BOSS, ["ann@example.net"])
        changed = invitation(
            start=START, end=END, sequence=1, attendees=("ann@example.net", "cid@example.net")
        )
        assert (await product.send(changed, BOSS, ["ann@example.net"]))[0] == 250
        people = registered(product)
    assert people == {BOSS: "ADMIN", "ann@example.net": "GUEST", "cid@example.net": "GUEST"}


async def test_lower_sequence_changes_nothing_on_the_platform(tmp_path):
    async with running_product(tmp_path, T0) as product:
        await product.send(invitation(start=START, end=END, sequence=3), BOSS, ["ann@example.net"])
        stale = invitation(start=START + timedelta(hours=5), end=END + timedelta(hours=5), sequence=2)
        assert (await product.send(stale, BOSS, ["ann@example.net"]))[0] == 250
        [session] = product.state()["sessions"]
        link = product.state()["events"][0]["link"]
    assert session["startsAt"].startswith("2022-03-16T11:00")
    assert link.encode() in invitations_delivered(product)[-1]


async def test_removing_the_keyword_deletes_the_conference(tmp_path):
    async with running_product(tmp_path, T0) as product:
        await product.send(invitation(start=START, end=END), BOSS, ["ann@example.net"])
        link = product.state()["events"][0]["link"].encode()
        without = invitation(start=START, end=END, sequence=1, location="Room 7")
        assert (await product.send(without, BOSS, ["ann@example.net"]))[0] == 250
        state = product.state()
        record = await product.services.store.get(BOSS, "scenario-1@example.org")
    assert state["events"] == [] and state["sessions"] == []
    assert link not in invitations_delivered(product)[-1]
    assert record is not None and record.state == ConferenceState.DELETED


async def test_removing_the_conference_from_a_mail_that_carries_our_link_strips_it(tmp_path):
    async with running_product(tmp_path, T0) as product:
        await product.send(invitation(start=START, end=END), BOSS, ["ann@example.net"])
        rewritten = invitations_delivered(product)[-1]
        link = product.state()["events"][0]["link"].encode()
        # The organizer's client resends what it got back, with the keyword and CONFERENCE
        # removed but our fenced block still in DESCRIPTION: that is still "our link" → kept.
        assert (await product.send(rewritten, BOSS, ["ann@example.net"]))[0] == 250
        assert len(product.state()["events"]) == 1
    assert link in invitations_delivered(product)[-1]


async def test_whole_cancel_deletes_the_conference(tmp_path):
    async with running_product(tmp_path, T0) as product:
        await product.send(invitation(start=START, end=END), BOSS, ["ann@example.net"])
        cancel = invitation(start=START, end=END, sequence=1, method="CANCEL", status="CANCELLED")
        code, _ = await product.send(cancel, BOSS, ["ann@example.net", "bob@example.net"])
        assert code == 250
        await product.hop.handler.wait_delivered(4)  # invite, notice, cancel, notice
        state = product.state()
    assert state["events"] == [] and state["sessions"] == []
    assert b"METHOD:CANCEL" in calendar_text(product.delivered()[2])


async def test_cancel_to_a_removed_attendee_only_unregisters_them(tmp_path):
    async with running_product(tmp_path, T0) as product:
        await product.send(invitation(start=START, end=END), BOSS, ["ann@example.net", "bob@example.net"])
        cancel = invitation(start=START, end=END, sequence=1, method="CANCEL", attendees=("bob@example.net",))
        assert (await product.send(cancel, BOSS, ["bob@example.net"]))[0] == 250
        state = product.state()
    assert len(state["events"]) == 1
    assert registered(product) == {BOSS: "ADMIN", "ann@example.net": "GUEST"}


async def test_reply_from_an_attendee_changes_nothing(tmp_path):
    async with running_product(tmp_path, T0) as product:
        await product.send(invitation(start=START, end=END), BOSS, ["ann@example.net"])
        before = product.state()
        reply = invitation(start=START, end=END, method="REPLY", attendees=("ann@example.net",),
                           from_address="ann@example.net").replace(
            b"RSVP=TRUE:", b"PARTSTAT=DECLINED:")
        assert (await product.send(reply, "ann@example.net", [BOSS]))[0] == 250
        assert product.state()["events"] == before["events"]
        assert product.delivered()[-1] == reply  # forwarded untouched


async def test_forwarded_by_an_attendee_gets_the_stored_link_and_creates_nothing(tmp_path):
    async with running_product(tmp_path, T0) as product:
        await product.send(invitation(start=START, end=END), BOSS, ["ann@example.net"])
        link = product.state()["events"][0]["link"].encode()
        forwarded = invitation(start=START, end=END, from_address="ann@example.net")
        assert (await product.send(forwarded, "ann@example.net", ["zed@example.com"]))[0] == 250
        # an attendee's CANCEL must not delete anything either
        cancel = invitation(start=START, end=END, method="CANCEL", status="CANCELLED",
                            from_address="ann@example.net")
        assert (await product.send(cancel, "ann@example.net", ["zed@example.com"]))[0] == 250
        state = product.state()
    assert len(state["events"]) == 1
    assert link in invitations_delivered(product)[-2]


async def test_an_organizer_outside_the_served_domains_is_passed_through(tmp_path):
    invite = invitation(start=START, end=END)
    async with running_product(tmp_path, T0, policy={"organizer_domains": ["corp.example"]}) as product:
        assert (await product.send(invite, BOSS, ["ann@example.net"]))[0] == 250
        assert product.state()["events"] == []
    assert product.delivered() == [invite]


async def test_recurring_series_books_the_next_occurrence_and_rolls_forward(tmp_path):
    daily = invitation(start=START, end=END, rrule="FREQ=DAILY;COUNT=3")
    async with running_product(tmp_path, T0) as product:
        assert (await product.send(daily, BOSS, ["ann@example.net"]))[0] == 250
        [event] = product.state()["events"]
        assert event["isSeries"] is True
        # the first occurrence ends; the scheduler books the second without any mail
        product.clock.now = END + timedelta(minutes=1)
        report = await product.services.scheduler.run_once(product.clock.now)
        [session] = product.state()["sessions"]
        assert report.rolled == 1
        assert session["startsAt"].startswith("2022-03-17T11:00")
        # the link written into the invitation is the series event's link, still valid
        assert product.state()["events"][0]["link"] == event["link"]


async def test_cancelling_the_booked_occurrence_moves_to_the_next(tmp_path):
    daily = invitation(start=START, end=END, rrule="FREQ=DAILY;COUNT=3")
    async with running_product(tmp_path, T0) as product:
        await product.send(daily, BOSS, ["ann@example.net"])
        one = invitation(start=START, end=END, method="CANCEL", status="CANCELLED", sequence=1,
                         recurrence_id=START)
        assert (await product.send(one, BOSS, ["ann@example.net"]))[0] == 250
        state = product.state()
    assert len(state["events"]) == 1
    assert state["sessions"][0]["startsAt"].startswith("2022-03-17T11:00")


async def test_api_down_gives_451_then_the_retry_makes_exactly_one_conference(tmp_path):
    invite = invitation(start=START, end=END)
    async with running_product(tmp_path, T0, call_deadline=1.0) as product:
        product.fake.add_fault("500", times=None, path="/events/*/sessions")
        code, text = await product.send(invite, BOSS, ["ann@example.net"])
        assert code == 451, text
        assert product.delivered() == []
        product.fake.clear_faults()
        code, text = await product.send(invite, BOSS, ["ann@example.net"])
        assert code == 250, text
        state = product.state()
    assert len(state["events"]) == 1 and len(state["sessions"]) == 1
    assert state["events"][0]["link"].encode() in product.delivered()[0]


async def test_delete_while_the_api_is_down_is_done_later_by_the_scheduler(tmp_path):
    async with running_product(tmp_path, T0, call_deadline=1.0) as product:
        await product.send(invitation(start=START, end=END), BOSS, ["ann@example.net"])
        product.fake.add_fault("500", times=None, path="/eventsessions/*")
        cancel = invitation(start=START, end=END, sequence=1, method="CANCEL", status="CANCELLED")
        assert (await product.send(cancel, BOSS, ["ann@example.net"]))[0] == 250
        assert any(b"METHOD:CANCEL" in calendar_text(m) for m in product.delivered())
        record = await product.services.store.get(BOSS, "scenario-1@example.org")
        assert record is not None and record.state == ConferenceState.PENDING_DELETE
        assert len(product.state()["events"]) == 1
        product.fake.clear_faults()
        report = await product.services.scheduler.run_once(T0 + timedelta(hours=2))
        record = await product.services.store.get(BOSS, "scenario-1@example.org")
        state = product.state()
    assert report.deleted == 1
    assert state["events"] == [] and record is not None and record.state == ConferenceState.DELETED


async def test_api_failure_in_deliver_mode_delivers_without_link_and_tells_the_organizer(tmp_path):
    invite = invitation(start=START, end=END)
    async with running_product(tmp_path, T0, call_deadline=0.5,
                               policy={"on_api_failure": "deliver"}) as product:
        product.fake.add_fault("500", times=None)
        assert (await product.send(invite, BOSS, ["ann@example.net"]))[0] == 250
        await product.hop.handler.wait_delivered(2)
    assert product.delivered()[0] == invite
    assert product.hop.handler.delivered[1].rcpt_tos == [BOSS]


async def test_attendees_over_the_limit_are_not_registered_and_the_organizer_is_told(tmp_path):
    many = tuple(f"p{n}@example.net" for n in range(5))
    async with running_product(tmp_path, T0, policy={"max_attendees": 3, "language": "en"}) as product:
        big = invitation(start=START, end=END, attendees=many)
        assert (await product.send(big, BOSS, [many[0]]))[0] == 250
        await product.hop.handler.wait_delivered(2)
        people = registered(product)
    # The limit counts attendees: the organizer comes on top.
    assert people == {BOSS: "ADMIN", "p0@example.net": "GUEST", "p1@example.net": "GUEST",
                      "p2@example.net": "GUEST"}
    notice = product.hop.handler.delivered[1]
    assert notice.rcpt_tos == [BOSS]
    text = email.message_from_bytes(notice.content, policy=email.policy.default).get_body(
        ("plain",)).get_content()
    assert "more attendees than the platform allows (3): 2 were not registered" in text
    assert "p3@example.net\r\np4@example.net" in text


async def test_thunderbird_sequence_create_move_cancel(tmp_path):
    def tb(name: str) -> bytes:
        return with_header(client_fixture(f"thunderbird__{name}.eml"), TRIGGER)

    async with running_product(tmp_path, datetime(2031, 2, 1, tzinfo=UTC)) as product:
        organizer = "irina.sokolova@example.com"
        rcpts = ["pavel@example.net", "marta@example.org"]
        assert (await product.send(tb("single-event"), organizer, rcpts))[0] == 250
        link = product.state()["events"][0]["link"].encode()
        names = {r["email"]: r["name"] for r in product.state()["registrations"]}
        assert names["pavel@example.net"] == "Pavel Orlov"  # the attendee's CN
        assert (await product.send(tb("update-major"), organizer, rcpts))[0] == 250
        # moved from 10:00 to 14:00 Europe/Moscow (UTC+3)
        assert product.state()["sessions"][0]["startsAt"].startswith("2031-03-12T11:00")
        assert link in invitations_delivered(product)[-1]
        assert (await product.send(tb("cancel-single-event"), organizer, rcpts))[0] == 250
        assert product.state()["events"] == []


async def test_outlook_and_gmail_invitations_get_a_conference(tmp_path):
    outlook = with_header(client_fixture("exchange__online-request-base64.eml"), TRIGGER)
    gmail = with_header(client_fixture("gmail__request.eml"), TRIGGER)
    async with running_product(tmp_path, datetime(2031, 1, 1, tzinfo=UTC)) as product:
        code, _ = await product.send(outlook, "olena.kovalenko@example.org", ["taras@example.org"])
        assert code == 250
        code, _ = await product.send(gmail, "alice.weber@example.org",
                                     ["bob.krause@example.org", "carla@example.net"])
        assert code == 250
        state = product.state()
    assert len(state["events"]) == 2
    outlook_out, gmail_out = invitations_delivered(product)
    assert state["events"][0]["link"].encode() in outlook_out
    assert state["events"][1]["link"].encode() in gmail_out


async def test_a_meeting_whose_only_occurrence_has_ended_gets_no_conference(tmp_path, caplog):
    # The conference is booked for the nearest upcoming occurrence; there is none, so
    # the invitation goes as it is, however it asks for a conference.
    invite = with_header(invitation(start=START, end=END), TRIGGER)
    caplog.set_level("INFO", logger="webinar_proxy.lifecycle")
    async with running_product(tmp_path, END + timedelta(days=1)) as product:
        code, text = await product.send(invite, BOSS, ["ann@example.net"])
        assert code == 250, text
        await product.hop.handler.wait_delivered(1)
        state = product.state()
        record = await product.services.store.get(BOSS, "scenario-1@example.org")
    assert state["events"] == [] and state["sessions"] == []
    assert record is None
    assert product.delivered() == [invite]  # forwarded byte for byte, no organizer notice
    assert "no occurrence is upcoming" in caplog.text


async def test_the_retry_after_a_failed_creation_is_logged_as_what_it_is(tmp_path, caplog):
    invite = invitation(start=START, end=END)
    caplog.set_level("INFO", logger="webinar_proxy.lifecycle")
    async with running_product(tmp_path, T0) as product:
        product.fake.add_fault("500", path="/events/*/sessions", method="POST")
        code, _ = await product.send(invite, BOSS, ["ann@example.net"])
        assert code == 451  # the event exists, its session does not: stored as creating
        record = await product.services.store.get(BOSS, "scenario-1@example.org")
        assert record is not None and record.state == ConferenceState.CREATING
        caplog.clear()
        code, text = await product.send(invite, BOSS, ["ann@example.net"])
        assert code == 250, text
        state = product.state()
    assert len(state["events"]) == 1 and len(state["sessions"]) == 1
    assert "action=ensure (conference requested; an earlier attempt did not finish it)" in caplog.text
    assert "update of a meeting with a conference" not in caplog.text
