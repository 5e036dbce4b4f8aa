"""The registration worker: attendees are registered in the background, batch by batch.

An invitation's reply waits only for the conference's event, session and link; the
attendees go into the store's registration queue (``ConferenceManager._sync_people``,
``unregister``).  Every relay runs this worker (under the scheduler); the queue is
shared through the store, so whichever relay is free takes the next batch:

1. lease up to 50 queued rows of one conference, all adds or all removes
   (``claim_registrations``: ``FOR UPDATE SKIP LOCKED`` with PostgreSQL, one writer
   with SQLite); a lease that expires (the relay crashed or was killed) frees the rows
   for any relay;
2. win a request slot on the shared pace (as background work, so mail's calls go
   first), and only then take the conference's key lock: mail about the same meeting
   never waits behind the lock for the pace;
3. under the key lock, read the record and the rows again (an invitation
   may have changed them meanwhile), make one platform call (``invite`` or
   ``participations/delete``), write the result into the record, drop the rows.

A batch repeated after a crash between the platform call and the store write does no
harm: the platform skips people already registered, and the record dedups by address.
Every call is made inside ``background_calls()``, so calls a mail waits for go first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid

from webinar_proxy.lifecycle.conferences import ConferenceManager
from webinar_proxy.store import ConferenceState, ConferenceStore, RegistrationClaim, StoreError
from webinar_proxy.webinar import WebinarError
from webinar_proxy.webinar.client import INVITE_BATCH
from webinar_proxy.webinar.pacing import background_calls

log = logging.getLogger("webinar_proxy.registrations")

#: Seconds between looks at an empty queue (a relay's own invitations wake it at once).
IDLE_POLL_SECONDS = 1.0


class RegistrationWorker:
    def __init__(self, manager: ConferenceManager, store: ConferenceStore, *,
                 lease_seconds: float = 120.0) -> None:
        self.manager = manager
        self.store = store
        self.lease_seconds = lease_seconds
        #: Who holds a lease: host, process and this worker (for the operator's eye).
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._wake = asyncio.Event()
        manager.on_queued = self._wake.set

    async def run_once(self) -> bool:
        """Carry out one batch; False when no batch was free to take."""
        claim = await self.store.claim_registrations(self.owner, self.lease_seconds, INVITE_BATCH)
        if claim is None:
            return False
        organizer, uid = claim.organizer, claim.uid
        # The pace slot is won before the key lock is taken: mail about this meeting
        # must not wait behind the lock while a background call waits for the pace.
        with background_calls():
            async with self.manager.client.slot_ahead(), self.store.key_lock(organizer, uid):
                return await self._batch(claim)

    async def _batch(self, claim: RegistrationClaim) -> bool:
        organizer, uid = claim.organizer, claim.uid
        record = await self.store.get(organizer, uid)
        if record is None or record.state in (ConferenceState.DELETED,
                                              ConferenceState.PENDING_DELETE):
            await self.store.finish_registrations(organizer, uid)
            return True
        if record.state != ConferenceState.ACTIVE or record.session_id is None:
            return True  # a creation in progress: the lease runs out, then retried
        current = {p.address: p for p in await self.store.pending_registrations(organizer, uid)}
        items = [current[i.address] for i in claim.items if current.get(i.address) == i]
        if not items:
            return True
        try:
            await self.manager.register_batch(record, items)
        except WebinarError as exc:
            log.warning("uid=%s: %d registrations not done yet, retried in %.0f s: %s",
                        uid, len(items), self.lease_seconds, exc)
            return True
        await self.store.finish_registrations(organizer, uid, [i.address for i in items])
        return True

    async def drain(self) -> None:
        """Run batches until none is free to take (tests, and a caller who must wait)."""
        while await self.run_once():
            pass

    async def run_forever(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                busy = await self.run_once()
            except StoreError as exc:
                log.warning("registration worker: conference store unavailable: %s", exc)
                busy = False
            except Exception:
                log.exception("registration worker: batch failed")
                busy = False
            if busy:
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(IDLE_POLL_SECONDS):
                    await _first(stop, self._wake)


async def _first(*events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
