"""The fake on the wire: requests shaped like the reference's examples, answers compared
with our copies of the documented response shapes, and the /_fake/ endpoints."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest

from webinar_proxy.testing.fake_webinar import FakeWebinarServer, running_fake_webinar

FORM = {"Content-Type": "application/x-www-form-urlencoded"}

# Our copies of the documented shapes (the platform's documentation), own values.
CREATE_EVENT_RESPONSE = {"eventId": 4100001, "link": "https://events.webinar.ru/myorg/4100001"}
CREATE_SESSION_RESPONSE = {
    "eventSessionId": 4200001, "link": "https://events.webinar.ru/myorg/4100001/session/4200001"
}
REGISTER_RESPONSE = {
    "participationId": 7000001,
    "link": "https://events.webinar.ru/myorg/4100001/3f9c0d1e2b4a59687f8e9d0c1b2a3948",
    "contactId": 5500001,
}
SESSION_READ = {
    "id": 4200001, "name": "Planning", "description": "", "status": "ACTIVE",
    "access": 1, "lang": "RU",
    "startsAt": "2025-03-10T15:00:00+0300", "utcStartsAt": 1741608000,
    "createUserId": 501, "timezoneId": 1,
    "timezone": {"id": 1, "name": "Europe/Moscow",
                 "description": "Волгоград, Москва, Санкт-Петербург", "offset": 10800},
    "organizationId": 9001, "type": "meeting", "startType": "manual",
    "createUser": {"id": 501, "name": "Анна", "secondName": "Петрова",
                   "email": "anna@example.org"},
    "image": {"id": 421, "url": "https://events.webinar.ru/images/event-default.png"},
    "additionalFields": [], "lectors": [], "tags": [], "announceFiles": [], "files": [],
}
EVENT_READ_KEYS = {
    "id", "name", "description", "status", "access", "lang", "startsAt", "utcStartsAt",
    "createUserId", "timezoneId", "organizationId", "type", "createUser", "rule",
    "additionalFields", "lectors", "tags", "announceFiles", "files", "eventSessions",
}
PARTICIPATION_ITEM = {
    "id": 7000001, "name": "Иван", "secondName": "Иванов", "email": "ivan@example.org",
    "avatar": {}, "eventId": 4100001, "eventSessionId": 4200001,
    "isAccepted": 1, "role": "GUEST", "isSeen": 0, "agreementStatus": "AGREED",
    "userId": 600001, "isOnline": "0", "registerStatus": "INVITED", "paymentStatus": "NOT_PAID",
    "url": "3f9c0d1e2b4a59687f8e9d0c1b2a3948", "visited": False,
}
MEMBER_ITEM_KEYS = {"id", "name", "secondName", "patrName", "nickname", "email", "membershipId",
                    "role", "phone", "position", "organization", "sex", "avatar"}
INVITE_ITEM_KEYS = {"email", "participationId", "link", "contactId"}
BAD_REQUEST_NO_EMAIL = {
    "error": {"code": 400, "message": "ERROR_BAD_REQUEST", "fieldErrors": {"email": "ERROR_EMPTY"}}
}
NOT_FOUND = {"error": {"code": 404, "message": "Not Found"}}
CONFLICT = {"error": {"code": 409, "message": "Conflict"}}
NO_TOKEN = {"error": {"message": "A Token was not found in the TokenStorage."}}
RATE_LIMITED = {"error": {"code": 429, "message": "I only allow 2 requests per second. Try again."}}

CREATE_EVENT_FORM = (
    "name=Planning&type=meeting&lang=RU&timezone=1&duration=PT1H0M0S"
    "&startsAt[date][year]=2025&startsAt[date][month]=3&startsAt[date][day]=10"
    "&startsAt[time][hour]=15&startsAt[time][minute]=0"
    "&accessSettings[isPasswordRequired]=0&accessSettings[isRegistrationRequired]=0"
    "&accessSettings[isModerationRequired]=0"
)
HEX32 = r"[0-9a-f]{32}"


def _types(value: object) -> object:
    """The JSON type skeleton of a value, to compare shapes rather than values."""
    if isinstance(value, dict):
        return {key: _types(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_types(value[0])] if value else []
    return type(value).__name__


@pytest.fixture
async def http(fake: FakeWebinarServer, token: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=fake.api_url + "/", headers={"x-auth-token": token}
    ) as client:
        yield client


SESSION_FORM = (
    "startsAt[date][year]=2025&startsAt[date][month]=3&startsAt[date][day]=10"
    "&startsAt[time][hour]=15&startsAt[time][minute]=0&timezone=1"
)


async def _event_and_session(http: httpx.AsyncClient) -> tuple[int, int]:
    event = (await http.post("events", content=CREATE_EVENT_FORM, headers=FORM)).json()
    session = (
        await http.post(f"events/{event['eventId']}/sessions", content=SESSION_FORM, headers=FORM)
    ).json()
    return event["eventId"], session["eventSessionId"]


async def test_create_event_and_session_answer_like_the_platform(http) -> None:
    response = await http.post("events", content=CREATE_EVENT_FORM, headers=FORM)
    assert response.status_code == 201
    assert response.json() == CREATE_EVENT_RESPONSE
    # No body at all, as one client does: the session starts "now" (documented default).
    response = await http.post("events/4100001/sessions")
    assert response.status_code == 201
    assert response.json() == CREATE_SESSION_RESPONSE
    response = await http.post("events/4100001/sessions")
    assert (response.status_code, response.json()) == (409, CONFLICT)


async def test_json_bodies_are_accepted_and_bad_json_refused(http) -> None:
    response = await http.post("events", json={
        "name": "Planning", "accessSettings": {"isRegistrationRequired": 1}, "timezone": 1,
        "startsAt": {"date": {"year": 2025, "month": 3, "day": 10},
                     "time": {"hour": 15, "minute": 0}},
    })
    assert response.status_code == 201
    response = await http.post(
        "events", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json() == {"error": {"message": "json is not valid"}}


async def test_session_and_event_reads_have_the_documented_shape(http) -> None:
    event_id, session_id = await _event_and_session(http)
    session = (await http.get(f"eventsessions/{session_id}")).json()
    expected = dict(SESSION_READ, id=session_id)
    assert {k: _types(session[k]) for k in expected} == {k: _types(v) for k, v in expected.items()}
    assert session["startsAt"] == "2025-03-10T15:00:00+0300"
    assert session["utcStartsAt"] == 1741608000
    assert session["timezone"]["offset"] == 10800
    event = (await http.get(f"organization/events/{event_id}")).json()
    assert event.keys() >= EVENT_READ_KEYS
    assert event["rule"] == "FREQ=DAILY;COUNT=1"
    assert [s["id"] for s in event["eventSessions"]] == [session_id]


async def test_register_list_and_delete_participations(http) -> None:
    event_id, session_id = await _event_and_session(http)
    response = await http.post(
        f"eventsessions/{session_id}/register",
        content="email=ivan@example.org&name=Иван&secondName=Иванов&role=GUEST"
                "&isAutoEnter=true&sendEmail=false".encode(),
        headers=FORM,
    )
    assert response.status_code == 201
    body = response.json()
    assert _types(body) == _types(REGISTER_RESPONSE)
    assert re.fullmatch(rf"https://events\.webinar\.ru/myorg/{event_id}/{HEX32}", body["link"])
    listed = (await http.get(f"eventsessions/{session_id}/participations")).json()
    assert isinstance(listed, list) and len(listed) == 1
    item = listed[0]
    assert {k: _types(item[k]) for k in PARTICIPATION_ITEM} == _types(PARTICIPATION_ITEM)
    assert body["link"].endswith("/" + item["url"])
    response = await http.post(
        "participations/delete", content=f"participationIds[]={item['id']}", headers=FORM
    )
    assert (response.status_code, response.json()) == (200, {"count": 1})
    assert (await http.get(f"eventsessions/{session_id}/participations")).json() == []


async def test_register_without_email_is_a_400_with_field_errors(http) -> None:
    _, session_id = await _event_and_session(http)
    response = await http.post(
        f"eventsessions/{session_id}/register", content="name=Ivan", headers=FORM
    )
    assert (response.status_code, response.json()) == (400, BAD_REQUEST_NO_EMAIL)


async def test_invite_answers_an_array_and_enforces_fifty(http) -> None:
    _, session_id = await _event_and_session(http)
    users = "&".join(
        f"users[{n}][email]=u{n}@example.org&users[{n}][name]=U{n}" for n in range(3)
    ) + "&users[3][name]=no-email&isAutoEnter=true&sendEmail=false"
    response = await http.post(f"eventsessions/{session_id}/invite", content=users, headers=FORM)
    assert response.status_code == 200
    answer = response.json()
    assert [item["email"] for item in answer] == [f"u{n}@example.org" for n in range(3)]
    assert all(item.keys() == INVITE_ITEM_KEYS for item in answer)
    too_many = "&".join(f"users[{n}][email]=x{n}@example.org" for n in range(51))
    response = await http.post(f"eventsessions/{session_id}/invite", content=too_many,
                               headers=FORM)
    assert response.status_code == 400


async def test_put_and_delete_answer_204_with_no_body(http, fake) -> None:
    event_id, session_id = await _event_and_session(http)
    response = await http.put(
        f"organization/events/{event_id}",
        content="startsAt[date][year]=2025&startsAt[date][month]=3&startsAt[date][day]=11"
                "&startsAt[time][hour]=9&startsAt[time][minute]=30&timezone=1",
        headers=FORM,
    )
    assert (response.status_code, response.content) == (204, b"")
    response = await http.put(
        f"eventsessions/{session_id}",
        content="startsAt[date][year]=2025&startsAt[date][month]=3&startsAt[date][day]=11"
                "&startsAt[time][hour]=9&startsAt[time][minute]=30&sendEmail=false",
        headers=FORM,
    )
    assert (response.status_code, response.content) == (204, b"")
    assert fake.state()["sessions"][0]["startsAt"] == "2025-03-11T09:30:00+0300"
    response = await http.request(
        "DELETE", f"eventsessions/{session_id}", content="sendEmail=false", headers=FORM
    )
    assert (response.status_code, response.content) == (204, b"")
    response = await http.delete(f"organization/events/{event_id}")
    assert (response.status_code, response.json()) == (404, NOT_FOUND)


async def test_platform_letters_are_recorded_unless_suppressed(http, fake) -> None:
    _, session_id = await _event_and_session(http)
    await http.post(f"eventsessions/{session_id}/register", content="email=a@example.org",
                    headers=FORM)
    await http.request("DELETE", f"eventsessions/{session_id}")
    assert [letter["kind"] for letter in fake.state()["letters"]] == ["registered", "cancelled"]


async def test_unknown_ids_and_paths_are_404(http) -> None:
    for path in ("eventsessions/1", "organization/events/1", "eventsessions/abc",
                 "no/such/path"):
        response = await http.get(path)
        assert (response.status_code, response.json()) == (404, NOT_FOUND), path


async def test_members_and_timezones(http, fake) -> None:
    fake.add_member("boss@example.org", name="Boss")
    members = (await http.get("organization/members", params={"email": "BOSS@example.org"})).json()
    assert [m["email"] for m in members] == ["boss@example.org"]
    assert members[0].keys() == MEMBER_ITEM_KEYS
    assert (await http.get("organization/members", params={"perPage": 7})).status_code == 400
    zones = (await http.get("timezones")).json()
    assert {"id": 1, "name": "Europe/Moscow", "description": zones[0]["description"],
            "offset": 10800} in zones
    assert any(z["id"] == 95 and z["name"] == "Pacific/Samoa" and z["offset"] == -39600
               for z in zones)


async def test_token_is_required(fake) -> None:
    async with httpx.AsyncClient(base_url=fake.api_url + "/") as anonymous:
        response = await anonymous.get("timezones")
        assert (response.status_code, response.json()) == (401, NO_TOKEN)
        response = await anonymous.get("timezones", headers={"X-Auth-Token": "nope"})
        assert response.status_code == 403
        assert response.json()["error"]["code"] == 403


async def test_rate_limit_answers_the_documented_429() -> None:
    now = [0.0]
    async with (
        running_fake_webinar(token="t" * 10, rate_limit=2, clock=lambda: now[0]) as fake,
        httpx.AsyncClient(base_url=fake.api_url + "/", headers={"x-auth-token": "t" * 10})
        as http,
    ):
        statuses = [(await http.get("timezones")).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        limited = await http.get("timezones")
        assert limited.json() == RATE_LIMITED
        now[0] += 1.0
        assert (await http.get("timezones")).status_code == 200


async def test_fake_endpoints_state_and_faults_over_http(http, fake) -> None:
    await _event_and_session(http)
    async with httpx.AsyncClient(base_url=fake.root_url) as admin:
        state = (await admin.get("/_fake/state")).json()
        assert [e["eventId"] for e in state["events"]] == [4100001]
        assert state["sessions"][0]["eventId"] == 4100001
        assert state == fake.state()
        created = await admin.post("/_fake/faults", json={"kind": "500", "times": 2,
                                                          "path": "/timezones"})
        assert created.status_code == 201
        assert [(await http.get("timezones")).status_code for _ in range(3)] == [500, 500, 200]
        await admin.post("/_fake/faults", json={"kind": "429", "times": None, "method": "GET"})
        assert (await http.get("timezones")).status_code == 429
        assert (await admin.delete("/_fake/faults")).status_code == 204
        assert (await http.get("timezones")).status_code == 200
        assert (await admin.post("/_fake/faults", json={"kind": "teapot"})).status_code == 400
        member = await admin.post("/_fake/members", json={"email": "x@example.org"})
        assert member.status_code == 201
        assert "x@example.org" in {m["email"] for m in fake.state()["members"]}


async def test_drop_and_bad_json_faults(http, fake) -> None:
    fake.add_fault("drop", path="/timezones")
    with pytest.raises(httpx.RemoteProtocolError):
        await http.get("timezones")
    fake.add_fault("bad_json", path="/timezones")
    response = await http.get("timezones")
    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()
    assert (await http.get("timezones")).status_code == 200
