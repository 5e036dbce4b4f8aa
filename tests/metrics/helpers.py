"""Scraping the real metrics endpoint over HTTP and reading the samples back."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping

import httpx
from prometheus_client.parser import text_string_to_metric_families

from webinar_proxy.metrics import (
    HealthCheck,
    Metrics,
    MetricsServer,
    start_metrics_server,
    stop_metrics_server,
)
from webinar_proxy.settings import HostPort, MetricsSettings

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@contextlib.asynccontextmanager
async def serving_metrics(
    metrics: Metrics, checks: Mapping[str, HealthCheck] | None = None
) -> AsyncIterator[MetricsServer]:
    """The endpoint on an ephemeral loopback port for the ``with`` block."""
    settings = MetricsSettings(listen=HostPort("127.0.0.1", 0))
    server = await start_metrics_server(settings, metrics, checks or {})
    try:
        yield server
    finally:
        await stop_metrics_server(server)


async def get(server: MetricsServer, path: str) -> httpx.Response:
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        return await http.get(f"http://127.0.0.1:{server.port}{path}")


async def scrape(server: MetricsServer) -> tuple[str, Samples]:
    """``GET /metrics``: the raw text and its samples by (name, labels)."""
    response = await get(server, "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 when the series does not exist."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def label_values(samples: Samples, name: str, label: str) -> set[str]:
    return {dict(labels)[label] for (sample, labels) in samples if sample == name and label in dict(labels)}
