"""Error paths of the client against the fake: typed errors, retries, deadline, pacing,
and the token staying out of errors, logs and reprs."""

from __future__ import annotations

import logging
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from webinar_proxy.testing.fake_webinar import running_fake_webinar
from webinar_proxy.webinar import (
    ConflictError,
    RejectedError,
    TemporaryError,
    UnauthorizedError,
    WebinarClient,
    WebinarError,
)
from webinar_proxy.webinar.pacing import Backoff

START = datetime(2030, 3, 10, 15, 0, tzinfo=ZoneInfo("Europe/Moscow"))


async def test_no_token_is_unauthorized_401(make_client) -> None:
    client = make_client(token="")
    with pytest.raises(UnauthorizedError) as caught:
        await client.ping()
    assert caught.value.status == 401
    assert "Token was not found" in caught.value.message


async def test_wrong_token_is_unauthorized_403(make_client, fake) -> None:
    client = make_client(token="wrong-token-0000000")
    with pytest.raises(UnauthorizedError) as caught:
        await client.create_event(name="x", start=START)
    assert caught.value.status == 403
    assert fake.state()["events"] == []
    assert len(fake.requests) == 1  # no retry on a definite answer


def test_a_missing_token_is_a_configuration_error() -> None:
    with pytest.raises(ValueError):
        WebinarClient("http://127.0.0.1:1/v3", None)


async def test_second_session_on_a_single_event_is_a_conflict(client) -> None:
    event = await client.create_event(name="x", start=START)
    await client.create_session(event.event_id, start=START)
    with pytest.raises(ConflictError) as caught:
        await client.create_session(event.event_id, start=START)
    assert caught.value.status == 409


async def test_missing_email_is_rejected_with_field_errors(client) -> None:
    event = await client.create_event(name="x", start=START)
    session = await client.create_session(event.event_id, start=START)
    with pytest.raises(RejectedError) as caught:
        await client.register(session.session_id, email="")
    assert caught.value.status == 400
    assert caught.value.message == "ERROR_BAD_REQUEST"
    assert dict(caught.value.field_errors) == {"email": "ERROR_EMPTY"}
    assert "email=ERROR_EMPTY" in str(caught.value)


async def test_unknown_owner_is_rejected(client) -> None:
    with pytest.raises(RejectedError) as caught:
        await client.create_event(name="x", start=START, owner_id=4242)
    assert "ownerId" in caught.value.field_errors


@pytest.mark.parametrize("kind", ["500", "429", "drop", "bad_json"])
async def test_one_transient_failure_then_success(client, fake, clock, kind) -> None:
    # A read is retried on every transient failure (creating calls: test_idempotency.py).
    event = await client.create_event(name="x", start=START)
    fake.add_fault(kind, times=1, path="/organization/events/*", method="GET")
    sleeps_before = len(clock.sleeps)
    read = await client.get_event(event.event_id)
    assert read.event_id == event.event_id
    gets = [r for r in fake.requests if r.method == "GET" and r.path.startswith("/organization/")]
    assert len(gets) == 2
    assert len(clock.sleeps) > sleeps_before  # backed off before the retry


async def test_429_backs_off_at_least_one_request_interval(client, fake, clock) -> None:
    fake.add_fault("429", times=2, path="/timezones")
    await client.ping()
    backoffs = [s for s in clock.sleeps if s >= 0.5]
    assert len(backoffs) >= 2


async def test_timeout_then_success(make_client, fake) -> None:
    client = make_client(read_timeout=0.3)
    fake.add_fault("hang", times=1, path="/eventsessions/*")
    event = await client.create_event(name="x", start=START)
    session = await client.create_session(event.event_id, start=START)
    read = await client.get_session(session.session_id)
    assert read.session_id == session.session_id
    assert [r.path for r in fake.requests].count(f"/eventsessions/{session.session_id}") == 2


async def test_500_forever_gives_up_within_the_deadline(make_client, fake, clock) -> None:
    client = make_client(call_deadline=5.0, backoff=Backoff(0.2, 1.0, rand=lambda: 1.0))
    fake.add_fault("500", times=None)
    started = clock.now
    with pytest.raises(TemporaryError) as caught:
        await client.ping()
    assert clock.now - started <= 5.0
    assert "HTTP 500" in str(caught.value)
    assert len(fake.requests) >= 4
    fake.clear_faults()
    await client.ping()


async def test_unreachable_server_is_temporary(make_client, clock) -> None:
    async with running_fake_webinar(token="x" * 12) as gone:
        url = gone.api_url
    client = make_client(api_url=url, call_deadline=3.0)
    with pytest.raises(TemporaryError) as caught:
        await client.ping()
    assert "ConnectError" in str(caught.value)


async def test_pacing_spreads_ten_calls_over_four_and_a_half_seconds(client, fake, clock) -> None:
    started = clock.now
    for _ in range(10):
        await client.ping()
    assert clock.now - started >= 4.5
    assert len(fake.requests) == 10


async def test_paced_client_never_trips_the_fakes_two_per_second_limit(make_client, clock) -> None:
    async with running_fake_webinar(token="paced-token-123", rate_limit=2, clock=clock) as fake:
        client = make_client(api_url=fake.api_url, token="paced-token-123")
        for _ in range(10):
            await client.ping()
        assert [r.status for r in fake.requests] == [200] * 10


async def test_unpaced_client_recovers_from_the_fakes_rate_limit(make_client, clock) -> None:
    async with running_fake_webinar(token="rushed-token-123", rate_limit=2, clock=clock) as fake:
        client = make_client(api_url=fake.api_url, token="rushed-token-123", rate_limit=1000)
        for _ in range(5):
            await client.ping()
        statuses = [r.status for r in fake.requests]
        assert 429 in statuses
        assert statuses.count(200) == 5


async def test_token_stays_out_of_errors_logs_and_reprs(make_client, fake, token, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    client = make_client(call_deadline=2.0)
    errors: list[WebinarError] = []
    fake.add_fault("500", times=None, path="/timezones")
    with pytest.raises(TemporaryError) as temporary:
        await client.ping()
    errors.append(temporary.value)
    fake.clear_faults()
    with pytest.raises(RejectedError) as rejected:
        await client.create_event(name="", start=START)
    errors.append(rejected.value)
    wrong = make_client(token=token + "-but-wrong")
    with pytest.raises(UnauthorizedError) as unauthorized:
        await wrong.ping()
    errors.append(unauthorized.value)
    for error in errors:
        assert token not in str(error)
        assert token not in repr(error)
        assert error.__cause__ is None
    assert token not in repr(client)
    assert token not in caplog.text
    assert "retry" in caplog.text  # the retries were logged


async def test_a_rejected_token_is_logged_at_error_at_most_once_a_minute(make_client, clock, caplog) -> None:
    wrong = "wrong-token-7c0e91d2a4"
    client = make_client(token=wrong)
    caplog.set_level(logging.ERROR, logger="webinar_proxy.webinar.client")

    def alerts() -> list[str]:
        return [r.getMessage() for r in caplog.records
                if r.levelno == logging.ERROR and "the API token is not accepted" in r.getMessage()]

    for _ in range(3):
        with pytest.raises(UnauthorizedError):
            await client.ping()
    assert len(alerts()) == 1
    assert "HTTP 403" in alerts()[0] and "check-config --online" in alerts()[0]
    clock.advance(30)
    with pytest.raises(UnauthorizedError):
        await client.find_member("boss@example.org")
    assert len(alerts()) == 1
    clock.advance(31)
    with pytest.raises(UnauthorizedError):
        await client.find_member("boss@example.org")
    assert len(alerts()) == 2
    assert wrong not in caplog.text


async def test_an_unreachable_api_fails_within_the_connect_budget_not_the_whole_deadline(
    make_client, clock
) -> None:
    async with running_fake_webinar(token="x" * 12) as gone:
        url = gone.api_url
    client = make_client(api_url=url, call_deadline=60.0, connect_retry=10.0)
    started = clock.now
    with pytest.raises(TemporaryError) as caught:
        await client.find_member("boss@example.org")
    assert clock.now - started <= 10.0  # virtual time: backoff sleeps only (refusals are instant)
    assert "cannot connect to" in str(caught.value) and "ConnectError" in str(caught.value)
    assert len(clock.sleeps) >= 2  # it did retry before giving up
