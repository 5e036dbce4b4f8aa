"""Waiting for SIGTERM or SIGINT in the foreground helper commands (fake-webinar, sink)."""

from __future__ import annotations

import asyncio
import signal


async def until_terminated() -> None:
    """Return once SIGTERM or SIGINT arrives; the handlers are removed again on return."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
