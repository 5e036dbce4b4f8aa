"""SIGKILL of the real ``webinar-proxy serve`` at each step of an invitation, then a
restart and the MTA's retry (the same mail again): delivered once, one conference,
no orphan on the platform (or the scheduler removes it).

Each kill happens at a deterministic point: the fake Webinar API hangs the call
after the step (or the next hop holds its reply to DATA) and the test kills the
relay while it waits there, seen on the fake's request log or the next hop's state.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.faults.helpers import (
    TOKEN,
    invitations,
    live,
    meeting,
    relay_env,
    requested,
    serve,
    stored,
    wait_until,
)
from tests.support.smtp import NextHopBehaviour, running_next_hop
from webinar_proxy.settings import SchedulerSettings, Settings, StoreSettings, WebinarSettings
from webinar_proxy.store import ConferenceState
from webinar_proxy.testing.fake_webinar import running_fake_webinar
from webinar_proxy.wiring import open_services


async def test_killed_after_the_event_was_created_the_retry_finishes_the_same_conference(tmp_path: Path):
    uid = "kill-after-event@example.org"
    url = f"sqlite:///{tmp_path}/state.db"
    invite = meeting(uid)
    async with running_fake_webinar(token=TOKEN) as fake, running_next_hop() as hop:
        env = relay_env(next_hop_port=hop.port, api_url=fake.api_url, store_url=url)
        fake.add_fault("hang", path="/events/*/sessions", method="POST")
        with serve(env) as relay:
            attempt = asyncio.ensure_future(relay.send(invite))
            await wait_until(lambda: requested(fake, "POST", r"/events/\d+/sessions"), "the session call")
            relay.kill()
            assert await attempt == 0  # no reply at all: the MTA keeps the mail
        [event_id], sessions = live(fake)
        assert sessions == []
        record = await stored(url, uid)
        assert record is not None and record.state == ConferenceState.CREATING
        assert record.event_id == event_id and record.session_id is None

        with serve(env) as relay:
            assert await relay.send(invite) == 250
            await hop.handler.wait_delivered(2)  # the invitation and the organizer's notice
        events, sessions = live(fake)
        link = fake.state()["events"][0]["link"]
    assert events == [event_id] and len(sessions) == 1  # continued, not created again
    [copy] = invitations(hop.handler.delivered)
    assert link.encode() in copy.content
    record = await stored(url, uid)
    assert record is not None and record.state == ConferenceState.ACTIVE and record.link == link


async def test_killed_after_the_event_was_created_and_never_retried_the_scheduler_removes_it(
    tmp_path: Path,
):
    uid = "kill-orphan@example.org"
    url = f"sqlite:///{tmp_path}/state.db"
    invite = meeting(uid)
    async with running_fake_webinar(token=TOKEN) as fake, running_next_hop() as hop:
        env = relay_env(next_hop_port=hop.port, api_url=fake.api_url, store_url=url)
        fake.add_fault("hang", path="/events/*/sessions", method="POST")
        with serve(env) as relay:
            attempt = asyncio.ensure_future(relay.send(invite))
            await wait_until(lambda: requested(fake, "POST", r"/events/\d+/sessions"), "the session call")
            relay.kill()
            assert await attempt == 0
        assert len(live(fake)[0]) == 1

        # The MTA gave up: the scheduler pass (on the same SQLite file, clock moved past
        # scheduler.stale_creating_seconds) deletes what the interrupted creation left.
        settings = Settings(
            webinar=WebinarSettings(api_url=fake.api_url, token=TOKEN, rate_limit=1000),
            store=StoreSettings(url=url),
            scheduler=SchedulerSettings(stale_creating_seconds=3600),
        )
        async with open_services(settings) as services:
            report = await services.scheduler.run_once(datetime.now(UTC) + timedelta(seconds=3601))
        assert report.orphans == 1
        assert live(fake) == ([], [])
        record = await stored(url, uid)
        assert record is not None and record.state == ConferenceState.DELETED

        # A late retry after all gets a fresh conference, exactly one.
        with serve(env) as relay:
            assert await relay.send(invite) == 250
        events, sessions = live(fake)
    assert len(events) == 1 and len(sessions) == 1
    assert len(invitations(hop.handler.delivered)) == 1


async def test_killed_while_the_next_hop_holds_its_reply_to_data_delivers_once_on_retry(tmp_path: Path):
    uid = "kill-at-data@example.org"
    url = f"sqlite:///{tmp_path}/state.db"
    invite = meeting(uid)
    hold = asyncio.Event()
    behaviour = NextHopBehaviour(hold_data_reply=hold)
    async with running_fake_webinar(token=TOKEN) as fake, running_next_hop(behaviour) as hop:
        env = relay_env(next_hop_port=hop.port, api_url=fake.api_url, store_url=url)
        with serve(env) as relay:
            attempt = asyncio.ensure_future(relay.send(invite))
            async with asyncio.timeout(20):
                await hop.handler.data_started.wait()
            relay.kill()
            assert await attempt == 0
        # The next hop had the message but never said 250: it was not delivered, and
        # releasing the held reply now delivers nothing (the connection is gone).
        behaviour.hold_data_reply = None
        hold.set()
        for _ in range(5):
            await asyncio.sleep(0)
        assert hop.handler.delivered == []
        [event_id], [session_id] = live(fake)
        record = await stored(url, uid)
        assert record is not None and record.state == ConferenceState.ACTIVE

        with serve(env) as relay:
            assert await relay.send(invite) == 250
        assert live(fake) == ([event_id], [session_id])
    [copy] = invitations(hop.handler.delivered)
    assert record.link is not None and record.link.encode() in copy.content


async def test_killed_during_a_delete_the_retried_cancel_deletes_the_conference(tmp_path: Path):
    uid = "kill-in-delete@example.org"
    url = f"sqlite:///{tmp_path}/state.db"
    invite = meeting(uid)
    cancel = meeting(uid, sequence=1, method="CANCEL", status="CANCELLED")
    async with running_fake_webinar(token=TOKEN) as fake, running_next_hop() as hop:
        env = relay_env(next_hop_port=hop.port, api_url=fake.api_url, store_url=url)
        with serve(env) as relay:
            assert await relay.send(invite) == 250
            fake.add_fault("hang", path="/eventsessions/*", method="DELETE")
            attempt = asyncio.ensure_future(relay.send(cancel))
            await wait_until(lambda: requested(fake, "DELETE", r"/eventsessions/\d+"), "the delete call")
            relay.kill()
            assert await attempt == 0
        assert [len(ids) for ids in live(fake)] == [1, 1]
        record = await stored(url, uid)
        assert record is not None and record.state == ConferenceState.ACTIVE

        with serve(env) as relay:
            assert await relay.send(cancel) == 250
        assert live(fake) == ([], [])
    record = await stored(url, uid)
    assert record is not None and record.state == ConferenceState.DELETED
    methods = [b"METHOD:CANCEL" in d.content for d in invitations(hop.handler.delivered)]
    assert methods == [False, True]  # the invitation once, the cancellation once
