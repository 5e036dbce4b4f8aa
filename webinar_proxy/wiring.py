"""The one composition root: the running product assembled from the settings.

``open_services`` opens the store and the Webinar client, starts the engine pool
(its workers are up before anything listens) and builds the engine options, the
conference manager, the invitation pipeline and the scheduler.
``running_product`` adds the front doors (SMTP and/or milter), the metrics and
health endpoint and the scheduler's task, starts them in order and stops them in
reverse; the engine pool's workers are killed right after the front doors' grace,
so a stuck worker never keeps the relay alive.  ``serve`` and ``demo`` both run
``running_product``, so the demo is the same product as the service: same parts,
same metrics, same scheduler.

This is the only module that knows every room; nothing imports it but the
commands.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from webinar_proxy.invitation import EngineOptions, EnginePool
from webinar_proxy.lifecycle.conferences import ConferenceManager, utc_now
from webinar_proxy.lifecycle.invitations import InvitationPipeline
from webinar_proxy.lifecycle.registrations import RegistrationWorker
from webinar_proxy.lifecycle.scheduler import Scheduler
from webinar_proxy.metrics import (
    NO_METRICS,
    HealthCheck,
    Metrics,
    MetricsServer,
    start_metrics_server,
    stop_metrics_server,
)
from webinar_proxy.milter.server import MilterServer
from webinar_proxy.settings import Settings
from webinar_proxy.smtp.server import RelayServer
from webinar_proxy.smtp.submit import submit
from webinar_proxy.store import ConferenceStore, open_configured_store
from webinar_proxy.webinar import WebinarClient
from webinar_proxy.webinar.pacing import SharedPace


@dataclass(frozen=True)
class Services:
    store: ConferenceStore
    client: WebinarClient
    manager: ConferenceManager
    pipeline: InvitationPipeline
    scheduler: Scheduler
    engine: EnginePool

    @property
    def registrations(self) -> RegistrationWorker:
        return self.scheduler.registrations


@contextlib.asynccontextmanager
async def open_services(
    settings: Settings,
    *,
    clock: Callable[[], datetime] = utc_now,
    client_options: dict[str, Any] | None = None,
    metrics: Metrics = NO_METRICS,
) -> AsyncIterator[Services]:
    store = await open_configured_store(settings.store)
    policy = settings.policy
    engine = EnginePool(workers=settings.engine_pool_size(), timeout_seconds=policy.engine_timeout_seconds,
                        memory_mb=policy.engine_memory_mb, on_stopped=metrics.engine_stopped)
    try:
        overrides = dict(client_options or {})
        if settings.webinar.token is not None and "pace" not in overrides:
            # One pace for the whole key: every relay and worker on this store shares it.
            overrides["pace"] = SharedPace(
                store, settings.webinar.token.get_secret_value().strip(),
                overrides.get("rate_limit", settings.webinar.rate_limit),
            )
        client = WebinarClient.from_settings(settings.webinar, metrics=metrics, **overrides)
        try:
            options = EngineOptions.from_settings(settings)
            await engine.start()
            manager = ConferenceManager(
                store, client, options,
                max_attendees=settings.policy.max_attendees,
                delete_retry_max=timedelta(seconds=settings.scheduler.delete_retry_max_seconds),
                clock=clock,
                metrics=metrics,
                engine=engine,
            )

            async def send_notice(mail_from: str, rcpt_tos: Sequence[str], data: bytes) -> None:
                # Behind a milter there is no next hop of ours: notices go to the MTA itself.
                target = settings.milter.notice_submit or settings.smtp.next_hop
                await submit(target, mail_from, rcpt_tos, data,
                             local_hostname=settings.smtp.hostname)

            pipeline = InvitationPipeline(
                manager, store, options, settings.policy, send_notice=send_notice, clock=clock,
            )
            scheduler = Scheduler(
                manager, store, settings.scheduler,
                retention=timedelta(days=settings.store.deleted_retention_days),
            )
            yield Services(store, client, manager, pipeline, scheduler, engine)
        finally:
            await engine.close()
            await client.aclose()
    finally:
        await store.close()


def health_checks(relay: RelayServer | None, store: ConferenceStore,
                  milter: MilterServer | None = None) -> dict[str, HealthCheck]:
    """What ``/healthz`` reports: the listeners are bound, the store answers."""

    async def listener() -> bool:
        return all(door.is_serving() for door in (relay, milter) if door is not None)

    async def store_answers() -> bool:
        await store.ping()
        return True

    return {"listener": listener, "store": store_answers}


@dataclass(frozen=True)
class WorkerRole:
    """What a worker of a group (see ``cli/group.py``) does differently."""

    #: One worker of the group runs the scheduler.
    run_scheduler: bool


@dataclass
class Product:
    """The running product: services, front doors, metrics endpoint, scheduler."""

    settings: Settings
    services: Services
    metrics: Metrics
    relay: RelayServer | None
    milter: MilterServer | None
    endpoint: MetricsServer | None = None
    #: Set to stop the scheduler (``serve`` sets it on SIGTERM/SIGINT).
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def doors(self) -> list[RelayServer | MilterServer]:
        return [door for door in (self.relay, self.milter) if door is not None]

    async def settle(self) -> None:
        """Wait for every front door's follow-ups (organizer notices) to finish."""
        for door in self.doors:
            await door.settle()

    async def shutdown(self, grace: float) -> None:
        """Stop accepting; let messages in flight finish within ``grace``."""
        await asyncio.gather(*(door.shutdown(grace) for door in self.doors))


@contextlib.asynccontextmanager
async def running_product(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    clock: Callable[[], datetime] = utc_now,
    client_options: dict[str, Any] | None = None,
    worker: WorkerRole | None = None,
) -> AsyncIterator[Product]:
    """Start everything ``settings`` asks for; on exit shut it down in reverse order.

    The front doors get ``smtp.shutdown_grace_seconds`` to finish messages in flight
    (unless the caller already shut them down), then the scheduler stops.  A worker
    of a group (``worker``) serves the connections its supervisor hands over, has no
    metrics endpoint of its own and runs the scheduler only when told to.
    """
    metrics = Metrics()
    async with open_services(settings, clock=clock, client_options=client_options,
                             metrics=metrics) as services:
        relay = RelayServer(settings.smtp, services.pipeline, metrics) if settings.smtp.enabled else None
        milter = None
        if settings.milter.listen is not None:
            milter = MilterServer(settings.milter, services.pipeline,
                                  deadline_seconds=settings.smtp.deadline_seconds, metrics=metrics)
        product = Product(settings, services, metrics, relay, milter, stop=stop or asyncio.Event())
        scheduler: asyncio.Task[None] | None = None
        try:
            if settings.metrics.listen is not None and worker is None:
                product.endpoint = await start_metrics_server(
                    settings.metrics, metrics, health_checks(relay, services.store, milter)
                )
            if worker is None:
                for door in product.doors:
                    await door.start()
            else:  # the supervisor accepts and hands connections over (``adopt``)
                for door in product.doors:
                    door.start_adopting()
            if worker is None or worker.run_scheduler:
                scheduler = asyncio.create_task(services.scheduler.run_forever(product.stop))
            yield product
        finally:
            await product.shutdown(settings.smtp.shutdown_grace_seconds)  # a no-op when done
            # Nothing waits for a stuck engine worker: calls still in flight fail (451).
            await services.engine.close()
            product.stop.set()
            if scheduler is not None:
                await scheduler
            await stop_metrics_server(product.endpoint)
