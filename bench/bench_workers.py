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
import statistics
import sys
import tempfile
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

SIZE = 10 * 1024


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
    with tempfile.TemporaryDirectory() as tmp:
        sink_port = free_port()
        sink = start_sink(sink_port)
        relays = {}
        try:
            for workers in counts:
                port = free_port()
                work = Path(tmp) / f"w{workers}"
                work.mkdir()
                relays[workers] = (port, start_relay(port, sink_port, work / "relay.log", str(workers)))
            for port, _ in relays.values():
                smtp_source(port, 10, 200, SIZE)  # warm up
            rates: dict[int | str, list[float]] = {n: [] for n in counts}
            rates["direct"] = []
            for _ in range(args.repeat):
                rates["direct"].append(smtp_source(sink_port, args.sessions, args.messages, SIZE))
                for workers, (port, _) in relays.items():
                    rates[workers].append(smtp_source(port, args.sessions, args.messages, SIZE))
        finally:
            for _, process in relays.values():
                stop(process)
            stop(sink)
    one = statistics.median(rates[1])
    print(f"10 KB pass-through, {args.sessions} sessions, {args.messages} messages per run, "
          f"median of {args.repeat}, {cores} cores (load generator and next hop on the same cores)")
    print(f"  straight to smtp-sink:  {statistics.median(rates['direct']):8.1f} msg/s")
    for workers in counts:
        rate = statistics.median(rates[workers])
        print(f"  smtp.workers = {workers:<3}     {rate:8.1f} msg/s   x{rate / one:.2f} of one worker   "
              f"(runs: {', '.join(f'{r:.0f}' for r in rates[workers])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
