"""Typed values going into and coming out of the Webinar API client.

Every result is a frozen dataclass parsed leniently from the platform's JSON: ids may
arrive as numbers or as strings (older list endpoints send strings), optional fields
may be missing.  ``raw`` keeps the whole decoded object for diagnostics; it takes no
part in equality and is not shown in ``repr``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any


class Role(enum.StrEnum):
    """A participant's role in a session."""

    GUEST = "GUEST"
    LECTURER = "LECTURER"
    ADMIN = "ADMIN"


class EventType(enum.StrEnum):
    WEBINAR = "webinar"
    MEETING = "meeting"
    TRAINING = "training"


@dataclass(frozen=True)
class AccessSettings:
    """Who may enter: sent as ``accessSettings[…]=0|1``."""

    password_required: bool = False
    registration_required: bool = False
    moderation_required: bool = False

    def form(self) -> dict[str, int]:
        return {
            "isPasswordRequired": int(self.password_required),
            "isRegistrationRequired": int(self.registration_required),
            "isModerationRequired": int(self.moderation_required),
        }


@dataclass(frozen=True)
class PlatformTime:
    """A start time as the platform takes it: local wall-clock parts plus a zone id."""

    year: int
    month: int
    day: int
    hour: int
    minute: int
    timezone_id: int
    zone_name: str

    def form(self) -> dict[str, Any]:
        """The ``startsAt[…]`` structure (without the separate ``timezone`` field)."""
        return {
            "date": {"year": self.year, "month": self.month, "day": self.day},
            "time": {"hour": self.hour, "minute": self.minute},
        }


@dataclass(frozen=True)
class Invitee:
    """One person for ``WebinarClient.invite``."""

    email: str
    name: str | None = None
    second_name: str | None = None
    role: Role = Role.GUEST


@dataclass(frozen=True)
class CreatedEvent:
    event_id: int
    link: str


@dataclass(frozen=True)
class CreatedSession:
    session_id: int
    link: str | None


@dataclass(frozen=True)
class Registration:
    """A person registered to a session.

    ``link`` is the personal join link; it can be ``None`` when the platform answered
    a repeated registration with 409 and no event link was given to rebuild it.
    ``already_registered`` is True when the platform reported a registration that
    existed before this call (409, or a repeat recognised by participation id).
    """

    participation_id: int
    email: str
    link: str | None
    contact_id: int | None = None
    already_registered: bool = False


@dataclass(frozen=True)
class Participation:
    """One entry of a session's registration list."""

    participation_id: int
    email: str
    name: str | None
    second_name: str | None
    role: str | None
    event_id: int | None
    session_id: int | None
    #: The personal-link token (the platform's ``url`` field), not the API token.
    link_token: str | None
    is_accepted: bool | None
    register_status: str | None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def personal_link(self, event_link: str) -> str | None:
        """The personal join link ``<event link>/<token>``, if the platform gave a token."""
        return f"{event_link.rstrip('/')}/{self.link_token}" if self.link_token else None


@dataclass(frozen=True)
class EventSession:
    session_id: int
    event_id: int | None
    name: str | None
    status: str | None
    starts_at: datetime | None
    timezone_id: int | None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class Event:
    event_id: int
    name: str | None
    status: str | None
    type: str | None
    starts_at: datetime | None
    timezone_id: int | None
    rule: str | None
    owner_id: int | None
    sessions: tuple[EventSession, ...]
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    #: Plain text; ``None`` when the answer had no ``description`` (the schedule list
    #: may leave it out), ``""`` when the event has none.
    description: str | None = None


@dataclass(frozen=True)
class Member:
    """An organization employee; ``member_id`` is what ``ownerId`` takes."""

    member_id: int
    email: str
    name: str | None
    second_name: str | None
    role: str | None


@dataclass(frozen=True)
class Timezone:
    timezone_id: int
    name: str
    description: str | None
    offset_seconds: int | None


# ---- lenient parsing of the platform's JSON -------------------------------------


class MalformedResponse(ValueError):
    """The JSON lacked something the operation needs."""


def as_int(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise MalformedResponse(f"{what} is not an id")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise MalformedResponse(f"{what} is missing or not an id")


def opt_int(value: Any) -> int | None:
    try:
        return as_int(value, "value")
    except MalformedResponse:
        return None


def opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def opt_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | str) and str(value) in {"0", "1"}:
        return str(value) == "1"
    return None


def parse_platform_datetime(value: Any) -> datetime | None:
    """``2019-07-29T17:59:41+0300`` (colon-less offset) or ISO-8601 → aware datetime."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        try:
            parsed = datetime.strptime(value, "%Y-%m-%dT%H:%M:%S%z")
        except ValueError:
            return None
    return parsed if parsed.tzinfo is not None else None


def iso_duration(duration: timedelta) -> str:
    """``timedelta(hours=1, minutes=30)`` → ``PT1H30M0S``, the form clients send."""
    total = max(int(duration.total_seconds()), 0)
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"PT{hours}H{minutes}M{seconds}S"


def require_mapping(body: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise MalformedResponse(f"{what}: expected a JSON object")
    return body


def require_list(body: Any, what: str) -> list[Any]:
    if not isinstance(body, list):
        raise MalformedResponse(f"{what}: expected a JSON array")
    return body


def parse_session(body: Any) -> EventSession:
    data = require_mapping(body, "event session")
    return EventSession(
        session_id=as_int(data.get("id"), "session id"),
        event_id=opt_int(data.get("eventId")),
        name=opt_str(data.get("name")),
        status=opt_str(data.get("status")),
        starts_at=parse_platform_datetime(data.get("startsAt")),
        timezone_id=opt_int(data.get("timezoneId")),
        raw=dict(data),
    )


def parse_event(body: Any) -> Event:
    data = require_mapping(body, "event")
    sessions = data.get("eventSessions") or []
    return Event(
        event_id=as_int(data.get("id"), "event id"),
        name=opt_str(data.get("name")),
        status=opt_str(data.get("status")),
        type=opt_str(data.get("type")),
        starts_at=parse_platform_datetime(data.get("startsAt")),
        timezone_id=opt_int(data.get("timezoneId")),
        rule=opt_str(data.get("rule")),
        owner_id=opt_int(data.get("createUserId")),
        sessions=tuple(parse_session(item) for item in require_list(sessions, "eventSessions")),
        raw=dict(data),
        description=opt_str(data.get("description")),
    )


def parse_participation(body: Any) -> Participation:
    data = require_mapping(body, "participation")
    email = data.get("email")
    if not isinstance(email, str):
        raise MalformedResponse("participation without e-mail")
    return Participation(
        participation_id=as_int(data.get("id"), "participation id"),
        email=email,
        name=opt_str(data.get("name")),
        second_name=opt_str(data.get("secondName")),
        role=opt_str(data.get("role")),
        event_id=opt_int(data.get("eventId")),
        session_id=opt_int(data.get("eventSessionId")),
        link_token=opt_str(data.get("url")),
        is_accepted=opt_bool(data.get("isAccepted")),
        register_status=opt_str(data.get("registerStatus")),
        raw=dict(data),
    )


def parse_member(body: Any) -> Member:
    data = require_mapping(body, "member")
    return Member(
        member_id=as_int(data.get("id"), "member id"),
        email=opt_str(data.get("email")) or "",
        name=opt_str(data.get("name")),
        second_name=opt_str(data.get("secondName")),
        role=opt_str(data.get("role")),
    )


def parse_timezone(body: Any) -> Timezone:
    data = require_mapping(body, "timezone")
    name = data.get("name")
    if not isinstance(name, str):
        raise MalformedResponse("timezone without name")
    return Timezone(
        timezone_id=as_int(data.get("id"), "timezone id"),
        name=name,
        description=opt_str(data.get("description")),
        offset_seconds=opt_int(data.get("offset")),
    )
