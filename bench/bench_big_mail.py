"""Large mail must not stall small mail: latency of 10 KB mail, idle and while big mails stream.

A prober sends 10 KB messages one after another over one SMTP session to the relay
and times each transaction (MAIL to the reply after the final dot).  First with the
relay idle, then while smtp-source streams 20 MB messages over 10 sessions at once
through the same relay.  Prints p50/p99/max for both phases, and the same two
phases straight to the next hop (no relay) as the baseline.

The next hop is a discarding SMTP server of this script's own (``--serve-sink``) that
reads DATA in large chunks: Postfix's smtp-sink itself answers a 10 KB mail only
after 150-300 ms while it takes in 10 streams of 20 MB, which would hide the relay.

Needs smtp-source from Debian's postfix package.  Loopback only.

    .venv/bin/python bench/bench_big_mail.py                 # 200 probes per phase
    .venv/bin/python bench/bench_big_mail.py --probes 100 --workers 2
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.bench_relay import SMTP_SOURCE, free_port, start_relay, stop, wait_for_port

SMALL = b"".join(
    [b"From: <sender@example.com>\r\nTo: <rcpt@example.com>\r\nSubject: probe\r\n\r\n"]
    + [b"x" * 76 + b"\r\n"] * 130
) + b".\r\n"
BIG_SIZE = 20 * 1024 * 1024


async def _sink_session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"220 sink.bench ESMTP\r\n")
    try:
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb == b"EHLO":
                writer.write(b"250-sink.bench\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
            elif verb == b"DATA":
                writer.write(b"354 go ahead\r\n")
                tail = b""
                while True:
                    chunk = await reader.read(1 << 20)
                    if not chunk:
                        return
                    if (tail + chunk[:8]).find(b"\r\n.\r\n") >= 0 or chunk.find(b"\r\n.\r\n") >= 0:
                        break
                    tail = chunk[-4:]
                writer.write(b"250 2.0.0 Ok: discarded\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 2.0.0 Bye\r\n")
                break
            else:
                writer.write(b"250 2.0.0 Ok\r\n")
    except ConnectionError:
        pass
    finally:
        writer.close()


async def serve_sink(port: int) -> None:
    server = await asyncio.start_server(_sink_session, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


def start_sink(port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, __file__, "--serve-sink", str(port)])
    wait_for_port(port)
    return process


async def _reply(reader: asyncio.StreamReader) -> int:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("relay closed the connection")
        if line[3:4] != b"-":
            return int(line[:3])


async def probe(port: int, count: int, keep_going: asyncio.Event | None = None) -> list[float]:
    """Seconds per 10 KB transaction, ``count`` of them (or until ``keep_going`` is cleared)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await _reply(reader)
    writer.write(b"EHLO probe.example\r\n")
    await _reply(reader)
    times = []
    try:
        while len(times) < count or (keep_going is not None and keep_going.is_set()):
            started = time.perf_counter()
            writer.write(b"MAIL FROM:<sender@example.com>\r\nRCPT TO:<rcpt@example.com>\r\nDATA\r\n")
            codes = [await _reply(reader) for _ in range(3)]
            writer.write(SMALL)
            codes.append(await _reply(reader))
            if codes != [250, 250, 354, 250]:
                raise RuntimeError(f"probe got {codes}")
            times.append(time.perf_counter() - started)
            if keep_going is not None and not keep_going.is_set() and len(times) >= count:
                break
    finally:
        writer.close()
    return times


def percentiles(times: list[float]) -> str:
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return (f"n={len(ordered):4d}  p50 {statistics.median(ordered) * 1000:7.1f} ms  "
            f"p99 {p99 * 1000:7.1f} ms  max {ordered[-1] * 1000:7.1f} ms")


async def during_stream(port: int, probes: int, big: int) -> tuple[list[float], float]:
    """Probe while smtp-source sends ``big`` 20 MB messages over 10 sessions; (times, big MB/s)."""
    command = [SMTP_SOURCE, "-4", "-d", "-s", "10", "-m", str(big), "-l", str(BIG_SIZE),
               "-M", "localhost", "-f", "sender@example.com", "-t", "rcpt@example.com",
               f"127.0.0.1:{port}"]
    streaming = asyncio.Event()
    streaming.set()
    started = time.perf_counter()
    source = await asyncio.create_subprocess_exec(*command, stdout=subprocess.DEVNULL)
    prober = asyncio.create_task(probe(port, probes, streaming))
    await source.wait()
    elapsed = time.perf_counter() - started
    streaming.clear()
    times = await prober
    if source.returncode != 0:
        raise RuntimeError(f"smtp-source exited with {source.returncode}")
    return times, big * BIG_SIZE / elapsed / 1e6


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--probes", type=int, default=200, help="10 KB probes per phase (at least)")
    parser.add_argument("--big", type=int, default=30, help="20 MB messages streamed (10 at a time)")
    parser.add_argument("--workers", default="1", help="smtp.workers of the relay")
    parser.add_argument("--serve-sink", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_sink:
        asyncio.run(serve_sink(args.serve_sink))
        return 0
    if not Path(SMTP_SOURCE).exists():
        print(f"missing {SMTP_SOURCE}: apt-get install postfix", file=sys.stderr)
        return 2
    print(f"10 KB latency (MAIL to final reply), {args.probes}+ probes per phase, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        sink_port, relay_port = free_port(), free_port()
        sink = start_sink(sink_port)
        relay = start_relay(relay_port, sink_port, Path(tmp) / "relay.log", workers=args.workers)
        try:
            for name, port in ((f"relay (smtp.workers={args.workers})", relay_port),
                               ("next hop alone", sink_port)):
                asyncio.run(probe(port, 20))  # warm up
                idle = asyncio.run(probe(port, args.probes))
                busy, rate = asyncio.run(during_stream(port, args.probes, args.big))
                print(f"{name}:")
                print(f"  idle:                                {percentiles(idle)}")
                print(f"  while 10 x 20 MB stream ({rate:4.0f} MB/s): {percentiles(busy)}", flush=True)
        finally:
            stop(relay)
            stop(sink)
    return 0


if __name__ == "__main__":
    sys.exit(main())
