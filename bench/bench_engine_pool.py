"""Engine pool benchmark: worker processes against the engine in a thread, and plain mail
latency while poisoned invitations occupy the pool.

1. ``throughput``: invitations classified and rewritten per second through
   ``EnginePool`` (one worker per core) and through ``InThreadEngine`` (the same calls
   in ``asyncio.to_thread``), 8 at a time, rounds interleaved; prints each median and
   the ratio pool / thread.
2. ``latency``: the real ``webinar-proxy serve`` (``smtp-sink`` as next hop,
   ``policy.engine_timeout_seconds = 0.2``); 10 KB plain mails one after another,
   first alone, then while 10 senders keep a slow invitation (4,900 attendees, 40,000
   calendar lines: seconds of honest parsing, so every one is stopped at the timeout)
   in flight; prints p50/p99 of both and how the slow ones were answered.

Needs smtp-sink from Debian's postfix package.  Loopback only.

    .venv/bin/python bench/bench_engine_pool.py                 # both (~1-2 min)
    .venv/bin/python bench/bench_engine_pool.py --only throughput --rounds 5
    git archive cb18bd8 | tar -x -C /tmp/before     # the code before the pool
    .venv/bin/python bench/bench_engine_pool.py --only latency --compare-with /tmp/before
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_relay import REPO, free_port, start_sink, stop, wait_for_port
from webinar_proxy.invitation import (
    Engine,
    EngineOptions,
    EnginePool,
    InThreadEngine,
)
from webinar_proxy.settings import HostPort, available_cores
from webinar_proxy.smtp.submit import submit

LINK = "https://events.webinar.ru/bench/1234567"
PLAIN_10K = (
    b"From: <o@example.org>\r\nTo: <a@example.net>\r\nSubject: plain\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + b"0123456789abcdef" * 640 + b"\r\n"
)


def invitation(n: int, attendees: int = 30, comments: int = 0) -> bytes:
    stamp = "%Y%m%dT%H%M%SZ"
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=7)
    people = "".join(f"ATTENDEE;CN=Person {i};RSVP=TRUE:mailto:p{i}@example.net\r\n"
                     for i in range(attendees))
    notes = "".join(f"COMMENT:agenda item {i} {'x' * 50}\r\n" for i in range(comments))
    ics = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//bench//EN\r\nMETHOD:REQUEST\r\n"
        f"BEGIN:VEVENT\r\nUID:bench-{n}@example.org\r\nSEQUENCE:0\r\n"
        f"DTSTAMP:{start.strftime(stamp)}\r\nDTSTART:{start.strftime(stamp)}\r\n"
        f"DTEND:{(start + timedelta(hours=1)).strftime(stamp)}\r\nRRULE:FREQ=WEEKLY;COUNT=10\r\n"
        f"SUMMARY:Bench meeting {n}\r\nLOCATION:Room 1 @webinar\r\n"
        f"ORGANIZER;CN=Boss:mailto:boss@example.org\r\n{people}{notes}END:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    return (
        "From: Boss <boss@example.org>\r\nTo: a@example.net\r\nSubject: bench\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/alternative; boundary="b"\r\n\r\n--b\r\n'
        "Content-Type: text/plain; charset=utf-8\r\n\r\nMeeting.\r\n\r\n--b\r\n"
        "Content-Type: text/html; charset=utf-8\r\n\r\n<p>Meeting.</p>\r\n\r\n--b\r\n"
        f"Content-Type: text/calendar; charset=utf-8; method=REQUEST\r\n\r\n{ics}\r\n--b--\r\n"
    ).encode()


# --- 1. throughput -------------------------------------------------------------------

async def _classify_and_rewrite(engine: Engine, mails: list[bytes], options: EngineOptions,
                                concurrency: int) -> float:
    """Invitations per second, ``concurrency`` at a time."""
    gate = asyncio.Semaphore(concurrency)
    now = datetime.now(UTC)

    async def one(raw: bytes) -> None:
        async with gate:
            c = await engine.classify(raw, "boss@example.org", options, now)
            assert c.processable and c.uid, c.reason
            await engine.rewrite(raw, c.uid, LINK, options)

    started = time.perf_counter()
    await asyncio.gather(*(one(raw) for raw in mails))
    return len(mails) / (time.perf_counter() - started)


async def throughput(rounds: int, count: int, workers: int) -> None:
    options = EngineOptions()
    mails = [invitation(n) for n in range(count)]
    pool = EnginePool(workers=workers, timeout_seconds=30, memory_mb=512)
    await pool.start()
    thread = InThreadEngine()
    figures: dict[str, list[float]] = {"thread": [], "pool": []}
    try:
        await _classify_and_rewrite(pool, mails[:20], options, 8)  # warm both up
        await _classify_and_rewrite(thread, mails[:20], options, 8)
        for _ in range(rounds):
            for name, engine in (("thread", thread), ("pool", pool)):
                figures[name].append(await _classify_and_rewrite(engine, mails, options, 8))
    finally:
        await pool.close()
    size = len(mails[0])
    print(f"\nthroughput: {count} invitations ({size} bytes, 30 attendees, weekly series), "
          f"classify + rewrite, 8 at a time, {rounds} interleaved rounds, {workers} workers, "
          f"{len(os.sched_getaffinity(0))} cores")
    for name, values in figures.items():
        print(f"  {name:7} median {statistics.median(values):7.1f}/s   "
              f"runs {', '.join(f'{v:.1f}' for v in values)}")
    ratio = statistics.median(figures["pool"]) / statistics.median(figures["thread"])
    print(f"  ratio pool/thread {ratio:.2f}")


# --- 2. latency ----------------------------------------------------------------------

def _start_relay(repo: Path, port: int, sink_port: int, work: Path,
                 engine_timeout: float | None) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBINAR_PROXY_")}
    env.update({
        "WEBINAR_PROXY_SMTP__LISTEN": f"127.0.0.1:{port}",
        "WEBINAR_PROXY_SMTP__NEXT_HOP": f"127.0.0.1:{sink_port}",
        "WEBINAR_PROXY_WEBINAR__TOKEN": "bench",
        "WEBINAR_PROXY_WEBINAR__API_URL": "http://127.0.0.1:9/v3",  # refused at once
        "WEBINAR_PROXY_STORE__URL": f"sqlite:///{work}/state.db",
    })
    if engine_timeout is not None:
        env["WEBINAR_PROXY_POLICY__ENGINE_TIMEOUT_SECONDS"] = str(engine_timeout)
    log = (work / "relay.log").open("ab")
    process = subprocess.Popen([sys.executable, "-m", "webinar_proxy", "serve"], cwd=repo,
                               env=env, stdout=log, stderr=log)
    wait_for_port(port)
    return process


async def _plain_latencies(target: HostPort, count: int) -> list[float]:
    seconds = []
    for _ in range(count):
        started = time.perf_counter()
        reply = await submit(target, "o@example.org", ["a@example.net"], PLAIN_10K)
        seconds.append(time.perf_counter() - started)
        assert reply.is_success, reply
    return seconds


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def _series(repo: Path, count: int, poisoned: int,
                  engine_timeout: float | None) -> tuple[list[float], list[float], list[str], int]:
    """Plain-mail latencies alone and with ``poisoned`` slow invitations in flight, the
    slow ones' replies (CODE:SECONDS) and how many workers were stopped."""
    with tempfile.TemporaryDirectory(prefix="bench-engine-pool-") as tmp:
        work = Path(tmp)
        sink_port, port = free_port(), free_port()
        sink = start_sink(sink_port)
        relay = _start_relay(repo, port, sink_port, work, engine_timeout)
        target = HostPort("127.0.0.1", port)
        try:
            await _plain_latencies(target, 20)  # warm up
            alone = await _plain_latencies(target, count)
            # The slow invitations come from another process, so that sending them
            # (megabytes each) does not stall this loop's plain-mail measurements.
            poisoner = await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--send-slow", str(port), str(poisoned),
                cwd=REPO, stdout=asyncio.subprocess.PIPE)
            assert poisoner.stdout is not None
            await poisoner.stdout.readline()  # "sending": all of them are on their way
            try:
                during = await _plain_latencies(target, count)
            finally:
                poisoner.send_signal(signal.SIGINT)
                report = (await poisoner.communicate())[0].decode().split()
        finally:
            stop(relay)
            stop(sink)
        stopped = sum((work / "relay.log").read_text().count(f"engine {reason})")
                      for reason in ("timeout", "memory", "crash"))
    return alone, during, report, stopped


async def latency(count: int, poisoned: int, engine_timeout: float, before: Path | None) -> None:
    poison_size = len(invitation(0, attendees=4_900, comments=40_000))
    trees: list[tuple[str, Path, float | None]] = [("this tree", REPO, engine_timeout)]
    if before is not None:
        trees.insert(0, (f"{before} (no pool)", before, None))
    print(f"\nlatency: {count} plain 10 KB mails one after another through `serve` "
          f"({available_cores()} workers, engine_timeout_seconds={engine_timeout}); "
          f"{poisoned} slow invitations of {poison_size} bytes kept in flight")
    for name, repo, timeout in trees:
        alone, during, report, stopped = await _series(repo, count, poisoned, timeout)
        codes = sorted({item.split(":")[0] for item in report})
        times = [float(item.split(":")[1]) for item in report] or [float("nan")]
        print(f"  {name}")
        print(f"    alone                 p50 {_p(alone, 0.5):7.1f} ms   p99 {_p(alone, 0.99):7.1f} ms")
        print(f"    slow ones in flight   p50 {_p(during, 0.5):7.1f} ms   p99 {_p(during, 0.99):7.1f} ms")
        print(f"    slow ones: {len(report)} answered {codes}, median {statistics.median(times):.2f} s, "
              f"max {max(times):.2f} s; workers stopped at the limit: {stopped}")


async def send_slow(port: int, senders: int) -> None:
    """``--send-slow``: keep ``senders`` slow invitations in flight until SIGINT; print
    each reply as CODE:SECONDS."""
    poison = invitation(0, attendees=4_900, comments=40_000)
    target = HostPort("127.0.0.1", port)
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stopping.set)
    replies: list[str] = []

    async def keep_sending() -> None:
        while not stopping.is_set():
            started = time.perf_counter()
            try:
                reply = await submit(target, "boss@example.org", ["a@example.net"], poison,
                                     timeout_seconds=300)
                code = str(reply.code)
            except Exception:  # the relay did not answer at all (the code before the pool)
                code = "none"
            replies.append(f"{code}:{time.perf_counter() - started:.3f}")

    tasks = [asyncio.ensure_future(keep_sending()) for _ in range(senders)]
    print("sending", flush=True)
    await asyncio.gather(*tasks)
    print(" ".join(replies), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("throughput", "latency"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--count", type=int, default=200, help="invitations per throughput round")
    parser.add_argument("--workers", type=int, default=available_cores())
    parser.add_argument("--plain", type=int, default=300, help="plain mails per latency series")
    parser.add_argument("--poisoned", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=0.2)
    parser.add_argument("--compare-with", type=Path, metavar="DIR",
                        help="also measure latency with `serve` from this checkout (e.g. an "
                             "export of the commit before the pool), side by side")
    parser.add_argument("--send-slow", nargs=2, type=int, metavar=("PORT", "SENDERS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.send_slow:
        asyncio.run(send_slow(*args.send_slow))
        return 0
    if args.only in (None, "throughput"):
        asyncio.run(throughput(args.rounds, args.count, args.workers))
    if args.only in (None, "latency"):
        asyncio.run(latency(args.plain, args.poisoned, args.timeout, args.compare_with))
    return 0


if __name__ == "__main__":
    sys.exit(main())
