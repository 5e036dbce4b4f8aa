"""Durable conference state: the ``ConferenceStore`` protocol, its records, and ``open_store``.

Backends: ``sqlite`` (default, one relay process) and ``postgres`` (several relay
instances sharing the work).  Pick one by URL::

    store = await open_store("sqlite:///var/lib/webinar-proxy/state.db")
    try:
        async with store.key_lock(organizer, uid):
            record = await store.get(organizer, uid)
            ...
    finally:
        await store.close()

Every failure surfaces as ``StoreError`` (``StoreConfigError`` for an unusable URL).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from webinar_proxy.store.protocol import ConferenceStore
from webinar_proxy.store.records import (
    ConferenceRecord,
    ConferenceState,
    PendingRegistration,
    Registration,
    RegistrationAction,
    RegistrationClaim,
    StoreConfigError,
    StoreError,
    record_to_json,
    redact_url,
)

if TYPE_CHECKING:
    from webinar_proxy.settings import StoreSettings

__all__ = [
    "ConferenceRecord",
    "ConferenceState",
    "ConferenceStore",
    "PendingRegistration",
    "Registration",
    "RegistrationAction",
    "RegistrationClaim",
    "StoreConfigError",
    "StoreError",
    "open_configured_store",
    "open_store",
    "record_to_json",
]


async def open_store(
    url: str,
    *,
    pool_size: int = 10,
    lock_pool_size: int = 40,
    connect_timeout: float = 10.0,
    busy_timeout: float = 5.0,
) -> ConferenceStore:
    """Open the store at ``url``, migrating its schema; the caller must ``await store.close()``.

    ``sqlite:///ABSOLUTE/PATH`` (the directory is created if missing; ``busy_timeout``
    seconds to wait for another process's write) or ``postgresql://…`` (up to
    ``pool_size`` query connections, plus one connection per held key lock, at most
    ``lock_pool_size``; ``connect_timeout`` seconds to get a connection).
    """
    if url.startswith("sqlite:"):
        from webinar_proxy.store.sqlite import SqliteStore

        return await SqliteStore.open(url, busy_timeout=busy_timeout)
    if url.startswith(("postgresql://", "postgres://")):
        try:
            from webinar_proxy.store.postgres import PostgresStore
        except ImportError as exc:
            raise StoreConfigError(
                f"{redact_url(url)}: PostgreSQL support needs psycopg and psycopg-pool "
                f"(install webinar-proxy[postgres]): {exc}"
            ) from None
        return await PostgresStore.open(
            url,
            pool_size=pool_size,
            lock_pool_size=lock_pool_size,
            connect_timeout=connect_timeout,
        )
    raise StoreConfigError(f"{redact_url(url)}: expected sqlite:///PATH or postgresql://…")


async def open_configured_store(settings: StoreSettings) -> ConferenceStore:
    """``open_store`` with the ``[store]`` section of the settings."""
    return await open_store(
        settings.url,
        pool_size=settings.pool_size,
        lock_pool_size=settings.lock_pool_size,
        connect_timeout=settings.connect_timeout_seconds,
        busy_timeout=settings.busy_timeout_seconds,
    )
