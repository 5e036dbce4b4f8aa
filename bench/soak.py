"""Soak run: many concurrent SMTP sessions through the real relay for a long time.

Starts three processes on loopback - a counting next hop (aiosmtpd, this file's
``--serve-sink`` mode), the fake Webinar API (``webinar-proxy fake-webinar``) and the
relay (``webinar-proxy serve``, SQLite store) - and drives the relay with ``--sessions``
concurrent SMTP sessions (default 100), each sending one transaction after another:
95 % ordinary mail (2-16 KB) and 5 % invitations (a new meeting each, keyword in
LOCATION, 3 attendees).  Every message carries a unique ``X-Soak-Id``; the sink
counts each id it receives, so at the end:

* every message the client saw ``250`` for must be at the sink exactly once;
* every message whose every attempt got ``4xx`` must not be at the sink;
* a 4xx is retried in the same session after ``--retry-delay`` seconds, at most
  ``--retries`` times (the MTA's retry, shortened); retries are counted.

Reported: throughput (messages accepted per second), latency per attempt (MAIL to the
reply to the end of DATA) p50/p99 by kind, the 4xx rate, the relay's RSS (all its
processes together: with the default ``smtp.workers`` a supervisor and its workers)
idle at the start, after warm-up, at the end and min/max of samples taken during the
run, and the loss/duplication count at the sink.  With the default ``--rate-limit 2`` (the
platform's pace, about 4 API calls per invitation) most invitations get 451 once more
wait than the API can serve within the call deadline; ``--rate-limit 1000`` takes the
pacing out.  Organizer notices are off so the sink sees only the client's mail.

    .venv/bin/python bench/soak.py --quick                  # 2 min of load, ~3.5 min in all
    .venv/bin/python bench/soak.py --quick --rate-limit 1000
    .venv/bin/python bench/soak.py --minutes 30             # the full soak, ~32 min in all

How long it takes: the load runs for the set time, then the sessions finish the
transactions they are in.  With the platform's pace (``--rate-limit 2``) invitations
sent near the end wait for the API for up to a minute or more, so ``--quick`` took
208 s in all here (120 s of load, the rest start-up and draining).  Progress goes to
stderr every ``--progress`` seconds (10): time, messages accepted, 4xx, relay RSS.

Loopback only; bounded: the load stops at the set time, a session waits at most
``--reply-timeout`` for any reply, and the whole run is cut off after the load time
plus two reply timeouts.  Not run by CI.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_relay import REPO, free_port, proc_kib, stop, wait_for_port
from tests.support.processes import process_tree

TOKEN = "soak-token"
ORGANIZER = "boss@example.org"
_SOAK_ID = re.compile(rb"(?im)^X-Soak-Id:[ \t]*(\S+)")


# --- the counting sink (runs in its own process) ----------------------------------

def serve_sink(port: int, report: Path) -> int:
    """An aiosmtpd next hop that counts each X-Soak-Id; writes ``report`` on SIGTERM."""
    from aiosmtpd.smtp import SMTP

    counts: collections.Counter[str] = collections.Counter()
    with_conference: set[str] = set()
    without_id = 0

    class Handler:
        async def handle_DATA(self, server, session, envelope) -> str:
            nonlocal without_id
            data = envelope.original_content or b""
            head = data[: data.find(b"\r\n\r\n") if b"\r\n\r\n" in data else 8192]
            match = _SOAK_ID.search(head)
            if match is None:
                without_id += 1
            else:
                soak_id = match.group(1).decode("ascii", "replace")
                counts[soak_id] += 1
                if soak_id.startswith("inv-") and b"\r\nCONFERENCE;" in data:
                    with_conference.add(soak_id)
            return "250 2.0.0 Ok"

    async def main() -> None:
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, done.set)
        loop.add_signal_handler(signal.SIGINT, done.set)
        handler = Handler()
        server = await loop.create_server(
            lambda: SMTP(handler, hostname="soak-sink", data_size_limit=None, enable_SMTPUTF8=True),
            host="127.0.0.1", port=port,
        )
        await done.wait()
        server.close()

    asyncio.run(main())
    report.write_text(json.dumps({
        "counts": counts, "with_conference": sorted(with_conference), "without_id": without_id,
    }))
    return 0

    asyncio.run(main())


# --- messages --------------------------------------------------------------------

_WORDS = ("relay", "meeting", "budget", "report", "quarter", "update", "draft", "notes", "plan",
          "review", "agenda", "summary", "customer", "release", "deadline", "schedule")


def ordinary(soak_id: str, rng: random.Random) -> bytes:
    size = rng.randint(2 * 1024, 16 * 1024)
    lines, total = [], 0
    while total < size:
        line = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(5, 12)))
        lines.append(line)
        total += len(line) + 2
    body = "\r\n".join(lines)
    return (
        f"From: sender@example.com\r\nTo: rcpt@example.net\r\nSubject: soak {soak_id}\r\n"
        f"Message-ID: <{soak_id}@soak.example>\r\nX-Soak-Id: {soak_id}\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    ).encode()


def invitation(soak_id: str, start: datetime) -> bytes:
    stamp = "%Y%m%dT%H%M%SZ"
    ics = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//soak//EN\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\n"
        f"UID:{soak_id}@soak.example\r\nSEQUENCE:0\r\nDTSTAMP:{start.strftime(stamp)}\r\n"
        f"DTSTART:{start.strftime(stamp)}\r\nDTEND:{(start + timedelta(hours=1)).strftime(stamp)}\r\n"
        f"SUMMARY:Soak meeting {soak_id}\r\nLOCATION:@webinar\r\nORGANIZER:mailto:{ORGANIZER}\r\n"
        "ATTENDEE;RSVP=TRUE:mailto:a@example.net\r\nATTENDEE;RSVP=TRUE:mailto:b@example.net\r\n"
        "ATTENDEE;RSVP=TRUE:mailto:c@example.net\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    return (
        f"From: {ORGANIZER}\r\nTo: a@example.net\r\nSubject: soak {soak_id}\r\n"
        f"Message-ID: <{soak_id}@soak.example>\r\nX-Soak-Id: {soak_id}\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/alternative; boundary="b"\r\n\r\n--b\r\n'
        "Content-Type: text/plain; charset=utf-8\r\n\r\nMeeting.\r\n\r\n--b\r\n"
        f"Content-Type: text/calendar; charset=utf-8; method=REQUEST\r\n\r\n{ics}\r\n--b--\r\n"
    ).encode()


# --- the client ------------------------------------------------------------------

class SessionLost(Exception):
    pass


class Client:
    """A minimal SMTP client: one command, one (possibly multi-line) reply."""

    def __init__(self, port: int, timeout: float) -> None:
        self.port = port
        self.timeout = timeout
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", self.port), self.timeout)
        await self.expect(220)
        await self.command(b"EHLO soak.example", 250)

    async def reply(self) -> int:
        assert self.reader is not None
        while True:
            line = await asyncio.wait_for(self.reader.readline(), self.timeout)
            if not line:
                raise SessionLost("connection closed")
            if line[3:4] != b"-":
                return int(line[:3])

    async def expect(self, code: int) -> int:
        got = await self.reply()
        if got != code:
            raise SessionLost(f"expected {code}, got {got}")
        return got

    async def command(self, line: bytes, code: int | None = None) -> int:
        assert self.writer is not None
        self.writer.write(line + b"\r\n")
        got = await self.reply()
        if code is not None and got != code:
            raise SessionLost(f"{line[:20]!r}: expected {code}, got {got}")
        return got

    async def send(self, content: bytes) -> int:
        """One transaction; the reply code to MAIL, RCPT or the end of DATA."""
        assert self.writer is not None
        for line, ok in ((b"MAIL FROM:<sender@example.com>", 250), (b"RCPT TO:<rcpt@example.net>", 250),
                         (b"DATA", 354)):
            got = await self.command(line)
            if got != ok:
                if got < 400:
                    raise SessionLost(f"{line[:20]!r}: {got}")
                await self.command(b"RSET", 250)
                return got
        # No line of ours starts with "." and every line ends in CRLF: no stuffing needed.
        self.writer.write(content + b".\r\n")
        return await self.reply()

    async def close(self) -> None:
        if self.writer is None:
            return
        try:
            self.writer.write(b"QUIT\r\n")
            await asyncio.wait_for(self.reader.readline(), 5)  # type: ignore[union-attr]
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()
        self.writer = self.reader = None


@dataclass
class Tally:
    #: soak id -> final outcome ("250", "4xx", "5xx", "unknown") and kind.
    final: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: kind -> latencies (s) of every attempt that got a reply to the end of DATA.
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"mail": [], "inv": []})
    attempts: collections.Counter[str] = field(default_factory=collections.Counter)
    tempfails: collections.Counter[str] = field(default_factory=collections.Counter)
    retries: collections.Counter[str] = field(default_factory=collections.Counter)
    reconnects: int = 0
    accepted_times: list[float] = field(default_factory=list)


async def session(number: int, port: int, args: argparse.Namespace, stop_at: float, tally: Tally,
                  meeting_start: datetime) -> None:
    rng = random.Random(args.seed * 1000 + number)
    client = Client(port, args.reply_timeout)
    sequence = 0
    in_session = 0
    try:
        while time.monotonic() < stop_at:
            if client.writer is None:
                try:
                    await client.open()
                except (OSError, TimeoutError, SessionLost):
                    tally.reconnects += 1
                    await client.close()
                    await asyncio.sleep(1)
                    continue
            sequence += 1
            kind = "inv" if rng.random() < args.invite_share else "mail"
            soak_id = f"{kind}-{number}-{sequence}"
            content = (invitation(soak_id, meeting_start) if kind == "inv"
                       else ordinary(soak_id, rng))
            outcome = "unknown"
            for attempt in range(args.retries + 1):
                if attempt:
                    tally.retries[kind] += 1
                    await asyncio.sleep(args.retry_delay)
                tally.attempts[kind] += 1
                began = time.monotonic()
                try:
                    code = await client.send(content)
                except (OSError, TimeoutError, SessionLost, asyncio.IncompleteReadError):
                    outcome = "unknown"
                    tally.reconnects += 1
                    await client.close()
                    break
                tally.latencies[kind].append(time.monotonic() - began)
                if code == 250:
                    outcome = "250"
                    tally.accepted_times.append(time.monotonic())
                    break
                if 400 <= code < 500:
                    outcome = "4xx"
                    tally.tempfails[kind] += 1
                    if time.monotonic() >= stop_at:
                        break
                    continue
                outcome = f"{code}"
                break
            tally.final[soak_id] = (outcome, kind)
            in_session += 1
            if in_session >= args.per_session and client.writer is not None:
                await client.close()  # reconnect now and then: connection churn too
                in_session = 0
    finally:
        await client.close()


async def sample_rss(pid: int, interval: float, samples: list[tuple[float, int]], done: asyncio.Event,
                     began: float) -> None:
    while not done.is_set():
        try:
            samples.append((time.monotonic() - began, relay_kib(pid, "VmRSS")))
        except (OSError, KeyError):
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), interval)


def relay_kib(pid: int, field: str) -> int:
    """``field`` (VmRSS, VmHWM) summed over the relay's processes: with ``smtp.workers`` > 1
    the supervisor, its workers and their engine workers."""
    total = 0
    for member in process_tree(pid):
        with contextlib.suppress(FileNotFoundError, KeyError):  # gone meanwhile
            total += proc_kib(member, field)
    return total


async def drive(port: int, relay_pid: int, args: argparse.Namespace, seconds: float) -> dict:
    tally = Tally()
    samples: list[tuple[float, int]] = []
    done = asyncio.Event()
    began = time.monotonic()
    stop_at = began + seconds
    meeting_start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
    sampler = asyncio.create_task(sample_rss(relay_pid, args.rss_interval, samples, done, began))
    reporter = asyncio.create_task(report_progress(relay_pid, args.progress, tally, done, began, seconds))
    tasks = [asyncio.create_task(session(n, port, args, stop_at, tally, meeting_start))
             for n in range(args.sessions)]
    # Bounded: a session finishes its transaction at most two reply timeouts after the stop.
    finished, pending = await asyncio.wait(tasks, timeout=seconds + 2 * args.reply_timeout + 30)
    for task in pending:
        task.cancel()
    for task in finished:
        if task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
    load_seconds = time.monotonic() - began
    done.set()
    await sampler
    await reporter
    return {"tally": tally, "samples": samples, "load_seconds": load_seconds,
            "unfinished_sessions": len(pending)}


async def report_progress(relay_pid: int, interval: float, tally: Tally, done: asyncio.Event,
                          began: float, seconds: float) -> None:
    """One line on stderr every ``interval`` seconds, so a long run shows it is alive."""
    while not done.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), interval)
        elapsed = time.monotonic() - began
        phase = "load" if elapsed < seconds else "draining"
        accepted = sum(1 for outcome, _ in tally.final.values() if outcome == "250")
        try:
            rss = relay_kib(relay_pid, "VmRSS")
        except (OSError, KeyError):
            rss = 0
        print(f"soak: {elapsed:5.0f}/{seconds:.0f} s ({phase}), {accepted:,} accepted, "
              f"{sum(tally.tempfails.values()):,} 4xx attempts, relay RSS "
              f"{rss / 1024:.1f} MiB", file=sys.stderr, flush=True)


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def start_process(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("ab")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WEBINAR_PROXY_")}
    clean.update(env)
    return subprocess.Popen(args, cwd=REPO, env=clean, stdout=handle, stderr=handle)


def relay_env(args: argparse.Namespace, work: Path, relay_port: int, sink_port: int,
              fake_port: int) -> dict[str, str]:
    from webinar_proxy.settings import SmtpSettings

    env = {
        "WEBINAR_PROXY_SMTP__LISTEN": f"127.0.0.1:{relay_port}",
        "WEBINAR_PROXY_SMTP__NEXT_HOP": f"127.0.0.1:{sink_port}",
        "WEBINAR_PROXY_WEBINAR__API_URL": f"http://127.0.0.1:{fake_port}/v3",
        "WEBINAR_PROXY_WEBINAR__TOKEN": TOKEN,
        "WEBINAR_PROXY_WEBINAR__RATE_LIMIT": str(args.rate_limit),
        "WEBINAR_PROXY_STORE__URL": f"sqlite:///{work}/state.db",
        "WEBINAR_PROXY_POLICY__NOTIFY_ORGANIZER": "false",
    }
    # A connection cap (if this version has one) must leave room for every session.
    fields = SmtpSettings.model_fields
    if "max_connections" in fields and (fields["max_connections"].default or 0) < args.sessions + 10:
        env["WEBINAR_PROXY_SMTP__MAX_CONNECTIONS"] = str(args.sessions + 10)
    return env


def run(args: argparse.Namespace) -> dict:
    seconds = 120.0 if args.quick else args.minutes * 60
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        work = Path(tmp)
        sink_port, relay_port, fake_port = free_port(), free_port(), free_port()
        report_path = work / "sink.json"
        sink = start_process([sys.executable, __file__, "--serve-sink", str(sink_port),
                              "--sink-report", str(report_path)], {}, work / "sink.log")
        fake = start_process([sys.executable, "-m", "webinar_proxy", "fake-webinar", "--listen",
                              f"127.0.0.1:{fake_port}", "--token", TOKEN], {}, work / "fake.log")
        relay = None
        try:
            print(f"soak: starting sink, fake API and relay in {work}", file=sys.stderr, flush=True)
            wait_for_port(sink_port)
            wait_for_port(fake_port)
            relay = start_process([sys.executable, "-m", "webinar_proxy", "serve"],
                                  relay_env(args, work, relay_port, sink_port, fake_port),
                                  work / "relay.log")
            wait_for_port(relay_port)
            time.sleep(1)
            rss_idle = relay_kib(relay.pid, "VmRSS")
            print(f"soak: {args.sessions} sessions for {seconds:.0f} s", file=sys.stderr, flush=True)
            result = asyncio.run(drive(relay_port, relay.pid, args, seconds))
            rss_end = relay_kib(relay.pid, "VmRSS")
            rss_hwm = relay_kib(relay.pid, "VmHWM")
        finally:
            for process in (relay, fake):
                if process is not None:
                    stop(process)
            stop(sink)
            if args.keep_logs:
                Path(args.keep_logs).mkdir(parents=True, exist_ok=True)
                for name in ("relay.log", "fake.log", "sink.log"):
                    if (work / name).exists():
                        (Path(args.keep_logs) / name).write_bytes((work / name).read_bytes())
        sink_report = json.loads(report_path.read_text())
    return summarise(args, seconds, result, sink_report, rss_idle, rss_end, rss_hwm)


def summarise(args, seconds, result, sink_report, rss_idle, rss_end, rss_hwm) -> dict:
    tally: Tally = result["tally"]
    counts: dict[str, int] = sink_report["counts"]
    lost = duplicated = leaked = 0
    finals = collections.Counter()
    for soak_id, (outcome, kind) in tally.final.items():
        finals[(kind, outcome)] += 1
        seen = counts.get(soak_id, 0)
        if outcome == "250":
            lost += seen == 0
            duplicated += seen > 1
        elif outcome != "unknown":
            leaked += seen > 0
    unknown_at_sink = sum(1 for soak_id, (outcome, _) in tally.final.items()
                          if outcome == "unknown" and counts.get(soak_id, 0))
    strangers = sum(1 for soak_id in counts if soak_id not in tally.final)
    accepted = sum(1 for outcome, _ in tally.final.values() if outcome == "250")
    inv_accepted = finals[("inv", "250")]
    inv_with_link = sum(1 for soak_id in sink_report["with_conference"]
                        if tally.final.get(soak_id, ("", ""))[0] == "250")
    samples = result["samples"]
    warm = [kib for moment, kib in samples if moment >= seconds * 0.1] or [kib for _, kib in samples]
    all_latency = tally.latencies["mail"] + tally.latencies["inv"]
    attempts = sum(tally.attempts.values())
    return {
        "mode": "quick (2 min)" if args.quick else f"{args.minutes:g} min",
        "rate_limit": args.rate_limit,
        "sessions": args.sessions,
        "load_seconds": round(result["load_seconds"], 1),
        "messages": len(tally.final),
        "accepted": accepted,
        "throughput_msgs_per_s": round(accepted / result["load_seconds"], 1),
        "attempts": dict(tally.attempts),
        "retries": dict(tally.retries),
        "tempfail_attempts": dict(tally.tempfails),
        "tempfail_rate_all": round(sum(tally.tempfails.values()) / max(attempts, 1), 4),
        "tempfail_rate_invitations": round(tally.tempfails["inv"] / max(tally.attempts["inv"], 1), 4),
        "final_outcomes": {f"{kind}:{outcome}": n for (kind, outcome), n in sorted(finals.items())},
        "latency_ms": {
            name: {"p50": round(percentile(values, 0.5) * 1000, 1),
                   "p99": round(percentile(values, 0.99) * 1000, 1), "n": len(values)}
            for name, values in (("all", all_latency), ("mail", tally.latencies["mail"]),
                                 ("inv", tally.latencies["inv"]))
        },
        "rss_kib": {
            "idle_start": rss_idle,
            "after_warmup": warm[0] if warm else None,
            "end": rss_end,
            "min_after_warmup": min(warm) if warm else None,
            "max_after_warmup": max(warm) if warm else None,
            "min": min((kib for _, kib in samples), default=None),
            "max": max((kib for _, kib in samples), default=None),
            "peak_vmhwm": rss_hwm,
            "samples": len(samples),
            # Twelve samples spread over the run: (seconds into the run, KiB).
            "series": [samples[round(i * (len(samples) - 1) / 11)] for i in range(12)] if samples else [],
        },
        "sink": {
            "lost": lost, "duplicated": duplicated, "tempfailed_but_delivered": leaked,
            "unknown_outcome": finals_unknown(tally), "unknown_outcome_at_sink": unknown_at_sink,
            "not_ours": strangers, "without_id": sink_report["without_id"],
            "invitations_accepted": inv_accepted, "invitations_with_conference": inv_with_link,
        },
        "reconnects_after_errors": tally.reconnects,
        "unfinished_sessions": result["unfinished_sessions"],
        "median_latency_all_s": round(statistics.median(all_latency), 4) if all_latency else None,
    }


def finals_unknown(tally: Tally) -> int:
    return sum(1 for outcome, _ in tally.final.values() if outcome == "unknown")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--quick", action="store_true",
                        help="2 minutes of load (about 3.5 minutes in all)")
    parser.add_argument("--progress", type=float, default=10.0, metavar="SECONDS",
                        help="seconds between progress lines on stderr")
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--invite-share", type=float, default=0.05)
    parser.add_argument("--rate-limit", type=float, default=2.0,
                        help="the relay's requests/s towards the fake API (2 = the platform's pace)")
    parser.add_argument("--retries", type=int, default=2, help="retries of a message after 4xx")
    parser.add_argument("--retry-delay", type=float, default=5.0)
    parser.add_argument("--per-session", type=int, default=50,
                        help="transactions per connection before reconnecting")
    parser.add_argument("--reply-timeout", type=float, default=360.0)
    parser.add_argument("--rss-interval", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", help="also write the result here")
    parser.add_argument("--keep-logs", help="copy the relay/fake/sink logs into this directory")
    parser.add_argument("--serve-sink", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--sink-report", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_sink:
        return serve_sink(args.serve_sink, Path(args.sink_report))
    result = run(args)
    text = json.dumps(result, indent=2)
    print(text, flush=True)
    if args.json:
        Path(args.json).write_text(text + "\n")
    sink = result["sink"]
    clean = not (sink["lost"] or sink["duplicated"] or sink["tempfailed_but_delivered"]
                 or sink["unknown_outcome_at_sink"] or sink["not_ours"])
    print("nothing lost or duplicated" if clean else "LOSS OR DUPLICATION - see 'sink'", flush=True)
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
