"""One pace for the whole key: 429s and aggregate rate with 1, 2 and 4 processes.

Each process is a stand-in for one relay: its own ``WebinarClient`` and its own store
connection, making uncached API calls (``GET /timezones``) back to back against the
fake Webinar server, which enforces the platform's 2 requests/s per token (429 with
``Retry-After`` above it).  Compared side by side:

- ``shared``: the relay's pacing, a ``SharedPace`` on the store (SQLite file; and
  PostgreSQL when ``--pg URL`` is given), at ``--rate`` (default 1.8/s);
- ``per-process``: every process with its own in-process token bucket at the same
  rate (the pacing before the shared pace), to show what sharing buys.

    .venv/bin/python bench/bench_pace.py [--rate 1.8] [--seconds 20] [--pg postgresql://127.0.0.1/test]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from webinar_proxy.store import open_store
from webinar_proxy.testing.fake_webinar import running_fake_webinar
from webinar_proxy.webinar import TemporaryError, WebinarClient
from webinar_proxy.webinar.pacing import SharedPace, TokenBucket

TOKEN = "bench-pace-token-0123456789"


async def worker(url: str, api_url: str, rate: float, mode: str, until: float) -> None:
    logging.disable(logging.WARNING)  # the per-process runs retry many 429s
    store = await open_store(url, pool_size=2, lock_pool_size=2)
    try:
        pace = SharedPace(store, TOKEN, rate) if mode == "shared" else TokenBucket(rate)
        async with WebinarClient(api_url, TOKEN, rate_limit=rate, pace=pace,
                                 call_deadline=120.0) as client:
            print("ready", flush=True)
            await asyncio.to_thread(sys.stdin.readline)
            while time.time() < until:
                with contextlib.suppress(TemporaryError):  # gave up: counted by the fake
                    await client.ping()
    finally:
        await store.close()


async def run(url: str, processes: int, rate: float, mode: str, seconds: float) -> dict[str, float]:
    async with running_fake_webinar(token=TOKEN, rate_limit=2) as fake:
        until = time.time() + seconds + 5.0  # the start signal comes about 5 s from now
        children = [
            await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--worker", url, fake.api_url, str(rate), mode,
                str(until), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            )
            for _ in range(processes)
        ]
        for child in children:
            assert child.stdout is not None
            assert (await child.stdout.readline()).strip() == b"ready"
        await asyncio.sleep(max(0.0, until - seconds - time.time()))
        for child in children:
            assert child.stdin is not None
            child.stdin.write(b"go\n")
            await child.stdin.drain()
        for child in children:
            await child.wait()
        requests = list(fake.requests)
    answered = [r for r in requests if r.status == 200]
    span = (max(r.at for r in answered) - min(r.at for r in answered)) if len(answered) > 1 else 0
    return {
        "calls": len(requests),
        "429s": sum(1 for r in requests if r.status == 429),
        "rate": (len(answered) - 1) / span if span else 0.0,
    }


def pg_url_with_schema(base: str) -> tuple[str, str]:
    schema = f"bench_pace_{uuid.uuid4().hex[:8]}"
    import psycopg

    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}", schema


def drop_schema(base: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=1.8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--pg", help="PostgreSQL URL: also run the shared pace on it")
    parser.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        url, api_url, rate, mode, until = args.worker
        asyncio.run(worker(url, api_url, float(rate), mode, float(until)))
        return 0
    print(f"fake platform: 2 requests/s per token; client rate {args.rate}/s; "
          f"{args.seconds:g} s per run")
    print(f"{'store':<11}{'pacing':<13}{'processes':>10}{'calls':>8}{'429s':>7}"
          f"{'aggregate rate':>16}{'vs configured':>15}")
    with tempfile.TemporaryDirectory(prefix="bench-pace-") as tmp:
        stores = [("sqlite", f"sqlite:///{tmp}/state.db", None)]
        if args.pg:
            url, schema = pg_url_with_schema(args.pg)
            stores.append(("postgresql", url, schema))
        try:
            for name, url, _ in stores:
                modes = ("shared", "per-process") if name == "sqlite" else ("shared",)
                for mode in modes:
                    for processes in (1, 2, 4):
                        result = asyncio.run(run(url, processes, args.rate, mode, args.seconds))
                        print(f"{name:<11}{mode:<13}{processes:>10}{result['calls']:>8}"
                              f"{result['429s']:>7}{result['rate']:>14.2f}/s"
                              f"{result['rate'] / args.rate:>14.0%}", flush=True)
        finally:
            for _, _, schema in stores:
                if schema:
                    drop_schema(args.pg, schema)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
