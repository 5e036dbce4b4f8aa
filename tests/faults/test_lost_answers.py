"""The platform carries a create out and its answer is lost (``drop_after``,
``500_after``, ``hang_after`` cut by the message deadline): the event exists but the
relay never learnt its id.  The marker in the event's description finds it, so the
retry still ends with exactly one conference, and the scheduler removes what an
abandoned attempt left.

The whole product runs in the test's loop (``running_product``): real relay, real
SQLite store, the fake API over HTTP, a recording next hop.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from tests.support.invites import invitation
from tests.support.product import Product, running_product
from webinar_proxy.lifecycle.conferences import creation_marker
from webinar_proxy.store import ConferenceState

T0 = datetime(2022, 3, 1, 9, 0, tzinfo=UTC)
START = datetime(2022, 3, 16, 11, 0, tzinfo=UTC)
INVITE = invitation(start=START, end=START + timedelta(minutes=30))
UID = "scenario-1@example.org"
BOSS = "boss@example.org"
ANN = "ann@example.net"


def calls(product: Product, method: str, pattern: str) -> list[int | None]:
    return [r.status for r in product.fake.requests
            if r.method == method and re.fullmatch(pattern, r.path)]


async def assert_one_conference_delivered(product: Product, copies: int = 1) -> dict:
    state = product.state()
    assert len(state["events"]) == 1 and len(state["sessions"]) == 1, state["events"]
    [event] = state["events"]
    assert event["description"] == creation_marker(BOSS, UID)
    await product.hop.handler.wait_delivered(copies)
    invitations = [m for m in product.delivered() if b"text/calendar" in m]
    assert len(invitations) == copies and event["link"].encode() in invitations[-1]
    record = await product.services.store.get(BOSS, UID)
    assert record is not None and record.state == ConferenceState.ACTIVE
    assert record.event_id == event["eventId"] and record.link == event["link"]
    return event


@pytest.mark.parametrize("kind", ["drop_after", "500_after"])
async def test_answer_lost_once_the_event_made_is_found_and_replaced_in_the_same_attempt(tmp_path, kind):
    async with running_product(tmp_path, T0) as product:
        product.fake.add_fault(kind, times=1, path="/events", method="POST")
        code, text = await product.send(INVITE, BOSS, [ANN])
        assert code == 250, text
        event = await assert_one_conference_delivered(product)
        # the first event (answer lost) was found by its marker and deleted, then one more made
        assert calls(product, "POST", "/events") == [500 if kind == "500_after" else 502, 201]
        assert calls(product, "DELETE", r"/organization/events/\d+") == [204]
        assert event["eventId"] != 4100001


@pytest.mark.parametrize("kind", ["drop_after", "500_after"])
async def test_answer_lost_on_every_try_gives_451_and_the_mta_retry_ends_with_one_event(tmp_path, kind):
    async with running_product(tmp_path, T0) as product:
        product.fake.add_fault(kind, times=None, path="/events", method="POST")
        code, text = await product.send(INVITE, BOSS, [ANN])
        assert code == 451 and text.startswith("4."), (code, text)
        assert product.delivered() == []
        [left] = product.state()["events"]  # the second try's event; the first one was deleted
        record = await product.services.store.get(BOSS, UID)
        assert record is not None and record.state == ConferenceState.CREATING
        assert record.event_id is None and record.booked_start == START

        product.fake.clear_faults()
        code, text = await product.send(INVITE, BOSS, [ANN])  # the MTA's retry
        assert code == 250, text
        event = await assert_one_conference_delivered(product)
    assert event["eventId"] != left["eventId"]  # the unrecorded one was replaced, not kept


async def test_create_cut_by_the_deadline_after_the_platform_made_it_leaves_one_event(tmp_path):
    # hang_after: the platform makes the event and holds the answer; the message
    # deadline cuts the call (the relay never learns the id) and answers 451.
    async with running_product(tmp_path, T0, call_deadline=60.0, smtp={"deadline_seconds": 1.5}) as product:
        product.fake.add_fault("hang_after", times=1, path="/events", method="POST")
        code, text = await product.send(INVITE, BOSS, [ANN])
        assert code == 451, text
        assert len(product.state()["events"]) == 1
        record = await product.services.store.get(BOSS, UID)
        assert record is not None and record.state == ConferenceState.CREATING and record.event_id is None

        code, text = await product.send(INVITE, BOSS, [ANN])
        assert code == 250, text
        await assert_one_conference_delivered(product)


async def test_session_answer_lost_the_session_made_is_taken_over(tmp_path):
    async with running_product(tmp_path, T0) as product:
        product.fake.add_fault("drop_after", times=1, path="/events/*/sessions", method="POST")
        code, text = await product.send(INVITE, BOSS, [ANN])
        assert code == 250, text
        await assert_one_conference_delivered(product)
        assert len(calls(product, "POST", r"/events/\d+/sessions")) == 1  # read, not made twice
        record = await product.services.store.get(BOSS, UID)
        assert record is not None and record.session_id == product.state()["sessions"][0]["eventSessionId"]


async def test_session_answer_lost_and_never_read_the_retry_takes_the_409_session_over(tmp_path):
    async with running_product(tmp_path, T0) as product:
        product.fake.add_fault("drop_after", times=1, path="/events/*/sessions", method="POST")
        product.fake.add_fault("500", times=None, path="/organization/events/*", method="GET")
        code, _ = await product.send(INVITE, BOSS, [ANN])
        assert code == 451
        product.fake.clear_faults()
        code, text = await product.send(INVITE, BOSS, [ANN])
        assert code == 250, text
        await assert_one_conference_delivered(product)
        assert calls(product, "POST", r"/events/\d+/sessions") == [502, 409]


async def test_a_stale_creating_row_without_event_id_is_cleaned_up_by_one_scheduler_pass(tmp_path):
    async with running_product(tmp_path, T0) as product:
        product.fake.add_fault("drop_after", times=None, path="/events", method="POST")
        assert (await product.send(INVITE, BOSS, [ANN]))[0] == 451
        product.fake.clear_faults()
        assert len(product.state()["events"]) == 1  # and the MTA gives up: nobody retries
        stale = product.settings.scheduler.stale_creating_seconds
        report = await product.services.scheduler.run_once(datetime.now(UTC) + timedelta(seconds=stale + 1))
        assert report.orphans == 1
        assert product.state()["events"] == []
        # marked deleted at the product's clock (2022), so the same pass purged the row too
        assert report.purged == 1 and await product.services.store.get(BOSS, UID) is None
