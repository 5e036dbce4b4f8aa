"""``webinar-proxy serve``: assemble the relay from the settings and run it until told to stop.

Owns process-level concerns only: logging set-up, signal handling (SIGTERM and
SIGINT drain and exit 0), and the order in which parts start and stop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

from webinar_proxy.metrics import (
    HealthCheck,
    Metrics,
    MetricsServer,
    start_metrics_server,
    stop_metrics_server,
)
from webinar_proxy.settings import Settings
from webinar_proxy.smtp.server import RelayServer
from webinar_proxy.store import ConferenceStore, StoreError
from webinar_proxy.wiring import open_services

log = logging.getLogger("webinar_proxy")


def configure_logging(level: int = logging.INFO) -> None:
    """Plain lines on stderr; journald adds its own timestamps, a terminal gets ours."""
    under_journald = "JOURNAL_STREAM" in os.environ
    fmt = "%(levelname)s %(name)s: %(message)s"
    if not under_journald:
        fmt = "%(asctime)s " + fmt
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr, force=True)
    # aiosmtpd logs every command line (addresses included) at INFO.
    logging.getLogger("mail.log").setLevel(logging.WARNING)


def health_checks(relay: RelayServer, store: ConferenceStore) -> dict[str, HealthCheck]:
    """What ``/healthz`` reports: the SMTP listener is bound, the store answers."""

    async def listener() -> bool:
        return relay.is_serving()

    async def store_answers() -> bool:
        await store.ping()
        return True

    return {"listener": listener, "store": store_answers}


async def serve(settings: Settings) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    metrics = Metrics()
    endpoint: MetricsServer | None = None
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with open_services(settings, client_options={"metrics": metrics}) as services:
            relay = RelayServer(settings.smtp, services.pipeline, metrics)
            if settings.metrics.listen is not None:
                endpoint = await start_metrics_server(
                    settings.metrics, metrics, health_checks(relay, services.store)
                )
                for host, port in endpoint.addresses:
                    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
                    log.info("metrics and health on http://%s/ (/metrics, /healthz)", shown)
            await relay.start()
            for host, port in relay.addresses:
                shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
                log.info("listening on %s, next hop %s", shown, settings.smtp.next_hop)
            scheduler = asyncio.create_task(services.scheduler.run_forever(stop))
            await stop.wait()
            log.info("shutting down: waiting up to %.0fs for transactions in flight",
                     settings.smtp.shutdown_grace_seconds)
            await relay.shutdown(settings.smtp.shutdown_grace_seconds)
            await scheduler
    finally:
        await stop_metrics_server(endpoint)
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    log.info("stopped")


def run_service(settings: Settings) -> int:
    configure_logging()
    try:
        asyncio.run(serve(settings))
    except (OSError, StoreError) as exc:
        log.error("cannot start: %s", exc)
        return 1
    return 0
