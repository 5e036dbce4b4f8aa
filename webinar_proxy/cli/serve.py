"""``webinar-proxy serve``: assemble the relay from the settings and run it until told to stop.

Owns process-level concerns only: logging set-up, signal handling (SIGTERM and
SIGINT drain and exit 0, killing engine workers still busy after the grace period;
SIGHUP re-reads templates and policy without waiting for any engine worker), systemd notify, and
the order in which parts start and stop.  With ``smtp.workers`` > 1 the same runs in
each worker process under a supervisor (``cli/group.py``).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from typing import Any

from webinar_proxy import sdnotify
from webinar_proxy.invitation import EngineOptions, EngineUnavailable
from webinar_proxy.lifecycle.invitations import InvitationPipeline
from webinar_proxy.settings import ConfigError, Settings, settings_warnings
from webinar_proxy.store import StoreError
from webinar_proxy.wiring import Product, running_product

log = logging.getLogger("webinar_proxy")


#: Sections that only a restart applies (they shape listeners, connections and pools).
RESTART_SECTIONS = ("smtp", "webinar", "store", "scheduler", "metrics", "logging", "milter")
#: Policy settings that only a restart applies (the engine pool's workers are started once).
RESTART_POLICY = ("engine_workers", "engine_memory_mb")


def reread(running: Settings, load: Callable[[], Settings]) -> tuple[Settings, EngineOptions] | None:
    """Re-read the configuration for a reload: the settings to run on (restart-only
    sections kept as running) and the new engine options; None, with the problems
    logged, when the new configuration is bad."""
    try:
        new = load()
        options = EngineOptions.from_settings(new)
    except ConfigError as exc:
        for problem in exc.problems:
            log.error("reload refused: %s", problem)
        return None
    except ValueError as exc:
        log.error("reload refused: policy: %s", exc)
        return None
    pending = [name for name in RESTART_SECTIONS if getattr(new, name) != getattr(running, name)]
    pending += [f"policy.{name}" for name in RESTART_POLICY
                if getattr(new.policy, name) != getattr(running.policy, name)]
    if pending:
        log.warning("reload: changes in [%s] take effect after a restart", "], [".join(pending))
    kept = {name: getattr(running, name) for name in RESTART_SECTIONS}
    kept["policy"] = new.policy.model_copy(
        update={name: getattr(running.policy, name) for name in RESTART_POLICY})
    return new.model_copy(update=kept), options


def reload(pipeline: InvitationPipeline, running: Settings, load: Callable[[], Settings]) -> Settings:
    """SIGHUP (systemd's ExecReload): re-read the configuration and apply templates and policy.

    Listeners and connections are not touched (nothing is dropped); messages that
    arrive after the reload use the new templates and policy.  Returns the settings now
    in force; on a bad configuration the running one stays and the problems are logged.
    """
    loaded = reread(running, load)
    if loaded is None:
        return running
    new, options = loaded
    pipeline.reconfigure(options, new.policy)
    # The engine pool keeps its workers (a reload never waits for a busy or stuck one).
    log.info("reloaded: templates and policy (language=%s)", new.policy.language)
    return new


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
    watchdog: asyncio.Task[None] | None = None
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with running_product(settings, stop=stop) as product:
            loop.add_signal_handler(
                signal.SIGHUP, _on_sighup, {"settings": settings}, product.services.pipeline,
                load or (lambda: settings),
            )
            _log_listeners(product)
            status = []
            if product.relay is not None:
                status.append(f"relaying to {settings.smtp.next_hop}")
            if product.milter is not None:
                status.append(f"milter on {settings.milter.listen}")
            # The store is open and the listeners bound: tell systemd (Type=notify) we are up.
            sdnotify.notify("READY=1", "STATUS=" + ", ".join(status))
            if (interval := sdnotify.watchdog_interval()) is not None:
                watchdog = asyncio.create_task(_watchdog(interval))
            await stop.wait()
            sdnotify.notify("STOPPING=1", "STATUS=draining transactions in flight")
            log.info("shutting down: waiting up to %.0fs for transactions in flight",
                     settings.smtp.shutdown_grace_seconds)
            await product.shutdown(settings.smtp.shutdown_grace_seconds)
    finally:
        if watchdog is not None:
            watchdog.cancel()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)
    log.info("stopped")


def _log_listeners(product: Product) -> None:
    if product.endpoint is not None:
        for host, port in product.endpoint.addresses:
            log.info("metrics and health on http://%s/ (/metrics, /healthz)", _shown(host, port))
    if product.relay is not None:
        for host, port in product.relay.addresses:
            log.info("listening on %s, next hop %s", _shown(host, port), product.settings.smtp.next_hop)
    if product.milter is not None:
        for address in product.milter.addresses:
            log.info("milter listening on %s", address)


def _shown(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def run_service(settings: Settings, load: Callable[[], Settings] | None = None) -> int:
    """Run ``serve``; logging is already set up by the command line."""
    for warning in settings_warnings(settings):
        log.warning("%s", warning)
    if (count := settings.smtp.worker_count()) > 1:
        from webinar_proxy.cli.group import run_group

        return run_group(settings, load or (lambda: settings), count)
    try:
        asyncio.run(serve(settings, load))
    except (OSError, StoreError, EngineUnavailable) as exc:
        log.error("cannot start: %s", exc)
        return 1
    return 0
