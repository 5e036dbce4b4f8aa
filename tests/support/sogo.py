"""A real SOGo (Debian's ``sogod``) on loopback, driven over CalDAV like a calendar client.

What runs, all started here and ended by PID (process group) at the end:
  - a PostgreSQL database of its own (``wp_sogo_<random>``) on the test server, with the
    SQL user source SOGo reads (``sogo_users``: c_uid, c_name, c_password, c_cn, mail);
    SOGo creates its profile, folder and session tables there itself; dropped afterwards;
  - ``memcached`` on an ephemeral loopback port (as ``nobody`` when we are root);
  - ``sogod -WONoDetach YES`` listening on an ephemeral loopback port, logging to a file in
    its private directory; as the ``sogo`` user when we are root (sogod refuses root),
    else as us, which works for members of group ``sogo`` (sogod must read its
    configuration file, ``root:sogo 0640``, or it aborts).

Every setting is passed as a ``-Key value`` argument: NSUserDefaults' argument domain wins
over ``/etc/sogo/sogo.conf``, which is read but never changed.  SOGo mails by SMTP
(``SOGoMailingMechanism = smtp``) to ``smtp_port``: the relay under test, started first.

``CalDav`` is the organizer's client: it GETs the stored event, changes it and PUTs it back
with If-Match, as Thunderbird or SOGo's web UI would, so SOGo's own SEQUENCE is kept.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import icalendar
import psycopg

from tests.support.postfix import free_ports, wait_until

SOGOD = Path("/usr/sbin/sogod")
MEMCACHED = Path("/usr/bin/memcached")
SOGO_USER = "sogo"
SOGO_CONF = Path("/etc/sogo/sogo.conf")


@dataclass(frozen=True)
class Account:
    login: str
    password: str
    name: str
    email: str


ORGANIZER = Account("olga", "olga-secret", "Olga Organizer", "olga@corp.example")


def skip_reason() -> str | None:
    """Why a private SOGo cannot run here, or None."""
    if not SOGOD.exists():
        return "Debian's sogo is not installed (/usr/sbin/sogod missing; .ci/run installs sogo memcached)"
    if not MEMCACHED.exists():
        return "memcached is not installed (/usr/bin/memcached missing; .ci/run installs it)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SOGO_USER)
        except KeyError:
            return "the 'sogo' user does not exist (the sogo package creates it)"
    elif not os.access(SOGO_CONF, os.R_OK):
        # sogod aborts when it cannot read its configuration file (root:sogo 0640)
        return f"sogod must read {SOGO_CONF}: run the tests as root or as a member of group 'sogo'"
    return None


def _run_as() -> dict[str, Any]:
    """Popen arguments for sogod's user: 'sogo' when we are root (sogod refuses root), else us."""
    if os.geteuid() != 0:
        return {}
    sogo = pwd.getpwnam(SOGO_USER)
    return {"user": sogo.pw_uid, "group": sogo.pw_gid, "extra_groups": []}


@dataclass
class SogoServer:
    http_port: int
    smtp_port: int
    directory: Path
    process: subprocess.Popen[bytes]
    organizer: Account = ORGANIZER

    @property
    def calendar_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/SOGo/dav/{self.organizer.login}/Calendar/personal/"

    def log(self, last: int = 60) -> str:
        """The end of sogod's log, for failure messages."""
        try:
            lines = (self.directory / "sogo.log").read_text(errors="replace").splitlines()
        except OSError as exc:
            return f"(no sogod log: {exc})"
        return "\n".join(line for line in lines[-last:] if line.strip())


@contextlib.contextmanager
def sogo_database(pg_base_url: str) -> Iterator[str]:
    """A fresh database holding the SQL user source; yields SOGo's URL prefix for it."""
    name = f"wp_sogo_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_base_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        info = admin.info
        user, host, port, password = info.user, info.host, info.port, info.password
    try:
        with psycopg.connect(psycopg.conninfo.make_conninfo(pg_base_url, dbname=name),
                             autocommit=True) as conn:
            conn.execute("CREATE TABLE sogo_users (c_uid varchar(128) PRIMARY KEY, c_name varchar(128),"
                         " c_password varchar(128), c_cn varchar(128), mail varchar(128))")
            conn.execute("INSERT INTO sogo_users VALUES (%s, %s, %s, %s, %s)",
                         (ORGANIZER.login, ORGANIZER.login, ORGANIZER.password, ORGANIZER.name,
                          ORGANIZER.email))
        # SOGo's own URL form: postgresql://user:password@host:port/database/table
        password = password or "unused"
        host = host if host and not host.startswith("/") else "127.0.0.1"
        yield f"postgresql://{user}:{password}@{host}:{port}/{name}"
    finally:
        with psycopg.connect(pg_base_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _end_group(process: subprocess.Popen[bytes]) -> None:
    """Kill the process group we started (sogod's watchdog and its workers, or memcached).

    Throwaway instances need no graceful stop (sogod takes ~20 s to honour SIGTERM), and
    the group is killed before its leader is reaped, so its id cannot have been reused.
    """
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def _answers_http(port: int) -> bool:
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/SOGo/dav/", timeout=2,
                             headers={"Connection": "close"}, trust_env=False)
    except httpx.HTTPError:
        return False
    return response.status_code in (200, 207, 301, 302, 401)


def _answers_tcp(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def running_sogo(pg_base_url: str, smtp_port: int, *, start_timeout: float = 60) -> Iterator[SogoServer]:
    """SOGo with memcached and its own database; SOGo mails to 127.0.0.1:``smtp_port``."""
    http_port, memcached_port = free_ports(2)
    directory = Path(tempfile.mkdtemp(prefix="wp-sogo-"))
    (directory / "home").mkdir()
    run_as = _run_as()
    for path in (directory, directory / "home"):
        if run_as:
            os.chown(path, run_as["user"], run_as["group"])
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, directory, True)
        db = stack.enter_context(sogo_database(pg_base_url))

        memcached = subprocess.Popen(
            [str(MEMCACHED), "-l", "127.0.0.1", "-p", str(memcached_port), "-U", "0", "-m", "16"],
            user="nobody" if os.geteuid() == 0 else None,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        stack.callback(_end_group, memcached)
        wait_until(lambda: memcached.poll() is not None or _answers_tcp(memcached_port), 10,
                   "memcached to listen")
        assert memcached.poll() is None, "memcached exited at start"

        user_source = (
            f'({{type = sql; id = users; viewURL = "{db}/sogo_users"; canAuthenticate = YES;'
            " isAddressBook = NO; userPasswordAlgorithm = plain;})"
        )
        defaults: dict[str, str] = {
            "WONoDetach": "YES",
            "WOPort": f"127.0.0.1:{http_port}",
            "WOLogFile": str(directory / "sogo.log"),
            "WOPidFile": str(directory / "sogo.pid"),
            "WOWorkersCount": "2",
            "SOGoProfileURL": f"{db}/sogo_user_profile",
            "OCSFolderInfoURL": f"{db}/sogo_folder_info",
            "OCSSessionsFolderURL": f"{db}/sogo_sessions_folder",
            "OCSEMailAlarmsFolderURL": f"{db}/sogo_alarms_folder",
            "SOGoUserSources": user_source,
            "SOGoMemcachedHost": f"127.0.0.1:{memcached_port}",
            "SOGoMailingMechanism": "smtp",
            "SOGoSMTPServer": f"smtp://127.0.0.1:{smtp_port}",
            "SOGoAppointmentSendEMailNotifications": "YES",
            "SOGoFoldersSendEMailNotifications": "NO",
            "SOGoACLsSendEMailNotifications": "NO",
            "SOGoNotifyOnPersonalModifications": "NO",
            "SOGoEnableEMailAlarms": "NO",
            "SOGoTimeZone": "UTC",
            "SOGoLanguage": "English",
            "SOGoMailDomain": ORGANIZER.email.split("@", 1)[1],
        }
        arguments = [str(SOGOD)]
        for key, value in defaults.items():
            arguments += [f"-{key}", value]
        with (directory / "sogod.out").open("wb") as out:
            process = subprocess.Popen(
                arguments, **run_as,
                env={"HOME": str(directory / "home"), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                     "LANG": "C.UTF-8"},
                cwd=directory, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        stack.callback(_end_group, process)
        server = SogoServer(http_port, smtp_port, directory, process)
        wait_until(lambda: process.poll() is not None or _answers_http(http_port), start_timeout,
                   "sogod to answer HTTP", describe=server.log)
        if process.poll() is not None:
            out_text = (directory / "sogod.out").read_text(errors="replace")
            raise AssertionError(f"sogod exited ({process.returncode}) at start:\n{out_text}\n{server.log()}")
        yield server


# ------------------------------------------------------------------------- CalDAV
class CalDav:
    """The organizer's CalDAV client for SOGo's personal calendar (async, one connection per call:
    sogod's workers each hold a kept-alive connection, so a second one may find no free worker)."""

    def __init__(self, server: SogoServer) -> None:
        self.server = server
        self._client = httpx.AsyncClient(
            auth=(server.organizer.login, server.organizer.password), timeout=60,
            headers={"Connection": "close"}, limits=httpx.Limits(max_keepalive_connections=0),
            trust_env=False,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    def _url(self, uid: str) -> str:
        return f"{self.server.calendar_url}{uid}.ics"

    async def put(self, uid: str, calendar: icalendar.Calendar, etag: str | None = None) -> int:
        headers = {"Content-Type": "text/calendar; charset=utf-8"}
        if etag:
            headers["If-Match"] = etag
        response = await self._client.put(self._url(uid), content=calendar.to_ical(), headers=headers)
        assert response.status_code in (201, 204), (response.status_code, response.text, self.server.log())
        return response.status_code

    async def get(self, uid: str) -> tuple[icalendar.Calendar, str | None]:
        response = await self._client.get(self._url(uid))
        assert response.status_code == 200, (response.status_code, response.text, self.server.log())
        return icalendar.Calendar.from_ical(response.content), response.headers.get("ETag")

    async def edit(self, uid: str, change: Callable[[icalendar.Event], None]) -> int:
        """GET the stored event, ``change`` its VEVENT, PUT it back (If-Match)."""
        calendar, etag = await self.get(uid)
        [event] = calendar.walk("VEVENT")
        change(event)
        return await self.put(uid, calendar, etag)

    async def delete(self, uid: str) -> int:
        response = await self._client.delete(self._url(uid))
        assert response.status_code in (200, 204), (response.status_code, response.text, self.server.log())
        return response.status_code


def attendee(address: str, name: str, *, cutype: str | None = None,
             role: str = "REQ-PARTICIPANT") -> icalendar.vCalAddress:
    person = icalendar.vCalAddress(f"mailto:{address}")
    person.params.update({"CN": name, "ROLE": role, "PARTSTAT": "NEEDS-ACTION", "RSVP": "TRUE"})
    if cutype:
        person.params["CUTYPE"] = cutype
    return person


def new_event(uid: str, start: datetime, duration: timedelta, summary: str, location: str,
              attendees: list[icalendar.vCalAddress], rrule: dict[str, Any] | None = None,
              organizer: Account = ORGANIZER) -> icalendar.Calendar:
    """A calendar as a client creates it: the organizer also listed as an accepted CHAIR."""
    calendar = icalendar.Calendar()
    calendar.add("prodid", "-//webinar-proxy tests//CalDAV client//EN")
    calendar.add("version", "2.0")
    event = icalendar.Event()
    event.add("uid", uid)
    event.add("dtstamp", datetime.now(UTC).replace(microsecond=0))
    event.add("dtstart", start)
    event.add("dtend", start + duration)
    event.add("summary", summary)
    event.add("location", location)
    boss = icalendar.vCalAddress(f"mailto:{organizer.email}")
    boss.params["CN"] = organizer.name
    event.add("organizer", boss)
    me = attendee(organizer.email, organizer.name, role="CHAIR")
    me.params["PARTSTAT"] = "ACCEPTED"
    event.add("attendee", me)
    for person in attendees:
        event.add("attendee", person)
    if rrule:
        event.add("rrule", rrule)
    calendar.add_component(event)
    return calendar


def without_attendee(address: str) -> Callable[[icalendar.Event], None]:
    def change(event: icalendar.Event) -> None:
        kept = [a for a in _attendees(event) if str(a).lower() != f"mailto:{address}".lower()]
        del event["attendee"]
        for person in kept:
            event.add("attendee", person)
    return change


def with_attendee(person: icalendar.vCalAddress) -> Callable[[icalendar.Event], None]:
    def change(event: icalendar.Event) -> None:
        event.add("attendee", person)
    return change


def moved_to(start: datetime, duration: timedelta) -> Callable[[icalendar.Event], None]:
    def change(event: icalendar.Event) -> None:
        for name in ("dtstart", "dtend", "duration"):
            event.pop(name, None)
        event.add("dtstart", start)
        event.add("dtend", start + duration)
    return change


def located(location: str) -> Callable[[icalendar.Event], None]:
    def change(event: icalendar.Event) -> None:
        event.pop("location", None)
        event.add("location", location)
    return change


def with_exdate(when: datetime) -> Callable[[icalendar.Event], None]:
    def change(event: icalendar.Event) -> None:
        event.add("exdate", when)
    return change


def _attendees(event: icalendar.Event) -> list[icalendar.vCalAddress]:
    value = event.get("attendee", [])
    return value if isinstance(value, list) else [value]
