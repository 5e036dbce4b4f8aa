"""SIGKILL of the real ``webinar-proxy serve`` after the platform created the event but
before its answer arrived: the store holds a ``creating`` row without event id.  The
retry (or, if none comes, the scheduler) finds the event by the marker in its
description, so exactly one conference is left (or none).

The kill is deterministic: the fake carries ``POST /events`` out and holds its answer
(``hang_after``); the test kills the relay once the event is on the fake.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.faults.helpers import BOSS, TOKEN, invitations, live, meeting, relay_env, serve, stored, wait_until
from tests.support.smtp import running_next_hop
from webinar_proxy.lifecycle.conferences import creation_marker
from webinar_proxy.settings import SchedulerSettings, Settings, StoreSettings, WebinarSettings
from webinar_proxy.store import ConferenceState
from webinar_proxy.testing.fake_webinar import running_fake_webinar
from webinar_proxy.wiring import open_services


async def _kill_while_the_answer_is_pending(fake, env, invite: bytes) -> int:  # type: ignore[no-untyped-def]
    fake.add_fault("hang_after", path="/events", method="POST")
    with serve(env) as relay:
        attempt = asyncio.ensure_future(relay.send(invite))
        await wait_until(lambda: fake.state()["events"], "the event on the platform")
        relay.kill()
        assert await attempt == 0  # no reply at all: the MTA keeps the mail
    [event] = fake.state()["events"]
    return int(event["eventId"])


async def test_killed_before_the_create_answer_the_retry_leaves_exactly_one_event(tmp_path: Path):
    uid = "kill-lost-answer@example.org"
    url = f"sqlite:///{tmp_path}/state.db"
    invite = meeting(uid)
    async with running_fake_webinar(token=TOKEN) as fake, running_next_hop() as hop:
        env = relay_env(next_hop_port=hop.port, api_url=fake.api_url, store_url=url)
        unrecorded = await _kill_while_the_answer_is_pending(fake, env, invite)
        record = await stored(url, uid)
        assert record is not None and record.state == ConferenceState.CREATING
        assert record.event_id is None and record.booked_start is not None
        assert fake.state()["events"][0]["description"] == creation_marker(BOSS, uid)

        with serve(env) as relay:
            assert await relay.send(invite) == 250
            await hop.handler.wait_delivered(2)  # the invitation and the organizer's notice
        [event_id], sessions = live(fake)
        link = fake.state()["events"][0]["link"]
    assert event_id != unrecorded and len(sessions) == 1  # the unrecorded one was deleted
    [copy] = invitations(hop.handler.delivered)
    assert link.encode() in copy.content
    record = await stored(url, uid)
    assert record is not None and record.state == ConferenceState.ACTIVE
    assert record.event_id == event_id and record.link == link


async def test_killed_before_the_create_answer_and_never_retried_the_scheduler_removes_it(tmp_path: Path):
    uid = "kill-lost-answer-orphan@example.org"
    url = f"sqlite:///{tmp_path}/state.db"
    async with running_fake_webinar(token=TOKEN) as fake, running_next_hop() as hop:
        env = relay_env(next_hop_port=hop.port, api_url=fake.api_url, store_url=url)
        await _kill_while_the_answer_is_pending(fake, env, meeting(uid))
        # The MTA gave up: one scheduler pass (same SQLite file, clock past
        # scheduler.stale_creating_seconds) finds the event by its marker and deletes it.
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

