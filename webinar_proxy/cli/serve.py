"""``webinar-proxy serve``: assemble the relay from the settings and run it until told to stop.

Owns process-level concerns only: logging set-up, signal handling (SIGTERM and
SIGINT drain and exit 0; SIGHUP re-reads templates and policy), systemd notify, and
the order in which parts start and stop.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from typing import Any

from webinar_proxy import sdnotify
from webinar_proxy.invitation.engine import EngineOptions
from webinar_proxy.lifecycle.invitations import InvitationPipeline
from webinar_proxy.metrics import (
    HealthCheck,
    Metrics,
    MetricsServer,
    start_metrics_server,
    stop_metrics_server,
)
from webinar_proxy.milter.server import MilterServer
from webinar_proxy.settings import ConfigError, Settings, settings_warnings
from webinar_proxy.smtp.server import RelayServer
from webinar_proxy.store import ConferenceStore, StoreError
from webinar_proxy.wiring import open_services

log = logging.getLogger("webinar_proxy")


def health_checks(relay: RelayServer | None, store: ConferenceStore,
                  milter: MilterServer | None = None) -> dict[str, HealthCheck]:
    """What ``/healthz`` reports: the listeners are bound, the store answers."""

    async def listener() -> bool:
        return all(door.is_serving() for door in (relay, milter) if door is not None)

    async def store_answers() -> bool:
        await store.ping()
        return True

    return {"listener": listener, "store": store_answers}


#: Sections that only a restart applies (they shape listeners, connections and pools).
RESTART_SECTIONS = ("smtp", "webinar", "store", "scheduler", "metrics", "logging", "milter")


def reload(pipeline: InvitationPipeline, running: Settings, load: Callable[[], Settings]) -> Settings:
    """SIGHUP (systemd's ExecReload): re-read the configuration and apply templates and policy.

    Listeners and connections are not touched (nothing is dropped); messages that
    arrive after the reload use the new templates and policy.  Returns the settings now
    in force; on a bad configuration the running one stays and the problems are logged.
    """
    try:
        new = load()
        options = EngineOptions.from_settings(new)
    except ConfigError as exc:
        for problem in exc.problems:
            log.error("reload refused: %s", problem)
        return running
    except ValueError as exc:
        log.error("reload refused: policy: %s", exc)
        return running
    pipeline.reconfigure(options, new.policy)
    pending = [name for name in RESTART_SECTIONS if getattr(new, name) != getattr(running, name)]
    if pending:
        log.warning("reload: changes in [%s] take effect after a restart", "], [".join(pending))
    log.info("reloaded: templates and policy (language=%s)", new.policy.language)
    return new.model_copy(update={name: getattr(running, name) for name in RESTART_SECTIONS})


def _on_sighup(state: dict[str, Any], pipeline: InvitationPipeline, load: Callable[[], Settings]) -> None:
    log.info("reload requested")
    sdnotify.notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")
    try:
        state["settings"] = reload(pipeline, state["settings"], load)
    except Exception:
        log.exception("reload failed; running on as before")
    sdnotify.notify("READY=1")


async def _watchdog(interval: float) -> None:
    """Ping systemd's watchdog from the event loop, so a stuck loop gets the service restarted."""
    while True:
        sdnotify.notify("WATCHDOG=1")
        await asyncio.sleep(interval)


async def serve(settings: Settings, load: Callable[[], Settings] | None = None) -> None:
    """Run until SIGTERM/SIGINT; ``load`` re-reads the configuration on SIGHUP."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    metrics = Metrics()
    endpoint: MetricsServer | None = None
    watchdog: asyncio.Task[None] | None = None
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with open_services(settings, metrics=metrics) as services:
            loop.add_signal_handler(
                signal.SIGHUP, _on_sighup, {"settings": settings}, services.pipeline,
                load or (lambda: settings),
            )
            relay = RelayServer(settings.smtp, services.pipeline, metrics) if settings.smtp.enabled else None
            milter = None
            if settings.milter.listen is not None:
                milter = MilterServer(settings.milter, services.pipeline,
                                      deadline_seconds=settings.smtp.deadline_seconds, metrics=metrics)
            if settings.metrics.listen is not None:
                endpoint = await start_metrics_server(
                    settings.metrics, metrics, health_checks(relay, services.store, milter)
                )
                for host, port in endpoint.addresses:
                    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
                    log.info("metrics and health on http://%s/ (/metrics, /healthz)", shown)
            status = []
            if relay is not None:
                await relay.start()
                for host, port in relay.addresses:
                    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
                    log.info("listening on %s, next hop %s", shown, settings.smtp.next_hop)
                status.append(f"relaying to {settings.smtp.next_hop}")
            if milter is not None:
                await milter.start()
                for address in milter.addresses:
                    log.info("milter listening on %s", address)
                status.append(f"milter on {settings.milter.listen}")
            # The store is open and the listeners bound: tell systemd (Type=notify) we are up.
            sdnotify.notify("READY=1", "STATUS=" + ", ".join(status))
            if (interval := sdnotify.watchdog_interval()) is not None:
                watchdog = asyncio.create_task(_watchdog(interval))
            scheduler = asyncio.create_task(services.scheduler.run_forever(stop))
            await stop.wait()
            sdnotify.notify("STOPPING=1", "STATUS=draining transactions in flight")
            log.info("shutting down: waiting up to %.0fs for transactions in flight",
                     settings.smtp.shutdown_grace_seconds)
            await asyncio.gather(*(
                door.shutdown(settings.smtp.shutdown_grace_seconds)
                for door in (relay, milter) if door is not None
            ))
            await scheduler
    finally:
        if watchdog is not None:
            watchdog.cancel()
        await stop_metrics_server(endpoint)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)
    log.info("stopped")


def run_service(settings: Settings, load: Callable[[], Settings] | None = None) -> int:
    """Run ``serve``; logging is already set up by the command line."""
    for warning in settings_warnings(settings):
        log.warning("%s", warning)
    try:
        asyncio.run(serve(settings, load))
    except (OSError, StoreError) as exc:
        log.error("cannot start: %s", exc)
        return 1
    return 0
