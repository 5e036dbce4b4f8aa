"""Pass-through benchmark: smtp-source straight to smtp-sink vs. through the relay.

Prints messages/s for both paths and the ratio relay/direct at 1, 10 and 50
concurrent sessions with 10 KB and 1 MB messages (median of interleaved runs), and
the relay's peak RSS growth while one 20 MB message passes.

Needs smtp-source and smtp-sink from Debian's postfix package.  Loopback only.

    .venv/bin/python bench/bench_relay.py            # full run (~2-3 min)
    .venv/bin/python bench/bench_relay.py --quick    # one repetition, fewer messages
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SMTP_SOURCE = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
SMTP_SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def start_sink(port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [SMTP_SINK, "-4", "-u", "nobody", f"127.0.0.1:{port}", "1024"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    wait_for_port(port)
    return process


def start_relay(port: int, sink_port: int, log_path: Path, workers: str = "1",
                **settings: str) -> subprocess.Popen[bytes]:
    """The relay on ``port``, forwarding to ``sink_port``; ``settings`` are more
    ``WEBINAR_PROXY_*`` variables (``SMTP__MAX_CONNECTIONS="210"``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBINAR_PROXY_")}
    env.update({f"WEBINAR_PROXY_{name}": value for name, value in settings.items()})
    env.update({
        "WEBINAR_PROXY_SMTP__WORKERS": workers,
        "WEBINAR_PROXY_SMTP__LISTEN": f"127.0.0.1:{port}",
        "WEBINAR_PROXY_SMTP__NEXT_HOP": f"127.0.0.1:{sink_port}",
        "WEBINAR_PROXY_WEBINAR__TOKEN": "bench",
        "WEBINAR_PROXY_STORE__URL": f"sqlite:///{log_path.parent}/state.db",
    })
    log = log_path.open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "webinar_proxy", "serve"], cwd=REPO, env=env,
        stdout=log, stderr=log,
    )
    wait_for_port(port)
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def smtp_source(port: int, sessions: int, count: int, size: int) -> float:
    """Messages per second for one smtp-source run."""
    command = [
        SMTP_SOURCE, "-4", "-d", "-s", str(sessions), "-m", str(count), "-l", str(size),
        "-M", "localhost", "-f", "sender@example.com", "-t", "rcpt@example.com",
        f"127.0.0.1:{port}",
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)
    return count / (time.perf_counter() - started)


def proc_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def throughput(args: argparse.Namespace, work: Path) -> list[dict[str, float | int | str]]:
    sink_port, relay_port = free_port(), free_port()
    sink = start_sink(sink_port)
    relay = start_relay(relay_port, sink_port, work / "relay.log")
    rows = []
    try:
        plan = ((10 * 1024, "10 KB", (600, 3000, 3000)), (1024 * 1024, "1 MB", (60, 200, 200)))
        for size, label, counts in plan:
            for sessions, count in zip((1, 10, 50), counts, strict=True):
                if args.quick:
                    count = max(sessions, count // 3)
                direct, relayed = [], []
                for _ in range(args.repeat):
                    direct.append(smtp_source(sink_port, sessions, count, size))
                    relayed.append(smtp_source(relay_port, sessions, count, size))
                row = {
                    "size": label, "sessions": sessions, "messages": count,
                    "direct": statistics.median(direct), "relay": statistics.median(relayed),
                }
                row["ratio"] = row["relay"] / row["direct"]
                rows.append(row)
                print(f"{label:>6} x{sessions:<3} direct {row['direct']:9.1f} msg/s   relay "
                      f"{row['relay']:8.1f} msg/s   ratio {row['ratio']:.3f}", flush=True)
    finally:
        stop(relay)
        stop(sink)
    return rows


def peak_rss_20mb(work: Path) -> tuple[float, float]:
    """RSS growth (MiB) of a fresh relay while one 20 MB message passes; and the ratio to 20 MB."""
    sink_port, relay_port = free_port(), free_port()
    sink = start_sink(sink_port)
    relay = start_relay(relay_port, sink_port, work / "relay-rss.log")
    try:
        # one small message first, so imports and first-use allocations are in the baseline
        smtp_source(relay_port, 1, 1, 10 * 1024)
        baseline = proc_kib(relay.pid, "VmRSS")
        Path(f"/proc/{relay.pid}/clear_refs").write_text("5")  # reset VmHWM to current RSS
        size = 20 * 1024 * 1024
        smtp_source(relay_port, 1, 1, size)
        peak = proc_kib(relay.pid, "VmHWM")
    finally:
        stop(relay)
        stop(sink)
    growth_mib = (peak - baseline) / 1024
    return growth_mib, growth_mib * 1024 * 1024 / size


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="one repetition, a third of the messages")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved runs per row (median)")
    args = parser.parse_args()
    if args.quick:
        args.repeat = 1
    for tool in (SMTP_SOURCE, SMTP_SINK):
        if not Path(tool).exists():
            print(f"missing {tool}: apt-get install postfix", file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        print(f"pass-through, median of {args.repeat} interleaved run(s), {os.cpu_count()} cores")
        throughput(args, work)
        growth, factor = peak_rss_20mb(work)
        print(f"20 MB message: relay peak RSS growth {growth:.1f} MiB = {factor:.2f}x the message size")
    return 0


if __name__ == "__main__":
    sys.exit(main())
