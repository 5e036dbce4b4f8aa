"""Big meetings: when the invitation is answered, when everyone is registered, and how
long an ordinary invitation sent meanwhile waits.

Runs the real relay (``webinar-proxy serve``, SQLite store, the default pace of
1.8 requests/s) against the fake Webinar server enforcing the platform's 2 requests/s
per token, and a recording next hop, all on loopback.  For each size it sends one
invitation with that many attendees and measures the time to the relay's 250 (the
reply waits for the event, the session and the link only), then the time until the
platform has every attendee registered (batches of 50 in the background), and the
SMTP latency of ordinary invitations (a new meeting with 2 attendees) sent while the
big one is being registered.

    .venv/bin/python bench/bench_big_meeting.py [--sizes 250,5000,10000] [--ordinary 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.invites import invitation
from tests.support.serve import running_serve
from tests.support.smtp import running_next_hop, send_one
from tests.support.waiting import eventually
from webinar_proxy.testing.fake_webinar import running_fake_webinar

TOKEN = "bench-big-meeting-token"
BOSS = "boss@example.org"
START = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)


async def measure(size: int, ordinary: int, tmp: str) -> dict[str, object]:
    people = tuple(f"person{n:05d}@example.net" for n in range(size))
    async with running_fake_webinar(token=TOKEN, rate_limit=2) as fake, running_next_hop() as hop:
        env = {
            "WEBINAR_PROXY_SMTP__LISTEN": "127.0.0.1:0",
            "WEBINAR_PROXY_SMTP__NEXT_HOP": f"127.0.0.1:{hop.port}",
            "WEBINAR_PROXY_WEBINAR__TOKEN": TOKEN,
            "WEBINAR_PROXY_WEBINAR__API_URL": fake.api_url,
            "WEBINAR_PROXY_STORE__URL": f"sqlite:///{tmp}/state-{size}.db",
            "WEBINAR_PROXY_POLICY__ORGANIZER_DOMAINS": "example.org",
            "WEBINAR_PROXY_SMTP__DEADLINE_SECONDS": "120",
        }
        big = invitation(uid=f"big-{size}@example.org", start=START, end=START + timedelta(hours=1),
                         attendees=people, to="All <all@example.net>")
        async def registrations() -> int:
            return len(fake.platform.participations)

        async with running_serve(env) as serve:
            # Warm the relay's caches (time zones, the organizer's member id) the way any
            # earlier invitation would; the platform calls of a new meeting remain.
            warm = invitation(uid="warm@example.org", start=START, end=START + timedelta(hours=1))
            assert await send_one(serve.smtp_port, warm, BOSS) == 250
            await eventually(registrations, lambda n: n >= 3)
            started = time.perf_counter()
            assert await send_one(serve.smtp_port, big, BOSS, (people[0],)) == 250
            answered = time.perf_counter() - started
            latencies = []
            for n in range(ordinary):
                small = invitation(uid=f"small-{size}-{n}@example.org", start=START,
                                   end=START + timedelta(hours=1))
                sent = time.perf_counter()
                assert await send_one(serve.smtp_port, small, BOSS) == 250
                latencies.append(time.perf_counter() - sent)
                await asyncio.sleep(2.0)  # spread them over the registration
            expected = 3 + size + 1 + 3 * ordinary
            await eventually(registrations, lambda n, expected=expected: n >= expected,
                             within=3600)
            registered = time.perf_counter() - started
            refused = sum(1 for r in fake.requests if r.status == 429)
    return {"answered": answered, "registered": registered, "ordinary": latencies,
            "429s": refused, "calls": (size + 1 + 49) // 50}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="250,5000,10000")
    parser.add_argument("--ordinary", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    print("relay pace 1.8 requests/s (default); fake platform limit 2 requests/s")
    print(f"{'attendees':>10}{'time to 250':>13}{'all registered':>16}{'≈ calls/rate':>14}"
          f"{'ordinary invitation meanwhile (median, max)':>46}{'429s':>6}")
    with tempfile.TemporaryDirectory(prefix="bench-big-") as tmp:
        for size in sizes:
            result = asyncio.run(measure(size, args.ordinary, tmp))
            ordinary = result["ordinary"]
            assert isinstance(ordinary, list)
            estimate = int(result["calls"]) / 1.8  # type: ignore[call-overload]
            print(f"{size:>10}{result['answered']:>12.2f}s{result['registered']:>15.1f}s"
                  f"{estimate:>13.0f}s{statistics.median(ordinary):>36.2f}s, {max(ordinary):.2f}s"
                  f"{result['429s']:>6}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
