"""``webinar-proxy inspect``: show how the relay reads a mail or ``.ics`` file (no network).

Prints the classification (``--json``: the object of
``Classification.to_json_dict()``).  With ``--link URL`` it writes the mail
rewritten with that join link to stdout instead, and the classification to stderr.

The engine runs as in the service: in a worker process (a pool of one) with
``policy.engine_timeout_seconds`` and ``policy.engine_memory_mb``; a mail past them
reads as not processable, reason "engine timeout" or "engine memory".

Exit codes: 0 read (processable or not), 1 the file cannot be read or the mail
cannot be rewritten, 2 bad ``--now`` / ``--link`` values.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from webinar_proxy.cli.exits import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from webinar_proxy.invitation import (
    Classification,
    EngineError,
    EngineOptions,
    EnginePool,
    EngineStopped,
    EngineUnavailable,
)


def _parse_now(value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    moment = datetime.fromisoformat(value.strip())
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _read(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    return Path(path).read_bytes()


def _print_human(result: Classification, out: TextIO) -> None:
    data = result.to_json_dict()
    order = (
        "processable", "reason", "method", "mime_method", "uid", "organizer", "sent_by",
        "from_organizer", "sequence", "status", "summary", "start", "end", "all_day",
        "timezone", "has_master", "recurrence_ids", "recurring", "next_occurrence",
        "triggers", "conference_requested", "has_our_link", "our_link", "calendar_parts",
        "in_attached_message",
    )
    for key in order:
        value: Any = data[key]
        if isinstance(value, list):
            value = ", ".join(str(item) for item in value) or "-"
        print(f"{key:22} {value if value is not None else '-'}", file=out)
    print(f"{'attendees':22} {len(result.attendees)}", file=out)
    for attendee in result.attendees:
        kind = "person" if attendee.is_person else (attendee.cutype or "not a person").lower()
        name = f" ({attendee.name})" if attendee.name else ""
        print(f"  {attendee.address}{name} {attendee.role or '-'} {kind}", file=out)
    for warning in result.warnings:
        print(f"warning: {warning}", file=out)


async def _engine(raw: bytes, mail_from: str | None, options: EngineOptions, now: datetime,
                  link: str | None, policy: Any) -> tuple[Classification, bytes | Exception | None]:
    """Classify (and rewrite with ``link``) in a one-worker pool with the service's limits."""
    pool = EnginePool(workers=1, timeout_seconds=policy.engine_timeout_seconds,
                      memory_mb=policy.engine_memory_mb)
    await pool.start()
    try:
        try:
            result = await pool.classify(raw, mail_from, options, now)
        except EngineStopped as exc:
            return Classification(processable=False, reason=f"not processable: {exc}"), None
        if not (link and result.uid):
            return result, None
        try:
            return result, await pool.rewrite(raw, result.uid, link, options)
        except (EngineError, ValueError) as exc:
            return result, exc
    finally:
        await pool.close()


def run_inspect(args: argparse.Namespace, settings: Any) -> int:
    try:
        now = _parse_now(args.now)
    except ValueError:
        print(f"webinar-proxy: --now {args.now!r} is not an ISO 8601 time", file=sys.stderr)
        return EXIT_USAGE
    try:
        options = EngineOptions.from_settings(settings)
    except (ValueError, OSError) as exc:
        print(f"webinar-proxy: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        raw = _read(args.file)
    except OSError as exc:
        print(f"webinar-proxy: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILURE
    try:
        result, rewritten = asyncio.run(_engine(raw, args.mail_from, options, now, args.link,
                                                settings.policy))
    except EngineUnavailable as exc:
        print(f"webinar-proxy: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if args.link:
        if not result.uid:
            print(f"webinar-proxy: nothing to rewrite: {result.reason}", file=sys.stderr)
            return EXIT_FAILURE
        try:
            if isinstance(rewritten, Exception):
                raise rewritten
            assert rewritten is not None
        except EngineError as exc:
            print(f"webinar-proxy: cannot rewrite: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        except ValueError as exc:
            print(f"webinar-proxy: {exc}", file=sys.stderr)
            return EXIT_USAGE
        if args.json:
            print(json.dumps(result.to_json_dict(), ensure_ascii=False), file=sys.stderr)
        else:
            _print_human(result, sys.stderr)
        sys.stdout.buffer.write(rewritten)
        sys.stdout.flush()
        return EXIT_OK
    if args.json:
        print(json.dumps(result.to_json_dict(), ensure_ascii=False, indent=2))
    else:
        _print_human(result, sys.stdout)
    return EXIT_OK
