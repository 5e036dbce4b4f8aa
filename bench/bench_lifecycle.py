"""Invitation throughput, and ordinary mail while invitations are being processed.

Runs the real relay (``webinar-proxy serve``), the fake Webinar API
(``webinar-proxy fake-webinar``) and smtp-sink as separate processes on loopback:

1. invitations per second (each a new meeting with 3 attendees, 10 senders at once)
   with the client pacing at the platform's 2 requests/s, and with pacing off;
2. ordinary 10 KB mail per second (smtp-source, 10 sessions) alone, and while
   invitations are being processed at the 2 requests/s pace — ordinary mail must not
   wait behind the API.

    .venv/bin/python bench/bench_lifecycle.py          (needs Debian's postfix for smtp-sink/smtp-source)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_relay import (
    REPO,
    free_port,
    smtp_source,
    start_sink,
    stop,
    wait_for_port,
)
from webinar_proxy.settings import HostPort
from webinar_proxy.smtp.submit import submit

TOKEN = "bench-token"


def invitation(n: int, start: datetime) -> bytes:
    stamp = "%Y%m%dT%H%M%SZ"
    ics = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//bench//EN\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\n"
        f"UID:bench-{n}-{time.time_ns()}@example.org\r\nSEQUENCE:0\r\nDTSTAMP:{start.strftime(stamp)}\r\n"
        f"DTSTART:{start.strftime(stamp)}\r\nDTEND:{(start + timedelta(hours=1)).strftime(stamp)}\r\n"
        f"SUMMARY:Bench meeting {n}\r\nLOCATION:@webinar\r\n"
        "ORGANIZER:mailto:boss@example.org\r\n"
        "ATTENDEE;RSVP=TRUE:mailto:a@example.net\r\nATTENDEE;RSVP=TRUE:mailto:b@example.net\r\n"
        "ATTENDEE;RSVP=TRUE:mailto:c@example.net\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    return (
        "From: boss@example.org\r\nTo: a@example.net\r\nSubject: bench\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/alternative; boundary="b"\r\n\r\n--b\r\n'
        "Content-Type: text/plain; charset=utf-8\r\n\r\nMeeting.\r\n\r\n--b\r\n"
        f"Content-Type: text/calendar; charset=utf-8; method=REQUEST\r\n\r\n{ics}\r\n--b--\r\n"
    ).encode()


def start_process(args: list[str], env: dict[str, str], log: Path):
    import subprocess

    handle = log.open("ab")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WEBINAR_PROXY_")}
    clean.update(env)
    return subprocess.Popen([sys.executable, "-m", "webinar_proxy", *args], cwd=REPO, env=clean,
                            stdout=handle, stderr=handle)


async def send_invitations(port: int, count: int, concurrency: int) -> tuple[float, list[float]]:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
    queue = list(range(count))
    latencies: list[float] = []

    async def worker() -> None:
        while queue:
            n = queue.pop()
            began = time.perf_counter()
            reply = await submit(HostPort("127.0.0.1", port), "boss@example.org", ["a@example.net"],
                                 invitation(n, start), timeout_seconds=600)
            if not reply.is_success:
                raise RuntimeError(f"invitation {n}: {reply}")
            latencies.append(time.perf_counter() - began)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return count / (time.perf_counter() - began), latencies


def run(work: Path, rate_limit: float, count: int, with_ordinary: bool) -> dict[str, float]:
    sink_port, relay_port, fake_port = free_port(), free_port(), free_port()
    sink = start_sink(sink_port)
    fake = start_process(["fake-webinar", "--listen", f"127.0.0.1:{fake_port}", "--token", TOKEN], {},
                         work / "fake.log")
    wait_for_port(fake_port)
    relay = start_process(["serve"], {
        "WEBINAR_PROXY_SMTP__LISTEN": f"127.0.0.1:{relay_port}",
        "WEBINAR_PROXY_SMTP__NEXT_HOP": f"127.0.0.1:{sink_port}",
        "WEBINAR_PROXY_WEBINAR__API_URL": f"http://127.0.0.1:{fake_port}/v3",
        "WEBINAR_PROXY_WEBINAR__TOKEN": TOKEN,
        "WEBINAR_PROXY_WEBINAR__RATE_LIMIT": str(rate_limit),
        "WEBINAR_PROXY_STORE__URL": f"sqlite:///{work}/state-{rate_limit}-{with_ordinary}.db",
        "WEBINAR_PROXY_POLICY__NOTIFY_ORGANIZER": "false",
    }, work / "relay.log")
    wait_for_port(relay_port)
    result: dict[str, float] = {}
    try:
        if with_ordinary:
            result["ordinary_alone"] = smtp_source(relay_port, 10, 2000, 10 * 1024)

            async def both() -> tuple[float, float]:
                invitations = asyncio.create_task(send_invitations(relay_port, count, 10))
                ordinary = await asyncio.to_thread(smtp_source, relay_port, 10, 2000, 10 * 1024)
                rate, _ = await invitations
                return ordinary, rate

            result["ordinary_during"], result["invitations"] = asyncio.run(both())
        else:
            rate, latencies = asyncio.run(send_invitations(relay_port, count, 10))
            result["invitations"] = rate
            result["latency_median"] = statistics.median(latencies)
    finally:
        for process in (relay, fake, sink):
            stop(process)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=20, help="invitations per paced run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        paced = run(work, 2.0, args.count, with_ordinary=False)
        print(f"invitations/s at the platform's pace (2 req/s): {paced['invitations']:.2f} "
              f"(median latency {paced['latency_median']:.1f} s)", flush=True)
        free = run(work, 1000.0, args.count * 10, with_ordinary=False)
        print(f"invitations/s with pacing off:                  {free['invitations']:.1f} "
              f"(median latency {free['latency_median'] * 1000:.0f} ms)", flush=True)
        mixed = run(work, 2.0, args.count, with_ordinary=True)
        print(f"ordinary 10 KB mail/s alone:                    {mixed['ordinary_alone']:.0f}")
        print(f"ordinary 10 KB mail/s while invitations wait:   {mixed['ordinary_during']:.0f} "
              f"(ratio {mixed['ordinary_during'] / mixed['ordinary_alone']:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
