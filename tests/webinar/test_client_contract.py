"""Every client operation against the fake over real loopback HTTP: the happy paths."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from webinar_proxy.settings import WebinarSettings
from webinar_proxy.testing.fake_webinar import FakeWebinarServer
from webinar_proxy.webinar import (
    AccessSettings,
    ConflictError,
    Invitee,
    NotFoundError,
    Role,
    WebinarClient,
)

BERLIN = ZoneInfo("Europe/Berlin")
START = datetime(2030, 3, 10, 15, 0, tzinfo=BERLIN)
PERSONAL_LINK = re.compile(r"^https://events\.webinar\.ru/myorg/(\d+)/[0-9a-f]{32}$")


async def _meeting(client: WebinarClient, **options) -> tuple[int, int, str]:
    event = await client.create_event(name="Planning", start=START, **options)
    session = await client.create_session(event.event_id, start=START)
    return event.event_id, session.session_id, event.link


def _calls(fake: FakeWebinarServer, method: str, path: str) -> list:
    return [r for r in fake.requests if r.method == method and re.fullmatch(path, r.path)]


async def test_create_event_sends_the_documented_fields(client, fake) -> None:
    event = await client.create_event(
        name="Planning", start=START, duration=timedelta(hours=1, minutes=30), owner_id=501,
        access=AccessSettings(registration_required=True), lang="EN",
    )
    assert event.link == f"https://events.webinar.ru/myorg/{event.event_id}"
    form = _calls(fake, "POST", "/events")[-1].form
    assert form["startsAt"] == {"date": {"year": "2030", "month": "3", "day": "10"},
                                "time": {"hour": "15", "minute": "0"}}
    assert form["timezone"] == "21"  # the fake's id for Europe/Berlin
    assert form["duration"] == "PT1H30M0S"
    assert form["type"] == "meeting"
    assert form["lang"] == "EN"
    assert form["ownerId"] == "501"
    assert form["accessSettings"] == {"isPasswordRequired": "0", "isRegistrationRequired": "1",
                                      "isModerationRequired": "0"}
    [stored] = fake.state()["events"]
    assert stored["startsAt"] == "2030-03-10T15:00:00+0100"
    assert stored["isSeries"] is False


async def test_create_session_and_read_it_back(client, fake) -> None:
    event = await client.create_event(name="Planning", start=START)
    session = await client.create_session(event.event_id, start=START)
    assert session.link == f"{event.link}/session/{session.session_id}"
    read = await client.get_session(session.session_id)
    assert read.session_id == session.session_id
    assert read.name == "Planning"
    assert read.status == "ACTIVE"
    assert read.starts_at == START
    assert read.timezone_id == 21


async def test_get_event_lists_its_sessions(client) -> None:
    event_id, session_id, _ = await _meeting(client)
    event = await client.get_event(event_id)
    assert event.event_id == event_id
    assert event.rule == "FREQ=DAILY;COUNT=1"
    assert event.owner_id == 501
    assert [s.session_id for s in event.sessions] == [session_id]
    assert event.starts_at == START


async def test_series_takes_several_sessions_but_not_two_at_one_time(client, fake) -> None:
    event = await client.create_event(
        name="Weekly", start=START, rule="FREQ=WEEKLY;COUNT=10;BYDAY=SU",
        ends_at=START + timedelta(weeks=10),
    )
    await client.create_session(event.event_id, start=START)
    await client.create_session(event.event_id, start=START + timedelta(weeks=1))
    with pytest.raises(ConflictError):
        await client.create_session(event.event_id, start=START + timedelta(weeks=1))
    [stored] = fake.state()["events"]
    assert stored["isSeries"] is True
    assert stored["endsAt"] == "2030-05-19T15:00:00+0200"
    assert len(stored["sessionIds"]) == 2


async def test_update_moves_event_and_session_without_platform_letters(client, fake) -> None:
    event_id, session_id, _ = await _meeting(client)
    await client.register(session_id, email="a@example.org")
    later = START + timedelta(days=1, hours=2)
    await client.update_event(event_id, start=later, name="Planning v2",
                              duration=timedelta(minutes=45))
    await client.update_session(session_id, start=later, name="Planning v2")
    state = fake.state()
    assert state["events"][0]["startsAt"] == "2030-03-11T17:00:00+0100"
    assert state["events"][0]["name"] == "Planning v2"
    assert state["events"][0]["duration"] == "PT0H45M0S"
    assert state["sessions"][0]["startsAt"] == "2030-03-11T17:00:00+0100"
    assert state["letters"] == []
    assert _calls(fake, "PUT", r"/eventsessions/\d+")[-1].form["sendEmail"] == "false"


async def test_update_with_nothing_to_change_makes_no_call(client, fake) -> None:
    event_id, session_id, _ = await _meeting(client)
    before = len(fake.requests)
    await client.update_event(event_id)
    await client.update_session(session_id)
    assert len(fake.requests) == before


async def test_deleting_the_only_session_removes_the_event_and_later_delete_is_done(
    client, fake
) -> None:
    event_id, session_id, _ = await _meeting(client)
    await client.register(session_id, email="a@example.org")
    assert await client.delete_session(session_id) is True
    assert await client.delete_event(event_id) is False  # 404 after the session delete
    assert await client.delete_session(session_id) is False
    state = fake.state()
    assert state["events"] == state["sessions"] == state["registrations"] == []
    assert state["letters"] == []
    assert _calls(fake, "DELETE", r"/eventsessions/\d+")[0].form == {"sendEmail": "false"}


async def test_deleting_a_series_event_removes_its_sessions(client, fake) -> None:
    event = await client.create_event(name="Weekly", start=START, rule="FREQ=WEEKLY")
    session = await client.create_session(event.event_id, start=START)
    assert await client.delete_session(session.session_id) is True
    assert len(fake.state()["events"]) == 1  # a series outlives its sessions
    await client.create_session(event.event_id, start=START + timedelta(weeks=1))
    assert await client.delete_event(event.event_id) is True
    assert fake.state()["events"] == fake.state()["sessions"] == []


async def test_register_returns_the_personal_link(client, fake) -> None:
    event_id, session_id, event_link = await _meeting(client)
    registration = await client.register(
        session_id, email="anna@example.org", name="Anna", second_name="Petrova",
        role=Role.LECTURER,
    )
    match = PERSONAL_LINK.match(registration.link or "")
    assert match and int(match[1]) == event_id
    assert registration.link.startswith(event_link + "/")
    assert registration.contact_id is not None
    assert registration.already_registered is False
    [stored] = fake.state()["registrations"]
    assert stored["role"] == "LECTURER"
    assert stored["isAutoEnter"] is True
    assert stored["secondName"] == "Petrova"
    assert fake.state()["letters"] == []


async def test_repeated_registration_answered_201_gives_the_old_participation(client, fake) -> None:
    fake.duplicate_registration = "existing"
    _, session_id, _ = await _meeting(client)
    first = await client.register(session_id, email="anna@example.org")
    again = await client.register(session_id, email="ANNA@example.org", name="Other")
    assert again.participation_id == first.participation_id
    assert again.link == first.link
    assert len(fake.state()["registrations"]) == 1


async def test_repeated_registration_answered_409_is_looked_up(client, fake) -> None:
    fake.duplicate_registration = "conflict"
    _, session_id, event_link = await _meeting(client)
    first = await client.register(session_id, email="anna@example.org")
    again = await client.register(session_id, email="anna@example.org", event_link=event_link)
    assert again.already_registered is True
    assert again.participation_id == first.participation_id
    assert again.link == first.link
    without_link = await client.register(session_id, email="anna@example.org")
    assert without_link.link is None
    assert without_link.participation_id == first.participation_id


async def test_invite_batches_by_fifty_and_skips_the_already_registered(client, fake) -> None:
    _, session_id, _ = await _meeting(client)
    await client.register(session_id, email="p0@example.org")
    people = [Invitee(f"p{n}@example.org", name=f"P{n}") for n in range(60)]
    invited = await client.invite(session_id, people)
    assert len(_calls(fake, "POST", r"/eventsessions/\d+/invite")) == 2
    assert {r.email for r in invited} == {f"p{n}@example.org" for n in range(1, 60)}
    assert all(PERSONAL_LINK.match(r.link or "") for r in invited)
    assert len(fake.state()["registrations"]) == 60
    assert fake.state()["letters"] == []


async def test_list_registrations_reads_every_page(client) -> None:
    _, session_id, event_link = await _meeting(client)
    invited = await client.invite(session_id, [Invitee(f"p{n}@example.org") for n in range(23)])
    listed = await client.list_registrations(session_id, per_page=10)
    assert [p.email for p in listed] == [f"p{n}@example.org" for n in range(23)]
    by_id = {r.participation_id: r for r in invited}
    for participation in listed:
        assert participation.personal_link(event_link) == by_id[participation.participation_id].link
        assert participation.session_id == session_id
        assert participation.role == "GUEST"


async def test_list_registrations_refuses_a_page_size_the_platform_lacks(client) -> None:
    with pytest.raises(ValueError):
        await client.list_registrations(1, per_page=7)


async def test_state_lists_each_sessions_registered_emails(client, fake) -> None:
    _, session_id, _ = await _meeting(client)
    await client.invite(session_id, [Invitee("b@example.org"), Invitee("a@example.org")])
    [session] = fake.state()["sessions"]
    assert session["registeredEmails"] == ["a@example.org", "b@example.org"]


async def test_find_registration_is_case_insensitive(client) -> None:
    _, session_id, _ = await _meeting(client)
    registration = await client.register(session_id, email="Anna@Example.org")
    found = await client.find_registration(session_id, "anna@example.ORG")
    assert found is not None and found.participation_id == registration.participation_id
    assert await client.find_registration(session_id, "nobody@example.org") is None


async def test_remove_registrations_counts_what_was_removed(client, fake) -> None:
    _, session_id, _ = await _meeting(client)
    a = await client.register(session_id, email="a@example.org")
    b = await client.register(session_id, email="b@example.org")
    assert await client.remove_registrations([a.participation_id, 99999999]) == 1
    assert [r["email"] for r in fake.state()["registrations"]] == ["b@example.org"]
    assert await client.remove_registrations([]) == 0
    assert b.participation_id in {r["participationId"] for r in fake.state()["registrations"]}


async def test_find_member_is_cached_and_falls_back_to_the_default_owner(
    make_client, fake, clock
) -> None:
    member_id = fake.add_member("boss@example.org", name="Boss")
    client = make_client(default_owner_id=501, member_cache_seconds=60)
    member = await client.find_member("Boss@Example.org")
    assert member is not None and member.member_id == member_id and member.name == "Boss"
    await client.find_member("boss@example.org")
    assert len(_calls(fake, "GET", "/organization/members")) == 1
    assert await client.owner_id_for("stranger@example.org") == 501
    assert await client.owner_id_for("boss@example.org") == member_id
    clock.advance(61)
    await client.find_member("boss@example.org")
    assert len(_calls(fake, "GET", "/organization/members")) == 3


async def test_timezones_are_fetched_once(client, fake) -> None:
    zones = await client.timezones()
    assert zones[0].timezone_id == 1 and zones[0].name == "Europe/Moscow"
    assert zones[0].offset_seconds == 10800
    await client.platform_time(START)
    await client.create_event(name="x", start=START)
    assert len(_calls(fake, "GET", "/timezones")) == 1


@pytest.mark.parametrize(
    ("when", "parts"),
    [
        # A zone the platform knows: its own wall clock and id.
        (datetime(2030, 7, 1, 9, 30, tzinfo=BERLIN), (2030, 7, 1, 9, 30, 21, "Europe/Berlin")),
        (datetime(2030, 7, 1, 9, 30, tzinfo=UTC), (2030, 7, 1, 9, 30, 60, "UTC")),
        # Unknown to the platform: the same instant in Moscow (id 1).
        (datetime(2030, 7, 1, 9, 30, tzinfo=ZoneInfo("America/Argentina/Ushuaia")),
         (2030, 7, 1, 15, 30, 1, "Europe/Moscow")),
        (datetime(2030, 7, 1, 9, 30, tzinfo=timezone(timedelta(hours=5, minutes=45))),
         (2030, 7, 1, 6, 45, 1, "Europe/Moscow")),
        # Seconds are dropped: the platform takes minutes.
        (datetime(2030, 1, 1, 0, 0, 59, tzinfo=ZoneInfo("Europe/Moscow")),
         (2030, 1, 1, 0, 0, 1, "Europe/Moscow")),
    ],
)
async def test_platform_time(client, when, parts) -> None:
    result = await client.platform_time(when)
    assert (result.year, result.month, result.day, result.hour, result.minute,
            result.timezone_id, result.zone_name) == parts


async def test_platform_time_refuses_naive_datetimes(client) -> None:
    with pytest.raises(ValueError):
        await client.platform_time(datetime(2030, 1, 1, 12, 0))


async def test_unknown_zone_event_is_stored_at_the_same_instant(client, fake) -> None:
    when = datetime(2030, 7, 1, 9, 30, tzinfo=ZoneInfo("America/Argentina/Ushuaia"))
    await client.create_event(name="x", start=when)
    [stored] = fake.state()["events"]
    assert stored["timezoneId"] == 1
    assert stored["utcStartsAt"] == int(when.timestamp())


async def test_ping(client, fake) -> None:
    await client.ping()
    await client.ping()
    assert len(_calls(fake, "GET", "/timezones")) == 2


async def test_from_settings_and_context_manager(fake, token) -> None:
    settings = WebinarSettings(api_url=fake.api_url, token=token, rate_limit=50,
                               default_owner_id=501, lang="EN")
    async with WebinarClient.from_settings(settings, call_deadline=5.0) as client:
        assert client.api_url == fake.api_url
        assert client.call_deadline == 5.0
        assert client.default_owner_id == 501
        event = await client.create_event(name="x", start=START)
    assert fake.state()["events"][0]["eventId"] == event.event_id
    assert fake.state()["events"][0]["lang"] == "EN"


async def test_missing_session_is_not_found(client) -> None:
    with pytest.raises(NotFoundError) as caught:
        await client.get_session(123)
    assert caught.value.status == 404
    with pytest.raises(NotFoundError):
        await client.get_event(123)
    with pytest.raises(NotFoundError):
        await client.register(123, email="a@example.org")
