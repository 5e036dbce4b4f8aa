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

from webinar_proxy.store import sql
from webinar_proxy.store.protocol import DEFAULT_BATCH
from webinar_proxy.store.records import (
    ConferenceRecord,
    ConferenceState,
    PendingRegistration,
    RegistrationClaim,
    StoreConfigError,
    StoreError,
    redact_url,
    scrub,
    stamp_for_write,
    utc_now,
)
from webinar_proxy.store.sql import QUEUE_FIELDS

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
        sql.INDEX_CONFERENCES_UID,
        sql.INDEX_CONFERENCES_NEXT_ATTEMPT,
        sql.INDEX_CONFERENCES_BOOKED_END,
    ),
    (
        "ALTER TABLE conferences ADD COLUMN attendees text[] NOT NULL DEFAULT '{}'",
        "ALTER TABLE conferences ADD COLUMN mailed_to text[] NOT NULL DEFAULT '{}'",
        "ALTER TABLE conferences ADD COLUMN cancel_sequence bigint",
        "ALTER TABLE conferences ADD COLUMN cancelled_to text[] NOT NULL DEFAULT '{}'",
    ),
    (
        # Attendees still to (un)register on the platform: the background work queue.
        """
        CREATE TABLE registration_queue (
            organizer text NOT NULL,
            uid text NOT NULL,
            address text NOT NULL,
            action text NOT NULL CHECK (action IN ('add', 'remove')),
            role text NOT NULL,
            name text,
            position integer NOT NULL DEFAULT 0,
            queued_at timestamptz NOT NULL,
            lease_owner text,
            lease_until timestamptz,
            attempts integer NOT NULL DEFAULT 0,
            PRIMARY KEY (organizer, uid, address)
        )
        """,
        sql.INDEX_REGISTRATION_QUEUE_ORDER,
        # The next free request slot per API key (a hash of the token), in epoch seconds
        # of the database's clock, so the relays' hosts need not agree on the time.
        "CREATE TABLE api_pace (key_hash text PRIMARY KEY, next_slot double precision NOT NULL)",
    ),
)

#: The shared statements, with psycopg's placeholders.
_SQL = sql.STATEMENTS.rendered("%s")
# PostgreSQL reads LIMIT NULL as "no limit".
_NO_LIMIT = None
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

_EPOCH = "extract(epoch FROM clock_timestamp())::float8"
# One statement: reserve the key's next slot if it is near enough, else change nothing.
_RESERVE = f"""
    INSERT INTO api_pace AS p (key_hash, next_slot) VALUES (%(key)s, {_EPOCH} + %(interval)s)
    ON CONFLICT (key_hash) DO UPDATE
        SET next_slot = greatest(p.next_slot, {_EPOCH}) + %(interval)s
        WHERE p.next_slot - {_EPOCH} <= %(max_wait)s
    RETURNING greatest(p.next_slot - %(interval)s - {_EPOCH}, 0)
"""
_PUSH = f"""
    INSERT INTO api_pace AS p (key_hash, next_slot) VALUES (%(key)s, {_EPOCH} + %(seconds)s)
    ON CONFLICT (key_hash) DO UPDATE SET next_slot = greatest(p.next_slot, excluded.next_slot)
"""
# One statement: the oldest conference with rows nobody holds, and up to LIMIT of its
# rows of that action, leased; SKIP LOCKED lets relays claiming at once pass each other.
_CLAIM = f"""
    WITH target AS (
        SELECT organizer, uid, action FROM registration_queue
        WHERE lease_until IS NULL OR lease_until < now()
        ORDER BY queued_at, position LIMIT 1
        FOR UPDATE SKIP LOCKED
    ), batch AS (
        SELECT q.organizer, q.uid, q.address FROM registration_queue q
        JOIN target t ON q.organizer = t.organizer AND q.uid = t.uid AND q.action = t.action
        WHERE q.lease_until IS NULL OR q.lease_until < now()
        ORDER BY q.position, q.address LIMIT %(limit)s
        FOR UPDATE OF q SKIP LOCKED
    )
    UPDATE registration_queue r
    SET lease_owner = %(owner)s, lease_until = now() + make_interval(secs => %(lease)s),
        attempts = r.attempts + 1
    FROM batch b
    WHERE r.organizer = b.organizer AND r.uid = b.uid AND r.address = b.address
    RETURNING r.organizer, r.uid, {", ".join("r." + f for f in QUEUE_FIELDS.split(", "))}
"""

_DRIVER_ERRORS = (psycopg.Error, psycopg_pool.PoolTimeout, psycopg_pool.PoolClosed)


# psycopg adapts datetimes, booleans and bytes itself; lists become arrays.
_ENCODE: dict[str, sql.Convert] = {
    "registrations": Jsonb,
    **dict.fromkeys(("cancelled_occurrences", "attendees", "mailed_to", "cancelled_to"), list),
}


def _encode(record: ConferenceRecord) -> tuple[Any, ...]:
    return sql.record_to_row(record, _ENCODE)


def _decode(row: Sequence[Any]) -> ConferenceRecord:
    return sql.row_to_record(row, {})


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
        def pool(name: str, min_size: int, max_size: int) -> psycopg_pool.AsyncConnectionPool:
            return psycopg_pool.AsyncConnectionPool(
                url,
                min_size=min_size,
                max_size=max_size,
                kwargs=self._options,
                check=psycopg_pool.AsyncConnectionPool.check_connection,
                timeout=connect_timeout,
                open=False,
                name=name,
            )

        self._pool = pool("store-queries", 1, pool_size)
        self._lock_pool = pool("store-locks", 0, lock_pool_size)

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
                (current,) = await (await conn.execute(_SQL.current_version)).fetchone()
                if refusal := sql.newer_schema(current, len(MIGRATIONS)):
                    raise StoreError(f"postgresql store {self._where}: {refusal}")
                for version in range(current + 1, len(MIGRATIONS) + 1):
                    for statement in MIGRATIONS[version - 1]:
                        await conn.execute(statement)
                    await conn.execute(_SQL.record_version, (version, utc_now()))

    async def _fetch(
        self, doing: str, statement: str, parameters: Sequence[Any] = ()
    ) -> builtins.list[Any]:
        with self._errors(doing):
            async with self._pool.connection() as conn:
                cursor = await conn.execute(statement, parameters)
                return await cursor.fetchall()

    async def _records(
        self, doing: str, statement: str, parameters: Sequence[Any] = ()
    ) -> builtins.list[ConferenceRecord]:
        return [_decode(row) for row in await self._fetch(doing, statement, parameters)]

    async def _execute(self, doing: str, statement: str, parameters: Sequence[Any] = ()) -> int:
        with self._errors(doing):
            async with self._pool.connection() as conn:
                cursor = await conn.execute(statement, parameters)
                return cursor.rowcount

    # The ConferenceStore operations.

    async def close(self) -> None:
        with self._errors("close"):
            await self._lock_pool.close()
            await self._pool.close()

    async def ping(self) -> None:
        await self._fetch("ping", "SELECT 1")

    async def get(self, organizer: str, uid: str) -> ConferenceRecord | None:
        rows = await self._records("get", _SQL.get, (organizer.lower(), uid))
        return rows[0] if rows else None

    async def find_by_uid(self, uid: str) -> builtins.list[ConferenceRecord]:
        return await self._records("find_by_uid", _SQL.find_by_uid, (uid,))

    async def put(self, record: ConferenceRecord) -> ConferenceRecord:
        rows = await self._records("put", _SQL.put, _encode(stamp_for_write(record)))
        return rows[0]

    async def forget(self, organizer: str, uid: str) -> bool:
        await self.finish_registrations(organizer, uid)
        deleted = await self._execute("forget", _SQL.forget, (organizer.lower(), uid))
        return deleted > 0

    async def list(
        self, state: ConferenceState | None = None, limit: int | None = None
    ) -> builtins.list[ConferenceRecord]:
        limit = _NO_LIMIT if limit is None else limit
        if state is None:
            return await self._records("list", _SQL.list_all, (limit,))
        return await self._records("list", _SQL.list_state, (str(state), limit))

    async def due_deletes(
        self, now: datetime, limit: int = DEFAULT_BATCH
    ) -> builtins.list[ConferenceRecord]:
        return await self._records("due_deletes", _SQL.due_deletes, (now, limit))

    async def due_rollovers(
        self, now: datetime, limit: int = DEFAULT_BATCH
    ) -> builtins.list[ConferenceRecord]:
        return await self._records("due_rollovers", _SQL.due_rollovers, (now, limit))

    async def stale_creating(
        self, older_than: datetime, limit: int = DEFAULT_BATCH
    ) -> builtins.list[ConferenceRecord]:
        return await self._records("stale_creating", _SQL.stale_creating, (older_than, limit))

    async def purge_deleted(self, older_than: datetime) -> int:
        return await self._execute("purge_deleted", _SQL.purge_deleted, (older_than,))

    async def pending_registrations(
        self, organizer: str, uid: str
    ) -> builtins.list[PendingRegistration]:
        rows = await self._fetch(
            "pending_registrations", _SQL.pending_registrations, (organizer.lower(), uid)
        )
        return [PendingRegistration(*row) for row in rows]

    async def change_registrations(
        self, organizer: str, uid: str, upsert: Sequence[PendingRegistration],
        drop: Sequence[str] = (),
    ) -> None:
        if not (upsert or drop):
            return
        key = (organizer.lower(), uid)
        with self._errors("change_registrations"):
            async with self._pool.connection() as conn, conn.transaction():
                if drop:
                    await conn.execute(
                        "DELETE FROM registration_queue WHERE organizer = %s AND uid = %s"
                        " AND address = ANY(%s)", (*key, [a.lower() for a in drop]),
                    )
                if upsert:
                    # One statement for any number of rows (10,000 attendees at once).
                    await conn.execute(
                        "INSERT INTO registration_queue (organizer, uid, address, action, role,"
                        " name, position, queued_at)"
                        " SELECT %s, %s, a, act, r, n, p, now()"
                        " FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::int[])"
                        " AS u(a, act, r, n, p)"
                        " ON CONFLICT (organizer, uid, address) DO UPDATE SET"
                        " action = excluded.action, role = excluded.role, name = excluded.name,"
                        " position = excluded.position, lease_owner = NULL, lease_until = NULL",
                        (*key, [i.address for i in upsert], [str(i.action) for i in upsert],
                         [i.role for i in upsert], [i.name for i in upsert],
                         [i.position for i in upsert]),
                    )

    async def claim_registrations(
        self, owner: str, lease_seconds: float, limit: int
    ) -> RegistrationClaim | None:
        rows = await self._fetch(
            "claim_registrations", _CLAIM,
            {"owner": owner, "lease": float(lease_seconds), "limit": limit},
        )
        if not rows:
            return None
        items = sorted((PendingRegistration(*row[2:]) for row in rows),
                       key=lambda item: (item.position, item.address))
        return RegistrationClaim(rows[0][0], rows[0][1], tuple(items))

    async def finish_registrations(
        self, organizer: str, uid: str, addresses: Sequence[str] | None = None
    ) -> int:
        if addresses is None:
            return await self._execute(
                "finish_registrations", _SQL.finish_registrations, (organizer.lower(), uid)
            )
        return await self._execute(
            "finish_registrations",
            "DELETE FROM registration_queue WHERE organizer = %s AND uid = %s"
            " AND address = ANY(%s)", (organizer.lower(), uid, [a.lower() for a in addresses]),
        )

    async def registration_counts(self, organizer: str, uid: str) -> dict[str, int]:
        rows = await self._fetch(
            "registration_counts", _SQL.registration_counts, (organizer.lower(), uid)
        )
        return sql.counts_by_action(rows)

    async def queued_registrations(self) -> int:
        rows = await self._fetch("queued_registrations", _SQL.queued_registrations)
        return int(rows[0][0])

    async def reserve_api_slot(self, key: str, interval: float, max_wait: float) -> float | None:
        rows = await self._fetch(
            "reserve_api_slot", _RESERVE,
            {"key": key, "interval": float(interval), "max_wait": float(max_wait)},
        )
        return float(rows[0][0]) if rows else None

    async def push_api_slot(self, key: str, seconds: float) -> None:
        await self._execute("push_api_slot", _PUSH, {"key": key, "seconds": float(seconds)})

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
