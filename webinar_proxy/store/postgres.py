"""The PostgreSQL backend: shared state for several relay instances (psycopg 3 + psycopg_pool).

Two connection pools: one for queries, and one whose connections each hold a
session advisory lock for a ``key_lock`` block.  Keeping them apart means a
lock holder can always still query, however many keys are locked at once.  The
schema lives in the connection's current schema (set ``options=-csearch_path=…``
in the URL to choose one); the advisory-lock keys include that schema, so
separate schemas in one database do not lock each other out.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import datetime
from typing import Any

import psycopg
import psycopg_pool
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import Jsonb

from webinar_proxy.store.protocol import DEFAULT_BATCH
from webinar_proxy.store.records import (
    COLUMNS,
    ConferenceRecord,
    ConferenceState,
    StoreConfigError,
    StoreError,
    redact_url,
    registrations_from_json,
    registrations_to_json,
    scrub,
    stamp_for_write,
    utc_now,
)

log = logging.getLogger(__name__)

APPLICATION_NAME = "webinar-proxy"

#: Ordered migrations; entry N (1-based) brings the schema to version N.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """
        CREATE TABLE conferences (
            organizer text NOT NULL,
            uid text NOT NULL,
            state text NOT NULL
                CHECK (state IN ('creating', 'active', 'pending_delete', 'deleted')),
            event_id bigint,
            session_id bigint,
            link text,
            booked_start timestamptz,
            booked_end timestamptz,
            sequence bigint NOT NULL DEFAULT 0,
            summary text NOT NULL DEFAULT '',
            timezone text,
            calendar bytea,
            recurring boolean NOT NULL DEFAULT false,
            cancelled_occurrences timestamptz[] NOT NULL DEFAULT '{}',
            registrations jsonb NOT NULL DEFAULT '[]',
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL,
            deleted_at timestamptz,
            delete_attempts integer NOT NULL DEFAULT 0,
            next_attempt_at timestamptz,
            last_error text,
            PRIMARY KEY (organizer, uid)
        )
        """,
        "CREATE INDEX conferences_uid ON conferences (uid)",
        "CREATE INDEX conferences_state_next_attempt ON conferences (state, next_attempt_at)",
        "CREATE INDEX conferences_state_booked_end ON conferences (state, booked_end)",
    ),
    (
        "ALTER TABLE conferences ADD COLUMN attendees text[] NOT NULL DEFAULT '{}'",
        "ALTER TABLE conferences ADD COLUMN mailed_to text[] NOT NULL DEFAULT '{}'",
        "ALTER TABLE conferences ADD COLUMN cancel_sequence bigint",
        "ALTER TABLE conferences ADD COLUMN cancelled_to text[] NOT NULL DEFAULT '{}'",
    ),
)

_SELECT = f"SELECT {', '.join(COLUMNS)} FROM conferences"
_UPSERT = (
    f"INSERT INTO conferences ({', '.join(COLUMNS)}) "
    f"VALUES ({', '.join('%s' for _ in COLUMNS)}) "
    "ON CONFLICT (organizer, uid) DO UPDATE SET "
    + ", ".join(f"{name} = excluded.{name}" for name in COLUMNS[2:] if name != "created_at")
    + f" RETURNING {', '.join(COLUMNS)}"
)
_ORDER = " ORDER BY created_at, organizer, uid"
_LOCK = "SELECT pg_advisory_lock(hashtextextended(%s, 0))"
_UNLOCK = "SELECT pg_advisory_unlock(hashtextextended(%s, 0))"
# pg_locks shows a bigint advisory key as classid (high 32 bits) and objid (low 32 bits).
_WAITERS = """
    WITH wanted AS (SELECT hashtextextended(%s, 0) AS key)
    SELECT count(*) FROM pg_locks, wanted
    WHERE locktype = 'advisory' AND NOT granted AND objsubid = 1
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND classid::bigint = (wanted.key >> 32) & 4294967295
      AND objid::bigint = wanted.key & 4294967295
"""
_MIGRATION_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"

_DRIVER_ERRORS = (psycopg.Error, psycopg_pool.PoolTimeout, psycopg_pool.PoolClosed)


def _encode(record: ConferenceRecord) -> tuple[Any, ...]:
    values = []
    for name in COLUMNS:
        value = getattr(record, name)
        if name == "registrations":
            value = Jsonb(registrations_to_json(value))
        elif name in ("cancelled_occurrences", "attendees", "mailed_to", "cancelled_to"):
            value = list(value)
        elif name == "state":
            value = str(value)
        values.append(value)
    return tuple(values)


def _decode(row: Sequence[Any]) -> ConferenceRecord:
    fields = dict(zip(COLUMNS, row, strict=True))
    for name in ("cancelled_occurrences", "attendees", "mailed_to", "cancelled_to"):
        fields[name] = tuple(fields[name])
    fields["registrations"] = registrations_from_json(fields["registrations"])
    return ConferenceRecord(**fields)


class PostgresStore:
    """``ConferenceStore`` on PostgreSQL.  Create with ``await PostgresStore.open(url)``."""

    def __init__(
        self, url: str, *, pool_size: int, connect_timeout: float, lock_pool_size: int
    ) -> None:
        try:
            self._password = conninfo_to_dict(url).get("password")
        except psycopg.Error as exc:
            raise StoreConfigError(f"{redact_url(url)}: {exc}") from None
        self._where = redact_url(url)
        if self._password:
            self._where = scrub(self._where, str(self._password))
        self._schema = ""
        self._options: dict[str, Any] = {"autocommit": True, "application_name": APPLICATION_NAME}
        self._pool = psycopg_pool.AsyncConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs=self._options,
            check=psycopg_pool.AsyncConnectionPool.check_connection,
            timeout=connect_timeout,
            open=False,
            name="store-queries",
        )
        self._lock_pool = psycopg_pool.AsyncConnectionPool(
            url,
            min_size=0,
            max_size=lock_pool_size,
            kwargs=self._options,
            check=psycopg_pool.AsyncConnectionPool.check_connection,
            timeout=connect_timeout,
            open=False,
            name="store-locks",
        )

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        pool_size: int = 10,
        lock_pool_size: int = 40,
        connect_timeout: float = 10.0,
    ) -> PostgresStore:
        """Connect (waiting up to ``connect_timeout``) and migrate the schema."""
        store = cls(
            url, pool_size=pool_size, connect_timeout=connect_timeout, lock_pool_size=lock_pool_size
        )
        try:
            # One plain connection first: it fails fast with the server's own reason
            # (the pool would only retry in the background and then time out).
            with store._errors("connect"):
                conn = await psycopg.AsyncConnection.connect(
                    url, connect_timeout=max(1, round(connect_timeout)), **store._options
                )
            async with conn:
                await store._migrate(conn)
            with store._errors("connect"):
                await store._pool.open()
                await store._lock_pool.open()
        except BaseException:
            await store.close()
            raise
        return store

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except _DRIVER_ERRORS as exc:
            message = " ".join(str(exc).split()) or type(exc).__name__
            message = scrub(message, self._password)
            raise StoreError(f"postgresql store {self._where}: {doing}: {message}") from None

    async def _migrate(self, conn: psycopg.AsyncConnection[Any]) -> None:
        with self._errors("migrate"):
            async with conn.transaction():
                (self._schema,) = await (await conn.execute("SELECT current_schema()")).fetchone()
                if self._schema is None:
                    raise StoreError(
                        f"postgresql store {self._where}: no schema to create tables in "
                        "(check search_path)"
                    )
                # Relay instances starting together must not run one migration twice.
                await conn.execute(_MIGRATION_LOCK, (f"webinar-proxy migrate {self._schema}",))
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_version "
                    "(version integer PRIMARY KEY, applied_at timestamptz NOT NULL)"
                )
                cursor = await conn.execute("SELECT coalesce(max(version), 0) FROM schema_version")
                (current,) = await cursor.fetchone()
                if current > len(MIGRATIONS):
                    raise StoreError(
                        f"postgresql store {self._where}: the database schema is version "
                        f"{current}, newer than this program knows ({len(MIGRATIONS)}); "
                        "upgrade webinar-proxy"
                    )
                for version in range(current + 1, len(MIGRATIONS) + 1):
                    for statement in MIGRATIONS[version - 1]:
                        await conn.execute(statement)
                    await conn.execute(
                        "INSERT INTO schema_version (version, applied_at) VALUES (%s, %s)",
                        (version, utc_now()),
                    )

    async def _fetch(
        self, doing: str, sql: str, parameters: Sequence[Any] = ()
    ) -> builtins.list[Any]:
        with self._errors(doing):
            async with self._pool.connection() as conn:
                cursor = await conn.execute(sql, parameters)
                return await cursor.fetchall()

    async def _records(
        self, doing: str, sql: str, parameters: Sequence[Any] = ()
    ) -> builtins.list[ConferenceRecord]:
        return [_decode(row) for row in await self._fetch(doing, sql, parameters)]

    async def _execute(self, doing: str, sql: str, parameters: Sequence[Any] = ()) -> int:
        with self._errors(doing):
            async with self._pool.connection() as conn:
                cursor = await conn.execute(sql, parameters)
                return cursor.rowcount

    # The ConferenceStore operations.

    async def close(self) -> None:
        with self._errors("close"):
            await self._lock_pool.close()
            await self._pool.close()

    async def ping(self) -> None:
        await self._fetch("ping", "SELECT 1")

    async def get(self, organizer: str, uid: str) -> ConferenceRecord | None:
        rows = await self._records(
            "get", _SELECT + " WHERE organizer = %s AND uid = %s", (organizer.lower(), uid)
        )
        return rows[0] if rows else None

    async def find_by_uid(self, uid: str) -> builtins.list[ConferenceRecord]:
        return await self._records(
            "find_by_uid", _SELECT + " WHERE uid = %s ORDER BY organizer", (uid,)
        )

    async def put(self, record: ConferenceRecord) -> ConferenceRecord:
        rows = await self._records("put", _UPSERT, _encode(stamp_for_write(record)))
        return rows[0]

    async def forget(self, organizer: str, uid: str) -> bool:
        deleted = await self._execute(
            "forget",
            "DELETE FROM conferences WHERE organizer = %s AND uid = %s",
            (organizer.lower(), uid),
        )
        return deleted > 0

    async def list(
        self, state: ConferenceState | None = None, limit: int | None = None
    ) -> builtins.list[ConferenceRecord]:
        where, parameters = ("", []) if state is None else (" WHERE state = %s", [str(state)])
        parameters.append(limit)  # LIMIT NULL is no limit
        return await self._records("list", _SELECT + where + _ORDER + " LIMIT %s", parameters)

    async def due_deletes(
        self, now: datetime, limit: int = DEFAULT_BATCH
    ) -> builtins.list[ConferenceRecord]:
        return await self._records(
            "due_deletes",
            _SELECT + " WHERE state = 'pending_delete' AND next_attempt_at <= %s"
            " ORDER BY next_attempt_at, organizer, uid LIMIT %s",
            (now, limit),
        )

    async def due_rollovers(
        self, now: datetime, limit: int = DEFAULT_BATCH
    ) -> builtins.list[ConferenceRecord]:
        return await self._records(
            "due_rollovers",
            _SELECT + " WHERE state = 'active' AND recurring AND booked_end <= %s"
            " ORDER BY booked_end, organizer, uid LIMIT %s",
            (now, limit),
        )

    async def stale_creating(
        self, older_than: datetime, limit: int = DEFAULT_BATCH
    ) -> builtins.list[ConferenceRecord]:
        return await self._records(
            "stale_creating",
            _SELECT + " WHERE state = 'creating' AND updated_at < %s"
            " ORDER BY updated_at, organizer, uid LIMIT %s",
            (older_than, limit),
        )

    async def purge_deleted(self, older_than: datetime) -> int:
        return await self._execute(
            "purge_deleted",
            "DELETE FROM conferences WHERE state = 'deleted' AND deleted_at < %s",
            (older_than,),
        )

    def key_lock(self, organizer: str, uid: str) -> contextlib.AbstractAsyncContextManager[None]:
        return self._hold(self._lock_name(organizer, uid))

    async def lock_waiters(self, organizer: str, uid: str) -> int:
        """How many sessions wait (not hold) for the key's lock, across all processes."""
        rows = await self._fetch("lock_waiters", _WAITERS, (self._lock_name(organizer, uid),))
        return int(rows[0][0])

    def _lock_name(self, organizer: str, uid: str) -> str:
        return f"webinar-proxy\x1f{self._schema}\x1f{organizer.lower()}\x1f{uid}"

    @contextlib.asynccontextmanager
    async def _hold(self, lock_name: str) -> AsyncIterator[None]:
        with self._errors("lock"):
            conn = await self._lock_pool.getconn()
        try:
            with self._errors("lock"):
                await conn.execute(_LOCK, (lock_name,))
        except BaseException:
            # Interrupted (cancelled, say) while waiting: the server may still grant the
            # lock to this session, so end the session rather than reuse it.
            await self._discard(conn)
            raise
        try:
            yield
        finally:
            await self._release(conn, lock_name)

    async def _release(self, conn: psycopg.AsyncConnection[Any], lock_name: str) -> None:
        try:
            cursor = await conn.execute(_UNLOCK, (lock_name,))
            row = await cursor.fetchone()
            released = bool(row and row[0])
        except BaseException as exc:
            # Closing the session releases its advisory locks all the same.
            log.warning("store: unlocking failed (%s); dropping the connection", type(exc).__name__)
            await self._discard(conn)
            if not isinstance(exc, Exception):
                raise
            return
        if not released:
            log.warning("store: advisory lock was not held at release; dropping the connection")
            await self._discard(conn)
            return
        with contextlib.suppress(*_DRIVER_ERRORS):
            await self._lock_pool.putconn(conn)

    async def _discard(self, conn: psycopg.AsyncConnection[Any]) -> None:
        with contextlib.suppress(*_DRIVER_ERRORS):
            await conn.close()
        with contextlib.suppress(*_DRIVER_ERRORS):
            await self._lock_pool.putconn(conn)
