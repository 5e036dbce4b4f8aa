"""Workers: 10 KB pass-through with smtp.workers = 1, 2 and the number of cores, side by side.

smtp-source sends 10 KB messages over 50 sessions at once through the relay to
smtp-sink; each relay configuration runs ``--repeat`` times, interleaved with the
others, and the median messages/s is printed with its ratio to one worker.  The load
generator and the next hop run on the same machine and are counted in.

Needs smtp-source and smtp-sink from Debian's postfix package.  Loopback only.

    .venv/bin/python bench/bench_workers.py
    .venv/bin/python bench/bench_workers.py --messages 2000 --repeat 5
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.bench_relay import (
    SMTP_SINK,
    SMTP_SOURCE,
    free_port,
    smtp_source,
    start_relay,
    start_sink,
    stop,
)
from tests.support.processes import cpu_seconds, process_tree

SIZE = 10 * 1024


@dataclass
class Run:
    """One smtp-source run: its rate and the CPU each side spent per message."""

    rate: float
    relay_ms: float  # the relay's processes together (supervisor, workers, engine workers)
    source_ms: float  # smtp-source, the load generator
    sink_ms: float  # smtp-sink, the next hop
    idle: float  # share of the machine's CPU time left idle


def idle_and_total() -> tuple[int, int]:
    ticks = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return ticks[3] + ticks[4], sum(ticks)  # idle + iowait, all


def measured_run(port: int, relay_pid: int | None, sink_pid: int, sessions: int, count: int) -> Run:
    relay_pids = process_tree(relay_pid) if relay_pid is not None else []
    relay_before = sum(cpu_seconds(pid) for pid in relay_pids)
    sink_before = cpu_seconds(sink_pid)
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    idle_before, total_before = idle_and_total()
    rate = smtp_source(port, sessions, count, SIZE)
    idle_after, total_after = idle_and_total()
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    source = (children_after.ru_utime + children_after.ru_stime
              - children_before.ru_utime - children_before.ru_stime)
    relay = sum(cpu_seconds(pid) for pid in relay_pids) - relay_before
    return Run(
        rate=rate,
        relay_ms=relay / count * 1000,
        source_ms=source / count * 1000,
        sink_ms=(cpu_seconds(sink_pid) - sink_before) / count * 1000,
        idle=(idle_after - idle_before) / max(1, total_after - total_before),
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=3000, help="messages per run")
    parser.add_argument("--sessions", type=int, default=50, help="concurrent smtp-source sessions")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved runs per configuration")
    args = parser.parse_args()
    for tool in (SMTP_SOURCE, SMTP_SINK):
        if not Path(tool).exists():
            print(f"missing {tool}: apt-get install postfix", file=sys.stderr)
            return 2
    cores = len(os.sched_getaffinity(0))
    counts = sorted({1, 2, cores})
    runs: dict[int | str, list[Run]] = {"direct": [], **{n: [] for n in counts}}
    with tempfile.TemporaryDirectory() as tmp:
        sink_port = free_port()
        sink = start_sink(sink_port)
        relays = {}
        try:
            for workers in counts:
                port = free_port()
                work = Path(tmp) / f"w{workers}"
                work.mkdir()
                relays[workers] = (port, start_relay(
                    port, sink_port, work / "relay.log", str(workers),
                    SMTP__MAX_CONNECTIONS=str(args.sessions + 10),  # per worker: enough for all
                ))
            for port, _ in relays.values():
                smtp_source(port, 10, 200, SIZE)  # warm up
            for _ in range(args.repeat):
                runs["direct"].append(measured_run(sink_port, None, sink.pid, args.sessions, args.messages))
                for workers, (port, process) in relays.items():
                    runs[workers].append(
                        measured_run(port, process.pid, sink.pid, args.sessions, args.messages))
        finally:
            for _, process in relays.values():
                stop(process)
            stop(sink)
    report(runs, counts, cores, args)
    return 0


def report(runs: dict[int | str, list[Run]], counts: list[int], cores: int,
           args: argparse.Namespace) -> None:
    def median(key: int | str, field: str) -> float:
        return statistics.median(getattr(run, field) for run in runs[key])

    one = median(1, "rate")
    print(f"10 KB pass-through, {args.sessions} sessions, {args.messages} messages per run, "
          f"median of {args.repeat}, {cores} cores (load generator and next hop on the same cores)")
    print(f"  {'':22} {'msg/s':>8}  {'x one':>6}   CPU ms per message: {'relay':>6} "
          f"{'source':>7} {'sink':>6}   idle")
    for key in ("direct", *counts):
        name = "straight to smtp-sink" if key == "direct" else f"smtp.workers = {key}"
        rate = median(key, "rate")
        share = "" if key == "direct" else f"x{rate / one:.2f}"
        print(f"  {name:22} {rate:8.1f}  {share:>6}   {'':20}"
              f"{median(key, 'relay_ms'):6.3f} {median(key, 'source_ms'):7.3f} "
              f"{median(key, 'sink_ms'):6.3f}   {median(key, 'idle'):4.0%}"
              f"   (runs: {', '.join(f'{run.rate:.0f}' for run in runs[key])})")
    # With every core busy, N workers relay at most cores / (CPU per message of all
    # three programs); that over one worker's rate is the most the ratio can be here.
    for workers in counts[1:]:
        per_message = sum(median(workers, field) for field in ("relay_ms", "source_ms", "sink_ms"))
        bound = cores / per_message * 1000
        print(f"  ceiling for smtp.workers = {workers}: {cores} cores / {per_message:.3f} ms per message "
              f"(relay + source + sink) = {bound:.0f} msg/s = x{bound / one:.2f} of one worker")


if __name__ == "__main__":
    sys.exit(main())
