"""Benchmark of the invitation engine.

    .venv/bin/python bench/bench_engine.py [--rounds N] [--corpus DIR]

Prints per-message median and p99 for:

* classify, and classify + rewrite, over every corpus file (the project's own
  ``tests/fixtures/clients`` unless ``--corpus`` names another directory),
  with "now" one day before the event, as when an invitation is sent;
* classify of ordinary (non-calendar) mail of 10 KB, 1 MB and 20 MB, as plain
  text and as multipart with a base64 attachment;
* classify + rewrite of an invitation carrying a 1 MB attachment.

Goals: ordinary mail recognised in well under
1 ms per MB; a typical invitation classified and rewritten in under 10 ms.
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from webinar_proxy.invitation import EngineOptions, classify, rewrite  # noqa: E402

CORPUS_DIR = REPO_ROOT / "tests" / "fixtures" / "clients"
LINK = "https://events.webinar.ru/demo-org/1234567"
NOW = datetime(1990, 1, 1, tzinfo=UTC)
OPTIONS = EngineOptions()


def timed(function: Callable[[], object], rounds: int) -> list[float]:
    """Seconds per call, one sample per round (after one warm-up call)."""
    function()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return samples


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def report(label: str, samples: list[float], size: int | None = None) -> None:
    median = statistics.median(samples)
    line = f"{label:46} median {median * 1e3:8.3f} ms   p99 {p99(samples) * 1e3:8.3f} ms"
    if size:
        line += f"   {median * 1e3 / (size / 1e6):7.4f} ms/MB"
    print(line)


def ordinary_plain(size: int) -> bytes:
    line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n"
    head = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: report\r\n\r\n"
    return head + line * ((size - len(head)) // len(line) + 1)


def ordinary_attachment(size: int) -> bytes:
    payload = base64.encodebytes(os.urandom(size * 3 // 4)).replace(b"\n", b"\r\n")
    return (
        b"From: a@example.com\r\nTo: b@example.com\r\nSubject: files\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="=_b0a1c2d3e4f5a6b7c8d9"\r\n\r\n'
        b"--=_b0a1c2d3e4f5a6b7c8d9\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        b"See the attachment.\r\n--=_b0a1c2d3e4f5a6b7c8d9\r\n"
        b'Content-Type: application/pdf; name="report.pdf"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        + payload + b"\r\n--=_b0a1c2d3e4f5a6b7c8d9--\r\n"
    )


def invitation_with_attachment(size: int) -> bytes:
    ics = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//bench//EN\r\nMETHOD:REQUEST\r\n"
        "BEGIN:VEVENT\r\nUID:bench-1@example.com\r\nDTSTAMP:20240101T000000Z\r\n"
        "DTSTART;TZID=Europe/Moscow:20300301T100000\r\nDURATION:PT1H\r\n"
        "RRULE:FREQ=WEEKLY;COUNT=20\r\nSUMMARY:Планёрка\r\nLOCATION:Переговорная @webinar\r\n"
        "ORGANIZER;CN=Boss:mailto:boss@example.com\r\n"
        + "".join(f"ATTENDEE;CN=User {i}:mailto:user{i}@example.com\r\n" for i in range(7))
        + "END:VEVENT\r\nEND:VCALENDAR\r\n"
    ).encode()
    encoded_ics = base64.encodebytes(ics).replace(b"\n", b"\r\n")
    payload = base64.encodebytes(os.urandom(size * 3 // 4)).replace(b"\n", b"\r\n")
    return (
        b"From: Boss <boss@example.com>\r\nTo: user0@example.com\r\nSubject: invite\r\n"
        b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="m1"\r\n\r\n'
        b'--m1\r\nContent-Type: multipart/alternative; boundary="a1"\r\n\r\n'
        b"--a1\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\n" + "Приглашение\r\n".encode() +
        b"--a1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>Hi</p>"
        b"</body></html>\r\n"
        b"--a1\r\nContent-Type: text/calendar; charset=utf-8; method=REQUEST\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + encoded_ics + b"--a1--\r\n"
        b'--m1\r\nContent-Type: application/pdf; name="big.pdf"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n" + payload + b"\r\n--m1--\r\n"
    )


def bench_corpus(corpus: Path, rounds: int) -> None:
    classify_samples: list[float] = []
    both_samples: list[float] = []
    for path in sorted(corpus.iterdir()):
        if path.suffix not in (".eml", ".ics", ".mbox"):
            continue
        raw = path.read_bytes()
        result = classify(raw, None, OPTIONS, NOW)
        # As in production: the mail goes out shortly before the (first) meeting.
        now = result.start - timedelta(days=1) if result.start else NOW
        classify_samples.extend(timed(lambda raw=raw, now=now: classify(raw, None, OPTIONS, now),
                                      rounds))
        if result.processable and result.method == "REQUEST":

            def both(raw=raw, now=now) -> None:
                found = classify(raw, None, OPTIONS, now)
                rewrite(raw, found.uid, LINK, OPTIONS)

            both_samples.extend(timed(both, rounds))
    report(f"corpus classify ({len(classify_samples) // rounds} files)", classify_samples)
    report(f"corpus classify+rewrite ({len(both_samples) // rounds} REQUESTs)", both_samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="samples per message")
    parser.add_argument("--corpus", type=Path, default=CORPUS_DIR,
                        help="directory of .eml/.ics/.mbox files (default: %(default)s)")
    args = parser.parse_args()
    if not args.corpus.is_dir():
        parser.error(f"corpus not found: {args.corpus}")
    bench_corpus(args.corpus, args.rounds)
    for label, size in (("10 KB", 10_000), ("1 MB", 1_000_000), ("20 MB", 20_000_000)):
        rounds = args.rounds if size < 5_000_000 else max(5, args.rounds // 4)
        for kind, build in (("plain", ordinary_plain), ("attachment", ordinary_attachment)):
            raw = build(size)
            result = classify(raw, None, OPTIONS, NOW)
            assert result.reason == "not a calendar mail", result.reason
            samples = timed(lambda raw=raw: classify(raw, None, OPTIONS, NOW), rounds)
            report(f"ordinary {label} {kind}: classify", samples, len(raw))
    raw = invitation_with_attachment(1_000_000)

    def both() -> None:
        found = classify(raw, "boss@example.com", OPTIONS, NOW)
        rewrite(raw, found.uid, LINK, OPTIONS)

    report("invitation + 1 MB attachment: classify+rewrite", timed(both, args.rounds), len(raw))


if __name__ == "__main__":
    main()
