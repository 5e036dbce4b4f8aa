"""The Webinar API misbehaving: 500 and 429 storms, hangs, connection resets, garbled
JSON.  While it lasts an invitation that asks for a conference gets 451 (never 5xx,
never delivered without its link); after it, the retry gets exactly one conference.
With ``policy.on_api_failure = "deliver"`` it goes out without a link and the
organizer is told.  A hanging API answers within ``smtp.deadline_seconds``.

The whole product runs in the test's loop (``running_product``): real relay, real
SQLite store, the fake API over HTTP, a recording next hop.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.support.invites import invitation
from tests.support.product import Product, running_product
from webinar_proxy.store import ConferenceState

T0 = datetime(2022, 3, 1, 9, 0, tzinfo=UTC)
START = datetime(2022, 3, 16, 11, 0, tzinfo=UTC)
INVITE = invitation(start=START, end=START + timedelta(minutes=30))
UID = "scenario-1@example.org"
BOSS = "boss@example.org"
KINDS = ("500", "429", "hang", "drop", "bad_json")
#: every call, or only the session after the event was created
WHERE = {"all calls": None, "session after event": "/events/*/sessions"}


async def timed_send(product: Product) -> tuple[int, str, float]:
    started = time.monotonic()
    code, text = await product.send(INVITE, BOSS, ["ann@example.net"])
    return code, text, time.monotonic() - started


async def assert_one_conference_delivered(product: Product) -> None:
    state = product.state()
    assert len(state["events"]) == 1 and len(state["sessions"]) == 1
    [event] = state["events"]
    await product.hop.handler.wait_delivered(1)
    invitations = [m for m in product.delivered() if b"text/calendar" in m]
    assert len(invitations) == 1 and event["link"].encode() in invitations[0]
    record = await product.services.store.get(BOSS, UID)
    assert record is not None and record.state == ConferenceState.ACTIVE
    assert record.event_id == event["eventId"]


@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize("kind", KINDS)
async def test_storm_gives_451_while_it_lasts_and_one_conference_after(tmp_path, kind, where):
    async with running_product(tmp_path, T0, call_deadline=1.0) as product:
        product.fake.add_fault(kind, times=None, path=WHERE[where])
        for _ in range(2):  # the MTA retrying during the storm
            code, text, _elapsed = await timed_send(product)
            assert code == 451 and text.startswith("4."), (code, text)
        assert product.delivered() == []  # never without the link it asked for
        if WHERE[where] is not None:  # the event was made once and is continued, not remade
            assert len(product.state()["events"]) == 1
        product.fake.clear_faults()
        code, text, _elapsed = await timed_send(product)
        assert code == 250, text
        await assert_one_conference_delivered(product)


async def test_429_with_a_short_retry_after_is_waited_out_within_the_call(tmp_path):
    async with running_product(tmp_path, T0, call_deadline=5.0) as product:
        product.fake.add_fault("429", times=3, path="/events", retry_after=0.2)
        code, text, _ = await timed_send(product)
        assert code == 250, text
        await assert_one_conference_delivered(product)
        assert [r.status for r in product.fake.requests if r.path == "/events"] == [429, 429, 429, 201]


async def test_429_with_a_retry_after_beyond_the_deadline_gives_451_at_once_for_every_mail(tmp_path):
    async with running_product(tmp_path, T0, call_deadline=3.0) as product:
        product.fake.add_fault("429", times=None, path="/events", retry_after=120)
        code, text, elapsed = await timed_send(product)
        assert code == 451, text
        # one attempt: waiting 120 s cannot fit the 3 s budget, so the client stops
        assert [r.status for r in product.fake.requests if r.path == "/events"] == [429]
        assert elapsed < 3.0
        # The pause is the key's, not the call's: the next mail does not call either.
        product.fake.clear_faults()
        calls = len(product.fake.requests)
        assert (await timed_send(product))[0] == 451
        assert len(product.fake.requests) == calls


@pytest.mark.parametrize("where", WHERE)
async def test_hanging_api_gives_451_within_the_smtp_deadline(tmp_path, where):
    # call_deadline far above the SMTP deadline: only the message deadline can cut in.
    async with running_product(
        tmp_path, T0, call_deadline=60.0, smtp={"deadline_seconds": 1.5}
    ) as product:
        product.fake.add_fault("hang", times=None, path=WHERE[where])
        code, text, elapsed = await timed_send(product)
        # the pipeline stops waiting for the platform at 60 % of the time left, so the
        # answer is its own 451 in time, never the 60 s call budget
        assert code == 451 and text.startswith("4.3.0"), text
        assert elapsed < 1.5 + 5, elapsed
        assert product.delivered() == []
        product.fake.clear_faults()
        code, text, _ = await timed_send(product)
        assert code == 250, text
        await assert_one_conference_delivered(product)


async def test_deliver_policy_delivers_in_time_even_when_the_call_budget_exceeds_the_deadline(tmp_path):
    async with running_product(
        tmp_path, T0, call_deadline=60.0, smtp={"deadline_seconds": 1.5},
        policy={"on_api_failure": "deliver"},
    ) as product:
        product.fake.add_fault("hang", times=None)
        code, text, elapsed = await timed_send(product)
        assert code == 250, text
        assert elapsed < 1.5 + 5, elapsed
        await product.hop.handler.wait_delivered(2)
    assert product.hop.handler.delivered[0].content == INVITE


@pytest.mark.parametrize("kind", KINDS)
async def test_deliver_policy_sends_without_link_and_tells_the_organizer(tmp_path, kind):
    async with running_product(
        tmp_path, T0, call_deadline=0.5, policy={"on_api_failure": "deliver"}
    ) as product:
        product.fake.add_fault(kind, times=None)
        code, text, _ = await timed_send(product)
        assert code == 250, text
        await product.hop.handler.wait_delivered(2)
        invite, notice = product.hop.handler.delivered
    assert invite.content == INVITE  # unchanged: no link was made
    assert notice.rcpt_tos == [BOSS] and notice.mail_from == "<>"
    assert product.state()["events"] == []
