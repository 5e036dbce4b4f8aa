"""A fake Webinar API v3 server (aiohttp, in memory) for tests, demos and trials.

It serves the documented paths under ``/v3`` with the documented form parsing
(bracket keys; JSON and multipart bodies too), status codes, response shapes and
error envelope; the platform's behaviour lives in ``fake_platform.FakePlatform``.
In front of every API call, in this order: fault injection, the optional request
rate limit (429 with the documented body and ``Retry-After``: the seconds until a
call would be admitted), then the ``x-auth-token`` check (401
without a token, 403 with a wrong one); an ``_after`` fault acts on the answer.

Test/demo-only endpoints, outside ``/v3``:

- ``GET /_fake/state``: every event, session, registration, member and letter;
- ``POST /_fake/faults`` with JSON ``{"kind": "500"|"429"|"hang"|"drop"|"bad_json"|
  "500_after"|"drop_after"|"hang_after", "times": N (default 1; null = until cleared),
  "path": "/events*" (glob on the path after /v3, optional), "method": "POST"
  (optional), "retry_after": seconds (optional, 429 only: sent as ``Retry-After``)}``;
  ``DELETE /_fake/faults`` clears.  The first five act *instead of* the platform; the
  ``_after`` kinds let the platform carry the call out and then lose its answer
  (answer 500, cut the connection, or hold the answer until the server stops or
  ``hang_seconds`` pass);
- ``POST /_fake/members`` with JSON ``{"email", "name", "secondName", "role"}``.

From Python: ``async with running_fake_webinar(token="t") as fake:`` then
``fake.api_url``, ``fake.state()``, ``fake.add_fault(...)``, ``fake.requests``.
From the command line: ``webinar-proxy fake-webinar`` → ``run_fake_webinar(args)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from webinar_proxy.testing.fake_platform import (
    DEFAULT_LINK_BASE,
    DuplicateMode,
    FakeApiError,
    FakePlatform,
)
from webinar_proxy.webinar.forms import FormError, decode_form

log = logging.getLogger(__name__)

API_PREFIX = "/v3"
FaultKind = Literal[
    "500", "429", "hang", "drop", "bad_json", "500_after", "drop_after", "hang_after"
]
FAULT_KINDS: tuple[str, ...] = (
    "500", "429", "hang", "drop", "bad_json", "500_after", "drop_after", "hang_after"
)
#: Kinds applied after the platform has carried the call out (its answer is lost).
AFTER_KINDS = frozenset({"500_after", "drop_after", "hang_after"})
TOKEN_NOT_FOUND = {"error": {"message": "A Token was not found in the TokenStorage."}}

#: Where the middleware leaves the decoded form for the operation handlers.
FORM_KEY: web.RequestKey[dict[str, Any]] = web.RequestKey("form", dict)


@dataclass
class Fault:
    """Answer matching API calls with ``kind`` instead of the real answer.

    ``times`` is how many calls are still affected (``None``: until cleared);
    ``path`` a glob on the path after ``/v3`` (``/eventsessions/*/register``);
    ``retry_after`` (429 only) is sent as the ``Retry-After`` header, in seconds.
    Kinds ending in ``_after`` let the call through to the platform first.
    """

    kind: FaultKind
    times: int | None = 1
    path: str | None = None
    method: str | None = None
    retry_after: float | None = None

    def matches(self, method: str, path: str) -> bool:
        if self.method and self.method.upper() != method.upper():
            return False
        return self.path is None or fnmatch.fnmatchcase(path, self.path)


@dataclass
class RecordedRequest:
    """One API call as the fake received it.

    ``form`` is the decoded body plus query string; it stays empty for calls answered
    by a fault (other than an ``_after`` one), the rate limit or the token check,
    which never reach the platform.
    """

    method: str
    path: str
    form: dict[str, Any] = field(default_factory=dict)
    status: int | None = None
    authenticated: bool = False
    #: When the call arrived, on the fake's clock.
    at: float = 0.0


def rate_limit_body(rate: float) -> dict[str, Any]:
    return {"error": {"code": 429,
                      "message": f"I only allow {rate:g} requests per second. Try again."}}


class FakeWebinarServer:
    """The fake's HTTP face; ``platform`` holds the state."""

    def __init__(
        self,
        *,
        token: str,
        organization: str = "demo-org",
        rate_limit: float = 0.0,
        duplicate_registration: DuplicateMode = "existing",
        members: Iterable[Mapping[str, Any]] | None = None,
        link_base: str = DEFAULT_LINK_BASE,
        clock: Callable[[], float] = time.monotonic,
        hang_seconds: float = 300.0,
        access_log: bool = False,
    ) -> None:
        if not token:
            raise ValueError("the fake needs a token to accept")
        self.platform = FakePlatform(
            organization=organization, link_base=link_base,
            duplicate_registration=duplicate_registration, members=members,
        )
        self.rate_limit = rate_limit
        self.faults: list[Fault] = []
        #: Every API call received (most recent last, at most 10,000 kept).
        self.requests: deque[RecordedRequest] = deque(maxlen=10_000)
        self._token = token
        self._clock = clock
        self._hang_seconds = hang_seconds
        self._accepted: deque[float] = deque()
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._access_log = access_log
        self.root_url = ""

    def __repr__(self) -> str:
        return f"FakeWebinarServer(url={self.api_url!r})"

    @property
    def api_url(self) -> str:
        """Base URL for the client's ``api_url`` (ends in ``/v3``)."""
        return self.root_url + API_PREFIX

    url = api_url

    # ---- Python API ---------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The same JSON-able dict ``GET /_fake/state`` returns."""
        return self.platform.state()

    def add_fault(
        self,
        kind: FaultKind,
        *,
        times: int | None = 1,
        path: str | None = None,
        method: str | None = None,
        retry_after: float | None = None,
    ) -> Fault:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}")
        fault = Fault(kind, times, path, method, retry_after)
        self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        self.faults.clear()

    def add_member(self, email: str, *, name: str = "", second_name: str = "",
                   role: str = "admin") -> int:
        return self.platform.add_member(email, name=name, second_name=second_name, role=role)

    @property
    def duplicate_registration(self) -> DuplicateMode:
        return self.platform.duplicate_registration

    @duplicate_registration.setter
    def duplicate_registration(self, mode: DuplicateMode) -> None:
        self.platform.duplicate_registration = mode

    # ---- life cycle ---------------------------------------------------------------

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._api_middleware])
        api = API_PREFIX
        p = self.platform
        app.router.add_post(f"{api}/events", self._form(lambda r, f: p.create_event(f)))
        # before {event_id}, which would match "schedule" too
        app.router.add_get(f"{api}/organization/events/schedule",
                           self._form(lambda r, f: p.list_schedule(f)))
        app.router.add_post(f"{api}/events/{{event_id}}/sessions",
                            self._form(lambda r, f: p.create_session(_id(r, "event_id"), f)))
        app.router.add_get(f"{api}/organization/events/{{event_id}}",
                           self._form(lambda r, f: p.read_event(_id(r, "event_id"))))
        app.router.add_put(f"{api}/organization/events/{{event_id}}",
                           self._form(lambda r, f: p.update_event(_id(r, "event_id"), f)))
        app.router.add_delete(f"{api}/organization/events/{{event_id}}",
                              self._form(lambda r, f: p.delete_event(_id(r, "event_id"))))
        app.router.add_get(f"{api}/eventsessions/{{session_id}}",
                           self._form(lambda r, f: p.read_session(_id(r, "session_id"))))
        app.router.add_put(f"{api}/eventsessions/{{session_id}}",
                           self._form(lambda r, f: p.update_session(_id(r, "session_id"), f)))
        app.router.add_delete(f"{api}/eventsessions/{{session_id}}",
                              self._form(lambda r, f: p.delete_session(_id(r, "session_id"), f)))
        app.router.add_post(f"{api}/eventsessions/{{session_id}}/register",
                            self._form(lambda r, f: p.register(_id(r, "session_id"), f)))
        app.router.add_post(f"{api}/eventsessions/{{session_id}}/invite",
                            self._form(lambda r, f: p.invite(_id(r, "session_id"), f)))
        app.router.add_get(
            f"{api}/eventsessions/{{session_id}}/participations",
            self._form(lambda r, f: p.list_participations(_id(r, "session_id"), f)),
        )
        app.router.add_post(f"{api}/participations/delete",
                            self._form(lambda r, f: p.delete_participations(f)))
        app.router.add_get(f"{api}/organization/members",
                           self._form(lambda r, f: p.list_members(f)))
        app.router.add_get(f"{api}/timezones", self._form(lambda r, f: p.list_timezones()))
        app.router.add_get("/_fake/state", self._state_handler)
        app.router.add_post("/_fake/faults", self._add_fault_handler)
        app.router.add_delete("/_fake/faults", self._clear_faults_handler)
        app.router.add_post("/_fake/members", self._add_member_handler)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        runner = web.AppRunner(
            self.build_app(), access_log=log if self._access_log else None,
            handle_signals=False, shutdown_timeout=5.0,
        )
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self.root_url = f"http://{shown}:{bound_port}"

    async def stop(self) -> None:
        # Release hanging handlers first so the shutdown does not wait for them.
        self._closing.set()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    # ---- HTTP plumbing ------------------------------------------------------------

    @web.middleware
    async def _api_middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if not request.path.startswith(API_PREFIX + "/"):
            return await handler(request)
        path = request.path[len(API_PREFIX):]
        record = RecordedRequest(request.method, path, at=self._clock())
        self.requests.append(record)
        response = await self._guarded(request, handler, record, path)
        record.status = response.status
        return response

    async def _guarded(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
        record: RecordedRequest,
        path: str,
    ) -> web.StreamResponse:
        fault = self._take_fault(request.method, path)
        if fault is not None and fault.kind not in AFTER_KINDS:
            return await self._apply_fault(request, fault)
        response = await self._serve(request, handler, record)
        if fault is not None:
            return await self._apply_after_fault(request, fault, response)
        return response

    async def _serve(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
        record: RecordedRequest,
    ) -> web.StreamResponse:
        if self.rate_limit > 0:
            wait = self._admit()
            if wait is not None:
                return web.json_response(
                    rate_limit_body(self.rate_limit), status=429,
                    headers={"Retry-After": f"{wait:.3f}"},
                )
        supplied = request.headers.get("x-auth-token", "").strip()
        if not supplied:
            return web.json_response(TOKEN_NOT_FOUND, status=401)
        if supplied != self._token:
            return web.json_response({"error": {"code": 403, "message": "Forbidden"}}, status=403)
        record.authenticated = True
        try:
            record.form = await _read_form(request)
        except FakeApiError as exc:
            return web.json_response(exc.body(), status=exc.status)
        request[FORM_KEY] = record.form
        try:
            return await handler(request)
        except web.HTTPNotFound:
            return web.json_response({"error": {"code": 404, "message": "Not Found"}}, status=404)
        except web.HTTPMethodNotAllowed:
            return web.json_response(
                {"error": {"code": 405, "message": "Method Not Allowed"}}, status=405
            )

    def _form(
        self, operation: Callable[[web.Request, dict[str, Any]], tuple[int, Any]]
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            try:
                status, body = operation(request, request[FORM_KEY])
            except FakeApiError as exc:
                return web.json_response(exc.body(), status=exc.status)
            if body is None:
                return web.Response(status=status)
            return web.json_response(body, status=status)

        return handle

    def _take_fault(self, method: str, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.matches(method, path):
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                return fault
        return None

    async def _apply_fault(self, request: web.Request, fault: Fault) -> web.StreamResponse:
        if fault.kind == "500":
            return web.json_response(
                {"error": {"code": 500, "message": "Internal Server Error"}}, status=500
            )
        if fault.kind == "429":
            headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else None
            return web.json_response(rate_limit_body(self.rate_limit or 2), status=429, headers=headers)
        if fault.kind == "bad_json":
            return web.Response(status=200, text='{"eventId": 41', content_type="application/json")
        if fault.kind == "hang":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), self._hang_seconds)
            return web.json_response(
                {"error": {"code": 503, "message": "Service Unavailable"}}, status=503
            )
        # "drop": cut the connection without any answer.  aiohttp then fails to
        # write the placeholder response below and treats that as a client hang-up.
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=502)

    async def _apply_after_fault(
        self, request: web.Request, fault: Fault, response: web.StreamResponse
    ) -> web.StreamResponse:
        """The platform has carried the call out (``response``); now its answer is lost."""
        if fault.kind == "500_after":
            return web.json_response(
                {"error": {"code": 500, "message": "Internal Server Error"}}, status=500
            )
        if fault.kind == "hang_after":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), self._hang_seconds)
            return response
        # "drop_after": as "drop", once the work is done.
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=502)

    def _admit(self) -> float | None:
        """Sliding-window limit: at most ``rate`` calls in any one second.

        None when the call is admitted, else the seconds until it would be (sent as
        ``Retry-After``).  The limit is the key's: all callers with the token share it.
        """
        window = max(1.0, 1.0 / self.rate_limit)
        capacity = max(1, round(self.rate_limit * window))
        now = self._clock()
        while self._accepted and self._accepted[0] <= now - window:
            self._accepted.popleft()
        if len(self._accepted) >= capacity:
            return max(self._accepted[0] + window - now, 0.001)
        self._accepted.append(now)
        return None

    async def _state_handler(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.state())

    async def _add_fault_handler(self, request: web.Request) -> web.StreamResponse:
        try:
            spec = await request.json()
            if not isinstance(spec, dict):
                raise ValueError("expected a JSON object")
            times = spec.get("times", 1)
            fault = self.add_fault(
                str(spec.get("kind")),  # type: ignore[arg-type]
                times=None if times is None else int(times),
                path=spec.get("path"), method=spec.get("method"),
                retry_after=None if spec.get("retry_after") is None else float(spec["retry_after"]),
            )
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": {"code": 400, "message": str(exc)}}, status=400)
        return web.json_response(
            {"kind": fault.kind, "times": fault.times, "path": fault.path, "method": fault.method},
            status=201,
        )

    async def _clear_faults_handler(self, request: web.Request) -> web.StreamResponse:
        self.clear_faults()
        return web.Response(status=204)

    async def _add_member_handler(self, request: web.Request) -> web.StreamResponse:
        try:
            spec = await request.json()
            email = spec["email"]
            if not isinstance(email, str) or "@" not in email:
                raise ValueError("email is required")
        except (ValueError, TypeError, KeyError) as exc:
            return web.json_response({"error": {"code": 400, "message": str(exc)}}, status=400)
        member_id = self.add_member(
            email, name=str(spec.get("name", "")), second_name=str(spec.get("secondName", "")),
            role=str(spec.get("role", "admin")),
        )
        return web.json_response({"id": member_id}, status=201)


def _id(request: web.Request, name: str) -> int:
    text = request.match_info[name]
    if not text.isdigit():
        raise FakeApiError(404, "Not Found")
    return int(text)


async def _read_form(request: web.Request) -> dict[str, Any]:
    """Query string plus body, decoded the way the platform does (bracket keys)."""
    pairs: list[tuple[str, str]] = list(request.query.items())
    if request.body_exists:
        if request.content_type == "application/json":
            try:
                body = json.loads(await request.text())
            except ValueError:
                raise FakeApiError(400, "json is not valid", with_code=False) from None
            if not isinstance(body, dict):
                raise FakeApiError(400, "json is not valid", with_code=False)
            try:
                merged = decode_form(pairs)
            except FormError:
                raise FakeApiError(400, "ERROR_BAD_REQUEST") from None
            merged.update(body)
            return merged
        posted = await request.post()
        pairs.extend((key, value) for key, value in posted.items() if isinstance(value, str))
    try:
        return decode_form(pairs)
    except FormError:
        raise FakeApiError(400, "ERROR_BAD_REQUEST") from None


@contextlib.asynccontextmanager
async def running_fake_webinar(
    host: str = "127.0.0.1", port: int = 0, **options: Any
) -> AsyncIterator[FakeWebinarServer]:
    """Run a ``FakeWebinarServer`` (options as its constructor) for the ``with`` block."""
    options.setdefault("token", "fake-token")
    server = FakeWebinarServer(**options)
    await server.start(host, port)
    try:
        yield server
    finally:
        await server.stop()
