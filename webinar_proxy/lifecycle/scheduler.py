"""Work that needs no mail, done on a timer.

* Recurring meetings: once the booked occurrence has ended, book the next one
  (the platform shows only the nearest occurrence, seed 3.6).
* Deletes the platform refused: retry them with backoff (durable: the queue is the
  store's ``pending_delete`` rows, so a restart loses nothing).
* Creations interrupted long ago (a crash between platform calls, a mail the MTA
  gave up on): delete what was created, so no orphan stays on the platform.  A
  ``creating`` row without event id may still have an event whose answer was lost;
  it is found by the marker in its description (``ConferenceManager.delete``).
* Deleted rows older than the retention period: purge them.
* Attendees queued for (un)registration: the ``RegistrationWorker`` loop, run beside
  the timer (``registrations.py``).

All of it is background work on the shared API pace (``background_calls``): calls a
mail waits for go first.

Next occurrences are computed by the engine pool, like everything the engine does;
a record whose calendar cannot be read this round (worker stopped, unreadable) is
left for the next pass.

``run_once(now)`` does one pass and is what tests call with an injected clock;
``run_forever`` repeats it every ``scheduler.interval_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from webinar_proxy.invitation import EngineError, EngineUnavailable
from webinar_proxy.lifecycle.conferences import ConferenceManager
from webinar_proxy.lifecycle.registrations import RegistrationWorker
from webinar_proxy.settings import SchedulerSettings
from webinar_proxy.store import ConferenceState, ConferenceStore, StoreError
from webinar_proxy.webinar import WebinarError
from webinar_proxy.webinar.pacing import background_calls

log = logging.getLogger("webinar_proxy.scheduler")

#: Seconds the registration worker gets to finish its batch when the relay stops.
STOP_GRACE_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class PassReport:
    rolled: int = 0
    deleted: int = 0
    still_pending: int = 0
    orphans: int = 0
    purged: int = 0


class Scheduler:
    def __init__(
        self,
        manager: ConferenceManager,
        store: ConferenceStore,
        settings: SchedulerSettings,
        *,
        retention: timedelta = timedelta(days=30),
    ) -> None:
        self.manager = manager
        self.store = store
        self.settings = settings
        self.retention = retention
        self.registrations = RegistrationWorker(
            manager, store, lease_seconds=settings.registration_lease_seconds
        )

    async def run_once(self, now: datetime | None = None) -> PassReport:
        now = now or self.manager.clock()
        rolled = await self._roll_forward(now)
        deleted, pending = await self._retry_deletes(now)
        orphans = await self._clean_orphans(now)
        purged = await self.store.purge_deleted(now - self.retention)
        report = PassReport(rolled, deleted, pending, orphans, purged)
        metrics = self.manager.metrics
        pending_deletes = await self.store.list(ConferenceState.PENDING_DELETE)
        metrics.set_scheduler_queue("pending_deletes", len(pending_deletes))
        metrics.set_scheduler_queue("due_rollovers", len(await self.store.due_rollovers(now)))
        metrics.set_scheduler_queue("registrations", await self.store.queued_registrations())
        if report != PassReport():
            log.info("scheduler pass: %s", report)
        return report

    async def _roll_forward(self, now: datetime) -> int:
        rolled = 0
        for due in await self.store.due_rollovers(now):
            async with self.store.key_lock(due.organizer, due.uid):
                record = await self.store.get(due.organizer, due.uid)
                if record is None or record.state != ConferenceState.ACTIVE or not record.recurring:
                    continue
                if record.booked_end is None or record.booked_end > now or not record.calendar:
                    continue
                try:
                    await self.manager.book_next(record, now)
                    rolled += 1
                except WebinarError as exc:
                    log.warning("uid=%s: roll forward failed, next pass retries: %s", record.uid, exc)
                except (EngineError, EngineUnavailable) as exc:
                    # The stored calendar cannot be read this round (the engine's worker
                    # was stopped, or the calendar is unreadable): the next pass retries.
                    log.warning("uid=%s: next occurrence not read, next pass retries: %s",
                                record.uid, exc)
        return rolled

    async def _retry_deletes(self, now: datetime) -> tuple[int, int]:
        deleted = pending = 0
        for due in await self.store.due_deletes(now):
            async with self.store.key_lock(due.organizer, due.uid):
                record = await self.store.get(due.organizer, due.uid)
                if record is None or record.state != ConferenceState.PENDING_DELETE:
                    continue
                result = await self.manager.delete(record, "retried by the scheduler")
                if result.state == ConferenceState.DELETED:
                    deleted += 1
                else:
                    pending += 1
        return deleted, pending

    async def _clean_orphans(self, now: datetime) -> int:
        cleaned = 0
        cutoff = now - timedelta(seconds=self.settings.stale_creating_seconds)
        for stale in await self.store.stale_creating(cutoff):
            async with self.store.key_lock(stale.organizer, stale.uid):
                record = await self.store.get(stale.organizer, stale.uid)
                if record is None or record.state != ConferenceState.CREATING or record.updated_at > cutoff:
                    continue
                await self.manager.delete(record, "creation interrupted")
                cleaned += 1
        return cleaned

    async def run_forever(self, stop: asyncio.Event) -> None:
        with background_calls():
            worker = asyncio.create_task(self.registrations.run_forever(stop))
            try:
                await self._timer(stop)
            finally:
                # A batch cut short is repeated later, harmlessly: give it a moment only.
                done, _ = await asyncio.wait([worker], timeout=STOP_GRACE_SECONDS)
                if not done:
                    worker.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await worker

    async def _timer(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.run_once()
            except StoreError as exc:
                log.warning("scheduler pass skipped: conference store unavailable: %s", exc)
            except Exception:
                log.exception("scheduler pass failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.interval_seconds):
                    await stop.wait()
