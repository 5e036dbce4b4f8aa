"""The schedule (``GET /organization/events/schedule``) on the fake and through
``list_events``; the fake's ``_after`` faults, which let the platform carry a call out
and then lose its answer; and which client calls retry on which failures."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest

from webinar_proxy.testing.fake_webinar import FAULT_KINDS, FakeWebinarServer, running_fake_webinar
from webinar_proxy.webinar import ConflictError, TemporaryError

MOSCOW = ZoneInfo("Europe/Moscow")
START = datetime(2030, 3, 10, 15, 0, tzinfo=MOSCOW)
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
# The captured item shape (GET /organization/events/schedule): numbers as strings, timezoneName.
SCHEDULE_ITEM_KEYS = {
    "id", "status", "access", "name", "startsAt", "estimatedAt", "isArchive", "createUserId",
    "type", "timezoneName", "rule", "image", "tags", "files", "lectors", "eventSessions",
}
SCHEDULE_SESSION_KEYS = {
    "id", "eventId", "status", "access", "name", "startsAt", "estimatedAt", "isArchive",
    "createUserId", "type", "timezoneName", "participationsCount", "tags", "files", "lectors",
}


@pytest.fixture
async def http(fake: FakeWebinarServer, token: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=fake.api_url + "/", headers={"x-auth-token": token}
    ) as client:
        yield client


def _event_form(name: str, when: datetime) -> str:
    local = when.astimezone(MOSCOW)
    return (
        f"name={name}&type=meeting&timezone=1&description=note"
        f"&startsAt[date][year]={local.year}&startsAt[date][month]={local.month}"
        f"&startsAt[date][day]={local.day}&startsAt[time][hour]={local.hour}"
        f"&startsAt[time][minute]={local.minute}"
    )


def _posts(fake: FakeWebinarServer, pattern: str = r"/events") -> list:
    return [r for r in fake.requests if r.method == "POST" and re.fullmatch(pattern, r.path)]


# ---- the schedule on the wire ----------------------------------------------------------


async def test_schedule_lists_events_in_the_period_with_the_captured_shape(http) -> None:
    days = timedelta(days=3)
    for name, when in [("Early", START - days), ("Mid", START), ("Late", START + days)]:
        event = (await http.post("events", content=_event_form(name, when), headers=FORM)).json()
    await http.post(f"events/{event['eventId']}/sessions",
                    content="timezone=1&startsAt[date][year]=2030&startsAt[date][month]=3"
                            "&startsAt[date][day]=13&startsAt[time][hour]=15", headers=FORM)
    response = await http.get(
        "organization/events/schedule",
        params={"from": "2030-03-09T00:00:00", "to": "2030-03-14", "perPage": 50},
    )
    assert response.status_code == 200
    items = response.json()
    assert [item["name"] for item in items] == ["Mid", "Late"]
    assert all(set(item) == SCHEDULE_ITEM_KEYS for item in items)
    mid, late = items
    assert isinstance(mid["id"], str) and mid["id"].isdigit()
    assert mid["startsAt"] == "2030-03-10T15:00:00+0300" and mid["timezoneName"] == "Europe/Moscow"
    assert "description" not in mid  # the captured list has none
    [session] = late["eventSessions"]
    assert set(session) == SCHEDULE_SESSION_KEYS
    assert session["eventId"] == late["id"] and session["participationsCount"] == 0


async def test_schedule_period_is_the_accounts_wall_clock(http) -> None:
    await http.post("events", content=_event_form("Mid", START), headers=FORM)  # 12:00 UTC
    for bounds, expected in [
        ({"from": "2030-03-10T15:00:00", "to": "2030-03-10T15:00:00"}, ["Mid"]),  # inclusive
        ({"from": "2030-03-10T15:01:00", "to": "2030-03-11"}, []),
        ({"from": "2030-03-10T12:00:00", "to": "2030-03-10T14:59:00"}, []),  # UTC clock: not it
    ]:
        items = (await http.get("organization/events/schedule", params=bounds)).json()
        assert [item["name"] for item in items] == expected, bounds


async def test_schedule_filters_status_and_name_and_pages(http) -> None:
    for index in range(12):
        await http.post("events", content=_event_form(f"Weekly {index:02}", START + timedelta(hours=index)),
                        headers=FORM)
    query = {"from": "2030-03-01", "to": "2030-04-01"}
    first = (await http.get("organization/events/schedule", params=query)).json()
    assert len(first) == 10  # default perPage
    second = (await http.get("organization/events/schedule", params={**query, "page": 2})).json()
    assert [item["name"] for item in second] == ["Weekly 10", "Weekly 11"]
    named = (await http.get("organization/events/schedule", params={**query, "name": "weekly 03"})).json()
    assert [item["name"] for item in named] == ["Weekly 03"]
    stopped = (await http.get("organization/events/schedule", params={**query, "status[0]": "STOP"})).json()
    assert stopped == []
    active = await http.get("organization/events/schedule", params={**query, "status[]": "ACTIVE",
                                                                     "perPage": 250})
    assert len(active.json()) == 12
    for bad in ({"perPage": 500}, {"status[0]": "GONE"}, {"from": "March"}):
        response = await http.get("organization/events/schedule", params={**query, **bad})
        assert response.status_code == 400, bad
    assert (await http.get("organization/events/schedule",
                           headers={"x-auth-token": ""})).status_code == 401


# ---- list_events -----------------------------------------------------------------------


async def test_list_events_reads_every_page_and_parses_string_ids(client, fake) -> None:
    made = [await client.create_event(name=f"M{index}", start=START + timedelta(minutes=index),
                                      description=f"webinar-proxy-key: {index:032x}")
            for index in range(12)]
    await client.create_event(name="Outside", start=START + timedelta(days=5))
    events = await client.list_events(
        starts_from=START - timedelta(hours=1), starts_to=START + timedelta(hours=1), per_page=10,
    )
    assert [e.event_id for e in events] == [m.event_id for m in made]
    assert events[0].starts_at == START and events[0].name == "M0" and events[0].status == "ACTIVE"
    assert events[0].description is None  # left out by the list
    assert events[0].owner_id == fake.state()["members"][0]["id"]
    calls = [r for r in fake.requests if r.path == "/organization/events/schedule"]
    assert [(c.form["page"], c.form["perPage"]) for c in calls] == [("1", "10"), ("2", "10")]
    # the period went out as Moscow wall clock, the client's default zone
    assert (calls[0].form["from"], calls[0].form["to"]) == ("2030-03-10T14:00:00", "2030-03-10T16:00:00")
    read = await client.get_event(made[3].event_id)
    assert read.description == "webinar-proxy-key: " + f"{3:032x}"


async def test_list_events_sends_statuses_and_checks_its_arguments(client, fake) -> None:
    await client.create_event(name="x", start=START)
    utc = START.astimezone(UTC)
    assert await client.list_events(starts_from=utc, starts_to=utc, statuses=("STOP",)) == ()
    [event] = await client.list_events(starts_from=utc, starts_to=utc, statuses=("ACTIVE", "START"))
    assert event.name == "x"
    [call] = [r for r in fake.requests if r.path == "/organization/events/schedule"][-1:]
    assert call.form["status"] == ["ACTIVE", "START"]
    with pytest.raises(ValueError):
        await client.list_events(starts_from=utc, starts_to=utc, per_page=500)
    with pytest.raises(ValueError):
        await client.list_events(starts_from=utc.replace(tzinfo=None), starts_to=utc)


# ---- the _after faults ---------------------------------------------------------------


async def test_after_faults_carry_the_call_out_and_lose_the_answer(http, fake) -> None:
    assert {"500_after", "drop_after", "hang_after"} <= set(FAULT_KINDS)
    fake.add_fault("500_after", path="/events", method="POST")
    response = await http.post("events", content=_event_form("A", START), headers=FORM)
    assert response.status_code == 500
    assert response.json() == {"error": {"code": 500, "message": "Internal Server Error"}}
    fake.add_fault("drop_after", path="/events", method="POST")
    with pytest.raises(httpx.RemoteProtocolError):
        await http.post("events", content=_event_form("B", START), headers=FORM)
    fake.add_fault("hang_after", path="/events", method="POST")
    with pytest.raises(httpx.ReadTimeout):
        await http.post("events", content=_event_form("C", START), headers=FORM, timeout=0.3)
    assert [e["name"] for e in fake.state()["events"]] == ["A", "B", "C"]  # all three made
    assert [r.form.get("name") for r in _posts(fake)] == ["A", "B", "C"]  # and recorded
    # The kinds that act instead of the platform make nothing.
    fake.add_fault("500", path="/events", method="POST")
    assert (await http.post("events", content=_event_form("D", START), headers=FORM)).status_code == 500
    assert len(fake.state()["events"]) == 3


async def test_hang_after_answers_late_and_is_settable_over_http(token) -> None:
    async with (
        running_fake_webinar(token=token, hang_seconds=0.2) as fake,
        httpx.AsyncClient(base_url=fake.root_url, headers={"x-auth-token": token}) as http,
    ):
        added = await http.post("/_fake/faults", json={"kind": "hang_after", "path": "/events"})
        assert added.status_code == 201 and added.json()["kind"] == "hang_after"
        response = await http.post("/v3/events", content=_event_form("Late", START), headers=FORM)
        assert response.status_code == 201  # the real answer, once the hang is over
        assert response.json()["eventId"] == fake.state()["events"][0]["eventId"]


# ---- which calls retry ---------------------------------------------------------------


@pytest.mark.parametrize("kind", ["500", "drop", "bad_json", "500_after", "drop_after", "hang_after"])
async def test_create_event_is_not_retried_once_the_request_went_out(make_client, fake, kind) -> None:
    client = make_client(read_timeout=0.3)
    fake.add_fault(kind, path="/events", method="POST")
    with pytest.raises(TemporaryError) as caught:
        await client.create_event(name="x", start=START)
    assert caught.value.maybe_done
    assert len(_posts(fake)) == 1  # one request only
    made = 1 if kind.endswith("_after") else 0
    assert len(fake.state()["events"]) == made
    assert "may have carried it out" in str(caught.value)


@pytest.mark.parametrize("kind", ["500", "drop_after"])
async def test_create_session_is_not_retried_once_the_request_went_out(client, fake, kind) -> None:
    event = await client.create_event(name="x", start=START)
    fake.add_fault(kind, path="/events/*/sessions", method="POST")
    with pytest.raises(TemporaryError) as caught:
        await client.create_session(event.event_id, start=START)
    assert caught.value.maybe_done
    assert len(_posts(fake, r"/events/\d+/sessions")) == 1
    if kind == "drop_after":  # it was made: a second one is a conflict, and the read lists it
        with pytest.raises(ConflictError):
            await client.create_session(event.event_id, start=START)
        [session] = (await client.get_event(event.event_id)).sessions
        assert session.starts_at == START


async def test_create_event_retries_429_where_nothing_was_done(client, fake) -> None:
    fake.add_fault("429", times=2, path="/events", method="POST")
    event = await client.create_event(name="x", start=START)
    assert [r.status for r in _posts(fake)] == [429, 429, 201]
    assert [e["eventId"] for e in fake.state()["events"]] == [event.event_id]


async def test_create_event_retries_refused_connections_and_says_nothing_was_done(
    make_client, token
) -> None:
    async with running_fake_webinar(token=token) as gone:
        client = make_client(api_url=gone.api_url, call_deadline=3.0)
        await client.timezones()  # cached: the create's only request is the POST
    with pytest.raises(TemporaryError) as caught:
        await client.create_event(name="x", start=START)
    assert caught.value.operation == "POST /events"
    assert "ConnectError" in str(caught.value)
    assert re.search(r"gave up after ([2-9]|\d\d+) attempt", str(caught.value))  # retried
    assert not caught.value.maybe_done


async def test_reads_and_deletes_still_retry_after_the_request_went_out(client, fake) -> None:
    event = await client.create_event(name="x", start=START)
    fake.add_fault("drop_after", path="/organization/events/*", method="DELETE")
    assert await client.delete_event(event.event_id) is False  # done, answer lost; the retry sees 404
    assert fake.state()["events"] == []
    fake.add_fault("500_after", path="/organization/events/schedule")
    assert await client.list_events(starts_from=START, starts_to=START) == ()
