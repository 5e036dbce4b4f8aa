"""Milter cost: Postfix with webinar-proxy as its milter vs. Postfix alone, side by side.

One private Postfix instance (tests/support/postfix.py, shipped config/postfix/milter/
snippets) delivers everything to smtp-sink.  Two of its smtpd services are measured
in turn, interleaved: the submission service with ``smtpd_milters`` pointing at the
real ``serve`` (milter listener only), and the port-25 service without milters.
smtp-source sends plain mail (10 KB and 1 MB, 10 sessions); a run ends when the
last message has left Postfix's queue for the sink.  Prints messages/s for both, the
ratio milter/alone, and the relay process's CPU per message (user + system).

Needs root (Postfix's daemons drop privileges) and Debian's postfix (smtp-source,
smtp-sink).  Loopback only.

    .venv/bin/python bench/bench_milter.py            # median of 3 interleaved runs
    .venv/bin/python bench/bench_milter.py --quick    # one run, fewer messages
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench_relay import (  # noqa: E402
    SMTP_SINK,
    SMTP_SOURCE,
    free_port,
    start_sink,
    stop,
)
from tests.support.postfix import postfix_instance, skip_reason  # noqa: E402
from tests.support.processes import cpu_seconds  # noqa: E402

QUEUES = ("maildrop", "incoming", "active", "deferred", "hold")


def queued(queue_dir: Path) -> int:
    return sum(1 for name in QUEUES for path in (queue_dir / name).rglob("*") if path.is_file())


def run(port: int, queue_dir: Path, sessions: int, count: int, size: int) -> float:
    """Messages/s from the first connection until the queue is empty again."""
    command = [SMTP_SOURCE, "-4", "-d", "-s", str(sessions), "-m", str(count), "-l", str(size),
               "-M", "localhost", "-f", "sender@example.com", "-t", "rcpt@example.com",
               f"127.0.0.1:{port}"]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=900)
    deadline = time.monotonic() + 600
    while queued(queue_dir):
        if time.monotonic() > deadline:
            raise RuntimeError("Postfix did not empty its queue within 600 s")
        time.sleep(0.02)
    return count / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one run, a third of the messages")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved runs per row (median)")
    args = parser.parse_args()
    reason = skip_reason()
    if reason or not Path(SMTP_SOURCE).exists() or not Path(SMTP_SINK).exists():
        print(f"cannot run: {reason or 'smtp-source/smtp-sink missing'}", file=sys.stderr)
        return 2
    repeat = 1 if args.quick else args.repeat
    sink_port = free_port()
    sink = start_sink(sink_port)
    try:
        with postfix_instance("milter", start_relay=False) as pf:
            # Everything goes to smtp-sink; smtp-source cannot log in, so submission takes
            # loopback clients like the port-25 service does. Milters are the only difference.
            pf._postconf("-e", f"default_transport = smtp:[127.0.0.1]:{sink_port}",
                         "relay_transport = $default_transport", "virtual_mailbox_domains =",
                         "smtp_tls_security_level = none")
            submission = f"127.0.0.1:{pf.submission_port}/inet"
            pf._postconf("-P", f"{submission}/smtpd_client_restrictions=",
                         f"{submission}/smtpd_relay_restrictions=permit_mynetworks,reject")
            subprocess.run(["/usr/sbin/postfix", "-c", str(pf.config_dir), "reload"],
                           check=True, capture_output=True, timeout=60)
            pf.start_relay({"WEBINAR_PROXY_WEBINAR__API_URL": "http://127.0.0.1:9/v3"})
            assert pf.relay is not None
            print(f"plain mail, Postfix + milter vs Postfix alone, median of {repeat} interleaved "
                  f"run(s), {os.cpu_count()} cores")
            for size, label, count in ((10 * 1024, "10 KB", 3000), (1024 * 1024, "1 MB", 300)):
                if args.quick:
                    count //= 3
                alone, milter, cpu = [], [], []
                for _ in range(repeat):
                    alone.append(run(pf.reinject_port, pf.queue_dir, 10, count, size))
                    before = cpu_seconds(pf.relay.pid)
                    milter.append(run(pf.submission_port, pf.queue_dir, 10, count, size))
                    cpu.append((cpu_seconds(pf.relay.pid) - before) / count)
                a, m = statistics.median(alone), statistics.median(milter)
                print(f"{label:>6} x10  alone {a:8.1f} msg/s   with milter {m:8.1f} msg/s   "
                      f"ratio {m / a:.3f} (cost {1 - m / a:+.1%})   relay CPU "
                      f"{statistics.median(cpu) * 1000:.3f} ms/msg", flush=True)
            accepted_early = pf.relay_log().count("accepted_at=end-of-headers")
            print(f"messages the milter accepted at end of headers: {accepted_early}")
    finally:
        stop(sink)
    return 0


if __name__ == "__main__":
    sys.exit(main())
