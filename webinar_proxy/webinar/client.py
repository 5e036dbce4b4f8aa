"""``WebinarClient``: the relay's only contact with the Webinar (MTS Link) user API v3.

One pooled ``httpx.AsyncClient`` per ``WebinarClient``; every operation is paced
(the platform allows 2 requests/s per key; by default the client keeps 1.8/s, and
with ``pace=`` a ``SharedPace`` shares that pace with every process using the key,
see ``pacing.py``) and bounded by a per-call deadline,
after which ``TemporaryError`` is raised.  Other 4xx answers become
``NotFoundError``/``ConflictError``/``RejectedError``/``UnauthorizedError`` at once.
Requests are form-encoded with bracket keys; answers are JSON.

Which calls retry on which failures (jittered exponential backoff, within the deadline):

* Every call retries a 429, after pushing the pace back by ``Retry-After`` (one
  second without it) for every caller of the key
  and a failure to connect (``ConnectError``, connect or pool timeout): the platform
  never saw the request.  Failures to connect are retried for ``connect_retry``
  seconds only (10 by default), not the whole deadline: an unreachable platform
  rarely comes back within a minute, and the mail is better answered 451 soon.
* Reads, updates, deletes and registrations (``get_*``, ``list_*``, ``update_*``,
  ``delete_*``, ``register``, ``invite``, ``remove_registrations``, ``timezones``)
  also retry read/write timeouts, dropped connections, 5xx and garbled answers: done
  twice they do no harm (a repeated registration or delete is recognised).
* ``create_event`` and ``create_session`` do **not** retry once the request may have
  reached the platform (timeout after connecting, dropped connection, 5xx, garbled
  2xx): the platform has no idempotency key, so a retry could make a second event.
  They raise ``TemporaryError`` with ``maybe_done=True`` at once; the caller looks
  for what the platform may have made (``list_events``, ``get_event``) before
  creating again.

The token lives only in the request header: it is never part of a URL, an error, a
log line or this object's ``repr``.  While the platform answers 401/403 the client
logs at ERROR, at most once per ``auth_alert_interval`` (60 s), that the token is not
accepted.  With ``metrics=``, every HTTP attempt is counted
and timed under a stable operation name (``create_event``; see ``OPERATION_NAMES``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx

from webinar_proxy import __version__
from webinar_proxy.metrics import NO_METRICS
from webinar_proxy.webinar.errors import (
    ConflictError,
    NotFoundError,
    RejectedError,
    TemporaryError,
    UnauthorizedError,
    WebinarError,
)
from webinar_proxy.webinar.forms import FORM_CONTENT_TYPE, encode_form, flatten
from webinar_proxy.webinar.models import (
    AccessSettings,
    CreatedEvent,
    CreatedSession,
    Event,
    EventSession,
    EventType,
    Invitee,
    Member,
    Participation,
    PlatformTime,
    Registration,
    Role,
    Timezone,
    as_int,
    iso_duration,
    opt_int,
    opt_str,
    parse_event,
    parse_member,
    parse_participation,
    parse_session,
    parse_timezone,
    require_list,
    require_mapping,
)
from webinar_proxy.webinar.pacing import (
    DEFAULT_RATE,
    Backoff,
    Clock,
    PacingDeadline,
    SharedPace,
    Sleep,
    TokenBucket,
    slot_ahead,
    take_slot_ahead,
)

if TYPE_CHECKING:
    from pydantic import SecretStr

    from webinar_proxy.metrics import Metrics
    from webinar_proxy.settings import WebinarSettings

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_API_URL = "https://userapi.mts-link.ru/v3"
#: The platform's id of Europe/Moscow, the documented fallback zone.
MOSCOW_TIMEZONE_ID = 1
#: The platform's batch size for ``invite``.
INVITE_BATCH = 50
#: Page sizes the platform accepts for participations and members.
PAGE_SIZES = (10, 50, 100, 250, 500)
#: Page sizes of ``GET /organization/events/schedule`` (at most 250).
SCHEDULE_PAGE_SIZES = (10, 50, 100, 250)
#: How the schedule's ``from``/``to`` are sent: a wall clock without zone (the
#: platform's examples), in the client's default zone.
SCHEDULE_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"

#: Stable metric names of the API operations, by method and path with ids as ``{id}``.
OPERATION_NAMES = {
    ("POST", "events"): "create_event",
    ("POST", "events/{id}/sessions"): "create_session",
    ("GET", "eventsessions/{id}"): "get_session",
    ("GET", "organization/events/{id}"): "get_event",
    ("GET", "organization/events/schedule"): "list_events",
    ("PUT", "organization/events/{id}"): "update_event",
    ("PUT", "eventsessions/{id}"): "update_session",
    ("DELETE", "eventsessions/{id}"): "delete_session",
    ("DELETE", "organization/events/{id}"): "delete_event",
    ("POST", "eventsessions/{id}/register"): "register",
    ("POST", "eventsessions/{id}/invite"): "invite",
    ("GET", "eventsessions/{id}/participations"): "list_registrations",
    ("POST", "participations/delete"): "remove_registrations",
    ("GET", "organization/members"): "list_members",
    ("GET", "timezones"): "timezones",
}
_ID_SEGMENT = re.compile(r"(?<![^/])\d+(?![^/])")
#: Failures that happen before a request is sent: safe to retry for any call.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
#: Seconds a call keeps retrying failures to connect (from the first one).
CONNECT_RETRY_SECONDS = 10.0
#: Longest ``Retry-After`` honoured (seconds): a garbled header must not stop the key for hours.
RETRY_AFTER_CAP = 300.0
#: Seconds between two ERROR lines saying that the token is not accepted.
AUTH_ALERT_SECONDS = 60.0
TOKEN_REJECTED = "the API token is not accepted"


def operation_name(method: str, path: str) -> str:
    """A stable, id-free name for metrics: ``create_event``, else e.g. ``get_events_id``."""
    template = _ID_SEGMENT.sub("{id}", path.split("?", 1)[0].strip("/"))
    known = OPERATION_NAMES.get((method.upper(), template))
    if known is not None:
        return known
    return re.sub(r"[^a-z0-9]+", "_", f"{method} {template}".lower()).strip("_")


def _no_body(body: Any) -> None:
    return None


class WebinarClient:
    """Typed async access to the Webinar API v3 operations the relay needs.

    Use as ``async with WebinarClient(...) as client:`` or call ``aclose()``.
    ``clock``/``sleep``/``backoff`` exist so tests can run on a virtual clock; the
    deadline and the pacing are measured on ``clock``.
    """

    def __init__(
        self,
        api_url: str = DEFAULT_API_URL,
        token: str | SecretStr | None = None,
        *,
        rate_limit: float = DEFAULT_RATE,
        connect_timeout: float = 5.0,
        read_timeout: float = 20.0,
        call_deadline: float = 60.0,
        default_timezone: str = "Europe/Moscow",
        default_timezone_id: int = MOSCOW_TIMEZONE_ID,
        default_owner_id: int | None = None,
        lang: str = "RU",
        max_attempts: int = 20,
        member_cache_seconds: float = 3600.0,
        timezone_cache_seconds: float = 86400.0,
        connect_retry: float = CONNECT_RETRY_SECONDS,
        auth_alert_interval: float | None = AUTH_ALERT_SECONDS,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        backoff: Backoff | None = None,
        metrics: Metrics | None = None,
        pace: TokenBucket | SharedPace | None = None,
    ) -> None:
        secret = token.get_secret_value() if hasattr(token, "get_secret_value") else token
        if secret is None:
            raise ValueError("the Webinar API token is not configured")
        self.api_url = api_url.rstrip("/")
        self.call_deadline = call_deadline
        self.default_owner_id = default_owner_id
        self.lang = lang
        self.default_timezone = default_timezone
        self.default_timezone_id = default_timezone_id
        self._default_zone = ZoneInfo(default_timezone)
        self._token: str = str(secret).strip()
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._max_attempts = max_attempts
        self._connect_retry = connect_retry
        self._auth_alert_interval = auth_alert_interval
        self._auth_alerted_at: float | None = None
        self._clock = clock
        self._sleep = sleep
        self._backoff = backoff or Backoff()
        self._metrics = metrics or NO_METRICS
        self._bucket = pace or TokenBucket(rate_limit, clock=clock, sleep=sleep)
        self._rate_limit = rate_limit
        self._member_ttl = member_cache_seconds
        self._timezone_ttl = timezone_cache_seconds
        self._members: dict[str, tuple[float, Member | None]] = {}
        self._timezones: tuple[float, tuple[Timezone, ...]] | None = None
        self._timezone_lock = asyncio.Lock()
        self._http = httpx.AsyncClient(
            base_url=self.api_url + "/",
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            limits=httpx.Limits(max_connections=10, max_keepalive_connections=4),
            verify=True,
            follow_redirects=False,
            headers={"Accept": "application/json", "User-Agent": f"webinar-proxy/{__version__}"},
        )

    def slot_ahead(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Win the request slot of the next call made in the block now, before the caller
        takes a lock (see ``pacing.slot_ahead``)."""
        return slot_ahead(self._bucket, self._clock)

    @classmethod
    def from_settings(cls, settings: WebinarSettings, **overrides: Any) -> WebinarClient:
        """Build from the ``[webinar]`` settings section; keyword overrides win."""
        options: dict[str, Any] = {
            "api_url": settings.api_url,
            "token": settings.token,
            "rate_limit": settings.rate_limit,
            "connect_timeout": settings.connect_timeout_seconds,
            "read_timeout": settings.read_timeout_seconds,
            "call_deadline": settings.call_deadline_seconds,
            "default_timezone": settings.default_timezone,
            "default_owner_id": settings.default_owner_id,
            "lang": settings.lang,
        }
        options.update(overrides)
        return cls(**options)

    def __repr__(self) -> str:
        return f"WebinarClient(api_url={self.api_url!r})"

    async def __aenter__(self) -> WebinarClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # ---- events and sessions -----------------------------------------------------

    async def create_event(
        self,
        *,
        name: str,
        start: datetime,
        duration: timedelta | None = None,
        owner_id: int | None = None,
        event_type: EventType | str = EventType.MEETING,
        lang: str | None = None,
        access: AccessSettings | None = None,
        rule: str | None = None,
        ends_at: datetime | None = None,
        description: str | None = None,
    ) -> CreatedEvent:
        """``POST /events``.  ``rule`` (an RRULE) makes a series; ``ends_at`` ends it.

        ``owner_id`` defaults to the configured ``default_owner_id`` (if any; the
        platform then uses the organization's creator).  Not retried once the request
        may have reached the platform (``TemporaryError`` with ``maybe_done``).
        """
        when = await self.platform_time(start)
        form: dict[str, Any] = {
            "name": name,
            "type": str(event_type),
            "lang": lang or self.lang,
            "startsAt": when.form(),
            "timezone": when.timezone_id,
            "duration": iso_duration(duration) if duration is not None else None,
            "ownerId": owner_id if owner_id is not None else self.default_owner_id,
            "accessSettings": (access or AccessSettings()).form(),
            "rule": rule,
            "endsAt": self._parts_in(ends_at, when).form() if ends_at is not None else None,
            "description": description,
        }

        def parse(body: Any) -> CreatedEvent:
            data = require_mapping(body, "created event")
            link = opt_str(data.get("link"))
            if not link:
                raise ValueError("created event without link")
            return CreatedEvent(event_id=as_int(data.get("eventId"), "eventId"), link=link)

        return await self._call("POST", "events", form=form, parse=parse, idempotent=False)

    async def create_session(
        self,
        event_id: int,
        *,
        start: datetime,
        name: str | None = None,
        lang: str | None = None,
        access: AccessSettings | None = None,
    ) -> CreatedSession:
        """``POST /events/{id}/sessions``: the meeting people join, at ``start``.

        Not retried once the request may have reached the platform (``TemporaryError``
        with ``maybe_done``); a second session on a single event is a ``ConflictError``.
        """
        when = await self.platform_time(start)
        form: dict[str, Any] = {
            "name": name,
            "lang": lang or self.lang,
            "startsAt": when.form(),
            "timezone": when.timezone_id,
            "accessSettings": access.form() if access is not None else None,
        }

        def parse(body: Any) -> CreatedSession:
            data = require_mapping(body, "created session")
            return CreatedSession(
                session_id=as_int(data.get("eventSessionId"), "eventSessionId"),
                link=opt_str(data.get("link")),
            )

        return await self._call(
            "POST", f"events/{int(event_id)}/sessions", form=form, parse=parse, idempotent=False
        )

    async def get_session(self, session_id: int) -> EventSession:
        """``GET /eventsessions/{id}``."""
        return await self._call("GET", f"eventsessions/{int(session_id)}", parse=parse_session)

    async def get_event(self, event_id: int) -> Event:
        """``GET /organization/events/{id}``, with its sessions."""
        return await self._call("GET", f"organization/events/{int(event_id)}", parse=parse_event)

    async def list_events(
        self,
        *,
        starts_from: datetime,
        starts_to: datetime,
        statuses: Iterable[str] | None = None,
        per_page: int = 250,
    ) -> tuple[Event, ...]:
        """Events in a period (``GET /organization/events/schedule``, all pages).

        ``from``/``to`` go out as wall-clock times in the default zone (the platform's
        examples carry no zone; pad the period if its zone may differ).  ``statuses``
        (``ACTIVE``, ``START``, ``STOP``) are sent as ``status[i]``; without them the
        platform lists only ``ACTIVE`` events.  Ids may arrive as strings; the list may
        leave ``description`` out (then ``Event.description`` is ``None``).
        """
        if per_page not in SCHEDULE_PAGE_SIZES:
            raise ValueError(f"per_page must be one of {SCHEDULE_PAGE_SIZES}")
        for bound in (starts_from, starts_to):
            if bound.tzinfo is None or bound.utcoffset() is None:
                raise ValueError("list_events needs aware datetimes")
        query: dict[str, Any] = {
            "from": starts_from.astimezone(self._default_zone).strftime(SCHEDULE_TIME_FORMAT),
            "to": starts_to.astimezone(self._default_zone).strftime(SCHEDULE_TIME_FORMAT),
        }
        if statuses is not None:
            query["status"] = [str(status) for status in statuses]
        return await self._all_pages(
            "organization/events/schedule", query, per_page, parse_event, max_pages=40,
        )

    async def update_event(
        self,
        event_id: int,
        *,
        start: datetime | None = None,
        name: str | None = None,
        duration: timedelta | None = None,
    ) -> None:
        """Move or rename an event: ``PUT /organization/events/{id}``.

        For a single meeting the platform wants both this and ``update_session``.
        """
        form = await self._change_form(start=start, name=name, duration=duration)
        if form:
            await self._call(
                "PUT", f"organization/events/{int(event_id)}", form=form, parse=_no_body
            )

    async def update_session(
        self,
        session_id: int,
        *,
        start: datetime | None = None,
        name: str | None = None,
        duration: timedelta | None = None,
    ) -> None:
        """Move or rename a session: ``PUT /eventsessions/{id}``, no platform letter."""
        form = await self._change_form(start=start, name=name, duration=duration)
        if form:
            form["sendEmail"] = False
            await self._call("PUT", f"eventsessions/{int(session_id)}", form=form, parse=_no_body)

    async def delete_session(self, session_id: int) -> bool:
        """``DELETE /eventsessions/{id}`` without the platform's letter.

        True if deleted now, False if it was already gone (404).  On the platform this
        may delete the parent event of a single meeting too.
        """
        try:
            await self._call(
                "DELETE", f"eventsessions/{int(session_id)}",
                form={"sendEmail": False}, parse=_no_body,
            )
        except NotFoundError:
            return False
        return True

    async def delete_event(self, event_id: int) -> bool:
        """``DELETE /organization/events/{id}`` (and its unfinished sessions).

        True if deleted now, False if already gone (404, e.g. after ``delete_session``).
        """
        try:
            await self._call("DELETE", f"organization/events/{int(event_id)}", parse=_no_body)
        except NotFoundError:
            return False
        return True

    # ---- registrations -----------------------------------------------------------

    async def register(
        self,
        session_id: int,
        *,
        email: str,
        name: str | None = None,
        second_name: str | None = None,
        role: Role | str = Role.GUEST,
        event_link: str | None = None,
    ) -> Registration:
        """Register one person (``POST /eventsessions/{id}/register``), no letter.

        A repeated e-mail is not an error: the platform answers either 201 with the
        existing participation or 409; on 409 the person is looked up in the list.
        ``event_link`` lets the personal link be rebuilt in that case.
        """
        form = {
            "email": email,
            "name": name,
            "secondName": second_name,
            "role": str(role),
            "isAutoEnter": True,
            "sendEmail": False,
        }

        def parse(body: Any) -> Registration:
            data = require_mapping(body, "registration")
            return Registration(
                participation_id=as_int(data.get("participationId"), "participationId"),
                email=email,
                link=opt_str(data.get("link")),
                contact_id=opt_int(data.get("contactId")),
            )

        try:
            return await self._call(
                "POST", f"eventsessions/{int(session_id)}/register", form=form, parse=parse
            )
        except ConflictError:
            existing = await self.find_registration(session_id, email)
            if existing is None:
                raise
            return Registration(
                participation_id=existing.participation_id,
                email=existing.email,
                link=existing.personal_link(event_link) if event_link else None,
                already_registered=True,
            )

    async def invite(
        self, session_id: int, invitees: Sequence[Invitee]
    ) -> tuple[Registration, ...]:
        """Register many people (``POST /eventsessions/{id}/invite``, 50 per call), no letters.

        The platform silently skips e-mails registered before and entries it finds
        invalid; those are absent from the result (``list_registrations`` has them).
        """
        results: list[Registration] = []
        for start in range(0, len(invitees), INVITE_BATCH):
            batch = invitees[start : start + INVITE_BATCH]
            form = {
                "users": [
                    {
                        "email": person.email,
                        "name": person.name,
                        "secondName": person.second_name,
                        "role": str(person.role),
                    }
                    for person in batch
                ],
                "isAutoEnter": True,
                "sendEmail": False,
            }
            results.extend(
                await self._call(
                    "POST", f"eventsessions/{int(session_id)}/invite",
                    form=form, parse=_parse_invited,
                )
            )
        return tuple(results)

    async def list_registrations(
        self, session_id: int, *, per_page: int = 250
    ) -> tuple[Participation, ...]:
        """All registrations of a session (``GET /eventsessions/{id}/participations``, paged)."""
        return await self._all_pages(
            f"eventsessions/{int(session_id)}/participations", {}, per_page, parse_participation,
            max_pages=1000,
        )

    async def find_registration(self, session_id: int, email: str) -> Participation | None:
        """The session's registration for ``email`` (case-insensitive), if any."""
        wanted = email.strip().casefold()
        for participation in await self.list_registrations(session_id):
            if participation.email.strip().casefold() == wanted:
                return participation
        return None

    async def remove_registrations(self, participation_ids: Iterable[int]) -> int:
        """``POST /participations/delete``; returns how many the platform removed."""
        ids = [int(item) for item in participation_ids]
        if not ids:
            return 0

        def parse(body: Any) -> int:
            if isinstance(body, Mapping) and "count" in body:
                return as_int(body["count"], "count")
            return len(ids)

        return await self._call(
            "POST", "participations/delete", form={"participationIds": ids}, parse=parse
        )

    # ---- organization members and time zones -------------------------------------

    async def find_member(self, email: str) -> Member | None:
        """The organization employee with this e-mail (cached), for ``ownerId``."""
        key = email.strip().casefold()
        cached = self._members.get(key)
        if cached is not None and cached[0] > self._clock():
            return cached[1]
        found: Member | None = None
        # The platform's e-mail filter is documented but its matching is not; compare
        # exactly here, and page on in case the filter was ignored.
        for member in await self._all_pages(
            "organization/members", {"email": email.strip()}, 100, parse_member, max_pages=20
        ):
            if member.email.strip().casefold() == key:
                found = member
                break
        self._members[key] = (self._clock() + self._member_ttl, found)
        return found

    async def first_members(self, count: int = 10) -> tuple[Member, ...]:
        """The first ``count`` organization members (one page), e.g. to prove the token."""
        return await self._all_pages("organization/members", {}, count, parse_member, max_pages=1)

    async def owner_id_for(self, email: str) -> int | None:
        """The member id for an organizer's e-mail, else the configured default owner."""
        member = await self.find_member(email)
        return member.member_id if member is not None else self.default_owner_id

    async def timezones(self) -> tuple[Timezone, ...]:
        """``GET /timezones`` (cached)."""
        async with self._timezone_lock:
            if self._timezones is not None and self._timezones[0] > self._clock():
                return self._timezones[1]
            zones = await self._call("GET", "timezones", parse=_parse_timezones)
            self._timezones = (self._clock() + self._timezone_ttl, zones)
            return zones

    async def platform_time(self, when: datetime) -> PlatformTime:
        """An aware instant → wall-clock parts in its own zone plus the platform's zone id.

        A zone the platform does not list (or a bare UTC offset) falls back to the
        default zone: the same instant, expressed in that zone's wall clock.
        """
        if when.tzinfo is None or when.utcoffset() is None:
            raise ValueError("platform_time needs an aware datetime")
        ids = {zone.name: zone.timezone_id for zone in await self.timezones()}
        name = _zone_name(when)
        if name is not None and name in ids:
            try:
                return _parts(when.astimezone(ZoneInfo(name)), ids[name], name)
            except ZoneInfoNotFoundError:
                pass
        fallback_id = ids.get(self.default_timezone, self.default_timezone_id)
        local = when.astimezone(self._default_zone)
        return _parts(local, fallback_id, self.default_timezone)

    async def ping(self) -> None:
        """One cheap authenticated call (``GET /timezones``, uncached) for health checks."""
        await self._call("GET", "timezones", parse=_parse_timezones)

    # ---- plumbing ----------------------------------------------------------------

    def _parts_in(self, when: datetime, reference: PlatformTime) -> PlatformTime:
        if when.tzinfo is None:
            raise ValueError("needs an aware datetime")
        return _parts(when.astimezone(ZoneInfo(reference.zone_name)), reference.timezone_id,
                      reference.zone_name)

    async def _change_form(
        self, *, start: datetime | None, name: str | None, duration: timedelta | None
    ) -> dict[str, Any]:
        form: dict[str, Any] = {}
        if name is not None:
            form["name"] = name
        if start is not None:
            when = await self.platform_time(start)
            form["startsAt"] = when.form()
            form["timezone"] = when.timezone_id
        if duration is not None:
            form["duration"] = iso_duration(duration)
        return form

    async def _all_pages(
        self,
        path: str,
        query: dict[str, Any],
        per_page: int,
        parse_item: Callable[[Any], T],
        *,
        max_pages: int,
    ) -> tuple[T, ...]:
        if per_page not in PAGE_SIZES:
            raise ValueError(f"per_page must be one of {PAGE_SIZES}")
        items: list[T] = []
        for page in range(1, max_pages + 1):
            params = flatten({**query, "page": page, "perPage": per_page})
            batch = await self._call(
                "GET", path, params=params,
                parse=lambda body: [parse_item(item) for item in require_list(body, path)],
            )
            items.extend(batch)
            if len(batch) < per_page:
                break
        return tuple(items)

    async def _call(
        self,
        method: str,
        path: str,
        *,
        parse: Callable[[Any], T],
        form: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | list[tuple[str, str]] | None = None,
        idempotent: bool = True,
    ) -> T:
        """One operation: paced, retried within the deadline, parsed or mapped to an error.

        ``idempotent=False`` (creating calls): a failure after the request may have
        reached the platform is not retried but raised at once as ``TemporaryError``
        with ``maybe_done``; 429 and failures to connect are still retried.
        """
        operation = f"{method} /{path}"
        metric_name = operation_name(method, path)
        deadline = self._clock() + self.call_deadline
        content = encode_form(form) if form is not None else None
        headers = {"Content-Type": FORM_CONTENT_TYPE} if content is not None else {}
        if self._token:
            headers["x-auth-token"] = self._token
        problem = "no attempt made"
        last_status: int | None = None
        attempts = 0
        first_connect_failure: float | None = None
        for attempt in range(self._max_attempts):
            try:
                ahead = take_slot_ahead(self._clock) if attempt == 0 else None
                if ahead is None:
                    await self._bucket.acquire(deadline)
                elif ahead > 0:
                    await self._sleep(ahead)
            except PacingDeadline:
                raise self._temporary(
                    operation, f"no request slot before the deadline; {problem}", last_status
                ) from None
            remaining = deadline - self._clock()
            if remaining <= 0:
                break
            timeout = httpx.Timeout(
                min(self._read_timeout, remaining), connect=min(self._connect_timeout, remaining)
            )
            retry_after: float | None = None
            status: int | None = None
            attempts += 1
            attempt_started = self._clock()
            try:
                response = await self._request(
                    metric_name, method, path,
                    content=content, params=params, headers=headers, timeout=timeout,
                )
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                problem = f"{type(exc).__name__}: {self._scrub(str(exc)) or 'no detail'}"
                if not idempotent and not isinstance(exc, _NOT_SENT):
                    raise self._maybe_done(operation, problem, None) from None
                if isinstance(exc, _NOT_SENT):
                    if first_connect_failure is None:
                        first_connect_failure = attempt_started
                else:
                    first_connect_failure = None
            except httpx.HTTPError as exc:
                raise WebinarError(
                    f"{type(exc).__name__}: {self._scrub(str(exc))}", operation=operation
                ) from None
            else:
                first_connect_failure = None
                status = last_status = response.status_code
                if 200 <= status < 300:
                    try:
                        return parse(_decode_json(response))
                    except ValueError as exc:
                        problem = f"unexpected answer ({self._scrub(str(exc))})"
                        if not idempotent:
                            raise self._maybe_done(operation, problem, status) from None
                elif status == 429 or status >= 500:
                    problem = f"HTTP {status} {self._error_message(response)}"
                    retry_after = _retry_after(response) if status == 429 else None
                    if status >= 500 and not idempotent:
                        raise self._maybe_done(operation, problem, status)
                else:
                    raise self._definite_error(operation, response)
            delay = self._backoff.delay(attempt)
            if status == 429:
                # The pause is everyone's: the next slot of every caller of the key
                # (all processes, with a shared pace) lies after it.
                pause = min(retry_after, RETRY_AFTER_CAP) if retry_after is not None else 1.0
                await self._bucket.push_back(pause)
                delay = 0.0
            if self._clock() + delay >= deadline:
                break
            if (first_connect_failure is not None
                    and self._clock() + delay - first_connect_failure > self._connect_retry):
                problem = f"cannot connect to {self.api_url} ({problem})"
                break
            log.warning(
                "Webinar API %s: %s; retry %d in %.2f s", operation, problem, attempt + 1, delay
            )
            await self._sleep(delay)
        raise self._temporary(
            operation, f"gave up after {attempts} attempt(s); last problem: {problem}", last_status
        )

    async def _request(self, metric_name: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One HTTP attempt, counted and timed under ``metric_name`` (never the URL)."""
        started = time.perf_counter()
        try:
            response = await self._http.request(method, path, **kwargs)
        except Exception:
            self._metrics.api_call(metric_name, "error", time.perf_counter() - started)
            raise
        self._metrics.api_call(metric_name, response.status_code, time.perf_counter() - started)
        return response

    def _temporary(self, operation: str, message: str, status: int | None) -> TemporaryError:
        log.warning("Webinar API %s: %s", operation, message)
        return TemporaryError(message, operation=operation, status=status)

    def _maybe_done(self, operation: str, problem: str, status: int | None) -> TemporaryError:
        message = f"{problem}; not retried: the platform may have carried it out"
        log.warning("Webinar API %s: %s", operation, message)
        return TemporaryError(message, operation=operation, status=status, maybe_done=True)

    def _alert_unauthorized(self, operation: str, status: int) -> None:
        if self._auth_alert_interval is None:
            return
        now = self._clock()
        if self._auth_alerted_at is not None and now - self._auth_alerted_at < self._auth_alert_interval:
            return
        self._auth_alerted_at = now
        log.error(
            "Webinar API %s answered HTTP %d: %s; invitations get 451 until it is fixed "
            "(set webinar.token to a valid token of the organization, then check with "
            "'webinar-proxy check-config --online')", operation, status, TOKEN_REJECTED,
        )

    def _scrub(self, text: str) -> str:
        # Defence in depth against a platform echoing the token; a very short (test)
        # token would mangle ordinary words, and real tokens are long.
        if len(self._token) < 8:
            return text
        return text.replace(self._token, "***")

    def _error_message(self, response: httpx.Response) -> str:
        envelope = _error_envelope(response)
        return self._scrub(str(envelope.get("message") or response.reason_phrase or "error"))

    def _definite_error(self, operation: str, response: httpx.Response) -> WebinarError:
        status = response.status_code
        message = self._error_message(response)
        if status in (401, 403):
            self._alert_unauthorized(operation, status)
            return UnauthorizedError(message, operation=operation, status=status)
        if status == 404:
            return NotFoundError(message, operation=operation, status=status)
        if status == 409:
            return ConflictError(message, operation=operation, status=status)
        envelope = _error_envelope(response)
        fields = envelope.get("fieldErrors")
        if not isinstance(fields, Mapping):
            # The "missing additional field" answer has no envelope at all:
            # ``{"additionalFields.<key>": {"errors": ["ERROR_BLANK"]}}``.
            body = _try_json(response)
            fields = body if isinstance(body, Mapping) and "error" not in body else {}
        scrubbed = {
            self._scrub(str(key)): _scrub_value(self._scrub, value) for key, value in fields.items()
        }
        return RejectedError(message, operation=operation, status=status, field_errors=scrubbed)


def _zone_name(when: datetime) -> str | None:
    key = getattr(when.tzinfo, "key", None)
    if isinstance(key, str):
        return key
    if when.tzinfo is UTC:
        return "UTC"
    return None


def _parts(local: datetime, timezone_id: int, zone_name: str) -> PlatformTime:
    # The platform takes minutes; seconds of an invitation's start are dropped.
    return PlatformTime(local.year, local.month, local.day, local.hour, local.minute,
                        timezone_id, zone_name)


def _try_json(response: httpx.Response) -> Any:
    try:
        return response.json() if response.content else None
    except ValueError:
        return None


def _decode_json(response: httpx.Response) -> Any:
    if response.status_code == 204 or not response.content.strip():
        return None
    return response.json()


def _error_envelope(response: httpx.Response) -> Mapping[str, Any]:
    body = _try_json(response)
    if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
        return body["error"]
    return {}


def _scrub_value(scrub: Callable[[str], str], value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, Mapping):
        return {str(key): _scrub_value(scrub, item) for key, item in value.items()}
    if isinstance(value, list):
        return [_scrub_value(scrub, item) for item in value]
    return value


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(float(response.headers.get("Retry-After", "")), 0.0)
    except ValueError:
        return None


def _parse_invited(body: Any) -> list[Registration]:
    registrations = []
    for item in require_list(body, "invite answer"):
        data = require_mapping(item, "invited user")
        registrations.append(
            Registration(
                participation_id=as_int(data.get("participationId"), "participationId"),
                email=opt_str(data.get("email")) or "",
                link=opt_str(data.get("link")),
                contact_id=opt_int(data.get("contactId")),
            )
        )
    return registrations


def _parse_timezones(body: Any) -> tuple[Timezone, ...]:
    return tuple(parse_timezone(item) for item in require_list(body, "timezones"))
