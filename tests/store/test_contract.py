"""The ConferenceStore contract, run against SQLite and PostgreSQL alike: data operations."""

from __future__ import annotations

import asyncio
import dataclasses
import pathlib
import sqlite3
from datetime import UTC, datetime, timedelta, timezone

import psycopg
import pytest

from webinar_proxy.store import (
    ConferenceRecord,
    ConferenceState,
    Registration,
    StoreError,
    open_store,
    postgres,
    sqlite,
)
from webinar_proxy.store.records import COLUMNS, utc_now

MOSCOW = timezone(timedelta(hours=3))
T0 = datetime(2030, 5, 6, 10, 0, tzinfo=UTC)


def full_record(organizer: str = "Boss@Example.ORG", uid: str = "uid-1@example.org"):
    """A record with every field set to something other than its default."""
    return ConferenceRecord(
        organizer=organizer,
        uid=uid,
        state=ConferenceState.ACTIVE,
        event_id=9_000_000_001,
        session_id=42,
        link="https://my.mts-link.ru/j/demo/123456789",
        booked_start=datetime(2030, 5, 6, 13, 0, 0, 123456, tzinfo=MOSCOW),
        booked_end=datetime(2030, 5, 6, 14, 0, tzinfo=MOSCOW),
        sequence=7,
        summary="Планёрка \N{ROCKET} <weekly>",
        timezone="Europe/Moscow",
        calendar=b"BEGIN:VCALENDAR\r\n\x00\xff\xfe binary-safe\r\nEND:VCALENDAR\r\n",
        recurring=True,
        cancelled_occurrences=(
            datetime(2030, 5, 13, 13, 0, tzinfo=MOSCOW),
            datetime(2030, 5, 20, 10, 0, tzinfo=UTC),
        ),
        registrations=(
            Registration("boss@example.org", "ADMIN", 1),
            Registration("Ann@example.org", "LECTURER", None),
            Registration("bob@example.org", "GUEST", 3),
        ),
        attendees=("ann@example.org", "bob@example.org", "room-1@example.org"),
        mailed_to=("ann@example.org", "bob@example.org"),
        cancel_sequence=8,
        cancelled_to=("bob@example.org",),
        created_at=datetime(2030, 1, 1, 12, 0, tzinfo=MOSCOW),
        deleted_at=datetime(2030, 1, 2, tzinfo=UTC),
        delete_attempts=3,
        next_attempt_at=datetime(2030, 1, 3, 4, 5, 6, 789, tzinfo=UTC),
        last_error="HTTP 503 from the platform",
    )


def assert_all_utc(record: ConferenceRecord) -> None:
    for name in ("booked_start", "booked_end", "created_at", "updated_at", "deleted_at",
                 "next_attempt_at"):
        value = getattr(record, name)
        assert value is None or value.tzinfo is UTC, name
    assert all(when.tzinfo is UTC for when in record.cancelled_occurrences)


async def test_every_field_round_trips(store):
    record = full_record()
    before = utc_now()
    stored = await store.put(record)
    read = await store.get("boss@example.org", "uid-1@example.org")

    assert read == stored
    assert before <= read.updated_at <= utc_now()
    expected = dataclasses.replace(record, updated_at=read.updated_at)
    for name in COLUMNS:
        assert getattr(read, name) == getattr(expected, name), name
    assert read.organizer == "boss@example.org"
    assert read.booked_start == datetime(2030, 5, 6, 10, 0, 0, 123456, tzinfo=UTC)
    assert isinstance(read.calendar, bytes)
    assert isinstance(read.state, ConferenceState)
    assert isinstance(read.registrations, tuple)
    assert isinstance(read.cancelled_occurrences, tuple)
    assert_all_utc(read)


async def test_defaults_round_trip(store):
    record = ConferenceRecord("a@example.org", "minimal")
    stored = await store.put(record)
    assert stored == dataclasses.replace(record, updated_at=stored.updated_at)
    assert await store.get("a@example.org", "minimal") == stored
    assert stored.calendar is None and stored.registrations == () and not stored.recurring


async def test_get_is_case_insensitive_in_organizer_only(store):
    await store.put(ConferenceRecord("a@example.org", "UID-Case"))
    assert await store.get("A@EXAMPLE.org", "UID-Case") is not None
    assert await store.get("a@example.org", "uid-case") is None
    assert await store.get("b@example.org", "UID-Case") is None


async def test_put_upserts_and_keeps_created_at(store):
    first = await store.put(full_record())
    changed = dataclasses.replace(
        first,
        sequence=8,
        link="https://my.mts-link.ru/j/demo/2",
        registrations=first.registrations[:1],
        calendar=None,
        created_at=datetime(2031, 1, 1, tzinfo=UTC),
    )
    second = await store.put(changed)

    assert len(await store.list()) == 1
    assert second.created_at == first.created_at
    assert second.updated_at >= first.updated_at
    assert second == dataclasses.replace(
        changed, created_at=first.created_at, updated_at=second.updated_at
    )
    assert await store.get(first.organizer, first.uid) == second


async def test_put_stamps_deleted_at_once(store):
    record = ConferenceRecord("a@example.org", "gone", state=ConferenceState.DELETED)
    stored = await store.put(record)
    assert stored.deleted_at == stored.updated_at
    again = await store.put(dataclasses.replace(stored, last_error="x"))
    assert again.deleted_at == stored.deleted_at


async def test_find_by_uid_spans_organizers(store):
    await store.put(ConferenceRecord("b@example.org", "one-uid"))
    await store.put(ConferenceRecord("a@example.org", "one-uid"))
    await store.put(ConferenceRecord("a@example.org", "other"))
    found = await store.find_by_uid("one-uid")
    assert [record.organizer for record in found] == ["a@example.org", "b@example.org"]
    assert await store.find_by_uid("nothing") == []


async def test_forget(store):
    await store.put(ConferenceRecord("a@example.org", "u"))
    assert await store.forget("A@example.org", "u") is True
    assert await store.get("a@example.org", "u") is None
    assert await store.forget("a@example.org", "u") is False


async def test_list_filters_orders_and_limits(store):
    for index, state in enumerate(["active", "creating", "active", "deleted"]):
        await store.put(
            ConferenceRecord(
                "a@example.org", f"u{index}", state=state, created_at=T0 + timedelta(hours=index)
            )
        )
    assert [record.uid for record in await store.list()] == ["u0", "u1", "u2", "u3"]
    active = await store.list(state=ConferenceState.ACTIVE)
    assert [record.uid for record in active] == ["u0", "u2"]
    assert [record.uid for record in await store.list(limit=2)] == ["u0", "u1"]
    assert await store.list(state=ConferenceState.PENDING_DELETE) == []


async def test_due_deletes(store):
    now = T0
    rows = {
        "due-old": ("pending_delete", now - timedelta(hours=1)),
        "due-now": ("pending_delete", now),
        "later": ("pending_delete", now + timedelta(microseconds=1)),
        "no-time": ("pending_delete", None),
        "active": ("active", now - timedelta(hours=1)),
        "deleted": ("deleted", now - timedelta(hours=1)),
    }
    for uid, (state, next_attempt_at) in rows.items():
        await store.put(
            ConferenceRecord("a@example.org", uid, state=state, next_attempt_at=next_attempt_at)
        )
    due = await store.due_deletes(now, limit=10)
    assert [record.uid for record in due] == ["due-old", "due-now"]
    assert [record.uid for record in await store.due_deletes(now, limit=1)] == ["due-old"]
    # The same instant written in another zone compares equal.
    assert len(await store.due_deletes(now.astimezone(MOSCOW), limit=10)) == 2


async def test_due_rollovers(store):
    now = T0
    rows = {
        "ended": ("active", True, now - timedelta(days=1)),
        "ends-now": ("active", True, now),
        "running": ("active", True, now + timedelta(minutes=5)),
        "single": ("active", False, now - timedelta(days=1)),
        "unbooked": ("active", True, None),
        "pending": ("pending_delete", True, now - timedelta(days=1)),
        "creating": ("creating", True, now - timedelta(days=1)),
    }
    for uid, (state, recurring, booked_end) in rows.items():
        await store.put(
            ConferenceRecord(
                "a@example.org", uid, state=state, recurring=recurring, booked_end=booked_end
            )
        )
    due = await store.due_rollovers(now, limit=10)
    assert [record.uid for record in due] == ["ended", "ends-now"]
    assert len(await store.due_rollovers(now, limit=1)) == 1


async def test_stale_creating(store):
    before = utc_now()
    await store.put(ConferenceRecord("a@example.org", "orphan"))
    await store.put(ConferenceRecord("a@example.org", "fine", state=ConferenceState.ACTIVE))
    assert await store.stale_creating(before) == []
    stale = await store.stale_creating(utc_now() + timedelta(seconds=1))
    assert [record.uid for record in stale] == ["orphan"]


async def test_purge_deleted(store):
    cutoff = T0
    await store.put(
        ConferenceRecord("a@example.org", "old", state="deleted", deleted_at=cutoff - timedelta(1))
    )
    await store.put(
        ConferenceRecord("a@example.org", "new", state="deleted", deleted_at=cutoff)
    )
    await store.put(
        ConferenceRecord("a@example.org", "live", state="active", deleted_at=cutoff - timedelta(1))
    )
    assert await store.purge_deleted(cutoff) == 1
    assert sorted(record.uid for record in await store.list()) == ["live", "new"]
    assert await store.purge_deleted(cutoff) == 0


async def test_ping_and_close(store_url):
    opened = await open_store(store_url)
    await opened.ping()
    await opened.close()
    await opened.close()  # idempotent
    with pytest.raises(StoreError):
        await opened.get("a@example.org", "u")
    with pytest.raises(StoreError):
        await opened.ping()


def _schema_versions(store_url: str) -> list[int]:
    if store_url.startswith("sqlite:"):
        path = store_url.removeprefix("sqlite://")
        with sqlite3.connect(path) as conn:
            rows = conn.execute("SELECT version FROM schema_version ORDER BY version").fetchall()
        conn.close()
        return [version for (version,) in rows]
    with psycopg.connect(store_url) as conn:
        rows = conn.execute("SELECT version FROM schema_version ORDER BY version").fetchall()
        return [version for (version,) in rows]


def _set_schema_version(store_url: str, version: int) -> None:
    sql = f"INSERT INTO schema_version (version, applied_at) VALUES ({version}, '2030-01-01')"
    if store_url.startswith("sqlite:"):
        with sqlite3.connect(store_url.removeprefix("sqlite://")) as conn:
            conn.execute(sql)
        conn.close()
        return
    with psycopg.connect(store_url) as conn:
        conn.execute(sql)


async def test_migrations_are_idempotent_on_reopen(store_url):
    first = await open_store(store_url)
    try:
        written = await first.put(full_record())
    finally:
        await first.close()
    versions = _schema_versions(store_url)
    assert versions == list(range(1, len(versions) + 1)) and versions

    # Two stores opening the same (already migrated) database at once, then once more.
    # eight at once: with two, a lost race on switching a fresh SQLite file to WAL
    # showed up only about once in a few hundred runs
    several = await asyncio.gather(*(open_store(store_url) for _ in range(8)))
    for opened in several:
        assert await opened.get(written.organizer, written.uid) == written
        await opened.close()
    assert _schema_versions(store_url) == versions


async def test_concurrent_first_opens_migrate_once(store_url):
    # eight at once: with two, a lost race on switching a fresh SQLite file to WAL
    # showed up only about once in a few hundred runs
    several = await asyncio.gather(*(open_store(store_url) for _ in range(8)))
    for opened in several:
        await opened.ping()
        await opened.close()
    versions = _schema_versions(store_url)
    assert versions == list(range(1, len(versions) + 1))


async def test_a_newer_schema_is_refused(store_url):
    opened = await open_store(store_url)
    await opened.close()
    _set_schema_version(store_url, 999)
    with pytest.raises(StoreError, match="newer"):
        await open_store(store_url)


async def test_a_version_1_database_is_migrated_and_its_rows_kept(store_url):
    # A database written before the CANCEL bookkeeping columns existed.
    migrations = sqlite.MIGRATIONS if store_url.startswith("sqlite:") else postgres.MIGRATIONS
    old = (
        "INSERT INTO conferences (organizer, uid, state, event_id, session_id, link, sequence,"
        " summary, recurring, cancelled_occurrences, registrations, created_at, updated_at)"
        " VALUES ('boss@example.org', 'old-1', 'active', 1, 2, 'https://events.webinar.ru/o/1',"
        " 0, 'Old', {false}, {empty}, '[]', '2030-01-01T00:00:00.000000+00:00',"
        " '2030-01-01T00:00:00.000000+00:00')"
    )
    create_v1 = "CREATE TABLE schema_version (version integer PRIMARY KEY, applied_at text NOT NULL)"
    if store_url.startswith("sqlite:"):
        path = store_url.removeprefix("sqlite://")
        pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(path) as conn:
            conn.execute(create_v1)
            for statement in migrations[0]:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version VALUES (1, '2030-01-01')")
            conn.execute(old.format(false=0, empty="'[]'"))
        conn.close()
    else:
        with psycopg.connect(store_url) as conn:
            conn.execute(create_v1.replace("applied_at text", "applied_at timestamptz"))
            for statement in migrations[0]:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version VALUES (1, '2030-01-01')")
            conn.execute(old.format(false="false", empty="'{}'"))
    opened = await open_store(store_url)
    try:
        record = await opened.get("boss@example.org", "old-1")
        assert record is not None and record.summary == "Old"
        assert (record.attendees, record.mailed_to, record.cancel_sequence, record.cancelled_to) == (
            (), (), None, ())
        await opened.put(dataclasses.replace(record, mailed_to=("ann@example.org",)))
        assert (await opened.get("boss@example.org", "old-1")).mailed_to == ("ann@example.org",)
    finally:
        await opened.close()
    assert _schema_versions(store_url) == list(range(1, len(migrations) + 1))
