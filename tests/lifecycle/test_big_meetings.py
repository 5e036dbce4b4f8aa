"""Big meetings: the reply waits only for the link; attendees are registered in the
background, batch by batch, durably (a relay killed mid-way leaves the rest to the next).
"""

from __future__ import annotations

import asyncio
import collections
import email
import email.policy
import signal
from datetime import UTC, datetime, timedelta

import pytest

from tests.support.invites import invitation
from tests.support.product import TOKEN, running_product
from tests.support.serve import running_serve
from tests.support.smtp import running_next_hop, send_one
from tests.support.waiting import eventually
from webinar_proxy.store import ConferenceState, open_store
from webinar_proxy.testing.fake_webinar import running_fake_webinar
from webinar_proxy.webinar.pacing import in_background

T0 = datetime(2030, 6, 1, 8, tzinfo=UTC)
START = datetime(2030, 6, 3, 9, tzinfo=UTC)
END = START + timedelta(hours=1)
BOSS = "boss@example.org"


def _people(count: int) -> tuple[str, ...]:
    return tuple(f"person{n:05d}@example.net" for n in range(count))


def _plain(message: bytes) -> str:
    parsed = email.message_from_bytes(message, policy=email.policy.default)
    return parsed.get_body(("plain",)).get_content()


async def test_a_big_meeting_is_answered_with_the_link_before_anyone_is_registered(tmp_path):
    people = _people(300)
    async with running_product(tmp_path, T0, policy={"language": "en"}) as product:
        product.drain = False  # no worker runs until the test says so
        big = invitation(start=START, end=END, attendees=people, to="All <all@example.net>")
        code, text = await product.send(big, BOSS, [people[0]])
        assert code == 250, text
        await product.hop.handler.wait_delivered(2)
        [event] = product.state()["events"]
        assert event["link"].encode() in product.hop.handler.delivered[0].content.replace(b"\r\n ", b"")
        assert product.state()["registrations"] == []
        # The mail needed the event and its session; no registration call was made.
        assert not [r for r in product.fake.requests if r.path.endswith(("/invite", "/register"))]
        notice = _plain(product.hop.handler.delivered[1].content)
        assert "0 of 300 registered so far" in notice
        assert event["link"] in notice
        store = product.services.store
        assert await store.registration_counts(BOSS, "scenario-1@example.org") == {
            "add": 301, "remove": 0}

        await product.services.registrations.drain()
        registered = collections.Counter(r["email"] for r in product.state()["registrations"])
        invites = [r for r in product.fake.requests if r.path.endswith("/invite")]
        assert await store.registration_counts(BOSS, "scenario-1@example.org") == {
            "add": 0, "remove": 0}
    assert set(registered) == {BOSS, *people} and set(registered.values()) == {1}
    assert len(invites) == 7  # 301 people, 50 per call


async def test_an_uninvited_attendee_still_queued_is_never_registered(tmp_path):
    people = _people(3)
    async with running_product(tmp_path, T0) as product:
        product.drain = False
        assert (await product.send(invitation(start=START, end=END, attendees=people),
                                   BOSS, list(people)))[0] == 250
        fewer = invitation(start=START, end=END, attendees=people[:2], sequence=1)
        assert (await product.send(fewer, BOSS, list(people[:2])))[0] == 250
        await product.services.registrations.drain()
        emails = sorted(r["email"] for r in product.state()["registrations"])
        removes = [r for r in product.fake.requests if r.path == "/participations/delete"]
    assert emails == sorted([BOSS, *people[:2]])
    assert removes == []  # never registered, so nothing to take back


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_registration_resumes_after_the_relay_is_killed(tmp_path, backend, request):
    """SIGKILL the real ``serve`` mid-registration; a new one finishes the work:
    every attendee registered exactly once."""
    store_url = (f"sqlite:///{tmp_path}/state.db" if backend == "sqlite"
                 else request.getfixturevalue("pg_url"))
    people = _people(600)
    async with running_fake_webinar(token=TOKEN, rate_limit=8) as fake, running_next_hop() as hop:
        env = {
            "WEBINAR_PROXY_SMTP__LISTEN": "127.0.0.1:0",
            "WEBINAR_PROXY_SMTP__NEXT_HOP": f"127.0.0.1:{hop.port}",
            "WEBINAR_PROXY_WEBINAR__TOKEN": TOKEN,
            "WEBINAR_PROXY_WEBINAR__API_URL": fake.api_url,
            "WEBINAR_PROXY_WEBINAR__RATE_LIMIT": "7",
            "WEBINAR_PROXY_STORE__URL": store_url,
            "WEBINAR_PROXY_POLICY__ORGANIZER_DOMAINS": "example.org",
            "WEBINAR_PROXY_SCHEDULER__REGISTRATION_LEASE_SECONDS": "1",
        }
        big = invitation(start=START + timedelta(days=3650), end=END + timedelta(days=3650),
                         attendees=people, to="All <all@example.net>")

        def invite_calls() -> list:
            return [r for r in fake.requests if r.path.endswith("/invite") and r.status == 200]

        async def calls() -> list:
            return invite_calls()

        async with running_serve(env) as serve:
            assert await send_one(serve.smtp_port, big, BOSS, (people[0],)) == 250
            await eventually(calls, lambda done: len(done) >= 3)
            serve.process.send_signal(signal.SIGKILL)
            await serve.process.wait()
        before = len(fake.state()["registrations"])
        assert 0 < before < len(people) + 1, "killed before or after the registration"

        async with running_serve(env):
            async def state() -> dict:
                return fake.state()

            await eventually(state, lambda s: len(s["registrations"]) >= len(people) + 1, within=60)

        registered = collections.Counter(r["email"] for r in fake.state()["registrations"])
        sent = collections.Counter(u["email"] for r in invite_calls() for u in r.form["users"])
    assert set(registered) == {BOSS, *people}
    assert set(registered.values()) == {1}
    # Each attendee was sent once, bar the one batch that may have been in flight at the kill.
    assert sum(count - 1 for count in sent.values()) <= 50
    store = await open_store(store_url)
    try:
        [record] = await store.find_by_uid("scenario-1@example.org")
        assert record.state == ConferenceState.ACTIVE
        assert len(record.registrations) == len(people) + 1
        assert await store.registration_counts(BOSS, record.uid) == {"add": 0, "remove": 0}
    finally:
        await store.close()


async def test_a_cancel_before_the_attendees_are_registered_still_deletes_the_conference(tmp_path):
    people = ("ann@example.net", "bob@example.net")
    async with running_product(tmp_path, T0) as product:
        product.drain = False  # the attendees stay queued
        assert (await product.send(invitation(start=START, end=END, attendees=people),
                                   BOSS, list(people)))[0] == 250
        assert product.state()["registrations"] == []
        # One CANCEL per attendee, as sabre/dav sends them: no STATUS:CANCELLED.
        for person in people:
            cancel = invitation(start=START, end=END, attendees=(person,), method="CANCEL",
                                sequence=1)
            assert (await product.send(cancel, BOSS, [person]))[0] == 250
        assert product.state()["events"] == []
        assert await product.services.store.registration_counts(
            BOSS, "scenario-1@example.org") == {"add": 0, "remove": 0}


class GatedPace:
    """A pace that admits mail's calls at once and holds background calls at a gate."""

    rate = 2.0

    def __init__(self) -> None:
        self.background_waiting = asyncio.Event()
        self.gate = asyncio.Event()

    async def reserve(self, deadline: float | None = None) -> float:
        if in_background():
            self.background_waiting.set()
            await self.gate.wait()
        return 0.0

    async def acquire(self, deadline: float | None = None) -> None:
        await self.reserve(deadline)

    async def push_back(self, seconds: float) -> None:
        pass


async def test_a_registration_waiting_for_the_pace_does_not_hold_up_mail_about_its_meeting(tmp_path):
    people = _people(3)
    pace = GatedPace()
    async with running_product(tmp_path, T0, client_options={"pace": pace}) as product:
        product.drain = False
        assert (await product.send(invitation(start=START, end=END, attendees=people),
                                   BOSS, list(people)))[0] == 250
        worker = asyncio.create_task(product.services.registrations.run_once())
        async with asyncio.timeout(20):
            await pace.background_waiting.wait()
        # The organizer moves the meeting while the batch waits for a request slot.
        moved = invitation(start=START + timedelta(hours=2), end=END + timedelta(hours=2),
                           attendees=people, sequence=1)
        async with asyncio.timeout(20):
            code, text = await product.send(moved, BOSS, list(people))
        assert code == 250, text
        assert not worker.done()
        assert not [r for r in product.fake.requests if r.path.endswith("/invite")]
        pace.gate.set()
        assert await worker
        registered = sorted(r["email"] for r in product.state()["registrations"])
    assert registered == sorted([BOSS, *people])
