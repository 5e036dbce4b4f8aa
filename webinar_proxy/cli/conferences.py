"""``webinar-proxy conferences list|show|forget``: the administrator's view of the store.

``show`` also counts the attendees registered on the platform and those still queued
for the background registration worker (``registered``, ``pending_registrations``,
``pending_unregistrations``).

Reads and edits the store only, never the Webinar platform, and never creates a
store: a mistyped path is "no store at PATH".  Exit codes: 0 done, 1 no store, not
found, ambiguous, a live conference to forget without ``--yes``, or the store
failed; 2 an unusable store URL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from webinar_proxy.cli.exits import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK
from webinar_proxy.settings import Settings
from webinar_proxy.store import (
    ConferenceRecord,
    ConferenceState,
    ConferenceStore,
    StoreConfigError,
    StoreError,
    open_configured_store,
    record_to_json,
)


class _Refused(Exception):
    """The command cannot go on; the message says why (exit 1)."""


def run_conferences(args: argparse.Namespace, settings: Settings) -> int:
    actions: dict[str, Callable[[ConferenceStore, argparse.Namespace], Awaitable[None]]] = {
        "list": _list,
        "show": _show,
        "forget": _forget,
    }
    return asyncio.run(_run(actions[args.action], args, settings))


async def _run(
    action: Callable[[ConferenceStore, argparse.Namespace], Awaitable[None]],
    args: argparse.Namespace,
    settings: Settings,
) -> int:
    try:
        missing = _missing_sqlite_file(settings.store.url)
    except StoreConfigError as exc:
        _complain(f"store.url: {exc}")
        return EXIT_CONFIG
    if missing is not None:
        _complain(f"no store at {missing} (store.url; give the relay's configuration with "
                  "--config, or set WEBINAR_PROXY_STORE__URL)")
        return EXIT_FAILURE
    try:
        store = await open_configured_store(settings.store)
    except StoreConfigError as exc:
        _complain(f"store.url: {exc}")
        return EXIT_CONFIG
    except StoreError as exc:
        _complain(str(exc))
        return EXIT_FAILURE
    try:
        await action(store, args)
    except (_Refused, StoreError) as exc:
        _complain(str(exc))
        return EXIT_FAILURE
    finally:
        await store.close()
    return EXIT_OK


def _missing_sqlite_file(url: str) -> Path | None:
    """The SQLite file ``url`` names when it does not exist (opening would create it)."""
    if not url.startswith("sqlite:"):
        return None
    from webinar_proxy.store.sqlite import path_from_url

    path = path_from_url(url)
    if path == ":memory:" or Path(path).is_file():
        return None
    return Path(path)


def _complain(message: str) -> None:
    print(f"webinar-proxy: {message}", file=sys.stderr)


def _when(value: object) -> str:
    return "-" if value is None else str(getattr(value, "isoformat", lambda: value)())


#: Column headers of the plain listing (tab-separated, one conference per line).
LIST_COLUMNS = ("STATE", "ORGANIZER", "UID", "BOOKED_START", "LINK", "SUMMARY")


async def _list(store: ConferenceStore, args: argparse.Namespace) -> None:
    state = ConferenceState(args.state) if args.state else None
    records = await store.list(state=state)
    if args.json:
        print(json.dumps([record_to_json(record) for record in records], indent=2))
        return
    print("\t".join(LIST_COLUMNS))
    for record in records:
        print(
            "\t".join(
                (
                    str(record.state),
                    record.organizer,
                    record.uid,
                    _when(record.booked_start),
                    record.link or "-",
                    record.summary,
                )
            )
        )


async def _resolve(store: ConferenceStore, uid: str, organizer: str | None) -> ConferenceRecord:
    records = await store.find_by_uid(uid)
    if organizer is not None:
        records = [record for record in records if record.organizer == organizer.lower()]
    if not records:
        whose = f" of organizer {organizer}" if organizer else ""
        raise _Refused(f"no stored conference with UID {uid!r}{whose}")
    if len(records) > 1:
        organizers = ", ".join(record.organizer for record in records)
        raise _Refused(
            f"UID {uid!r} is stored for several organizers ({organizers}); "
            "choose one with --organizer"
        )
    return records[0]


async def _show(store: ConferenceStore, args: argparse.Namespace) -> None:
    record = await _resolve(store, args.uid, args.organizer)
    view = record_to_json(record)
    # Registration runs in the background: how many are done, how many still queued.
    queued = await store.registration_counts(record.organizer, record.uid)
    view["registered"] = sum(1 for r in record.registrations if r.address != record.organizer)
    view["pending_registrations"] = queued["add"]
    view["pending_unregistrations"] = queued["remove"]
    if args.json:
        print(json.dumps(view, indent=2))
        return
    for name, value in view.items():
        if name == "calendar" and record.calendar is not None:
            value = f"<{len(record.calendar)} bytes of iCalendar>"
        elif name == "registrations":
            value = ", ".join(
                f"{item['address']} ({item['role']}, id {item['participation_id'] or '-'})"
                for item in value
            ) or "-"
        elif name == "cancelled_occurrences":
            value = ", ".join(value) or "-"
        elif value is None:
            value = "-"
        print(f"{name}: {value}")


async def _forget(store: ConferenceStore, args: argparse.Namespace) -> None:
    record = await _resolve(store, args.uid, args.organizer)
    live = record.state != ConferenceState.DELETED
    event = f"event {record.event_id}" if record.event_id is not None else "its event (if one was made)"
    if live and not args.yes:
        raise _Refused(
            f"the conference of UID {record.uid!r} ({record.organizer}) is {record.state}: "
            f"forget only drops the stored row, {event} stays on the Webinar platform and "
            "later mail about this meeting makes a new conference.  To delete it, let the "
            "organizer cancel the meeting (or delete the event on the platform), then forget. "
            "Add --yes to forget it now anyway"
        )
    async with store.key_lock(record.organizer, record.uid):
        if not await store.forget(record.organizer, record.uid):
            raise _Refused(f"UID {record.uid!r} of {record.organizer} vanished meanwhile")
    print(f"forgot {record.state} conference {record.uid} of {record.organizer}")
    if live:
        print(f"{event} stays on the Webinar platform; forget changed only the store")
