"""A real SOGo in front of the real relay: the organizer drives SOGo over CalDAV, SOGo's own
iMIP code mails every REQUEST and CANCEL by SMTP to ``webinar-proxy serve``, which talks to
the fake Webinar server and forwards to a recording next hop.  After each step the test
waits (bounded) until SOGo's mails for it have passed the relay, then checks what the
platform holds.

SOGo (Debian's 5.8) mails one message per attendee, its envelope sender and From: are the
organizer; a CANCEL to a removed attendee lists the people who remain, and deleting the
meeting sends one CANCEL to each remaining attendee without STATUS:CANCELLED.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.product import calendar_text
from tests.support.serve import serve_process
from tests.support.smtp import Delivered, RunningNextHop, running_next_hop
from tests.support.sogo import (
    ORGANIZER,
    CalDav,
    SogoServer,
    attendee,
    located,
    moved_to,
    new_event,
    running_sogo,
    skip_reason,
    with_attendee,
    with_exdate,
    without_attendee,
)
from webinar_proxy.testing.fake_webinar import running_fake_webinar

pytestmark = [pytest.mark.sogo, pytest.mark.slow]

TOKEN = "sogo-e2e-token-7f3a91c2"
OLGA = ORGANIZER.email
ALICE, BOB, CAROL = "alice@example.net", "bob@example.net", "carol@example.net"
ROOM = "room1@corp.example"
#: A room marked NON-PARTICIPANT: SOGo mails it a text/html part only, no calendar.
SCREEN_ROOM = "room2@corp.example"
WAIT = 30.0
LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")


@pytest.fixture
def sogo_ready(request: pytest.FixtureRequest) -> str:
    """The PostgreSQL server for SOGo's database, or a skip saying why SOGo cannot run here."""
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    return request.getfixturevalue("pg_base_url")


async def eventually(condition: Callable[[], Any], what: str, describe: Callable[[], str]) -> Any:
    """Poll ``condition`` every 50 ms until it is truthy, at most ``WAIT`` seconds."""
    try:
        async with asyncio.timeout(WAIT):
            while True:
                result = condition()
                if result:
                    return result
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out after {WAIT}s waiting for {what}\n{describe()}") from None


def method_of(mail: Delivered) -> str:
    """The iTIP method of a delivered mail's calendar part, or "-" without one."""
    parsed = email.message_from_bytes(mail.content, policy=email.policy.default)
    for part in parsed.walk():
        if part.get_content_type() == "text/calendar":
            return str(part.get_param("method") or "?").upper()
    return "-"


@dataclass
class Stage:
    """SOGo, the relay (a real process) between it and a recording next hop, the fake platform."""

    sogo: SogoServer
    caldav: CalDav
    fake: Any
    hop: RunningNextHop
    relay_log: Path

    def mails(self) -> list[Delivered]:
        """What SOGo mailed, as delivered (organizer notices have the null sender and are left out)."""
        return [d for d in self.hop.handler.delivered if d.mail_from not in ("", "<>")]

    def notices(self) -> list[Delivered]:
        return [d for d in self.hop.handler.delivered if d.mail_from in ("", "<>")]

    def state(self) -> dict[str, Any]:
        return self.fake.state()

    def registered(self) -> dict[str, str]:
        return {r["email"]: r["role"] for r in self.state()["registrations"]}

    def describe(self) -> str:
        try:
            relay = self.relay_log.read_text(errors="replace")[-6000:]
        except OSError as exc:
            relay = f"(no relay log: {exc})"
        sent = "\n".join(f"  {m.mail_from} -> {m.rcpt_tos}: {method_of(m)}"
                         for m in self.hop.handler.delivered)
        return (f"platform: {self.state()}\nnext hop got:\n{sent}\n--- relay log ---\n{relay}"
                f"\n--- sogod log ---\n{self.sogo.log(25)}")

    async def step(self, action: Awaitable[int], expect: dict[str, str]) -> list[Delivered]:
        """Run a CalDAV call; wait until SOGo's mails for it (``{recipient: METHOD}``) passed the relay.

        SOGo mails while it handles the request, so when it answers, its mails are through.
        """
        before = len(self.mails())
        await action
        await eventually(lambda: len(self.mails()) >= before + len(expect),
                         f"{len(expect)} mail(s) from SOGo through the relay", self.describe)
        new = self.mails()[before:]
        got = {rcpt: method_of(m) for m in new for rcpt in m.rcpt_tos}
        assert got == expect and len(new) == len(expect), self.describe()
        return new

    async def until(self, condition: Callable[[], Any], what: str) -> Any:
        return await eventually(condition, what, self.describe)

    def complaints(self) -> list[str]:
        """Relay log lines above INFO (e.g. a hint that the sender is not trusted)."""
        return [line for line in self.relay_log.read_text(errors="replace").splitlines()
                if re.search(r" (WARNING|ERROR|CRITICAL) |Traceback", line)]


@contextlib.asynccontextmanager
async def staged(pg_base_url: str, tmp_path: Path) -> AsyncIterator[Stage]:
    """The fake platform and the next hop in this loop, the relay as a process, then SOGo mailing to it."""
    async with running_fake_webinar(token=TOKEN) as fake, running_next_hop() as hop:
        env = {
            "WEBINAR_PROXY_SMTP__LISTEN": "127.0.0.1:0",
            "WEBINAR_PROXY_SMTP__NEXT_HOP": f"127.0.0.1:{hop.port}",
            "WEBINAR_PROXY_SMTP__SHUTDOWN_GRACE_SECONDS": "1",
            "WEBINAR_PROXY_WEBINAR__TOKEN": TOKEN,
            "WEBINAR_PROXY_WEBINAR__API_URL": fake.api_url,
            "WEBINAR_PROXY_WEBINAR__RATE_LIMIT": "1000",
            "WEBINAR_PROXY_STORE__URL": f"sqlite:///{tmp_path}/state.db",
            "WEBINAR_PROXY_POLICY__ORGANIZER_DOMAINS": OLGA.split("@", 1)[1],
            "WEBINAR_PROXY_POLICY__LANGUAGE": "en",
        }
        log_path = tmp_path / "relay.log"

        def relay_log() -> str:
            return log_path.read_text(errors="replace")

        with serve_process(env, ready=None, log_path=log_path) as relay:
            listening = await eventually(lambda: relay.poll() is not None or LISTENING.search(relay_log()),
                                         "the relay to listen", relay_log)
            assert relay.poll() is None, relay_log()
            relay_port = int(listening[1])
            # starting and ending sogod block (bounded waits): in a thread, so this loop keeps serving
            sogo_context = running_sogo(pg_base_url, relay_port)
            sogo = await asyncio.to_thread(sogo_context.__enter__)
            try:
                caldav = CalDav(sogo)
                try:
                    yield Stage(sogo, caldav, fake, hop, log_path)
                finally:
                    await caldav.aclose()
            finally:
                await asyncio.to_thread(sogo_context.__exit__, None, None, None)


def upcoming_hour(days: int) -> datetime:
    """A whole hour ``days`` from now (the relay compares invitation times with the real clock)."""
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return now + timedelta(days=days, hours=1)


def calendars(mails: list[Delivered]) -> list[Delivered]:
    """The mails that carry a calendar (SOGo mails a NON-PARTICIPANT without one)."""
    return [mail for mail in mails if method_of(mail) != "-"]


def decoded(mail: Delivered) -> bytes:
    """Every leaf part of a mail, transfer-decoded and unfolded."""
    parsed = email.message_from_bytes(mail.content, policy=email.policy.default)
    parts = [p.get_payload(decode=True) or b"" for p in parsed.walk() if not p.is_multipart()]
    return b"".join(parts).replace(b"\r\n ", b"")


def link_in(mail: Delivered, link: str) -> bool:
    return f"LABEL=Webinar:{link}".encode() in calendar_text(mail.content)


def parts_keeping_content_length(mail: Delivered) -> list[str]:
    """Parts of a rewritten invitation that still carry SOGo's ``Content-Length:`` (now wrong)."""
    parsed = email.message_from_bytes(mail.content, policy=email.policy.compat32)
    return [part.get_content_type() for part in parsed.walk()
            if not part.is_multipart() and part.get("Content-Length") is not None]


async def test_meeting_lifecycle_through_sogo(sogo_ready: str, tmp_path: Path):
    uid = f"wp-sogo-meeting-{os.getpid()}-{time.monotonic_ns()}"
    start = upcoming_hour(7)
    hour = timedelta(hours=1)
    async with staged(sogo_ready, tmp_path) as stage:
        # create: one REQUEST per attendee, the room included; the organizer asked with @webinar
        calendar = new_event(uid, start, hour, "Quarterly review", "Room 1 @webinar", [
            attendee(ALICE, "Alice"), attendee(BOB, "Bob"), attendee(ROOM, "Room 1", cutype="ROOM"),
            attendee(SCREEN_ROOM, "Room 2", cutype="ROOM", role="NON-PARTICIPANT"),
        ])
        created = await stage.step(stage.caldav.put(uid, calendar),
                                   {ALICE: "REQUEST", BOB: "REQUEST", ROOM: "REQUEST", SCREEN_ROOM: "-"})
        await stage.until(lambda: stage.registered() == {OLGA: "ADMIN", ALICE: "GUEST", BOB: "GUEST"},
                          "the organizer and both people registered, the room not")
        [event] = stage.state()["events"]
        [session] = stage.state()["sessions"]
        assert session["utcStartsAt"] == int(start.timestamp())
        link = event["link"]
        assert all(link_in(mail, link) for mail in calendars(created)), stage.describe()
        assert [parts_keeping_content_length(mail) for mail in calendars(created)] == [[], [], []]

        # the same save again: SOGo mails nothing, nothing changes
        before = stage.state()
        await stage.step(stage.caldav.edit(uid, lambda event: None), {})
        assert stage.state() == before

        # move: an update REQUEST (SEQUENCE raised by SOGo) to everyone; the session follows
        later = start + timedelta(days=1, hours=2)
        moved = await stage.step(stage.caldav.edit(uid, moved_to(later, hour)),
                                 {ALICE: "REQUEST", BOB: "REQUEST", ROOM: "REQUEST", SCREEN_ROOM: "-"})
        await stage.until(lambda: [s["utcStartsAt"] for s in stage.state()["sessions"]]
                          == [int(later.timestamp())], "the session to move")
        assert [e["eventId"] for e in stage.state()["events"]] == [event["eventId"]]
        assert all(link_in(mail, link) for mail in calendars(moved))

        # remove Bob: one CANCEL, to Bob only, whose ATTENDEE lines list who remains
        await stage.step(stage.caldav.edit(uid, without_attendee(BOB)), {BOB: "CANCEL"})
        await stage.until(lambda: stage.registered() == {OLGA: "ADMIN", ALICE: "GUEST"},
                          "Bob unregistered, Alice kept")
        assert [e["eventId"] for e in stage.state()["events"]] == [event["eventId"]]

        # add Carol: one REQUEST, to Carol only
        added = await stage.step(stage.caldav.edit(uid, with_attendee(attendee(CAROL, "Carol"))),
                                 {CAROL: "REQUEST"})
        await stage.until(lambda: stage.registered() == {OLGA: "ADMIN", ALICE: "GUEST", CAROL: "GUEST"},
                          "Carol registered")
        assert link_in(added[0], link)

        # remove the rooms: a CANCEL to room 1 listing who remains, a calendar-less mail to
        # room 2; nothing changes on the platform
        before = stage.state()
        await stage.step(stage.caldav.edit(uid, without_attendee(ROOM)), {ROOM: "CANCEL"})
        await stage.step(stage.caldav.edit(uid, without_attendee(SCREEN_ROOM)), {SCREEN_ROOM: "-"})
        after = stage.state()
        assert after["events"] == before["events"] and after["sessions"] == before["sessions"]
        assert after["registrations"] == before["registrations"], stage.describe()

        # delete: one CANCEL to each remaining attendee, no STATUS:CANCELLED; the conference goes
        await stage.step(stage.caldav.delete(uid), {ALICE: "CANCEL", CAROL: "CANCEL"})
        await stage.until(lambda: stage.state()["events"] == [], "the conference deleted")
        assert stage.state()["registrations"] == []
        # the organizer heard of the creation and of the deletion, of nothing else
        await stage.until(lambda: len(stage.notices()) >= 2, "two notices to the organizer")
        assert [n.rcpt_tos for n in stage.notices()] == [[OLGA], [OLGA]]
        assert stage.complaints() == []


async def test_weekly_series_with_exdate_through_sogo(sogo_ready: str, tmp_path: Path):
    uid = f"wp-sogo-series-{os.getpid()}-{time.monotonic_ns()}"
    first = upcoming_hour(2)
    half_hour = timedelta(minutes=30)
    async with staged(sogo_ready, tmp_path) as stage:
        calendar = new_event(uid, first, half_hour, "Weekly sync", "@webinar",
                             [attendee(ALICE, "Alice"), attendee(BOB, "Bob")],
                             rrule={"FREQ": "WEEKLY", "COUNT": 6})
        await stage.step(stage.caldav.put(uid, calendar), {ALICE: "REQUEST", BOB: "REQUEST"})
        await stage.until(lambda: stage.registered() == {OLGA: "ADMIN", ALICE: "GUEST", BOB: "GUEST"},
                          "everyone registered")
        [event] = stage.state()["events"]
        assert event["isSeries"] is True
        assert [s["utcStartsAt"] for s in stage.state()["sessions"]] == [int(first.timestamp())]

        # the first occurrence is taken out (EXDATE): SOGo mails an update REQUEST to all;
        # the one conference stays and its session moves to the next week
        second = first + timedelta(weeks=1)
        await stage.step(stage.caldav.edit(uid, with_exdate(first)), {ALICE: "REQUEST", BOB: "REQUEST"})
        await stage.until(lambda: [s["utcStartsAt"] for s in stage.state()["sessions"]]
                          == [int(second.timestamp())], "the session on the second week")
        assert [e["eventId"] for e in stage.state()["events"]] == [event["eventId"]]

        await stage.step(stage.caldav.delete(uid), {ALICE: "CANCEL", BOB: "CANCEL"})
        await stage.until(lambda: stage.state()["events"] == [], "the series conference deleted")
        assert stage.complaints() == []


async def test_taking_the_keyword_out_through_sogo(sogo_ready: str, tmp_path: Path):
    uid = f"wp-sogo-keyword-{os.getpid()}-{time.monotonic_ns()}"
    start = upcoming_hour(3)
    async with staged(sogo_ready, tmp_path) as stage:
        calendar = new_event(uid, start, timedelta(hours=1), "Design review", "Room 4 @webinar",
                             [attendee(ALICE, "Alice"), attendee(BOB, "Bob")])
        await stage.step(stage.caldav.put(uid, calendar), {ALICE: "REQUEST", BOB: "REQUEST"})
        [event] = await stage.until(lambda: stage.state()["events"], "the conference")

        # SOGo mails a LOCATION-only change (SEQUENCE raised): the organizer took the
        # conference out, so it is deleted and the update goes without a link
        updates = await stage.step(stage.caldav.edit(uid, located("Room 4")),
                                   {ALICE: "REQUEST", BOB: "REQUEST"})
        await stage.until(lambda: stage.state()["events"] == [], "the conference deleted")
        assert [event["link"].encode() in decoded(mail) for mail in updates] == [False, False]

        # the later deletion finds nothing to delete and changes nothing
        await stage.step(stage.caldav.delete(uid), {ALICE: "CANCEL", BOB: "CANCEL"})
        assert stage.state()["events"] == [] and stage.state()["registrations"] == []
        assert stage.complaints() == []
