"""``/healthz`` over real HTTP with the service's own checks on a real relay and a real
SQLite store; the metrics settings section."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.metrics.helpers import get, serving_metrics
from tests.support.relay import running_relay, smtp_settings
from tests.support.smtp import running_next_hop
from webinar_proxy.metrics import Metrics, start_metrics_server
from webinar_proxy.settings import ConfigError, HostPort, MetricsSettings, Settings, load_settings
from webinar_proxy.store import open_store
from webinar_proxy.wiring import health_checks


async def test_healthz_is_200_while_listener_and_store_are_up_and_503_with_what_failed(tmp_path: Path):
    store = await open_store(f"sqlite:///{tmp_path}/state.db")
    try:
        async with (
            running_next_hop() as hop,
            running_relay(smtp_settings(hop.port)) as relay,
            serving_metrics(Metrics(), health_checks(relay, store)) as endpoint,
        ):
            healthy = await get(endpoint, "/healthz")
            assert healthy.status_code == 200
            assert healthy.headers["content-type"].startswith("application/json")
            assert healthy.json() == {"status": "ok", "listener": True, "store": True}

            await store.close()
            broken_store = await get(endpoint, "/healthz")
            assert broken_store.status_code == 503
            assert broken_store.json() == {
                "status": "failing", "listener": True, "store": False, "failed": ["store"],
            }

            await relay.shutdown(grace=1)
            both = await get(endpoint, "/healthz")
            assert both.status_code == 503
            assert both.json()["failed"] == ["listener", "store"]
    finally:
        await store.close()


async def test_a_failing_or_raising_check_is_unhealthy_and_its_error_is_not_echoed():
    async def raises() -> bool:
        raise RuntimeError("postgresql://admin:hunter2@db/state unreachable")

    async def fine() -> bool:
        return True

    async with serving_metrics(Metrics(), {"listener": fine, "store": raises}) as endpoint:
        response = await get(endpoint, "/healthz")
        missing = await get(endpoint, "/nothing")
    assert response.status_code == 503
    assert "hunter2" not in response.text
    assert response.json()["failed"] == ["store"]
    assert missing.status_code == 404


async def test_endpoint_needs_an_address():
    with pytest.raises(ValueError, match=r"metrics\.listen"):
        await start_metrics_server(MetricsSettings(), Metrics(), {})


def test_metrics_listen_is_off_by_default_and_parsed_as_host_port(tmp_path: Path, monkeypatch):
    for name in [n for n in os.environ if n.startswith("WEBINAR_PROXY_")]:
        monkeypatch.delenv(name)
    assert Settings().metrics.listen is None
    config = tmp_path / "relay.toml"
    config.write_text('[metrics]\nlisten = "127.0.0.1:9125"\n')
    assert load_settings(config).metrics.listen == HostPort("127.0.0.1", 9125)
    monkeypatch.setenv("WEBINAR_PROXY_METRICS__LISTEN", "[::1]:9126")
    assert load_settings(config).metrics.listen == HostPort("::1", 9126)
    monkeypatch.setenv("WEBINAR_PROXY_METRICS__LISTEN", "nowhere")
    with pytest.raises(ConfigError) as problem:
        load_settings(config)
    assert problem.value.problems == ["metrics.listen: 'nowhere' is not 'host:port' (IPv6 as '[::1]:port')"]
