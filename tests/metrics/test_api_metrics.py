"""Webinar API call counters and latency: a real ``WebinarClient`` against the fake Webinar
server, scraped over HTTP; the token and ids never reach the metrics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.metrics.helpers import label_values, scrape, serving_metrics, value
from webinar_proxy.metrics import Metrics
from webinar_proxy.testing.fake_webinar import running_fake_webinar
from webinar_proxy.webinar import WebinarClient
from webinar_proxy.webinar.client import OPERATION_NAMES
from webinar_proxy.webinar.errors import UnauthorizedError
from webinar_proxy.webinar.pacing import Backoff

TOKEN = "metrics-secret-token-7c3e9b2a41"
START = datetime(2030, 3, 10, 14, 0, tzinfo=UTC)


def _client(api_url: str, metrics: Metrics, token: str = TOKEN) -> WebinarClient:
    return WebinarClient(
        api_url, token, metrics=metrics, rate_limit=100.0, read_timeout=5.0, call_deadline=20.0,
        backoff=Backoff(0.01, 0.05, rand=lambda: 0.5),
    )


async def test_api_calls_are_counted_by_operation_and_status():
    metrics = Metrics()
    async with running_fake_webinar(token=TOKEN) as fake, _client(fake.api_url, metrics) as client:
        fake.add_fault("429", path="/events", method="POST")  # retried (a 5xx is not, for a create)
        fake.add_fault("drop", path="/eventsessions/*", method="GET")
        event = await client.create_event(name="Planning", start=START, duration=timedelta(hours=1))
        session = await client.create_session(event.event_id, start=START)
        await client.get_session(session.session_id)
        assert await client.delete_event(event.event_id) is True
        assert await client.delete_event(event.event_id) is False  # 404: already gone
        async with serving_metrics(metrics) as endpoint:
            _, samples = await scrape(endpoint)

    calls = "webinar_proxy_api_calls_total"
    assert value(samples, calls, operation="timezones", status="200") == 1  # cached afterwards
    assert value(samples, calls, operation="create_event", status="429") == 1
    assert value(samples, calls, operation="create_event", status="201") == 1
    assert value(samples, calls, operation="create_session", status="201") == 1
    assert value(samples, calls, operation="get_session", status="error") == 1
    assert value(samples, calls, operation="get_session", status="200") == 1
    assert value(samples, calls, operation="delete_event", status="204") == 1
    assert value(samples, calls, operation="delete_event", status="404") == 1
    latency = "webinar_proxy_api_call_seconds_count"
    assert value(samples, latency, operation="create_event") == 2
    assert value(samples, latency, operation="get_session") == 2
    # Operation labels are the stable names only: no paths, no ids.
    assert label_values(samples, calls, "operation") <= set(OPERATION_NAMES.values())
    assert str(event.event_id) not in label_values(samples, calls, "operation")


async def test_the_token_never_appears_in_the_metrics_output():
    metrics = Metrics()
    async with running_fake_webinar(token=TOKEN) as fake:
        async with _client(fake.api_url, metrics) as client:
            await client.timezones()
            await client.create_event(name="Planning", start=START)
        wrong = TOKEN[::-1]
        async with _client(fake.api_url, metrics, token=wrong) as intruder:
            with pytest.raises(UnauthorizedError):
                await intruder.ping()
        async with serving_metrics(metrics) as endpoint:
            text, samples = await scrape(endpoint)
    assert value(samples, "webinar_proxy_api_calls_total", operation="timezones", status="403") == 1
    assert TOKEN not in text
    assert wrong not in text
    assert fake.api_url not in text
