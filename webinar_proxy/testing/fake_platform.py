"""The in-memory Webinar platform behind the fake server: objects, rules and answers.

``FakePlatform`` holds events, sessions, registrations, organization members and the
letters the real platform would have mailed, and implements the documented behaviour
of each operation on already-decoded form data (see ``fake.py`` for HTTP).  Each
operation returns ``(status, JSON body or None)`` or raises ``FakeApiError`` with the
documented status and error envelope.

Choices where the platform's documentation is unsure, kept in one place:
- a repeated registration answers 201 with the existing participation
  (``duplicate_registration="existing"``) or 409 (``"conflict"``);
- deleting the only session of a non-series event deletes the event too, so a
  later event delete answers 404 (as one client library reports);
- ``invite`` answers 200;
- zone ids other than 1 (Europe/Moscow) and 95 (Pacific/Samoa) are invented;
- the schedule (``GET /organization/events/schedule``) reads ``from``/``to``
  (``2020-12-01T12:45:35`` or ``2021-07-01``) as wall-clock times in the account's
  zone, Europe/Moscow; it lists an event when its start or one of its sessions'
  starts falls in ``[from, to]``; ``name`` matches part of the title (case
  ignored); without ``status[]`` only ACTIVE events are listed; its items have the captured shape: numbers as
  strings, ``timezoneName``, no ``description``.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any, Literal
from zoneinfo import ZoneInfo

DuplicateMode = Literal["existing", "conflict"]

DEFAULT_LINK_BASE = "https://events.webinar.ru"
ORGANIZATION_ID = 9001
PAGE_SIZES = frozenset({10, 50, 100, 250, 500})
SCHEDULE_PAGE_SIZES = frozenset({10, 50, 100, 250})
STATUSES = ("ACTIVE", "START", "STOP")
#: The account's zone, in which the schedule reads ``from`` and ``to``.
ACCOUNT_ZONE = "Europe/Moscow"
INVITE_LIMIT = 50
ROLES = ("ADMIN", "LECTURER", "GUEST")
EVENT_TYPES = ("webinar", "meeting", "training")
SINGLE_RULE = "FREQ=DAILY;COUNT=1"
_DURATION_RE = re.compile(r"^PT(?:\d+H)?(?:\d+M)?(?:\d+S)?$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+$")
_SINGLE_COUNT_RE = re.compile(r"(?:^|;)COUNT=1(?:;|$)")

# (id, IANA name, description).  Only ids 1 and 95 are documented; the rest are
# stand-ins so that zone mapping has something to map.  Zones missing here (e.g.
# America/Argentina/Ushuaia) exercise the client's fallback to Moscow.
TIMEZONES: tuple[tuple[int, str, str], ...] = (
    (1, "Europe/Moscow", "Волгоград, Москва, Санкт-Петербург"),
    (2, "Europe/Kaliningrad", "Калининград"),
    (3, "Europe/Samara", "Самара"),
    (4, "Asia/Yekaterinburg", "Екатеринбург"),
    (5, "Asia/Omsk", "Омск"),
    (6, "Asia/Novosibirsk", "Новосибирск"),
    (7, "Asia/Krasnoyarsk", "Красноярск"),
    (8, "Asia/Irkutsk", "Иркутск"),
    (9, "Asia/Yakutsk", "Якутск"),
    (10, "Asia/Vladivostok", "Владивосток"),
    (11, "Asia/Magadan", "Магадан"),
    (12, "Asia/Kamchatka", "Петропавловск-Камчатский"),
    (20, "Europe/London", "Лондон"),
    (21, "Europe/Berlin", "Берлин"),
    (22, "Europe/Paris", "Париж"),
    (23, "Europe/Minsk", "Минск"),
    (24, "Europe/Kyiv", "Киев"),
    (25, "Europe/Istanbul", "Стамбул"),
    (30, "Asia/Almaty", "Алматы"),
    (31, "Asia/Tashkent", "Ташкент"),
    (32, "Asia/Dubai", "Дубай"),
    (33, "Asia/Tbilisi", "Тбилиси"),
    (34, "Asia/Yerevan", "Ереван"),
    (35, "Asia/Baku", "Баку"),
    (40, "Asia/Shanghai", "Пекин"),
    (41, "Asia/Tokyo", "Токио"),
    (42, "Asia/Kolkata", "Калькутта"),
    (50, "America/New_York", "Нью-Йорк"),
    (51, "America/Chicago", "Чикаго"),
    (52, "America/Los_Angeles", "Лос-Анджелес"),
    (60, "UTC", "UTC"),
    (95, "Pacific/Samoa", "Самоа"),
)


class FakeApiError(Exception):
    """An error answer: HTTP status plus the platform's error envelope."""

    def __init__(
        self,
        status: int,
        message: str,
        field_errors: Mapping[str, Any] | None = None,
        *,
        with_code: bool = True,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field_errors = dict(field_errors or {})
        self.with_code = with_code

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.status} if self.with_code else {}
        error["message"] = self.message
        if self.field_errors:
            error["fieldErrors"] = self.field_errors
        return {"error": error}


def bad_request(**field_errors: str) -> FakeApiError:
    return FakeApiError(400, "ERROR_BAD_REQUEST", field_errors)


NOT_FOUND = 404
CONFLICT = 409


def not_found() -> FakeApiError:
    return FakeApiError(NOT_FOUND, "Not Found")


def conflict() -> FakeApiError:
    return FakeApiError(CONFLICT, "Conflict")


@dataclass
class FakeMember:
    id: int
    email: str
    name: str = ""
    second_name: str = ""
    role: str = "admin"

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "secondName": self.second_name, "patrName": "",
            "nickname": f"{self.name} {self.second_name}".strip(), "email": self.email,
            "membershipId": 8800 + self.id % 1000, "role": self.role, "phone": "",
            "position": "", "organization": "", "sex": "", "avatar": {},
        }


@dataclass
class FakeEvent:
    id: int
    name: str
    type: str
    lang: str
    rule: str
    starts_at: datetime
    timezone_id: int
    owner_id: int
    link: str
    duration: str | None = None
    ends_at: datetime | None = None
    description: str = ""
    access: dict[str, int] = field(default_factory=dict)
    status: str = "ACTIVE"

    @property
    def is_series(self) -> bool:
        return _SINGLE_COUNT_RE.search(self.rule.upper().replace(" ", "")) is None


@dataclass
class FakeSession:
    id: int
    event_id: int
    name: str
    lang: str
    starts_at: datetime
    timezone_id: int
    link: str
    duration: str | None = None
    status: str = "ACTIVE"


@dataclass
class FakeParticipation:
    id: int
    session_id: int
    event_id: int
    email: str
    name: str
    second_name: str
    role: str
    is_auto_enter: bool
    token: str
    contact_id: int
    link: str


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    return None


def _int(value: Any, name: str) -> int:
    text = _text(value)
    if text is None or not text.strip().lstrip("-").isdigit():
        raise bad_request(**{name: "ERROR_INVALID"})
    return int(text)


def _bool(value: Any, name: str, default: bool) -> bool:
    if value is None:
        return default
    text = (_text(value) or "").strip().lower()
    if text in {"true", "1"}:
        return True
    if text in {"false", "0", ""}:
        return False
    raise bad_request(**{name: "ERROR_INVALID"})


def _offset_seconds(zone: str) -> int:
    offset = datetime(2025, 1, 15, 12, tzinfo=ZoneInfo(zone)).utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0


def format_platform_time(when: datetime) -> str:
    """``2025-03-10T15:00:00+0300``: the platform's colon-less offset."""
    return when.strftime("%Y-%m-%dT%H:%M:%S%z")


class FakePlatform:
    """One organization's worth of Webinar state, with the documented rules."""

    def __init__(
        self,
        *,
        organization: str = "demo-org",
        link_base: str = DEFAULT_LINK_BASE,
        duplicate_registration: DuplicateMode = "existing",
        members: Iterable[Mapping[str, Any]] | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        token_hex: Callable[[], str] = lambda: secrets.token_hex(16),
    ) -> None:
        self.organization = organization
        self.link_base = link_base.rstrip("/")
        self.duplicate_registration: DuplicateMode = duplicate_registration
        self._now = now
        self._token_hex = token_hex
        self.events: dict[int, FakeEvent] = {}
        self.sessions: dict[int, FakeSession] = {}
        self.participations: dict[int, FakeParticipation] = {}
        self.members: dict[int, FakeMember] = {}
        self.contacts: dict[str, int] = {}
        #: Letters the real platform would have mailed (sendEmail not false).
        self.letters: list[dict[str, Any]] = []
        self._next = {"event": 4100001, "session": 4200001, "participation": 7000001,
                      "contact": 5500001, "member": 501}
        self.timezones = {
            zone_id: (name, description, _offset_seconds(name))
            for zone_id, name, description in TIMEZONES
        }
        for member in members if members is not None else [
            {"email": "owner@example.org", "name": "Demo", "secondName": "Owner"}
        ]:
            self.add_member(
                member["email"], name=member.get("name", ""),
                second_name=member.get("secondName", ""), role=member.get("role", "admin"),
            )

    # ---- bookkeeping -------------------------------------------------------------

    def _new_id(self, kind: str) -> int:
        value = self._next[kind]
        self._next[kind] = value + 1
        return value

    def add_member(self, email: str, *, name: str = "", second_name: str = "",
                   role: str = "admin") -> int:
        """Add an organization employee; the first one is the organization's creator."""
        member = FakeMember(self._new_id("member"), email, name, second_name, role)
        self.members[member.id] = member
        return member.id

    def _creator_id(self) -> int:
        return min(self.members) if self.members else 0

    def _event_link(self, event_id: int) -> str:
        return f"{self.link_base}/{self.organization}/{event_id}"

    def _letter(self, kind: str, session_id: int, email: str) -> None:
        self.letters.append({"kind": kind, "eventSessionId": session_id, "email": email})

    def _event(self, event_id: int) -> FakeEvent:
        event = self.events.get(event_id)
        if event is None:
            raise not_found()
        return event

    def _session(self, session_id: int) -> FakeSession:
        session = self.sessions.get(session_id)
        if session is None:
            raise not_found()
        return session

    def _sessions_of(self, event_id: int) -> list[FakeSession]:
        return [s for s in self.sessions.values() if s.event_id == event_id]

    def _participations_of(self, session_id: int) -> list[FakeParticipation]:
        return [p for p in self.participations.values() if p.session_id == session_id]

    # ---- form readers ------------------------------------------------------------

    def _zone(self, form: Mapping[str, Any], default: int) -> int:
        if form.get("timezone") in (None, ""):
            return default
        zone_id = _int(form["timezone"], "timezone")
        if zone_id not in self.timezones:
            raise bad_request(timezone="ERROR_INVALID")
        return zone_id

    def _start(self, form: Mapping[str, Any], key: str, zone_id: int,
               default: datetime | None) -> datetime | None:
        parts = form.get(key)
        if parts is None:
            return default.astimezone(ZoneInfo(self.timezones[zone_id][0])) if default else None
        if not isinstance(parts, Mapping):
            raise bad_request(**{key: "ERROR_INVALID"})
        day = parts.get("date") if isinstance(parts.get("date"), Mapping) else {}
        clock = parts.get("time") if isinstance(parts.get("time"), Mapping) else {}
        try:
            local_date = date(_int(day.get("year"), key), _int(day.get("month"), key),
                              _int(day.get("day"), key))
            local_time = time(_int(clock.get("hour", 0), key), _int(clock.get("minute", 0), key))
        except ValueError:
            raise bad_request(**{key: "ERROR_INVALID"}) from None
        return datetime.combine(local_date, local_time, ZoneInfo(self.timezones[zone_id][0]))

    @staticmethod
    def _duration(form: Mapping[str, Any]) -> str | None:
        value = _text(form.get("duration"))
        if value is None:
            return None
        if not _DURATION_RE.match(value) or value == "PT":
            raise bad_request(duration="ERROR_INVALID")
        return value

    @staticmethod
    def _access(form: Mapping[str, Any]) -> dict[str, int] | None:
        settings = form.get("accessSettings")
        if settings is None:
            return None
        if not isinstance(settings, Mapping):
            raise bad_request(accessSettings="ERROR_INVALID")
        result = {}
        for key in ("isPasswordRequired", "isRegistrationRequired", "isModerationRequired"):
            result[key] = int(_bool(settings.get(key), f"accessSettings.{key}", False))
        return result

    def _lang(self, form: Mapping[str, Any], default: str) -> str:
        lang = _text(form.get("lang")) or default
        if lang not in ("RU", "EN"):
            raise bad_request(lang="ERROR_INVALID")
        return lang

    # ---- events and sessions -----------------------------------------------------

    def create_event(self, form: Mapping[str, Any]) -> tuple[int, Any]:
        name = (_text(form.get("name")) or "").strip()
        if not name:
            raise bad_request(name="ERROR_EMPTY")
        event_type = _text(form.get("type")) or "webinar"
        if event_type not in EVENT_TYPES:
            raise bad_request(type="ERROR_INVALID")
        zone_id = self._zone(form, 1)
        starts_at = self._start(form, "startsAt", zone_id, self._now())
        assert starts_at is not None
        rule = _text(form.get("rule")) or SINGLE_RULE
        if not rule.upper().startswith("FREQ=") and ";FREQ=" not in rule.upper():
            raise bad_request(rule="ERROR_INVALID")
        owner_id = self._creator_id()
        if form.get("ownerId") not in (None, ""):
            owner_id = _int(form["ownerId"], "ownerId")
            if owner_id not in self.members:
                raise bad_request(ownerId="ERROR_INVALID")
        event_id = self._new_id("event")
        self.events[event_id] = FakeEvent(
            id=event_id, name=name, type=event_type, lang=self._lang(form, "RU"), rule=rule,
            starts_at=starts_at, timezone_id=zone_id, owner_id=owner_id,
            link=self._event_link(event_id), duration=self._duration(form),
            ends_at=self._start(form, "endsAt", zone_id, None),
            description=_text(form.get("description")) or "",
            access=self._access(form) or {"isPasswordRequired": 0, "isRegistrationRequired": 0,
                                          "isModerationRequired": 0},
        )
        return 201, {"eventId": event_id, "link": self.events[event_id].link}

    def create_session(self, event_id: int, form: Mapping[str, Any]) -> tuple[int, Any]:
        event = self._event(event_id)
        zone_id = self._zone(form, event.timezone_id)
        starts_at = self._start(form, "startsAt", zone_id, self._now())
        assert starts_at is not None
        existing = self._sessions_of(event_id)
        if existing and not event.is_series:
            raise conflict()
        if any(session.starts_at == starts_at for session in existing):
            raise conflict()
        self._access(form)
        session_id = self._new_id("session")
        self.sessions[session_id] = FakeSession(
            id=session_id, event_id=event_id, name=_text(form.get("name")) or event.name,
            lang=self._lang(form, event.lang), starts_at=starts_at, timezone_id=zone_id,
            link=f"{event.link}/session/{session_id}", duration=event.duration,
        )
        return 201, {"eventSessionId": session_id, "link": self.sessions[session_id].link}

    def _time_fields(self, when: datetime, zone_id: int) -> dict[str, Any]:
        name, description, offset = self.timezones[zone_id]
        return {
            "startsAt": format_platform_time(when),
            "utcStartsAt": int(when.timestamp()),
            "timezoneId": zone_id,
            "timezone": {"id": zone_id, "name": name, "description": description, "offset": offset},
        }

    def _user_json(self, user_id: int) -> dict[str, Any]:
        member = self.members.get(user_id)
        if member is None:
            return {"id": user_id, "name": "", "secondName": "", "email": ""}
        return {"id": member.id, "name": member.name, "secondName": member.second_name,
                "email": member.email}

    def session_json(self, session: FakeSession) -> dict[str, Any]:
        event = self.events[session.event_id]
        return {
            "id": session.id, "name": session.name, "description": event.description,
            "status": session.status, "access": 1, "lang": session.lang,
            **self._time_fields(session.starts_at, session.timezone_id),
            "createUserId": event.owner_id, "organizationId": ORGANIZATION_ID,
            "type": event.type, "startType": "manual",
            "createUser": self._user_json(event.owner_id),
            "accessSettings": dict(event.access),
            "image": {"id": 421, "url": f"{self.link_base}/images/event-default.png"},
            "additionalFields": [], "lectors": [], "tags": [], "announceFiles": [], "files": [],
        }

    def read_session(self, session_id: int) -> tuple[int, Any]:
        return 200, self.session_json(self._session(session_id))

    def read_event(self, event_id: int) -> tuple[int, Any]:
        event = self._event(event_id)
        body = {
            "id": event.id, "name": event.name, "description": event.description,
            "status": event.status, "access": 1, "lang": event.lang,
            **self._time_fields(event.starts_at, event.timezone_id),
            "createUserId": event.owner_id, "organizationId": ORGANIZATION_ID,
            "type": event.type, "createUser": self._user_json(event.owner_id),
            "rule": event.rule, "duration": event.duration,
            "accessSettings": dict(event.access),
            "additionalFields": [], "lectors": [], "tags": [], "announceFiles": [], "files": [],
            "eventSessions": [self.session_json(s) for s in self._sessions_of(event.id)],
        }
        if event.ends_at is not None:
            body["endsAt"] = format_platform_time(event.ends_at)
        return 200, body

    def update_event(self, event_id: int, form: Mapping[str, Any]) -> tuple[int, Any]:
        event = self._event(event_id)
        if event.status != "ACTIVE":
            raise bad_request(status="ERROR_INVALID")
        if _text(form.get("name")) is not None:
            name = (_text(form.get("name")) or "").strip()
            if not name:
                raise bad_request(name="ERROR_EMPTY")
            event.name = name
        zone_id = self._zone(form, event.timezone_id)
        starts_at = self._start(form, "startsAt", zone_id, None)
        if starts_at is not None:
            event.starts_at, event.timezone_id = starts_at, zone_id
        event.duration = self._duration(form) or event.duration
        event.lang = self._lang(form, event.lang)
        event.access = self._access(form) or event.access
        if form.get("ownerId") not in (None, ""):
            owner_id = _int(form["ownerId"], "ownerId")
            if owner_id not in self.members:
                raise bad_request(ownerId="ERROR_INVALID")
            event.owner_id = owner_id
        if _text(form.get("description")) is not None:
            event.description = _text(form.get("description")) or ""
        return 204, None

    def update_session(self, session_id: int, form: Mapping[str, Any]) -> tuple[int, Any]:
        session = self._session(session_id)
        if session.status not in ("ACTIVE", "START"):
            raise bad_request(status="ERROR_INVALID")
        send_email = _bool(form.get("sendEmail"), "sendEmail", True)
        if _text(form.get("name")) is not None:
            session.name = (_text(form.get("name")) or "").strip() or session.name
        zone_id = self._zone(form, session.timezone_id)
        starts_at = self._start(form, "startsAt", zone_id, None)
        session.duration = self._duration(form) or session.duration
        session.lang = self._lang(form, session.lang)
        if starts_at is not None and starts_at != session.starts_at:
            session.starts_at, session.timezone_id = starts_at, zone_id
            if send_email:
                for person in self._participations_of(session_id):
                    self._letter("rescheduled", session_id, person.email)
        return 204, None

    def delete_session(self, session_id: int, form: Mapping[str, Any]) -> tuple[int, Any]:
        session = self._session(session_id)
        send_email = _bool(form.get("sendEmail"), "sendEmail", True)
        for person in self._participations_of(session_id):
            if send_email:
                self._letter("cancelled", session_id, person.email)
            del self.participations[person.id]
        del self.sessions[session_id]
        event = self.events.get(session.event_id)
        if event is not None and not event.is_series and not self._sessions_of(event.id):
            del self.events[event.id]
        return 204, None

    def delete_event(self, event_id: int) -> tuple[int, Any]:
        self._event(event_id)
        for session in self._sessions_of(event_id):
            for person in self._participations_of(session.id):
                del self.participations[person.id]
            del self.sessions[session.id]
        del self.events[event_id]
        return 204, None

    # ---- registrations -----------------------------------------------------------

    def _register_one(
        self, session: FakeSession, person: Mapping[str, Any], *, is_auto_enter: bool,
        send_email: bool,
    ) -> tuple[FakeParticipation, bool]:
        """Register or find; returns (participation, created now)."""
        email = (_text(person.get("email")) or "").strip()
        if not email:
            raise bad_request(email="ERROR_EMPTY")
        if not _EMAIL_RE.match(email):
            raise bad_request(email="ERROR_INVALID")
        role = _text(person.get("role")) or "GUEST"
        if role not in ROLES:
            raise bad_request(role="ERROR_INVALID")
        for existing in self._participations_of(session.id):
            if existing.email.casefold() == email.casefold():
                return existing, False
        contact_id = self.contacts.get(email.casefold())
        if contact_id is None:
            contact_id = self.contacts[email.casefold()] = self._new_id("contact")
        token = self._token_hex()
        participation = FakeParticipation(
            id=self._new_id("participation"), session_id=session.id, event_id=session.event_id,
            email=email, name=_text(person.get("name")) or "",
            second_name=_text(person.get("secondName")) or "", role=role,
            is_auto_enter=is_auto_enter, token=token, contact_id=contact_id,
            link=f"{self._event_link(session.event_id)}/{token}",
        )
        self.participations[participation.id] = participation
        if send_email:
            self._letter("registered", session.id, email)
        return participation, True

    def register(self, session_id: int, form: Mapping[str, Any]) -> tuple[int, Any]:
        session = self._session(session_id)
        participation, created = self._register_one(
            session, form,
            is_auto_enter=_bool(form.get("isAutoEnter"), "isAutoEnter", False),
            send_email=_bool(form.get("sendEmail"), "sendEmail", True),
        )
        if not created and self.duplicate_registration == "conflict":
            raise conflict()
        return 201, {"participationId": participation.id, "link": participation.link,
                     "contactId": participation.contact_id}

    def invite(self, session_id: int, form: Mapping[str, Any]) -> tuple[int, Any]:
        session = self._session(session_id)
        users = form.get("users")
        if not isinstance(users, list) or not users:
            raise bad_request(users="ERROR_EMPTY")
        if len(users) > INVITE_LIMIT:
            raise bad_request(users="ERROR_TOO_MANY")
        is_auto_enter = _bool(form.get("isAutoEnter"), "isAutoEnter", False)
        send_email = _bool(form.get("sendEmail"), "sendEmail", True)
        answer = []
        for person in users:
            if not isinstance(person, Mapping):
                continue
            try:
                participation, created = self._register_one(
                    session, person, is_auto_enter=is_auto_enter, send_email=send_email
                )
            except FakeApiError:
                continue  # the platform skips bad entries silently
            if created:
                answer.append({"email": participation.email, "participationId": participation.id,
                               "link": participation.link, "contactId": participation.contact_id})
        return 200, answer

    @staticmethod
    def _page(query: Mapping[str, Any], items: list[Any], default_size: int,
              sizes: frozenset[int] = PAGE_SIZES) -> list[Any]:
        per_page = _int(query.get("perPage", default_size), "perPage")
        page = _int(query.get("page", 1), "page")
        if per_page not in sizes:
            raise bad_request(perPage="ERROR_INVALID")
        if page < 1:
            raise bad_request(page="ERROR_INVALID")
        return items[(page - 1) * per_page : page * per_page]

    def list_participations(self, session_id: int, query: Mapping[str, Any]) -> tuple[int, Any]:
        self._session(session_id)
        people = sorted(self._participations_of(session_id), key=lambda p: p.id)
        return 200, [self.participation_json(p) for p in self._page(query, people, 50)]

    @staticmethod
    def participation_json(person: FakeParticipation) -> dict[str, Any]:
        return {
            "id": person.id, "name": person.name, "secondName": person.second_name,
            "email": person.email, "avatar": {}, "eventId": person.event_id,
            "eventSessionId": person.session_id, "isAccepted": 1, "role": person.role,
            "isSeen": 0, "agreementStatus": "AGREED", "userId": person.contact_id,
            "isOnline": "0", "registerStatus": "INVITED", "paymentStatus": "NOT_PAID",
            "url": person.token, "visited": False, "additionalFieldValues": [],
        }

    def delete_participations(self, form: Mapping[str, Any]) -> tuple[int, Any]:
        ids = form.get("participationIds")
        if not isinstance(ids, list) or not ids:
            raise bad_request(participationIds="ERROR_EMPTY")
        count = 0
        for raw in ids:
            participation_id = _int(raw, "participationIds")
            if self.participations.pop(participation_id, None) is not None:
                count += 1
        return 200, {"count": count}

    # ---- the schedule -------------------------------------------------------------

    def _period_bound(self, query: Mapping[str, Any], key: str) -> datetime | None:
        text = (_text(query.get(key)) or "").strip()
        if not text:
            return None
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise bad_request(**{key: "ERROR_INVALID"}) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=ZoneInfo(ACCOUNT_ZONE))
        return parsed

    def list_schedule(self, query: Mapping[str, Any]) -> tuple[int, Any]:
        """``GET /organization/events/schedule``: events in a period, paged (≤ 250)."""
        start = self._period_bound(query, "from") or self._now()
        end = self._period_bound(query, "to")
        wanted = query.get("status")
        if wanted is None:
            statuses = {"ACTIVE"}
        else:
            items = wanted if isinstance(wanted, list) else [wanted]
            statuses = {(_text(item) or "").upper() for item in items}
            if not statuses <= set(STATUSES):
                raise bad_request(status="ERROR_INVALID")
        name = _text(query.get("name"))

        def in_period(when: datetime) -> bool:
            return when >= start and (end is None or when <= end)

        listed = [
            event for event in self.events.values()
            if event.status in statuses
            and (name is None or name.casefold() in event.name.casefold())
            and (in_period(event.starts_at)
                 or any(in_period(s.starts_at) for s in self._sessions_of(event.id)))
        ]
        listed.sort(key=lambda e: (e.starts_at, e.id))
        page = self._page(query, listed, 10, SCHEDULE_PAGE_SIZES)
        return 200, [self.schedule_json(event) for event in page]

    def schedule_json(self, event: FakeEvent) -> dict[str, Any]:
        """One item of the schedule, in the captured shape (numbers as strings)."""
        zone = self.timezones[event.timezone_id][0]
        common = {
            "status": event.status, "access": "1", "isArchive": "0",
            "createUserId": str(event.owner_id), "type": event.type, "timezoneName": zone,
            "tags": [], "files": [], "lectors": [],
        }
        return {
            "id": str(event.id), "name": event.name,
            "startsAt": format_platform_time(event.starts_at),
            "estimatedAt": format_platform_time(event.starts_at),
            **common, "rule": event.rule,
            "image": f"{self.link_base}/images/event-default.png",
            "eventSessions": [
                {
                    "id": str(s.id), "eventId": str(event.id), "name": s.name,
                    "startsAt": format_platform_time(s.starts_at),
                    "estimatedAt": format_platform_time(s.starts_at),
                    **common, "status": s.status, "timezoneName": self.timezones[s.timezone_id][0],
                    "participationsCount": len(self._participations_of(s.id)),
                }
                for s in sorted(self._sessions_of(event.id), key=lambda s: s.id)
            ],
        }

    # ---- organization and reference data ----------------------------------------

    def list_members(self, query: Mapping[str, Any]) -> tuple[int, Any]:
        members = sorted(self.members.values(), key=lambda m: m.id)
        if (email := _text(query.get("email"))) is not None:
            members = [m for m in members if m.email.casefold() == email.strip().casefold()]
        if query.get("id") not in (None, ""):
            wanted = _int(query["id"], "id")
            members = [m for m in members if m.id == wanted]
        if (role := _text(query.get("role"))) is not None:
            members = [m for m in members if m.role == role]
        return 200, [m.as_json() for m in self._page(query, members, 50)]

    def list_timezones(self) -> tuple[int, Any]:
        return 200, [
            {"id": zone_id, "name": name, "description": description, "offset": offset}
            for zone_id, (name, description, offset) in sorted(self.timezones.items())
        ]

    # ---- inspection ----------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Everything held, as plain JSON-able data (the shape of ``GET /_fake/state``)."""
        return {
            "organization": self.organization,
            "events": [
                {
                    "eventId": e.id, "name": e.name, "type": e.type, "lang": e.lang,
                    "status": e.status, "rule": e.rule, "isSeries": e.is_series,
                    "startsAt": format_platform_time(e.starts_at),
                    "utcStartsAt": int(e.starts_at.timestamp()), "timezoneId": e.timezone_id,
                    "endsAt": format_platform_time(e.ends_at) if e.ends_at else None,
                    "duration": e.duration, "ownerId": e.owner_id,
                    "accessSettings": dict(e.access), "description": e.description,
                    "link": e.link,
                    "sessionIds": [s.id for s in self._sessions_of(e.id)],
                }
                for e in sorted(self.events.values(), key=lambda e: e.id)
            ],
            "sessions": [
                {
                    "eventSessionId": s.id, "eventId": s.event_id, "name": s.name,
                    "status": s.status, "lang": s.lang,
                    "startsAt": format_platform_time(s.starts_at),
                    "utcStartsAt": int(s.starts_at.timestamp()), "timezoneId": s.timezone_id,
                    "duration": s.duration, "link": s.link,
                    "registeredEmails": sorted(p.email for p in self._participations_of(s.id)),
                }
                for s in sorted(self.sessions.values(), key=lambda s: s.id)
            ],
            "registrations": [
                {
                    "participationId": p.id, "eventSessionId": p.session_id,
                    "eventId": p.event_id, "email": p.email, "name": p.name,
                    "secondName": p.second_name, "role": p.role,
                    "isAutoEnter": p.is_auto_enter, "link": p.link, "contactId": p.contact_id,
                }
                for p in sorted(self.participations.values(), key=lambda p: p.id)
            ],
            "members": [m.as_json() for m in sorted(self.members.values(), key=lambda m: m.id)],
            "letters": [dict(letter) for letter in self.letters],
        }
