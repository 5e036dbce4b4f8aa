"""Prometheus metrics and the ``/metrics`` + ``/healthz`` HTTP endpoint.

This module owns every metric the relay exports (see ``docs/metrics.md``).  They
live on a ``Metrics`` object with its own ``CollectorRegistry`` — never the
process-global one — so tests and several relays in one process do not collide.
``serve`` creates one per service and passes it down; code that was given none
uses ``NO_METRICS``, which accepts every call and records nothing.

What the rest of the relay calls (all synchronous, cheap, never raising):

* ``metrics.mail(outcome)`` — one finished mail: ``passed`` (forwarded unchanged),
  ``rewritten``, ``tempfailed`` (4xx to the client) or ``rejected`` (5xx).
* ``metrics.observe_data_phase(seconds)`` — end of DATA to the final reply.
* ``metrics.api_call(operation, status, seconds)`` — one HTTP attempt to the Webinar
  API: ``operation`` a stable name (``create_event``), ``status`` the HTTP status code
  or ``"error"`` for a transport failure.
* ``metrics.conference_operation(kind, result)`` — one conference operation decided
  by the lifecycle or the scheduler: ``kind`` such as ``create``, ``update``,
  ``delete``, ``register``, ``unregister``, ``roll_forward``; ``result`` one of
  ``ok``, ``failed``, ``deferred``.
* ``metrics.set_scheduler_queue(queue, n)`` — the scheduler's view of its work:
  ``queue`` such as ``pending_deletes``, ``due_rollovers`` or ``registrations``.
* ``metrics.engine_stopped(reason)`` — an engine worker was killed and replaced
  because its call passed a limit: ``timeout``, ``memory`` or ``crash``.

Label values are checked so that a bug cannot blow up the number of series or put
anything but a short name into a label: an unexpected outcome/result becomes
``other``, a kind/operation/queue that is not a short lower-case identifier becomes
``other``.  Nothing here ever sees a URL, an address or the API token.

``start_metrics_server(settings, metrics, health_checks)`` serves ``GET /metrics``
(Prometheus text format, or OpenMetrics when asked for) and ``GET /healthz`` from the
service's own event loop with aiohttp; ``stop_metrics_server`` (or ``await
server.stop()``) shuts it down.  Health checks are async callables passed in, so this
module imports neither the SMTP edge nor the store.
"""

from __future__ import annotations

import asyncio
import json
import logging
import platform
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.exposition import choose_encoder

from webinar_proxy import __version__

if TYPE_CHECKING:
    from aiohttp import web

    from webinar_proxy.settings import MetricsSettings

log = logging.getLogger("webinar_proxy.metrics")

PREFIX = "webinar_proxy_"
MAIL_OUTCOMES = ("passed", "rewritten", "tempfailed", "rejected")
CONFERENCE_RESULTS = ("ok", "failed", "deferred")
#: Kinds pre-created at zero so dashboards show them before the first occurrence.
CONFERENCE_KINDS = ("create", "update", "delete", "register", "unregister", "roll_forward")
ENGINE_STOP_REASONS = ("timeout", "memory", "crash")
OTHER = "other"

DATA_PHASE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
API_CALL_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)

#: A health check: returns True when healthy; False, an exception or a timeout is unhealthy.
HealthCheck = Callable[[], Awaitable[bool]]
HEALTH_CHECK_TIMEOUT = 5.0

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


def _name(value: str) -> str:
    return value if isinstance(value, str) and _NAME_RE.match(value) else OTHER


def _status(value: int | str) -> str:
    if isinstance(value, int) and 100 <= value <= 599:
        return str(value)
    return "error"


class Metrics:
    """Every metric of one relay, on its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._mails = Counter(
            PREFIX + "mails", "Mails finished, by outcome.", ["outcome"], registry=self.registry
        )
        self._data_phase = Histogram(
            PREFIX + "data_phase_seconds",
            "Time from the end of DATA to the final reply.",
            buckets=DATA_PHASE_BUCKETS, registry=self.registry,
        )
        self._conference_operations = Counter(
            PREFIX + "conference_operations",
            "Conference operations, by kind and result.",
            ["kind", "result"], registry=self.registry,
        )
        self._api_calls = Counter(
            PREFIX + "api_calls",
            "HTTP attempts to the Webinar API, by operation and HTTP status ('error': no answer).",
            ["operation", "status"], registry=self.registry,
        )
        self._api_latency = Histogram(
            PREFIX + "api_call_seconds",
            "Duration of one HTTP attempt to the Webinar API, by operation.",
            ["operation"], buckets=API_CALL_BUCKETS, registry=self.registry,
        )
        self._scheduler_queue = Gauge(
            PREFIX + "scheduler_queue",
            "Work waiting for the scheduler, by queue (pending_deletes, due_rollovers, "
            "registrations).",
            ["queue"], registry=self.registry,
            # In a group only the scheduler's worker sets it (ignored in one process).
            multiprocess_mode="livemax",
        )
        self._engine_stopped = Counter(
            PREFIX + "engine_stopped",
            "Engine workers killed and replaced, by reason (timeout, memory, crash); "
            "each one's mail was forwarded unchanged.",
            ["reason"], registry=self.registry,
        )
        build = Info(PREFIX + "build", "Version of webinar-proxy and Python.", registry=self.registry)
        build.info({"version": __version__, "python": platform.python_version()})
        for outcome in MAIL_OUTCOMES:
            self._mails.labels(outcome)
        for kind in CONFERENCE_KINDS:
            for result in CONFERENCE_RESULTS:
                self._conference_operations.labels(kind, result)
        for reason in ENGINE_STOP_REASONS:
            self._engine_stopped.labels(reason)

    # ---- what the relay calls ------------------------------------------------------

    def mail(self, outcome: str) -> None:
        """Count one finished mail: passed, rewritten, tempfailed or rejected."""
        self._mails.labels(outcome if outcome in MAIL_OUTCOMES else OTHER).inc()

    def observe_data_phase(self, seconds: float) -> None:
        self._data_phase.observe(max(seconds, 0.0))

    def api_call(self, operation: str, status: int | str, seconds: float) -> None:
        """One HTTP attempt: ``status`` the HTTP code, or ``"error"`` when none came."""
        operation = _name(operation)
        self._api_calls.labels(operation, _status(status)).inc()
        self._api_latency.labels(operation).observe(max(seconds, 0.0))

    def conference_operation(self, kind: str, result: str) -> None:
        """One conference operation: ``result`` is ok, failed or deferred."""
        self._conference_operations.labels(
            _name(kind), result if result in CONFERENCE_RESULTS else OTHER
        ).inc()

    def set_scheduler_queue(self, queue: str, n: int) -> None:
        """How many items wait in one scheduler queue now."""
        self._scheduler_queue.labels(_name(queue)).set(max(n, 0))

    def engine_stopped(self, reason: str) -> None:
        """An engine worker was stopped: timeout, memory or crash."""
        self._engine_stopped.labels(reason if reason in ENGINE_STOP_REASONS else OTHER).inc()

    # ---- exposition ----------------------------------------------------------------

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The registry as (body, content type); ``accept`` is the scraper's Accept header."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


class _NoMetrics(Metrics):
    """Accepts every call and records nothing (no registry either)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)

    def mail(self, outcome: str) -> None:
        pass

    def observe_data_phase(self, seconds: float) -> None:
        pass

    def api_call(self, operation: str, status: int | str, seconds: float) -> None:
        pass

    def conference_operation(self, kind: str, result: str) -> None:
        pass

    def set_scheduler_queue(self, queue: str, n: int) -> None:
        pass

    def engine_stopped(self, reason: str) -> None:
        pass


#: The default for code given no ``Metrics``: every method is a no-op.
NO_METRICS: Metrics = _NoMetrics()


class GroupMetrics(_NoMetrics):
    """A supervisor's metrics: the sum over its workers, read at each scrape.

    Workers run with ``PROMETHEUS_MULTIPROC_DIR`` set to ``path`` (prometheus_client's
    multiprocess mode), so every value they record lives in a file there; the files of
    a worker that died stay, so counters never go backwards when one is replaced.
    """

    def __init__(self, path: str) -> None:
        from prometheus_client.multiprocess import MultiProcessCollector

        super().__init__()
        MultiProcessCollector(self.registry, path=path)
        build = Info(PREFIX + "build", "Version of webinar-proxy and Python.", registry=self.registry)
        build.info({"version": __version__, "python": platform.python_version()})
        # The supervisor's own (not summed: only it knows them).
        self._replaced = Counter(
            PREFIX + "workers_replaced", "Relay workers replaced, by why.", ["reason"],
            registry=self.registry,
        )
        self._connections = Gauge(
            PREFIX + "worker_connections", "Connections each relay worker is serving, per listener.",
            ["worker", "listener"], registry=self.registry,
        )

    def worker_replaced(self, reason: str) -> None:
        """A worker exited (``exited``) or was killed for its silence (``stuck``)."""
        self._replaced.labels(reason if reason in ("exited", "stuck") else "other").inc()

    def set_worker_connections(self, worker: int, listener: str, n: int) -> None:
        self._connections.labels(str(worker), listener).set(n)


# ---- the HTTP endpoint -------------------------------------------------------------


async def run_health_checks(checks: Mapping[str, HealthCheck]) -> dict[str, bool]:
    """Run every check at once, each bounded by ``HEALTH_CHECK_TIMEOUT``; name → healthy."""

    async def one(name: str, check: HealthCheck) -> bool:
        try:
            async with asyncio.timeout(HEALTH_CHECK_TIMEOUT):
                return bool(await check())
        except Exception as exc:
            # Probes come every few seconds; the reason goes to the debug log only.
            log.debug("health check %s failed: %s", name, type(exc).__name__)
            return False

    names = list(checks)
    results = await asyncio.gather(*(one(name, checks[name]) for name in names))
    return dict(zip(names, results, strict=True))


class MetricsServer:
    """The running endpoint: its bound addresses and ``stop()``."""

    def __init__(self, runner: web.AppRunner) -> None:
        self.runner = runner

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [address[:2] for address in self.runner.addresses]

    @property
    def port(self) -> int:
        return self.addresses[0][1]

    async def stop(self) -> None:
        await self.runner.cleanup()


def _application(metrics: Metrics, health_checks: Mapping[str, HealthCheck]) -> web.Application:
    from aiohttp import web

    async def metrics_view(request: web.Request) -> web.Response:
        body, content_type = metrics.render(request.headers.get("Accept"))
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def healthz_view(request: web.Request) -> web.Response:
        results = await run_health_checks(health_checks)
        healthy = all(results.values())
        payload: dict[str, Any] = {"status": "ok" if healthy else "failing", **results}
        if not healthy:
            payload["failed"] = [name for name, ok in results.items() if not ok]
        return web.Response(
            text=json.dumps(payload), status=200 if healthy else 503,
            content_type="application/json", headers={"Cache-Control": "no-store"},
        )

    app = web.Application()
    app.router.add_get("/metrics", metrics_view)
    app.router.add_get("/healthz", healthz_view)
    return app


async def start_metrics_server(
    settings: MetricsSettings,
    metrics: Metrics,
    health_checks: Mapping[str, HealthCheck],
) -> MetricsServer:
    """Serve ``/metrics`` and ``/healthz`` on ``settings.listen`` in the running loop.

    ``health_checks`` maps a name (``listener``, ``store``) to an async check; the
    ``/healthz`` body reports each by name.  Raises ``ValueError`` when
    ``settings.listen`` is unset and ``OSError`` when the address cannot be bound.
    """
    from aiohttp import web

    if settings.listen is None:
        raise ValueError("metrics.listen is not set")
    host, port = settings.listen  # off loopback: warned about with the settings (settings_warnings)
    # No access log: a scrape every few seconds would drown the mail log lines.
    runner = web.AppRunner(_application(metrics, dict(health_checks)), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host=host, port=port, reuse_address=True)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return MetricsServer(runner)


async def stop_metrics_server(server: MetricsServer | None) -> None:
    """Stop the endpoint (a no-op for ``None``, i.e. when it was never started)."""
    if server is not None:
        await server.stop()
