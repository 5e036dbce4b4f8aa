"""``webinar-proxy fake-webinar``: run the fake Webinar API until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from webinar_proxy.cli.exits import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK
from webinar_proxy.settings import parse_host_port
from webinar_proxy.signals import until_terminated
from webinar_proxy.testing.fake_webinar import FakeWebinarServer


def run_fake_webinar(args: argparse.Namespace) -> int:
    """``webinar-proxy fake-webinar``: serve until SIGTERM/SIGINT; exit code."""
    try:
        listen = parse_host_port(args.listen)
    except ValueError as exc:
        print(f"webinar-proxy: --listen: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if not args.token.strip():
        print("webinar-proxy: --token must not be empty", file=sys.stderr)
        return EXIT_CONFIG
    if args.rate_limit < 0:
        print("webinar-proxy: --rate-limit must not be negative", file=sys.stderr)
        return EXIT_CONFIG
    # The access log is what the fake is run for; it follows --log-level (set up by the CLI).
    logging.getLogger("aiohttp.access").setLevel(logging.getLogger().level)
    try:
        return asyncio.run(_serve(listen.host, listen.port, args))
    except KeyboardInterrupt:  # pragma: no cover - a second Ctrl-C during shutdown
        return EXIT_OK


async def _serve(host: str, port: int, args: argparse.Namespace) -> int:
    server = FakeWebinarServer(
        token=args.token.strip(), organization=args.organization,
        rate_limit=args.rate_limit, access_log=True,
    )
    try:
        await server.start(host, port)
    except OSError as exc:
        print(f"webinar-proxy: cannot listen on {host}:{port}: {exc.strerror or exc}",
              file=sys.stderr)
        return EXIT_FAILURE
    print(f"fake-webinar listening on {server.api_url}", flush=True)
    try:
        await until_terminated()
    finally:
        await server.stop()
    print("fake-webinar stopped", flush=True)
    return EXIT_OK
