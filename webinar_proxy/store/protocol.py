"""The ``ConferenceStore`` protocol: the contract both backends fulfil and the lifecycle relies on.

Keys are (organizer, UID); organizers are compared lower-case.  Every method may
raise ``StoreError`` and nothing else (apart from cancellation).
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Protocol, runtime_checkable

from webinar_proxy.store.records import (
    ConferenceRecord,
    ConferenceState,
    PendingRegistration,
    RegistrationClaim,
)

DEFAULT_BATCH = 100


@runtime_checkable
class ConferenceStore(Protocol):
    """Durable conference state with a per-key lock.

    Obtain one with ``await open_store(url)``; ``await store.close()`` when done.
    """

    async def close(self) -> None:
        """Release every connection; the store is unusable afterwards.  Idempotent."""

    async def ping(self) -> None:
        """A cheap round trip to the database; raises ``StoreError`` when it fails."""

    async def get(self, organizer: str, uid: str) -> ConferenceRecord | None: ...

    async def find_by_uid(self, uid: str) -> builtins.list[ConferenceRecord]:
        """The records of ``uid`` under every organizer, ordered by organizer."""

    async def put(self, record: ConferenceRecord) -> ConferenceRecord:
        """Insert or replace the record of its key; returns what was stored.

        ``updated_at`` becomes the time of the write, ``created_at`` of an existing row
        is kept, and ``deleted_at`` is filled in when the state is ``deleted`` and the
        record has none.
        """

    async def forget(self, organizer: str, uid: str) -> bool:
        """Drop the row; True when there was one."""

    async def list(
        self, state: ConferenceState | None = None, limit: int | None = None
    ) -> builtins.list[ConferenceRecord]:
        """Records (of one state, if given), oldest first."""

    async def due_deletes(
        self, now: datetime, limit: int = DEFAULT_BATCH
    ) -> builtins.list[ConferenceRecord]:
        """``pending_delete`` records whose ``next_attempt_at`` is at or before ``now``."""

    async def due_rollovers(
        self, now: datetime, limit: int = DEFAULT_BATCH
    ) -> builtins.list[ConferenceRecord]:
        """``active`` recurring records whose booked occurrence ended at or before ``now``."""

    async def stale_creating(
        self, older_than: datetime, limit: int = DEFAULT_BATCH
    ) -> builtins.list[ConferenceRecord]:
        """``creating`` records last written before ``older_than`` (crash orphans)."""

    async def purge_deleted(self, older_than: datetime) -> int:
        """Drop ``deleted`` records deleted before ``older_than``; returns how many."""

    def key_lock(self, organizer: str, uid: str) -> AbstractAsyncContextManager[None]:
        """Exclusive hold on one key for the ``async with`` block.

        PostgreSQL: a session advisory lock, exclusive across processes and hosts.
        SQLite: exclusive across the tasks of this process.  Waiters on one key are
        served first come, first served; different keys never wait on each other.
        The lock is released when the block exits, also on an exception or cancellation.
        """

    # -- the registration queue (background work, see lifecycle/registrations.py) ----

    async def pending_registrations(
        self, organizer: str, uid: str
    ) -> builtins.list[PendingRegistration]:
        """The queued registrations of one conference, in ``position`` order."""

    async def change_registrations(
        self, organizer: str, uid: str, upsert: Sequence[PendingRegistration],
        drop: Sequence[str] = (),
    ) -> None:
        """In one transaction: drop the queued rows of ``drop`` addresses, then insert
        or replace ``upsert`` (a replaced row loses its lease)."""

    async def claim_registrations(
        self, owner: str, lease_seconds: float, limit: int
    ) -> RegistrationClaim | None:
        """Lease up to ``limit`` queued rows of one conference, all of one action: the
        oldest conference's whose rows nobody holds (or whose lease expired)."""

    async def finish_registrations(
        self, organizer: str, uid: str, addresses: Sequence[str] | None = None
    ) -> int:
        """Drop the queued rows of ``addresses`` (all of the conference's when None)."""

    async def registration_counts(self, organizer: str, uid: str) -> dict[str, int]:
        """Queued rows of one conference by action: ``{"add": n, "remove": m}``."""

    async def queued_registrations(self) -> int:
        """Queued rows of every conference (for the metrics)."""

    # -- the shared API pace (webinar.pacing.SlotBook) --------------------------------

    async def reserve_api_slot(self, key: str, interval: float, max_wait: float) -> float | None:
        """Reserve the next request slot of ``key`` (a hash of the API token) if it is at
        most ``max_wait`` seconds away: the seconds to wait for it, else None."""

    async def push_api_slot(self, key: str, seconds: float) -> None:
        """No request slot of ``key`` before ``seconds`` from now."""
