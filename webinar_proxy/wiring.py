"""Assembling the running parts from the settings (the composition root's building blocks).

``open_services`` opens the store and the Webinar client, builds the engine
options, the conference manager, the invitation pipeline and the scheduler, and
closes what it opened on exit.  ``serve`` and ``demo`` both use it, so they run
the same product.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from webinar_proxy.invitation.engine import EngineOptions
from webinar_proxy.lifecycle.conferences import ConferenceManager, utc_now
from webinar_proxy.lifecycle.invitations import InvitationPipeline
from webinar_proxy.lifecycle.scheduler import Scheduler
from webinar_proxy.metrics import NO_METRICS, Metrics
from webinar_proxy.settings import Settings
from webinar_proxy.smtp.submit import submit
from webinar_proxy.store import ConferenceStore, open_configured_store
from webinar_proxy.webinar import WebinarClient


@dataclass(frozen=True)
class Services:
    store: ConferenceStore
    client: WebinarClient
    manager: ConferenceManager
    pipeline: InvitationPipeline
    scheduler: Scheduler


@contextlib.asynccontextmanager
async def open_services(
    settings: Settings,
    *,
    clock: Callable[[], datetime] = utc_now,
    client_options: dict[str, Any] | None = None,
    metrics: Metrics = NO_METRICS,
) -> AsyncIterator[Services]:
    store = await open_configured_store(settings.store)
    try:
        client = WebinarClient.from_settings(settings.webinar, metrics=metrics, **(client_options or {}))
        try:
            options = EngineOptions.from_settings(settings)
            manager = ConferenceManager(
                store, client, options,
                max_attendees=settings.policy.max_attendees,
                delete_retry_max=timedelta(seconds=settings.scheduler.delete_retry_max_seconds),
                clock=clock,
                metrics=metrics,
            )

            async def send_notice(mail_from: str, rcpt_tos: Sequence[str], data: bytes) -> None:
                # Behind a milter there is no next hop of ours: notices go to the MTA itself.
                target = settings.milter.notice_submit or settings.smtp.next_hop
                await submit(target, mail_from, rcpt_tos, data,
                             local_hostname=settings.smtp.hostname)

            pipeline = InvitationPipeline(
                manager, store, options, settings.policy, send_notice=send_notice, clock=clock
            )
            scheduler = Scheduler(
                manager, store, settings.scheduler,
                retention=timedelta(days=settings.store.deleted_retention_days),
            )
            yield Services(store, client, manager, pipeline, scheduler)
        finally:
            await client.aclose()
    finally:
        await store.close()
