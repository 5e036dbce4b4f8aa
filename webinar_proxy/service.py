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
import time

from webinar_proxy import sdnotify
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


def reload(settings: Settings) -> None:
    """SIGHUP (systemd's ExecReload): re-read what may change without a restart. Nothing yet."""


def _on_sighup(settings: Settings) -> None:
    log.info("reload requested")
    sdnotify.notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")
    try:
        reload(settings)
    except Exception:
        log.exception("reload failed; running on as before")
    sdnotify.notify("READY=1")


async def _watchdog(interval: float) -> None:
    """Ping systemd's watchdog from the event loop, so a stuck loop gets the service restarted."""
    while True:
        sdnotify.notify("WATCHDOG=1")
        await asyncio.sleep(interval)


async def serve(settings: Settings) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    metrics = Metrics()
    endpoint: MetricsServer | None = None
    watchdog: asyncio.Task[None] | None = None
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, _on_sighup, settings)
    try:
        async with open_services(settings, metrics=metrics) as services:
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
            # The store is open and the listener bound: tell systemd (Type=notify) we are up.
            sdnotify.notify("READY=1", f"STATUS=relaying to {settings.smtp.next_hop}")
            if (interval := sdnotify.watchdog_interval()) is not None:
                watchdog = asyncio.create_task(_watchdog(interval))
            scheduler = asyncio.create_task(services.scheduler.run_forever(stop))
            await stop.wait()
            sdnotify.notify("STOPPING=1", "STATUS=draining transactions in flight")
            log.info("shutting down: waiting up to %.0fs for transactions in flight",
                     settings.smtp.shutdown_grace_seconds)
            await relay.shutdown(settings.smtp.shutdown_grace_seconds)
            await scheduler
    finally:
        if watchdog is not None:
            watchdog.cancel()
        await stop_metrics_server(endpoint)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
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
