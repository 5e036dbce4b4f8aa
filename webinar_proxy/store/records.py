"""What the store keeps: the record types, their normalisation, and the store's error type.

Records are frozen dataclasses; change them with ``dataclasses.replace``.  Every
datetime in a record is timezone-aware UTC (aware values in other zones are
converted on construction; naive values are refused), and the organizer address
is kept lower-case, so a record read back from either backend compares equal to
the one that was written.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit


class StoreError(Exception):
    """Any failure of the conference store (the relay answers 451 on it).

    The message never contains a database password.
    """


class StoreConfigError(StoreError):
    """The store URL is unusable (bad scheme or path); a configuration problem."""


class ConferenceState(enum.StrEnum):
    #: A platform create is in flight; written before the call so a crash leaves a trace.
    CREATING = "creating"
    ACTIVE = "active"
    #: The platform delete failed; the row waits in the durable retry queue.
    PENDING_DELETE = "pending_delete"
    DELETED = "deleted"


def utc_now() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime, what: str = "datetime") -> datetime:
    """``value`` in UTC; naive datetimes are a programming error."""
    if not isinstance(value, datetime):
        raise TypeError(f"{what}: expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what}: naive datetime {value.isoformat()} (store needs aware UTC)")
    return value.astimezone(UTC)


def _optional_utc(value: datetime | None, what: str) -> datetime | None:
    return None if value is None else as_utc(value, what)


@dataclasses.dataclass(frozen=True, slots=True)
class Registration:
    """One attendee registered on the platform for the booked session."""

    address: str
    role: str
    participation_id: int | None = None


class RegistrationAction(enum.StrEnum):
    ADD = "add"
    REMOVE = "remove"


@dataclasses.dataclass(frozen=True, slots=True)
class PendingRegistration:
    """One attendee to register (``add``) or unregister (``remove``) in the background.

    Rows live in the store's registration queue until the platform call is done and
    the conference record says so; ``position`` orders them as the invitation did.
    """

    address: str
    action: RegistrationAction
    role: str = "GUEST"
    name: str | None = None
    position: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "address", self.address.lower())
        object.__setattr__(self, "action", RegistrationAction(self.action))


@dataclasses.dataclass(frozen=True, slots=True)
class RegistrationClaim:
    """A batch of one conference's queued registrations, leased to one worker."""

    organizer: str
    uid: str
    items: tuple[PendingRegistration, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class ConferenceRecord:
    """Everything stored about the conference of one (organizer, UID)."""

    organizer: str
    uid: str
    state: ConferenceState = ConferenceState.CREATING
    event_id: int | None = None
    session_id: int | None = None
    link: str | None = None
    booked_start: datetime | None = None
    booked_end: datetime | None = None
    #: The highest SEQUENCE of the organizer's invitation seen so far.
    sequence: int = 0
    summary: str = ""
    timezone: str | None = None
    #: Snapshot of the VEVENTs (iCalendar bytes), so the scheduler can find the next occurrence.
    calendar: bytes | None = None
    recurring: bool = False
    cancelled_occurrences: tuple[datetime, ...] = ()
    registrations: tuple[Registration, ...] = ()
    #: Every ATTENDEE address of the organizer's invitations so far (lower case).
    attendees: tuple[str, ...] = ()
    #: Envelope recipients of the organizer's invitations who are still invited (the
    #: organizer, rooms and resources left out): who must get a CANCEL for the whole
    #: meeting to be cancelled when the CANCELs carry no STATUS:CANCELLED.
    mailed_to: tuple[str, ...] = ()
    #: SEQUENCE of the organizer's latest CANCELs, and which of ``mailed_to`` they reached.
    cancel_sequence: int | None = None
    cancelled_to: tuple[str, ...] = ()
    created_at: datetime = dataclasses.field(default_factory=utc_now)
    #: Set by ``put`` to the time of the write.
    updated_at: datetime = dataclasses.field(default_factory=utc_now)
    #: Set by ``put`` when the state becomes ``deleted`` and this is still empty.
    deleted_at: datetime | None = None
    delete_attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str | None = None

    def __post_init__(self) -> None:
        fix = object.__setattr__
        if not self.organizer or not self.uid:
            raise ValueError("a conference record needs an organizer and a UID")
        fix(self, "organizer", self.organizer.lower())
        fix(self, "state", ConferenceState(self.state))
        for name in ("booked_start", "booked_end", "deleted_at", "next_attempt_at"):
            fix(self, name, _optional_utc(getattr(self, name), name))
        for name in ("created_at", "updated_at"):
            fix(self, name, as_utc(getattr(self, name), name))
        fix(
            self,
            "cancelled_occurrences",
            tuple(as_utc(value, "cancelled_occurrences") for value in self.cancelled_occurrences),
        )
        fix(self, "registrations", tuple(self.registrations))
        for name in ("attendees", "mailed_to", "cancelled_to"):
            fix(self, name, tuple(sorted({address.lower() for address in getattr(self, name)})))
        if self.calendar is not None and not isinstance(self.calendar, bytes):
            fix(self, "calendar", bytes(self.calendar))

    @property
    def key(self) -> tuple[str, str]:
        return self.organizer, self.uid


#: Column names of both backends' ``conferences`` table, in the order of the record's fields.
COLUMNS: tuple[str, ...] = tuple(field.name for field in dataclasses.fields(ConferenceRecord))


def stamp_for_write(record: ConferenceRecord, now: datetime | None = None) -> ConferenceRecord:
    """``record`` as ``put`` writes it: updated now, and ``deleted_at`` set once deleted."""
    now = utc_now() if now is None else now
    deleted_at = record.deleted_at
    if record.state is ConferenceState.DELETED and deleted_at is None:
        deleted_at = now
    return dataclasses.replace(record, updated_at=now, deleted_at=deleted_at)


def registrations_to_json(registrations: Iterable[Registration]) -> list[dict[str, Any]]:
    # Not dataclasses.asdict: it deep-copies each field and took 40 ms for a meeting
    # of 10,000 people, written back after every batch of 50 registrations.
    return [
        {"address": r.address, "role": r.role, "participation_id": r.participation_id}
        for r in registrations
    ]


def registrations_from_json(items: Iterable[dict[str, Any]]) -> tuple[Registration, ...]:
    return tuple(
        Registration(item["address"], item["role"], item.get("participation_id"))
        for item in items
    )


def record_to_json(record: ConferenceRecord) -> dict[str, Any]:
    """A JSON-ready view of a record (datetimes as ISO 8601, calendar as text)."""

    def when(value: datetime | None) -> str | None:
        return None if value is None else value.isoformat()

    view: dict[str, Any] = {}
    for field in dataclasses.fields(record):
        value = getattr(record, field.name)
        if isinstance(value, datetime) or (value is None and field.name.endswith("_at")):
            value = when(value)
        view[field.name] = value
    view["state"] = str(record.state)
    view["cancelled_occurrences"] = [when(value) for value in record.cancelled_occurrences]
    view["registrations"] = registrations_to_json(record.registrations)
    view["calendar"] = (
        None if record.calendar is None else record.calendar.decode("utf-8", errors="replace")
    )
    return view


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages and logs)."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.rsplit("@", 1)
        user = netloc[0].split(":", 1)[0]
        return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))
    except ValueError:
        return re.sub(r"://([^:/@]*):[^@]*@", r"://\1:***@", url)


def scrub(text: str, secret: str | None) -> str:
    """``text`` with ``secret`` (a password) blanked out wherever it appears."""
    return text.replace(secret, "***") if secret else text
