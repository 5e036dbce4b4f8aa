"""Conference operations: keep one Webinar conference in step with one meeting.

``ConferenceManager`` is where the platform (``webinar/``) and the store (``store/``)
meet.  Every operation is a reconciliation written to survive being interrupted at
any step and run again: a record is written *before* the first platform call, and
after every call that creates something, so a retry (the MTA's, after our 451)
continues where the last attempt stopped instead of creating a second conference.
Callers hold the store's key lock around each operation.

The platform has no idempotency key, so every event the relay creates carries a
marker in its description (``creation_marker``: a hash of organizer and UID, nothing
secret).  When a creation may have happened without its answer reaching the store
(a ``creating`` record without event id, or a create call failing after its request
went out), the platform's schedule around the meeting's start is searched for the
marker, and what is found is deleted before the event is created (again).  Such an
event was never written into mail, so replacing it loses nothing; it cannot be
adopted as it is, because no read of the API returns an event's join link.

Attendees are not registered while a mail waits: ``ensure`` queues them in the store
(``_sync_people``) and the registration worker (``registrations.py``) calls
``register_batch`` for them in the background, 50 per call.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

from webinar_proxy.invitation import Classification, Engine, EngineOptions, check_link
from webinar_proxy.metrics import NO_METRICS, Metrics
from webinar_proxy.store import (
    ConferenceRecord,
    ConferenceState,
    ConferenceStore,
    PendingRegistration,
    Registration,
    RegistrationAction,
)
from webinar_proxy.store.records import utc_now
from webinar_proxy.webinar import (
    ConflictError,
    CreatedEvent,
    Event,
    EventSession,
    EventType,
    Invitee,
    NotFoundError,
    Role,
    TemporaryError,
    WebinarClient,
    WebinarError,
)

log = logging.getLogger("webinar_proxy.lifecycle")

#: A series event whose sessions may fall on any day: a recurring meeting's
#: occurrences (moved ones included) all fit it, so the event link stays valid.
SERIES_RULE = "FREQ=DAILY"
DEFAULT_DURATION = timedelta(hours=1)
#: How far around a start the schedule is searched for a marked event: enough for
#: any zone offset of the platform's ``from``/``to`` and a meeting moved a little.
LOOKUP_MARGIN = timedelta(days=1)
MARKER_PREFIX = "webinar-proxy-key: "


def creation_marker(organizer: str, uid: str) -> str:
    """The line written into the description of every event the relay creates.

    ``webinar-proxy-key: `` and 32 hex digits of SHA-256 over the lower-cased
    organizer and the UID: stable across attempts and relay instances, not secret,
    and revealing neither.
    """
    digest = hashlib.sha256(f"{organizer.lower()}\n{uid}".encode()).hexdigest()[:32]
    return MARKER_PREFIX + digest


def lookup_windows(starts: Iterable[datetime]) -> list[tuple[datetime, datetime]]:
    """``[start - margin, start + margin]`` for each start, overlapping ones merged."""
    windows: list[tuple[datetime, datetime]] = []
    for start in sorted({s.astimezone(UTC) for s in starts}):
        low, high = start - LOOKUP_MARGIN, start + LOOKUP_MARGIN
        if windows and low <= windows[-1][1]:
            windows[-1] = (windows[-1][0], high)
        else:
            windows.append((low, high))
    return windows


def _our_session(event: Event, wanted: Wanted) -> EventSession | None:
    live = [s for s in event.sessions if s.status in (None, "ACTIVE", "START")]
    for session in live:
        if session.starts_at is not None and session.starts_at == wanted.start:
            return session
    if len(live) == 1 and not wanted.recurring:
        return live[0]
    return None


def _safe_link(link: str) -> str | None:
    """The platform's link if it may be written into mail (https only), else None."""
    try:
        check_link(link)
    except ValueError:
        return None
    return link


@dataclasses.dataclass(frozen=True, slots=True)
class Wanted:
    """What the conference should look like for one meeting."""

    summary: str
    start: datetime
    end: datetime
    recurring: bool
    people: dict[str, Role]  # address (lower-case) → role; the organizer first
    names: dict[str, str] = dataclasses.field(default_factory=dict)  # address → display name
    #: Attendees over ``policy.max_attendees``, in invitation order: not registered.
    left_out: tuple[str, ...] = ()

    @property
    def skipped_over_limit(self) -> int:
        return len(self.left_out)

    @property
    def duration(self) -> timedelta:
        return max(self.end - self.start, timedelta(minutes=1))


def wanted_from(c: Classification, now: datetime, max_attendees: int) -> Wanted:
    occurrence = c.next_occurrence
    if occurrence is not None:
        start, end = occurrence.start, occurrence.end
    else:  # an update moving a meeting with a conference entirely into the past
        # (a new conference is never made without an upcoming occurrence: ``decide``)
        start = (c.start or now).astimezone(UTC)
        end = (c.end or start + (c.duration or DEFAULT_DURATION)).astimezone(UTC)
    people: dict[str, Role] = {}
    names: dict[str, str] = {}
    assert c.organizer is not None
    people[c.organizer.lower()] = Role.ADMIN
    if c.organizer_name:
        names[c.organizer.lower()] = c.organizer_name
    for attendee in c.attendees:
        address = attendee.address.lower()
        if not attendee.is_person or address in people:
            continue
        people[address] = Role.LECTURER if (attendee.role or "").upper() == "CHAIR" else Role.GUEST
        if attendee.name and attendee.name.lower() != address:
            names[address] = attendee.name
    # The limit counts attendees; the organizer (first, as ADMIN) comes on top.
    everyone = list(people.items())
    left_out = tuple(address for address, _ in everyone[1 + max_attendees:])
    if left_out:
        people = dict(everyone[:1 + max_attendees])
    return Wanted(
        summary=(c.summary or "").strip() or "Meeting",
        start=start, end=end, recurring=c.recurring, people=people, names=names,
        left_out=left_out,
    )


@dataclasses.dataclass(frozen=True, slots=True)
class RegistrationProgress:
    """How far the background registration of one conference's attendees has come."""

    registered: int  # attendees registered on the platform (the organizer not counted)
    total: int  # attendees to be registered
    left_out: tuple[str, ...] = ()  # attendees over the limit, never registered

    @property
    def pending(self) -> int:
        return max(self.total - self.registered, 0)


class ConferenceManager:
    def __init__(
        self,
        store: ConferenceStore,
        client: WebinarClient,
        options: EngineOptions,
        *,
        max_attendees: int = 10_000,
        delete_retry_max: timedelta = timedelta(hours=1),
        clock: Callable[[], datetime] = utc_now,
        metrics: Metrics = NO_METRICS,
        engine: Engine,
    ) -> None:
        #: Called when registrations were queued (the worker of this process wakes up).
        self.on_queued: Callable[[], None] | None = None
        self.metrics = metrics
        #: Where next occurrences are computed (never the event loop).
        self.engine = engine
        self.store = store
        self.client = client
        self.options = options
        self.max_attendees = max_attendees
        self.delete_retry_max = delete_retry_max
        self.clock = clock

    # -- create / update ------------------------------------------------------------

    async def ensure(self, c: Classification, record: ConferenceRecord | None) -> ConferenceRecord:
        """Create the conference, or bring it in step with the meeting; returns the record.

        Raises ``WebinarError`` (nothing half-stored: a retry continues) or ``StoreError``.
        """
        kind = "update" if record is not None and record.state == ConferenceState.ACTIVE else "create"
        try:
            result = await self._ensure(c, record)
        except Exception:
            self.metrics.conference_operation(kind, "failed")
            raise
        self.metrics.conference_operation(kind, "ok")
        return result

    async def progress(self, c: Classification, record: ConferenceRecord) -> RegistrationProgress:
        """Registered attendees of ``record`` against those ``c`` invites (within the limit)."""
        wanted = wanted_from(c, self.clock(), self.max_attendees)
        attendees = set(wanted.people) - {record.organizer}
        done = {r.address.lower() for r in record.registrations}
        return RegistrationProgress(len(attendees & done), len(attendees), wanted.left_out)

    async def _ensure(self, c: Classification, record: ConferenceRecord | None) -> ConferenceRecord:
        assert c.organizer and c.uid
        now = self.clock()
        wanted = wanted_from(c, now, self.max_attendees)
        if wanted.left_out:
            log.warning("uid=%s: %d attendees over the limit of %d (policy.max_attendees) are "
                        "not registered", c.uid, len(wanted.left_out), self.max_attendees)
        if record is not None and record.state == ConferenceState.PENDING_DELETE:
            await self._delete_on_platform(record)  # the old one must go before a new one
            record = None
        fresh = record is None or record.state == ConferenceState.DELETED
        if record is None or record.state == ConferenceState.DELETED:
            record = ConferenceRecord(organizer=c.organizer, uid=c.uid)
        if record.event_id is None:
            if not fresh:  # an earlier attempt may have made the event without learning so
                await self._remove_unrecorded(record, wanted)
            # the start and name go in first: they are what a later search looks around
            record = await self.store.put(dataclasses.replace(
                record, booked_start=wanted.start, booked_end=wanted.end, summary=wanted.summary,
                recurring=wanted.recurring,
            ))
            created = await self._create_event(record, c.organizer, wanted)
            link = _safe_link(created.link)
            record = await self.store.put(dataclasses.replace(
                record, event_id=created.event_id, link=link, summary=wanted.summary,
                recurring=wanted.recurring,
            ))
            if link is None:  # never written into mail: the event goes again (or is queued to)
                log.error("uid=%s: the platform gave event %s a join link that is not a safe "
                          "https URL: %r", c.uid, created.event_id, created.link)
                await self.delete(record, "join link not https")
                raise WebinarError("the platform answered with a join link that is not https",
                                   operation="POST /events")
            log.info("uid=%s organizer=%s: created event %s", c.uid, c.organizer, created.event_id)
        if record.session_id is None:
            assert record.event_id is not None
            session_id, booked = await self._create_session(record.event_id, wanted)
            record = await self.store.put(dataclasses.replace(
                record, session_id=session_id, booked_start=booked,
                booked_end=wanted.end if booked == wanted.start else booked + wanted.duration,
            ))
        record = await self._move(record, wanted)
        record = await self._sync_people(record, wanted.people, wanted.names)
        return await self.store.put(dataclasses.replace(
            record,
            state=ConferenceState.ACTIVE,
            sequence=max(record.sequence, c.sequence or 0),
            summary=wanted.summary,
            timezone=c.timezone,
            calendar=c.calendar or record.calendar,
            recurring=wanted.recurring,
            last_error=None,
        ))

    async def _create_event(self, record: ConferenceRecord, organizer: str, wanted: Wanted) -> CreatedEvent:
        """``create_event`` with the marker.  If the call fails after its request went
        out, look: an event the platform made anyway is deleted and the call made once
        more; if none is seen (yet), the failure stands and the next attempt looks again.
        """
        owner = await self.client.owner_id_for(organizer)

        async def create() -> CreatedEvent:
            return await self.client.create_event(
                name=wanted.summary, start=wanted.start, duration=wanted.duration, owner_id=owner,
                event_type=EventType.MEETING, rule=SERIES_RULE if wanted.recurring else None,
                description=creation_marker(record.organizer, record.uid),
            )

        try:
            return await create()
        except TemporaryError as exc:
            if not exc.maybe_done or not await self._remove_unrecorded(record, wanted):
                raise
        return await create()

    async def _create_session(self, event_id: int, wanted: Wanted) -> tuple[int, datetime]:
        """Create the session, or take over the one an earlier attempt made.

        Returns the session id and its start.  A single event holds one session (a
        second is a 409) and a series one per start, so a session found there at the
        wanted start (or the single event's only one) can only be ours.
        """
        try:
            created = await self.client.create_session(event_id, start=wanted.start, name=wanted.summary)
        except (ConflictError, TemporaryError) as exc:
            if isinstance(exc, TemporaryError) and not exc.maybe_done:
                raise
            existing = _our_session(await self.client.get_event(event_id), wanted)
            if existing is None:
                raise
            log.info("event %s: took over session %s made by an earlier attempt",
                     event_id, existing.session_id)
            return existing.session_id, (existing.starts_at or wanted.start).astimezone(UTC)
        return created.session_id, wanted.start

    async def _find_unrecorded(self, record: ConferenceRecord, wanted: Wanted | None) -> list[Event]:
        """Events on the platform carrying this meeting's marker, searched around the
        booked start and the wanted one.  When the schedule leaves descriptions out,
        events named as this meeting are read one by one."""
        starts = [s for s in (record.booked_start, wanted.start if wanted else None) if s]
        names = {n.strip().casefold() for n in (record.summary, wanted.summary if wanted else "") if n}
        marker = creation_marker(record.organizer, record.uid)
        found: dict[int, Event] = {}
        for low, high in lookup_windows(starts):
            for event in await self.client.list_events(
                starts_from=low, starts_to=high, statuses=("ACTIVE",)
            ):
                if event.event_id in found or event.event_id == record.event_id:
                    continue
                description = event.description
                if description is None:
                    if (event.name or "").strip().casefold() not in names:
                        continue
                    try:
                        description = (await self.client.get_event(event.event_id)).description
                    except NotFoundError:
                        continue
                if marker in (description or ""):
                    found[event.event_id] = event
        return list(found.values())

    async def _remove_unrecorded(self, record: ConferenceRecord, wanted: Wanted | None = None) -> int:
        """Delete the marked events whose ids the store never learnt; how many."""
        removed = 0
        for event in await self._find_unrecorded(record, wanted):
            if await self.client.delete_event(event.event_id):
                removed += 1
                log.warning("uid=%s organizer=%s: deleted event %s, made by an attempt whose "
                            "answer was lost", record.uid, record.organizer, event.event_id)
        return removed

    async def _move(self, record: ConferenceRecord, wanted: Wanted) -> ConferenceRecord:
        booked_duration = (
            record.booked_end - record.booked_start
            if record.booked_start and record.booked_end else None
        )
        moved = record.booked_start != wanted.start or booked_duration != wanted.duration
        renamed = record.summary != wanted.summary
        if not (moved or renamed):
            return record
        assert record.event_id is not None and record.session_id is not None
        name = wanted.summary if renamed else None
        if not record.recurring:
            await self.client.update_event(
                record.event_id, start=wanted.start if moved else None, name=name,
                duration=wanted.duration if moved else None,
            )
        elif renamed:
            await self.client.update_event(record.event_id, name=name)
        await self.client.update_session(
            record.session_id, start=wanted.start if moved else None, name=name,
            duration=wanted.duration if moved else None,
        )
        log.info("uid=%s: conference moved to %s", record.uid, wanted.start.isoformat())
        return await self.store.put(dataclasses.replace(
            record, booked_start=wanted.start, booked_end=wanted.end, summary=wanted.summary
        ))

    async def _sync_people(
        self, record: ConferenceRecord, people: dict[str, Role], names: dict[str, str]
    ) -> ConferenceRecord:
        """Queue the (un)registrations that bring the platform to ``people``.

        Nothing is registered here: the registration worker does it in the background
        (``register_batch``), so the mail waits only for the event, session and link.
        """
        registered = {r.address.lower() for r in record.registrations}
        pending = {p.address: p for p in await self.store.pending_registrations(
            record.organizer, record.uid)}
        wanted: dict[str, PendingRegistration] = {}
        for position, (address, role) in enumerate(people.items()):
            if address not in registered:
                wanted[address] = PendingRegistration(
                    address, RegistrationAction.ADD, str(role), names.get(address), position)
        for address in registered - set(people):
            wanted[address] = PendingRegistration(address, RegistrationAction.REMOVE)
        upsert = [item for address, item in wanted.items() if pending.get(address) != item]
        drop = [address for address in pending if address not in wanted]
        await self._queue(record, upsert, drop)
        return record

    async def _queue(self, record: ConferenceRecord, upsert: list[PendingRegistration],
                     drop: list[str]) -> None:
        if upsert or drop:
            await self.store.change_registrations(record.organizer, record.uid, upsert, drop)
        if upsert and self.on_queued is not None:
            self.on_queued()

    async def register_batch(
        self, record: ConferenceRecord, items: Iterable[PendingRegistration]
    ) -> ConferenceRecord:
        """Carry out one batch of queued registrations (all adds or all removes, at most
        one ``invite`` call's worth) and write the result into the record.

        Idempotent: an attendee already registered (a batch repeated after a crash) is
        recognised, on the platform and in the record.  The caller holds the key lock.
        """
        assert record.session_id is not None
        stored = {r.address.lower(): r for r in record.registrations}
        adds = [i for i in items if i.action is RegistrationAction.ADD and i.address not in stored]
        removes = [stored[i.address] for i in items
                   if i.action is RegistrationAction.REMOVE and i.address in stored]
        registrations = list(record.registrations)
        if adds:
            done = await self.client.invite(record.session_id, [
                Invitee(email=i.address, name=i.name, role=Role(i.role)) for i in adds])
            ids = {r.email.lower(): r.participation_id for r in done}
            if any(i.address not in ids for i in adds):  # skipped by the platform: look them up
                for p in await self.client.list_registrations(record.session_id, per_page=500):
                    ids.setdefault(p.email.lower(), p.participation_id)
            registrations += [Registration(i.address, i.role, ids.get(i.address)) for i in adds]
        if removes:
            await self.client.remove_registrations(
                r.participation_id for r in removes if r.participation_id is not None
            )
            gone = {r.address.lower() for r in removes}
            registrations = [r for r in registrations if r.address.lower() not in gone]
        if not (adds or removes):
            return record
        self.metrics.conference_operation("register" if adds else "unregister", "ok")
        return await self.store.put(dataclasses.replace(record, registrations=tuple(registrations)))

    async def unregister(self, record: ConferenceRecord, addresses: Iterable[str]) -> ConferenceRecord:
        """Queue the unregistration of ``addresses`` (and drop their pending registration)."""
        gone = {a.lower() for a in addresses} - {record.organizer}
        registered = {r.address.lower() for r in record.registrations}
        pending = {p.address for p in await self.store.pending_registrations(
            record.organizer, record.uid)}
        removes = [PendingRegistration(a, RegistrationAction.REMOVE) for a in sorted(gone & registered)]
        await self._queue(record, removes, sorted((gone & pending) - registered))
        return record

    # -- occurrences ----------------------------------------------------------------

    async def cancel_occurrences(
        self, record: ConferenceRecord, recurrence_ids: Iterable[datetime]
    ) -> ConferenceRecord:
        """Note cancelled occurrences; move the booking off a cancelled one (delete if none is left)."""
        now = self.clock()
        before = frozenset(record.cancelled_occurrences)
        after = before | {r.astimezone(UTC) for r in recurrence_ids}
        record = await self.store.put(
            dataclasses.replace(record, cancelled_occurrences=tuple(sorted(after)))
        )
        if not record.calendar:
            return record
        booked = await self.engine.next_occurrence(record.calendar, record.uid, now, self.options,
                                                  cancelled=before)
        if booked is None or booked.recurrence_id not in after:
            return record
        return await self.book_next(record, now)

    async def book_next(self, record: ConferenceRecord, now: datetime) -> ConferenceRecord:
        """Move the session to the next remaining occurrence; delete the conference when none is left."""
        assert record.calendar is not None and record.session_id is not None
        upcoming = await self.engine.next_occurrence(
            record.calendar, record.uid, now, self.options,
            cancelled=frozenset(record.cancelled_occurrences),
        )
        if upcoming is None:
            if record.recurring and record.booked_end and record.booked_end <= now:
                # the series simply ran out: keep the conference, stop rolling it
                return await self.store.put(dataclasses.replace(record, recurring=False))
            return await self.delete(record, "no occurrence left")
        if upcoming.start == record.booked_start:
            return record
        await self.client.update_session(
            record.session_id, start=upcoming.start, duration=upcoming.end - upcoming.start
        )
        log.info("uid=%s: booked occurrence %s", record.uid, upcoming.start.isoformat())
        self.metrics.conference_operation("roll_forward", "ok")
        return await self.store.put(dataclasses.replace(
            record, booked_start=upcoming.start, booked_end=upcoming.end
        ))

    # -- delete -----------------------------------------------------------------------

    async def delete(self, record: ConferenceRecord, reason: str) -> ConferenceRecord:
        """Delete on the platform; on failure the record waits in the retry queue.

        Never raises ``WebinarError``: a cancellation is forwarded whatever happens here.
        """
        try:
            await self._delete_on_platform(record)
        except WebinarError as exc:
            attempts = record.delete_attempts + 1
            wait = min(timedelta(seconds=30 * 2 ** (attempts - 1)), self.delete_retry_max)
            log.warning("uid=%s: delete failed (%s), retry in %s", record.uid, exc, wait)
            self.metrics.conference_operation("delete", "deferred")
            return await self.store.put(dataclasses.replace(
                record, state=ConferenceState.PENDING_DELETE, delete_attempts=attempts,
                next_attempt_at=self.clock() + wait, last_error=f"{reason}: {exc}"[:500],
            ))
        await self.store.finish_registrations(record.organizer, record.uid)
        log.info("uid=%s organizer=%s: conference deleted (%s)", record.uid, record.organizer, reason)
        self.metrics.conference_operation("delete", "ok")
        return await self.store.put(dataclasses.replace(
            record, state=ConferenceState.DELETED, deleted_at=self.clock(), next_attempt_at=None,
            last_error=None,
        ))

    async def _delete_on_platform(self, record: ConferenceRecord) -> None:
        if record.session_id is not None:
            await self.client.delete_session(record.session_id)
        if record.event_id is not None:
            await self.client.delete_event(record.event_id)
        else:  # a creation cut short may have left an event the store never learnt of
            await self._remove_unrecorded(record)
