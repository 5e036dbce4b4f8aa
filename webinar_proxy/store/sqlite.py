"""The SQLite backend: one database file in WAL mode, for a single relay process.

All sqlite3 calls run on one dedicated worker thread that owns the connection, so
the event loop never blocks on disk or on another process's write lock (which
``busy_timeout`` waits out).  Datetimes are stored as fixed-width ISO 8601 UTC
text, so text comparison orders them; lists are JSON text; the calendar a BLOB.
The per-key lock holds across processes (``FileKeyLocks``, record locks in
``<file>-keylocks``), so several relay workers can share one file.  The
registration queue and the API pace are written in ``BEGIN IMMEDIATE``
transactions, so every process on the file shares them.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote

from webinar_proxy.store import sql
from webinar_proxy.store.locks import FileKeyLocks, KeyLocks
from webinar_proxy.store.protocol import DEFAULT_BATCH
from webinar_proxy.store.records import (
    ConferenceRecord,
    ConferenceState,
    PendingRegistration,
    RegistrationClaim,
    StoreConfigError,
    StoreError,
    as_utc,
    stamp_for_write,
    utc_now,
)
from webinar_proxy.store.sql import QUEUE_FIELDS, STATEMENTS

T = TypeVar("T")

SCHEME = "sqlite://"

#: Ordered migrations; entry N (1-based) brings the schema to version N.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """
        CREATE TABLE conferences (
            organizer TEXT NOT NULL,
            uid TEXT NOT NULL,
            state TEXT NOT NULL
                CHECK (state IN ('creating', 'active', 'pending_delete', 'deleted')),
            event_id INTEGER,
            session_id INTEGER,
            link TEXT,
            booked_start TEXT,
            booked_end TEXT,
            sequence INTEGER NOT NULL DEFAULT 0,
            summary TEXT NOT NULL DEFAULT '',
            timezone TEXT,
            calendar BLOB,
            recurring INTEGER NOT NULL DEFAULT 0,
            cancelled_occurrences TEXT NOT NULL DEFAULT '[]',
            registrations TEXT NOT NULL DEFAULT '[]',
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            deleted_at TEXT,
            delete_attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT,
            last_error TEXT,
            PRIMARY KEY (organizer, uid)
        )
        """,
        sql.INDEX_CONFERENCES_UID,
        sql.INDEX_CONFERENCES_NEXT_ATTEMPT,
        sql.INDEX_CONFERENCES_BOOKED_END,
    ),
    (
        "ALTER TABLE conferences ADD COLUMN attendees TEXT NOT NULL DEFAULT '[]'",
        "ALTER TABLE conferences ADD COLUMN mailed_to TEXT NOT NULL DEFAULT '[]'",
        "ALTER TABLE conferences ADD COLUMN cancel_sequence INTEGER",
        "ALTER TABLE conferences ADD COLUMN cancelled_to TEXT NOT NULL DEFAULT '[]'",
    ),
    (
        # Attendees still to (un)register on the platform: the background work queue.
        """
        CREATE TABLE registration_queue (
            organizer TEXT NOT NULL,
            uid TEXT NOT NULL,
            address TEXT NOT NULL,
            action TEXT NOT NULL CHECK (action IN ('add', 'remove')),
            role TEXT NOT NULL,
            name TEXT,
            position INTEGER NOT NULL DEFAULT 0,
            queued_at TEXT NOT NULL,
            lease_owner TEXT,
            lease_until TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (organizer, uid, address)
        )
        """,
        sql.INDEX_REGISTRATION_QUEUE_ORDER,
        # The next free request slot per API key (a hash of the token), in epoch seconds.
        "CREATE TABLE api_pace (key_hash TEXT PRIMARY KEY, next_slot REAL NOT NULL)",
    ),
)
# SQLite reads a negative LIMIT as "no limit".
_NO_LIMIT = -1


def path_from_url(url: str) -> str:
    """The file of ``sqlite:///abs/path`` (``sqlite:///:memory:`` for a private in-memory db)."""
    if not url.startswith(SCHEME + "/"):
        raise StoreConfigError(f"{url!r}: expected sqlite:///ABSOLUTE/PATH")
    path = unquote(url[len(SCHEME) :].split("?", 1)[0])
    if path == "/:memory:":
        return ":memory:"
    if path.endswith("/"):
        raise StoreConfigError(f"{url!r}: names a directory, not a database file")
    return path


def _text(value: datetime | None) -> str | None:
    return None if value is None else as_utc(value).isoformat(timespec="microseconds")


def _json_list(value: Any) -> str:
    return json.dumps(list(value))


def _datetimes_from_json(value: str) -> list[datetime]:
    return [datetime.fromisoformat(when) for when in json.loads(value)]


# Datetimes are ISO 8601 text, lists JSON text, the recurring flag 0 or 1.
_ENCODE: dict[str, sql.Convert] = {
    **dict.fromkeys(
        ("booked_start", "booked_end", "created_at", "updated_at", "deleted_at",
         "next_attempt_at"), _text),
    "cancelled_occurrences": lambda value: json.dumps([_text(when) for when in value]),
    "registrations": json.dumps,
    **dict.fromkeys(("attendees", "mailed_to", "cancelled_to"), _json_list),
    "recurring": int,
}
_DECODE: dict[str, sql.Convert] = {
    **dict.fromkeys(
        ("booked_start", "booked_end", "created_at", "updated_at", "deleted_at",
         "next_attempt_at"), datetime.fromisoformat),
    "cancelled_occurrences": _datetimes_from_json,
    "registrations": json.loads,
    **dict.fromkeys(("attendees", "mailed_to", "cancelled_to"), json.loads),
    "recurring": bool,
}


def _encode(record: ConferenceRecord) -> tuple[Any, ...]:
    return sql.record_to_row(record, _ENCODE)


def _decode(row: Sequence[Any]) -> ConferenceRecord:
    return sql.row_to_record(row, _DECODE)


class SqliteStore:
    """``ConferenceStore`` on one SQLite file.  Create with ``await SqliteStore.open(url)``."""

    def __init__(self, path: str, busy_timeout: float) -> None:
        self.path = path
        self._busy_timeout = busy_timeout
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        self._connection: sqlite3.Connection | None = None
        self._closed = False
        self._locks: KeyLocks | FileKeyLocks = (
            KeyLocks() if path == ":memory:" else FileKeyLocks(path + "-keylocks")
        )

    @classmethod
    async def open(cls, url: str, *, busy_timeout: float = 5.0) -> SqliteStore:
        """Open (creating the file and its directory if missing) and migrate the schema."""
        store = cls(path_from_url(url), busy_timeout)
        try:
            await store._call(store._connect_and_migrate)
        except BaseException:
            await store.close()
            raise
        return store

    async def _call(self, function: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise StoreError(f"sqlite store {self.path}: the store is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, function, *args)
        except StoreError:
            raise
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"sqlite store {self.path}: {exc}") from None

    # Everything below prefixed ``_db_`` runs on the worker thread.

    def _connect_and_migrate(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(
            self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
        )
        self._connection = connection
        connection.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
        self._db_enable_wal(connection)
        self._db_migrate(connection)

    def _db_enable_wal(self, connection: sqlite3.Connection) -> None:
        # Switching a fresh file to WAL needs an exclusive lock, and SQLite answers
        # "database is locked" at once, without its busy handler, while another
        # connection (a second relay opening the same file) holds one.  Wait it out here,
        # within the same busy timeout.
        deadline = time.monotonic() + self._busy_timeout
        while True:
            try:
                connection.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)

    @staticmethod
    def _db_migrate(connection: sqlite3.Connection) -> None:
        connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_version "
            "(version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
        )
        # IMMEDIATE takes the write lock first, so two processes opening a fresh file
        # one after the other do not both run the same migration.
        connection.execute("BEGIN IMMEDIATE")
        try:
            (current,) = connection.execute(STATEMENTS.current_version).fetchone()
            if refusal := sql.newer_schema(current, len(MIGRATIONS)):
                raise StoreError(refusal)
            for version in range(current + 1, len(MIGRATIONS) + 1):
                for statement in MIGRATIONS[version - 1]:
                    connection.execute(statement)
                connection.execute(STATEMENTS.record_version, (version, _text(utc_now())))
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise

    def _db(self) -> sqlite3.Connection:
        if self._connection is None:
            raise StoreError(f"sqlite store {self.path}: not open")
        return self._connection

    def _db_fetch(self, statement: str, parameters: Sequence[Any]) -> builtins.list[ConferenceRecord]:
        return [_decode(row) for row in self._db().execute(statement, parameters).fetchall()]

    def _db_execute(self, statement: str, parameters: Sequence[Any]) -> int:
        return self._db().execute(statement, parameters).rowcount

    def _db_upsert(self, values: tuple[Any, ...]) -> ConferenceRecord:
        return _decode(self._db().execute(STATEMENTS.put, values).fetchone())

    def _db_close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    # The ConferenceStore operations.

    async def close(self) -> None:
        if self._closed:
            return
        try:
            await self._call(self._db_close)
        finally:
            self._closed = True
            self._executor.shutdown(wait=False)
            if isinstance(self._locks, FileKeyLocks):
                self._locks.close()

    async def ping(self) -> None:
        await self._call(self._db_execute, "SELECT 1", ())

    async def get(self, organizer: str, uid: str) -> ConferenceRecord | None:
        rows = await self._call(self._db_fetch, STATEMENTS.get, (organizer.lower(), uid))
        return rows[0] if rows else None

    async def find_by_uid(self, uid: str) -> builtins.list[ConferenceRecord]:
        return await self._call(self._db_fetch, STATEMENTS.find_by_uid, (uid,))

    async def put(self, record: ConferenceRecord) -> ConferenceRecord:
        return await self._call(self._db_upsert, _encode(stamp_for_write(record)))

    async def forget(self, organizer: str, uid: str) -> bool:
        await self.finish_registrations(organizer, uid)
        deleted = await self._call(self._db_execute, STATEMENTS.forget, (organizer.lower(), uid))
        return deleted > 0

    async def list(
        self, state: ConferenceState | None = None, limit: int | None = None
    ) -> builtins.list[ConferenceRecord]:
        limit = _NO_LIMIT if limit is None else limit
        if state is None:
            return await self._call(self._db_fetch, STATEMENTS.list_all, (limit,))
        return await self._call(self._db_fetch, STATEMENTS.list_state, (str(state), limit))

    async def due_deletes(
        self, now: datetime, limit: int = DEFAULT_BATCH
    ) -> builtins.list[ConferenceRecord]:
        return await self._call(self._db_fetch, STATEMENTS.due_deletes, (_text(now), limit))

    async def due_rollovers(
        self, now: datetime, limit: int = DEFAULT_BATCH
    ) -> builtins.list[ConferenceRecord]:
        return await self._call(self._db_fetch, STATEMENTS.due_rollovers, (_text(now), limit))

    async def stale_creating(
        self, older_than: datetime, limit: int = DEFAULT_BATCH
    ) -> builtins.list[ConferenceRecord]:
        return await self._call(
            self._db_fetch, STATEMENTS.stale_creating, (_text(older_than), limit)
        )

    async def purge_deleted(self, older_than: datetime) -> int:
        return await self._call(
            self._db_execute, STATEMENTS.purge_deleted, (_text(older_than),)
        )

    def key_lock(self, organizer: str, uid: str) -> AbstractAsyncContextManager[None]:
        return self._locks.hold(organizer.lower() + "\0" + uid)

    # The registration queue and the API pace: write transactions taken with BEGIN
    # IMMEDIATE, so every process on the file sees them one after the other.

    def _db_transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        connection = self._db()
        connection.execute("BEGIN IMMEDIATE")
        try:
            result = work(connection)
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
        return result

    async def pending_registrations(
        self, organizer: str, uid: str
    ) -> builtins.list[PendingRegistration]:
        def read(connection: sqlite3.Connection) -> builtins.list[PendingRegistration]:
            rows = connection.execute(
                STATEMENTS.pending_registrations, (organizer.lower(), uid)
            ).fetchall()
            return [PendingRegistration(*row) for row in rows]

        return await self._call(lambda: read(self._db()))

    async def change_registrations(
        self, organizer: str, uid: str, upsert: Sequence[PendingRegistration],
        drop: Sequence[str] = (),
    ) -> None:
        key = (organizer.lower(), uid)
        now = _text(utc_now())

        def change(connection: sqlite3.Connection) -> None:
            connection.executemany(
                "DELETE FROM registration_queue WHERE organizer = ? AND uid = ? AND address = ?",
                [(*key, address.lower()) for address in drop],
            )
            connection.executemany(
                "INSERT INTO registration_queue (organizer, uid, address, action, role, name,"
                " position, queued_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (organizer, uid, address) DO UPDATE SET action = excluded.action,"
                " role = excluded.role, name = excluded.name, position = excluded.position,"
                " lease_owner = NULL, lease_until = NULL",
                [(*key, item.address, str(item.action), item.role, item.name, item.position, now)
                 for item in upsert],
            )

        if upsert or drop:
            await self._call(self._db_transaction, change)

    async def claim_registrations(
        self, owner: str, lease_seconds: float, limit: int
    ) -> RegistrationClaim | None:
        def claim(connection: sqlite3.Connection) -> RegistrationClaim | None:
            now = utc_now()
            free = "(lease_until IS NULL OR lease_until < ?)"
            first = connection.execute(
                f"SELECT organizer, uid, action FROM registration_queue WHERE {free}"
                " ORDER BY queued_at, position LIMIT 1", (_text(now),),
            ).fetchone()
            if first is None:
                return None
            rows = connection.execute(
                f"SELECT {QUEUE_FIELDS} FROM registration_queue"
                f" WHERE organizer = ? AND uid = ? AND action = ? AND {free}"
                " ORDER BY position, address LIMIT ?", (*first, _text(now), limit),
            ).fetchall()
            until = _text(now + timedelta(seconds=lease_seconds))
            connection.executemany(
                "UPDATE registration_queue SET lease_owner = ?, lease_until = ?,"
                " attempts = attempts + 1 WHERE organizer = ? AND uid = ? AND address = ?",
                [(owner, until, first[0], first[1], row[0]) for row in rows],
            )
            return RegistrationClaim(first[0], first[1],
                                     tuple(PendingRegistration(*row) for row in rows))

        return await self._call(self._db_transaction, claim)

    async def finish_registrations(
        self, organizer: str, uid: str, addresses: Sequence[str] | None = None
    ) -> int:
        key = (organizer.lower(), uid)

        def finish(connection: sqlite3.Connection) -> int:
            if addresses is None:
                return connection.execute(STATEMENTS.finish_registrations, key).rowcount
            return sum(connection.execute(
                "DELETE FROM registration_queue WHERE organizer = ? AND uid = ? AND address = ?",
                (*key, address.lower()),
            ).rowcount for address in addresses)

        return await self._call(self._db_transaction, finish)

    async def registration_counts(self, organizer: str, uid: str) -> dict[str, int]:
        rows = await self._call(lambda: self._db().execute(
            STATEMENTS.registration_counts, (organizer.lower(), uid)
        ).fetchall())
        return sql.counts_by_action(rows)

    async def queued_registrations(self) -> int:
        (count,) = await self._call(
            lambda: self._db().execute(STATEMENTS.queued_registrations).fetchone()
        )
        return int(count)

    async def reserve_api_slot(self, key: str, interval: float, max_wait: float) -> float | None:
        def reserve(connection: sqlite3.Connection) -> float | None:
            row = connection.execute(
                "SELECT next_slot FROM api_pace WHERE key_hash = ?", (key,)
            ).fetchone()
            now = time.time()
            slot = max(now, row[0]) if row else now
            if slot - now > max_wait:
                return None
            connection.execute(
                "INSERT INTO api_pace (key_hash, next_slot) VALUES (?, ?) ON CONFLICT (key_hash)"
                " DO UPDATE SET next_slot = excluded.next_slot", (key, slot + interval),
            )
            return slot - now

        return await self._call(self._db_transaction, reserve)

    async def push_api_slot(self, key: str, seconds: float) -> None:
        def push(connection: sqlite3.Connection) -> None:
            connection.execute(
                "INSERT INTO api_pace (key_hash, next_slot) VALUES (?, ?) ON CONFLICT (key_hash)"
                " DO UPDATE SET next_slot = max(next_slot, excluded.next_slot)",
                (key, time.time() + seconds),
            )

        await self._call(self._db_transaction, push)

    async def lock_waiters(self, organizer: str, uid: str) -> int:
        """How many tasks of this process wait (not hold) for the key's lock."""
        return self._locks.waiting(organizer.lower() + "\0" + uid)

